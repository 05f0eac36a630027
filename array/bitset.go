package array

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// Bitset is an on-disk bitset (dm-bitset): an Array of u64 little-endian
// words, bit i being bit i%64 of word i/64, ceil(nrBits/64) words. Bits at or
// beyond nrBits in the last word are written 0.
//
// Unlike the kernel's dm-bitset, a Bitset caches no word between calls
// (format.md §8): every call reads what is on disk or dirty now, so one
// Bitset may serve any number of bitsets, one after the other or
// interleaved.
type Bitset struct {
	a *Array
}

// wordZero is the default value of new words.
var wordZero = make([]byte, 8)

// NewBitset returns a Bitset over tm.
func NewBitset(tm *transaction.Manager) *Bitset {
	return &Bitset{a: New(tm, 8)}
}

// Array returns the array of words the bitset is stored in.
func (b *Bitset) Array() *Array { return b.a }

// NrWords returns the number of words of a bitset of nrBits bits.
func NrWords(nrBits uint64) uint64 {
	return nrBits/64 + min(nrBits%64, 1)
}

// Create creates a bitset of nrBits clear bits (an empty array when nrBits
// is 0) and returns its root.
func (b *Bitset) Create(nrBits uint64) (uint64, error) {
	root, err := b.a.Empty()
	if err != nil {
		return 0, err
	}
	return b.a.Resize(root, 0, NrWords(nrBits), wordZero)
}

// CreateShared is Create with the blocks of clear words shared (see
// Array.NewShared): it writes at most two array blocks and a few btree
// nodes, however many bits.
func (b *Bitset) CreateShared(nrBits uint64) (uint64, error) {
	return b.a.NewShared(NrWords(nrBits), wordZero)
}

// Resize changes the size of the bitset at root from oldBits to newBits and
// returns the new root. New bits are clear. On a shrink, the bits at or
// beyond newBits in the new last word are cleared; on a grow, any stale bit
// at or beyond oldBits in the old last word is cleared too, so that no bit
// appears set that was never set.
func (b *Bitset) Resize(root, oldBits, newBits uint64) (uint64, error) {
	if oldBits == newBits {
		return root, nil
	}
	oldWords, newWords := NrWords(oldBits), NrWords(newBits)
	var err error
	if newBits < oldBits {
		if root, err = b.a.Resize(root, oldWords, newWords, wordZero); err != nil {
			return 0, err
		}
		return b.clearTail(root, newBits)
	}
	if root, err = b.clearTail(root, oldBits); err != nil {
		return 0, err
	}
	return b.a.Resize(root, oldWords, newWords, wordZero)
}

// clearTail clears the bits at or beyond nrBits in word nrBits/64, when
// nrBits is not a multiple of 64. The word's block is shadowed only if a bit
// was set.
func (b *Bitset) clearTail(root, nrBits uint64) (uint64, error) {
	r := nrBits % 64
	if r == 0 {
		return root, nil
	}
	mask := uint64(1)<<r - 1
	return b.a.Update(root, nrBits/64, nrBits/64+1, func(_ uint64, v []byte) bool {
		w := binary.LittleEndian.Uint64(v)
		if w&^mask == 0 {
			return false
		}
		binary.LittleEndian.PutUint64(v, w&mask)
		return true
	})
}

// Test reports whether bit i of the bitset at root, of nrBits bits, is set.
func (b *Bitset) Test(root, nrBits, i uint64) (bool, error) {
	if i >= nrBits {
		return false, fmt.Errorf("bit %d of a %d-bit bitset: %w", i, nrBits, ErrOutOfRange)
	}
	v, err := b.a.Get(root, i/64)
	if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint64(v)&(1<<(i%64)) != 0, nil
}

