package array

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
)

// bitsOf reads every bit of a bitset through Words.
func bitsOf(t testing.TB, b *Bitset, root, nrBits uint64) []bool {
	t.Helper()
	out := make([]bool, nrBits)
	next := uint64(0)
	err := b.Words(root, nrBits, func(wi uint64, w uint64) error {
		if wi != next {
			return fmt.Errorf("Words gave word %d, want %d", wi, next)
		}
		next++
		for j := range uint64(64) {
			i := wi*64 + j
			if w&(1<<j) == 0 {
				continue
			}
			if i >= nrBits {
				return fmt.Errorf("Words reports bit %d set in a %d-bit bitset", i, nrBits)
			}
			out[i] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Words: %v", err)
	}
	if next != NrWords(nrBits) {
		t.Fatalf("Words gave %d words, want %d", next, NrWords(nrBits))
	}
	return out
}

// checkTrailingZero checks in the stored words that no bit at or beyond
// nrBits is set.
func checkTrailingZero(t testing.TB, b *Bitset, root, nrBits uint64) {
	t.Helper()
	if nrBits%64 == 0 {
		return
	}
	v, err := b.Array().Get(root, nrBits/64)
	if err != nil {
		t.Fatal(err)
	}
	if w := binary.LittleEndian.Uint64(v); w>>(nrBits%64) != 0 {
		t.Fatalf("last word %#x of a %d-bit bitset has bits set beyond the end", w, nrBits)
	}
}

func TestBitsetModel(t *testing.T) {
	const perBlock = 509 * 64 // bits per array block
	e := newEnv(t, 2048)
	b := NewBitset(e.tm)
	rng := rand.New(rand.NewPCG(3, 4))
	var m []bool
	nrBits := uint64(0)
	root, err := b.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	size := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return uint64(rng.IntN(200))
		case 1:
			// Near an array-block boundary, on either side.
			return uint64(rng.IntN(4)+1)*perBlock + uint64(rng.IntN(260)) - 130
		default:
			return uint64(rng.IntN(3*perBlock + 1000))
		}
	}
	compare := func(what string) {
		t.Helper()
		if diff := diffModel(m, bitsOf(t, b, root, nrBits)); diff != "" {
			t.Fatalf("%s: bitset differs from the model (-want +got):\n%s", what, diff)
		}
		checkTrailingZero(t, b, root, nrBits)
	}
	for op := range 3000 {
		switch k := rng.IntN(100); {
		case k < 8:
			n := size()
			if root, err = b.Resize(root, nrBits, n); err != nil {
				t.Fatalf("Resize(%d -> %d): %v", nrBits, n, err)
			}
			if n < nrBits {
				m = m[:n]
			}
			for uint64(len(m)) < n {
				m = append(m, false)
			}
			nrBits = n
		case k < 40:
			if nrBits == 0 {
				continue
			}
			// A batch of bits, unsorted, with repeats, often clustered.
			var bits []uint64
			base := uint64(rng.IntN(int(nrBits)))
			for range rng.IntN(300) + 1 {
				var i uint64
				if rng.IntN(2) == 0 {
					i = (base + uint64(rng.IntN(2000))) % nrBits
				} else {
					i = uint64(rng.IntN(int(nrBits)))
				}
				bits = append(bits, i)
			}
			bits = append(bits, bits[0])
			if rng.IntN(15) == 0 {
				// One bit out of range: nothing may change.
				bits = append(bits, nrBits+uint64(rng.IntN(100)))
				if _, err := b.SetBits(root, nrBits, bits); !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("SetBits with a bit past %d: err %v, want ErrOutOfRange", nrBits, err)
				}
				continue
			}
			if root, err = b.SetBits(root, nrBits, bits); err != nil {
				t.Fatalf("SetBits: %v", err)
			}
			for _, i := range bits {
				m[i] = true
			}
		case k < 70:
			i := uint64(rng.IntN(int(nrBits) + 70))
			got, err := b.Test(root, nrBits, i)
			if i >= nrBits {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Test(%d) of %d bits: err %v, want ErrOutOfRange", i, nrBits, err)
				}
				continue
			}
			if err != nil || got != m[i] {
				t.Fatalf("Test(%d) = %v, %v; want %v", i, got, err, m[i])
			}
		case k < 80:
			if nrBits == 0 {
				continue
			}
			nw := NrWords(nrBits)
			begin := uint64(rng.IntN(int(nw)))
			end := begin + uint64(rng.IntN(int(nw-begin)+1))
			words, err := b.ReadWords(root, nrBits, begin, end)
			if err != nil {
				t.Fatalf("ReadWords(%d, %d): %v", begin, end, err)
			}
			for j, w := range words {
				for bit := range uint64(64) {
					i := (begin+uint64(j))*64 + bit
					want := i < nrBits && m[i]
					if (w>>bit&1 == 1) != want {
						t.Fatalf("ReadWords(%d, %d): bit %d = %v, want %v", begin, end, i, !want, want)
					}
				}
			}
		case k < 88:
			compare(fmt.Sprintf("op %d", op))
		case k < 94:
			e.commit()
			fb := NewBitset(e.fresh())
			if diff := diffModel(m, bitsOf(t, fb, root, nrBits)); diff != "" {
				t.Fatalf("after commit: bitset read from the bytes differs (-want +got):\n%s", diff)
			}
		default:
			e.checkRefs(arrayRoot{b.Array(), root})
		}
	}
	compare("end")
	if err := b.Delete(root); err != nil {
		t.Fatal(err)
	}
	e.checkBaseline()
}

