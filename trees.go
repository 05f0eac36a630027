package era

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/transaction"
)

// eraTrees is the typed reader of one superblock's trees (the live
// superblock, a committed one, or a metadata snapshot's clone): the era
// array, the writeset tree of archived writesets and, when there is one,
// the current writeset. Queries, views, dumps and Check all read through
// it.
type eraTrees struct {
	tm         *transaction.Manager
	nrBlocks   uint32
	currentEra uint32
	wsRoot     uint64
	eraRoot    uint64
	current    writesetInfo // Root 0: no current writeset
	uuid       [16]byte

	// refs, when set (by Check), makes the reads count references: the
	// writeset tree is walked whole with every btree rule, and the era
	// array and each bitset read count theirs before their values are read.
	refs *btree.Refs
}

// treesOf returns the trees of sb, its current writeset included.
func treesOf(tm *transaction.Manager, sb *superblock) eraTrees {
	return eraTrees{
		tm:         tm,
		nrBlocks:   sb.NrBlocks,
		currentEra: sb.CurrentEra,
		wsRoot:     sb.WritesetTreeRoot,
		eraRoot:    sb.EraArrayRoot,
		current:    sb.CurrentWriteset,
		uuid:       sb.UUID,
	}
}

// writesetEntry is one archived writeset.
type writesetEntry struct {
	era  uint32
	info writesetInfo
}

// writesets returns the archived writesets with era >= since, ascending,
// and the current writeset, if any and its era is >= since, last.
func (t eraTrees) writesets(since uint32) ([]writesetEntry, error) {
	out, err := t.archived(since, nil)
	if err != nil {
		return nil, err
	}
	if t.current.Root != 0 && t.currentEra >= since {
		out = append(out, writesetEntry{era: t.currentEra, info: t.current})
	}
	return out, nil
}

// archived returns the entries of the writeset tree with era >= since,
// ascending: the one walk of the tree that queries, views and dumps share.
// An entry that is not a writeset (a key past 2^32-1, a root of 0) is
// damage: without a handler it is the error; with one (dump --repair) it
// is reported and skipped, and a tree that cannot be read to the end
// yields the entries read so far.
func (t eraTrees) archived(since uint32, damage func(error) error) ([]writesetEntry, error) {
	if damage == nil {
		damage = func(err error) error { return err }
	}
	var out []writesetEntry
	var fatal error // a problem damage did not let pass
	tree := btree.New(t.tm, btree.ValueType{Size: writesetInfoSize})
	entry := func(key uint64, v []byte) error {
		if key < uint64(since) {
			return nil
		}
		info := decodeWritesetInfo(v)
		var problem error
		switch {
		case key > uint64(^uint32(0)):
			problem = fmt.Errorf("writeset tree: key %d is not an era: %w", key, ErrCorrupt)
		case info.Root == 0:
			problem = fmt.Errorf("writeset tree: writeset of era %d has root 0: %w", key, ErrCorrupt)
		default:
			out = append(out, writesetEntry{era: uint32(key), info: info})
			return nil
		}
		if fatal = damage(problem); fatal != nil {
			return btree.Stop
		}
		return nil
	}
	var err error
	if t.refs != nil {
		err = tree.CountRefs(t.wsRoot, t.refs, entry)
		if errors.Is(err, btree.Stop) {
			err = nil
		}
	} else {
		err = tree.Iterate(t.wsRoot, uint64(since), entry)
	}
	if fatal != nil {
		return nil, fatal
	}
	if err != nil {
		if err := damage(fmt.Errorf("read writeset tree: %w", err)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readWords reads words [lo, hi) of a writeset, within its nr_bits: a
// bitset shorter than that is damage.
func readWords(bits *array.Bitset, ws writesetEntry, lo, hi uint64) ([]uint64, error) {
	words, err := bits.ReadWords(ws.info.Root, uint64(ws.info.NrBits), lo, hi)
	if errors.Is(err, array.ErrOutOfRange) {
		err = block.Corruptf(ws.info.Root, "writeset", "shorter than its %d bits: %v", ws.info.NrBits, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read writeset of era %d: %w", ws.era, err)
	}
	return words, nil
}

// writesetWords calls fn with the words of each writeset of sets that
// cover blocks [lo, hi) (within its nr_bits), in the order of sets; wlo is
// the index of the first word.
func (t eraTrees) writesetWords(ctx context.Context, sets []writesetEntry, lo, hi uint64, fn func(ws writesetEntry, wlo uint64, words []uint64)) error {
	bits := array.NewBitset(t.tm)
	for _, ws := range sets {
		if err := ctx.Err(); err != nil {
			return err
		}
		wlo, whi := lo/64, min((hi+63)/64, array.NrWords(uint64(ws.info.NrBits)))
		if wlo >= whi {
			continue
		}
		words, err := readWords(bits, ws, wlo, whi)
		if err != nil {
			return err
		}
		fn(ws, wlo, words)
	}
	return nil
}

// eraArray calls fn with the era-array value of every block, in order
// (one pass, with the array's shape checked against nr_blocks).
func (t eraTrees) eraArray(fn func(b uint64, era uint32) error) error {
	a := array.New(t.tm, eraValueSize)
	if t.refs != nil {
		if err := a.CountRefs(t.eraRoot, t.refs); err != nil {
			return err
		}
	}
	return a.Iterate(t.eraRoot, uint64(t.nrBlocks), func(i uint64, v []byte) error {
		return fn(i, binary.LittleEndian.Uint32(v))
	})
}

// bitsetWords calls fn with every word of a writeset's bitset, in order
// (one pass, with the shape checked against nr_bits; bits at or past
// nr_bits reported clear).
func (t eraTrees) bitsetWords(ws writesetInfo, fn func(i, w uint64) error) error {
	bits := array.NewBitset(t.tm)
	if t.refs != nil {
		if err := bits.Array().CountRefs(ws.Root, t.refs); err != nil {
			return err
		}
	}
	return bits.Words(ws.Root, uint64(ws.NrBits), fn)
}