// SetBits sets the given bits of the bitset at root, of nrBits bits, and
// returns the new root. bits need not be sorted and may repeat. Every bit
// must be below nrBits (else nothing changes and the error wraps
// ErrOutOfRange). Each array block is shadowed at most once, and only if one
// of its words changes.
func (b *Bitset) SetBits(root, nrBits uint64, bits []uint64) (uint64, error) {
	type word struct{ index, mask uint64 }
	words := make([]word, 0, len(bits))
	for _, i := range bits {
		if i >= nrBits {
			return 0, fmt.Errorf("bit %d of a %d-bit bitset: %w", i, nrBits, ErrOutOfRange)
		}
		words = append(words, word{i / 64, 1 << (i % 64)})
	}
	slices.SortFunc(words, func(x, y word) int { return cmp.Compare(x.index, y.index) })
	// Merge the masks of each word.
	merged := words[:0]
	for _, w := range words {
		if n := len(merged); n > 0 && merged[n-1].index == w.index {
			merged[n-1].mask |= w.mask
			continue
		}
		merged = append(merged, w)
	}

	perBlock := uint64(b.a.max)
	for start := 0; start < len(merged); {
		bi := merged[start].index / perBlock
		end := start
		for end < len(merged) && merged[end].index/perBlock == bi {
			end++
		}
		run := merged[start:end]
		lo := uint32(run[0].index % perBlock)
		hi := uint32(run[len(run)-1].index%perBlock) + 1
		k := 0
		var err error
		root, err = b.a.modifyBlock(root, bi, lo, hi, func(s uint32, v []byte) bool {
			if k >= len(run) || uint32(run[k].index%perBlock) != s {
				return false
			}
			mask := run[k].mask
			k++
			w := binary.LittleEndian.Uint64(v)
			if w|mask == w {
				return false
			}
			binary.LittleEndian.PutUint64(v, w|mask)
			return true
		})
		if err != nil {
			return 0, err
		}
		start = end
	}
	return root, nil
}

// Words calls fn for every word of the bitset at root, of nrBits bits, in
// order (one Array.Iterate, with its shape checks). Bits at or beyond nrBits
// are reported clear whatever the disk holds. fn returning Stop ends
// the iteration early with a nil error.
func (b *Bitset) Words(root, nrBits uint64, fn func(wordIndex uint64, w uint64) error) error {
	nrWords := NrWords(nrBits)
	tailMask := ^uint64(0)
	if r := nrBits % 64; r != 0 {
		tailMask = uint64(1)<<r - 1
	}
	return b.a.Iterate(root, nrWords, func(i uint64, v []byte) error {
		w := binary.LittleEndian.Uint64(v)
		if i == nrWords-1 {
			w &= tailMask
		}
		return fn(i, w)
	})
}

// ReadWords returns words [begin, end) of the bitset at root, of nrBits
// bits, reading each array block of the range once. Bits at or beyond nrBits
// are reported clear. A range past the last word yields an error wrapping
// ErrOutOfRange.
func (b *Bitset) ReadWords(root, nrBits, begin, end uint64) ([]uint64, error) {
	nrWords := NrWords(nrBits)
	if begin > end || end > nrWords {
		return nil, fmt.Errorf("words [%d, %d) of a %d-word bitset: %w", begin, end, nrWords, ErrOutOfRange)
	}
	words := make([]uint64, 0, end-begin)
	perBlock := uint64(b.a.max)
	buf := make([]byte, block.Size) // a scan: blocks not cached are read here, not cached
	for i := begin; i < end; {
		bi := i / perBlock
		blk, err := b.a.lookupBlock(root, bi, buf)
		if err != nil {
			return nil, b.a.explain(root, i, err)
		}
		stop := min(end, (bi+1)*perBlock)
		if last := uint32((stop - 1) % perBlock); last >= blk.NrEntries {
			return nil, b.a.explain(root, bi*perBlock+uint64(blk.NrEntries), &errShort{b: blk, bi: bi})
		}
		for ; i < stop; i++ {
			words = append(words, binary.LittleEndian.Uint64(blk.Value(uint32(i%perBlock))))
		}
	}
	if r := nrBits % 64; r != 0 && end == nrWords && end > begin {
		words[len(words)-1] &= uint64(1)<<r - 1
	}
	return words, nil
}

// Delete drops the bitset at root (see Array.Delete).
func (b *Bitset) Delete(root uint64) error {
	return b.a.Delete(root)
}

// SetRange sets bits [lo, hi) of the bitset at root, of nrBits bits, and
// returns the new root. hi must not pass nrBits (else nothing changes and
// the error wraps ErrOutOfRange). Each array block is shadowed at most once,
// and only if one of its words changes.
func (b *Bitset) SetRange(root, nrBits, lo, hi uint64) (uint64, error) {
	if lo > hi || hi > nrBits {
		return 0, fmt.Errorf("bits [%d, %d) of a %d-bit bitset: %w", lo, hi, nrBits, ErrOutOfRange)
	}
	if lo == hi {
		return root, nil
	}
	first, last := lo/64, (hi-1)/64
	return b.a.Update(root, first, last+1, func(i uint64, v []byte) bool {
		mask := ^uint64(0)
		if i == first {
			mask &= ^uint64(0) << (lo % 64)
		}
		if r := hi % 64; i == last && r != 0 {
			mask &= uint64(1)<<r - 1
		}
		w := binary.LittleEndian.Uint64(v)
		if w|mask == w {
			return false
		}
		binary.LittleEndian.PutUint64(v, w|mask)
		return true
	})
}
