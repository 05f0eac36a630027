package era

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bits-and-blooms/bitset"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/transaction"
)

// Range is a half-open range [Begin, End) of origin block numbers.
type Range struct{ Begin, End uint64 }

// Len returns the number of blocks in r.
func (r Range) Len() uint64 { return r.End - r.Begin }

// eraTrees is what a "written since" query reads: the era array, the
// archived writesets and, when there is one, the current writeset. The
// device, a view of committed metadata and a snapshot view each fill it
// from their own roots.
type eraTrees struct {
	tm         *transaction.Manager
	nrBlocks   uint32
	currentEra uint32
	wsRoot     uint64
	eraRoot    uint64
	current    WritesetInfo // Root 0: no current writeset
}

// writesetEntry is one archived writeset.
type writesetEntry struct {
	era  uint32
	info WritesetInfo
}

// writesets returns the archived writesets with era >= since, ascending.
func (t eraTrees) writesets(since uint32) ([]writesetEntry, error) {
	var out []writesetEntry
	tree := btree.New(t.tm, btree.ValueType{Size: writesetInfoSize})
	err := tree.Iterate(t.wsRoot, uint64(since), func(key uint64, v []byte) error {
		if key > uint64(^uint32(0)) {
			return fmt.Errorf("writeset tree: key %d is not an era: %w", key, ErrCorrupt)
		}
		info := decodeWritesetInfo(v)
		if info.Root == 0 {
			return fmt.Errorf("writeset tree: writeset of era %d has root 0: %w", key, ErrCorrupt)
		}
		out = append(out, writesetEntry{era: uint32(key), info: info})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read writeset tree: %w", err)
	}
	if t.current.Root != 0 && t.currentEra >= since {
		out = append(out, writesetEntry{era: t.currentEra, info: t.current})
	}
	return out, nil
}

// ctxEvery is how many era-array values a query reads between checks of
// its context.
const ctxEvery = 1 << 16

// sinceOptions varies what writtenSince counts.
type sinceOptions struct {
	// noCurrent leaves out the current writeset, as era_invalidate 0.9.0
	// does.
	noCurrent bool
	// beyondEnd keeps writeset bits at or past nr_blocks (below the
	// writeset's own nr_bits), as era_invalidate 0.9.0 prints them.
	beyondEnd bool
}

// writtenSince returns the set of blocks whose era is >= since: era-array
// values >= since, and every bit of every writeset of such an era
// (archived, or current) below nr_blocks.
func (t eraTrees) writtenSince(ctx context.Context, since uint32, o sinceOptions) (*bitset.BitSet, error) {
	if o.noCurrent {
		t.current = WritesetInfo{}
	}
	sets, err := t.writesets(since)
	if err != nil {
		return nil, err
	}
	size := uint64(t.nrBlocks)
	if o.beyondEnd {
		for _, ws := range sets {
			size = max(size, uint64(ws.info.NrBits))
		}
	}
	out := bitset.New(uint(size))
	eras := array.New(t.tm, eraValueSize)
	err = eras.Iterate(t.eraRoot, uint64(t.nrBlocks), func(i uint64, v []byte) error {
		if i%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if binary.LittleEndian.Uint32(v) >= since {
			out.Set(uint(i))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read era array: %w", err)
	}
	words := out.Words()
	bits := array.NewBitset(t.tm)
	for _, ws := range sets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := bits.Words(ws.info.Root, uint64(ws.info.NrBits), func(i uint64, w uint64) error {
			if i < uint64(len(words)) {
				words[i] |= w
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read writeset of era %d: %w", ws.era, err)
		}
	}
	if tail := size % 64; tail != 0 && len(words) > 0 {
		words[len(words)-1] &= 1<<tail - 1 // bits past the set's size
	}
	return out, nil
}

// blockEra returns the era of block b: the greatest of its era-array value
// and the eras of the writesets that mark it.
func (t eraTrees) blockEra(b uint64) (uint32, error) {
	if b >= uint64(t.nrBlocks) {
		return 0, fmt.Errorf("block %d of %d: %w", b, t.nrBlocks, ErrOutOfRange)
	}
	v, err := array.New(t.tm, eraValueSize).Get(t.eraRoot, b)
	if errors.Is(err, array.ErrOutOfRange) { // shorter than nr_blocks says
		err = block.Corruptf(t.eraRoot, "era array", "no value for block %d of %d: %v", b, t.nrBlocks, err)
	}
	if err != nil {
		return 0, fmt.Errorf("read era array: %w", err)
	}
	era := binary.LittleEndian.Uint32(v)
	sets, err := t.writesets(era + 1)
	if era == ^uint32(0) || err != nil {
		return era, err
	}
	bits := array.NewBitset(t.tm)
	for i := len(sets) - 1; i >= 0; i-- {
		ws := sets[i]
		if b >= uint64(ws.info.NrBits) {
			continue
		}
		set, err := bits.Test(ws.info.Root, uint64(ws.info.NrBits), b)
		if errors.Is(err, array.ErrOutOfRange) { // shorter than nr_bits says
			err = block.Corruptf(ws.info.Root, "writeset", "no bit %d of %d: %v", b, ws.info.NrBits, err)
		}
		if err != nil {
			return 0, fmt.Errorf("read writeset of era %d: %w", ws.era, err)
		}
		if set {
			return ws.era, nil
		}
	}
	return era, nil
}