// TestBitsetTrailingBits checks that bits beyond nrBits are written zero,
// ignored when read, and cleared by a resize.
func TestBitsetTrailingBits(t *testing.T) {
	e := newEnv(t, 256)
	b := NewBitset(e.tm)
	root, err := b.Create(70)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = b.SetBits(root, 70, []uint64{69, 0}); err != nil {
		t.Fatal(err)
	}
	// format.md §6: nr_bits=70 with bit 69 (and 0) -> words 0x1, 0x20.
	words, err := b.ReadWords(root, 70, 0, 2)
	if err != nil || words[0] != 1 || words[1] != 0x20 {
		t.Fatalf("ReadWords = %#x, %v; want [0x1 0x20]", words, err)
	}
	// Shrink to 68 bits: bit 69 must be cleared in the stored word.
	if root, err = b.Resize(root, 70, 68); err != nil {
		t.Fatal(err)
	}
	checkTrailingZero(t, b, root, 68)
	// Grow back: bit 69 is new, so clear.
	if root, err = b.Resize(root, 68, 70); err != nil {
		t.Fatal(err)
	}
	if set, err := b.Test(root, 70, 69); err != nil || set {
		t.Fatalf("Test(69) after shrink and grow = %v, %v", set, err)
	}

	// A stale bit beyond nrBits written by someone else is not reported,
	// and a grow clears it before it could become visible.
	stale := make([]byte, 8)
	binary.LittleEndian.PutUint64(stale, 1|1<<5) // bits 64 and 69 of word 1
	if root, err = b.Array().Set(root, 1, stale); err != nil {
		t.Fatal(err)
	}
	got := bitsOf(t, b, root, 66) // bit 64 set, bit 69 beyond 66
	if !got[64] || got[65] {
		t.Fatalf("bits 64, 65 = %v, %v", got[64], got[65])
	}
	if root, err = b.Resize(root, 66, 128); err != nil {
		t.Fatal(err)
	}
	if set, err := b.Test(root, 128, 69); err != nil || set {
		t.Fatalf("stale bit 69 visible after grow: %v, %v", set, err)
	}
	if set, err := b.Test(root, 128, 64); err != nil || !set {
		t.Fatalf("bit 64 lost by grow: %v, %v", set, err)
	}
}

// TestBitsetNoCache uses one Bitset for two bitsets interleaved, and
// changes one behind the Bitset's back: nothing cached may leak between
// them (format.md §8, kernel fix 2524933307fd).
func TestBitsetNoCache(t *testing.T) {
	e := newEnv(t, 256)
	b := NewBitset(e.tm)
	r1, err := b.Create(100)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Create(100)
	if err != nil {
		t.Fatal(err)
	}
	if r1, err = b.SetBits(r1, 100, []uint64{3}); err != nil {
		t.Fatal(err)
	}
	if set, _ := b.Test(r2, 100, 3); set {
		t.Fatal("bit 3 of the second bitset set by the first")
	}
	if r2, err = b.SetBits(r2, 100, []uint64{5}); err != nil {
		t.Fatal(err)
	}
	if set, _ := b.Test(r1, 100, 5); set {
		t.Fatal("bit 5 of the first bitset set by the second")
	}
	// Change the first bitset through another handle.
	other := NewBitset(e.tm)
	if r1, err = other.SetBits(r1, 100, []uint64{4}); err != nil {
		t.Fatal(err)
	}
	if set, _ := b.Test(r1, 100, 4); !set {
		t.Fatal("change made through another handle not seen")
	}
	for _, tc := range []struct {
		root uint64
		want []uint64
	}{{r1, []uint64{3, 4}}, {r2, []uint64{5}}} {
		got := bitsOf(t, b, tc.root, 100)
		for i, set := range got {
			want := false
			for _, w := range tc.want {
				want = want || uint64(i) == w
			}
			if set != want {
				t.Fatalf("root %d bit %d = %v, want %v", tc.root, i, set, want)
			}
		}
	}
	e.checkRefs(arrayRoot{b.Array(), r1}, arrayRoot{b.Array(), r2})
}

// TestBitsetEarlyStop checks that btree.Stop ends Words without error.
func TestBitsetEarlyStop(t *testing.T) {
	e := newEnv(t, 64)
	b := NewBitset(e.tm)
	root, err := b.Create(1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = b.Words(root, 1000, func(uint64, uint64) error {
		n++
		if n == 3 {
			return btree.Stop
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Words stopped after %d words with %v", n, err)
	}
	if _, err := b.Test(root, 0, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Test past the end: %v", err)
	}
	if _, err := b.ReadWords(root, 1000, 10, 17); !errors.Is(err, ErrOutOfRange) || errors.Is(err, block.ErrCorrupt) {
		t.Fatalf("ReadWords past the end: %v", err)
	}
}
