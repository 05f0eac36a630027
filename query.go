package era

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	bits64 "math/bits"
	"sync"

	"github.com/bits-and-blooms/bitset"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
)

// Range is a half-open range [Begin, End) of origin block numbers.
type Range struct{ Begin, End uint64 }

// Len returns the number of blocks in r.
func (r Range) Len() uint64 { return r.End - r.Begin }

// ctxEvery is how many era-array values a query reads between checks of
// its context.
const ctxEvery = 1 << 16

// writtenSince returns the set of blocks whose era is >= since: era-array
// values >= since, and every bit of every writeset of such an era
// (archived, or current) below nr_blocks.
func (t eraTrees) writtenSince(ctx context.Context, since uint32, o sinceOptions) (*bitset.BitSet, error) {
	if o.noCurrent {
		t.current = writesetInfo{}
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
	words, err := t.window(ctx, since, 0, size, sets)
	if err != nil {
		return nil, err
	}
	return bitset.FromWithLength(uint(size), words), nil
}

// window returns the "written since" set of blocks [lo, hi), lo a multiple
// of 64, as words: bit j of word k is block lo+64k+j. sets are the
// writesets of eras >= since (writesets). Writeset bits at or past
// nr_blocks count only when hi passes nr_blocks.
func (t eraTrees) window(ctx context.Context, since uint32, lo, hi uint64, sets []writesetEntry) ([]uint64, error) {
	words := make([]uint64, (hi-lo+63)/64)
	if end := min(hi, uint64(t.nrBlocks)); lo < end {
		eras := array.New(t.tm, eraValueSize)
		err := eras.IterateRange(t.eraRoot, uint64(t.nrBlocks), lo, end, func(i uint64, v []byte) error {
			if i%ctxEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if binary.LittleEndian.Uint32(v) >= since {
				words[(i-lo)/64] |= 1 << ((i - lo) % 64)
			}
			return nil
		})
		if errors.Is(err, array.ErrOutOfRange) {
			err = block.Corruptf(t.eraRoot, "era array", "shorter than its %d blocks: %v", t.nrBlocks, err)
		}
		if err != nil {
			return nil, fmt.Errorf("read era array: %w", err)
		}
	}
	err := t.writesetWords(ctx, sets, lo, hi, func(_ writesetEntry, wlo uint64, got []uint64) {
		for k, w := range got {
			words[wlo-lo/64+uint64(k)] |= w
		}
	})
	if err != nil {
		return nil, err
	}
	if tail := (hi - lo) % 64; tail != 0 && len(words) > 0 {
		words[len(words)-1] &= 1<<tail - 1 // bits past hi
	}
	return words, nil
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

// seqWindow is how many blocks a streaming query reads per pin: a
// bitset's worth of era-array values at a time (64 Ki blocks, 8 KiB).
const seqWindow = 1 << 16

// ranges returns the set bits of words (bit 0 of word 0 is block base) as
// ranges, extending open, a range that ended at base, if the first bit is
// set. The last range is returned open: its end may grow in the next window.
func appendRanges(out []Range, open *Range, words []uint64, base uint64) []Range {
	s := bitset.From(words)
	for i, ok := s.NextSet(0); ok; {
		end, more := s.NextClear(i)
		if !more {
			end = s.Len()
		}
		r := Range{Begin: base + uint64(i), End: base + uint64(end)}
		if open.End == r.Begin && open.End > open.Begin {
			open.End = r.End
		} else {
			if open.End > open.Begin {
				out = append(out, *open)
			}
			*open = r
		}
		if !more {
			break
		}
		i, ok = s.NextSet(end)
	}
	return out
}

// seq streams the ranges of blocks >= from whose era is >= since, a window
// at a time, each window read from the trees pin returns (and released
// before the window's ranges are yielded).
func seq(ctx context.Context, since uint32, from uint64, pin func() (eraTrees, func(), error)) iter.Seq2[Range, error] {
	return func(yield func(Range, error) bool) {
		var open Range
		for lo := from &^ 63; ; lo += seqWindow {
			t, release, err := pin()
			if err != nil {
				yield(Range{}, err)
				return
			}
			n := uint64(t.nrBlocks)
			if lo >= n {
				release()
				break
			}
			if since > t.currentEra {
				release()
				yield(Range{}, fmt.Errorf("written since era %d: the current era is %d: %w", since, t.currentEra, ErrOutOfRange))
				return
			}
			hi := min(n, lo+seqWindow)
			var words []uint64
			sets, err := t.writesets(since)
			if err == nil {
				words, err = t.window(ctx, since, lo, hi, sets)
			}
			release()
			if err != nil {
				yield(Range{}, err)
				return
			}
			if lo < from { // the bits of the first word before from
				words[0] &= ^uint64(0) << (from - lo)
			}
			for _, r := range appendRanges(nil, &open, words, lo) {
				if !yield(r, nil) {
					return
				}
			}
			if hi == n {
				break
			}
		}
		if open.End > open.Begin {
			yield(open, nil)
		}
	}
}

// eras returns the era of every block in [lo, hi): the greatest of its
// era-array value and the eras of the writesets that mark it.
func (t eraTrees) eras(ctx context.Context, lo, hi uint64) ([]uint32, error) {
	if lo > hi || hi > uint64(t.nrBlocks) {
		return nil, fmt.Errorf("blocks [%d, %d) of %d: %w", lo, hi, t.nrBlocks, ErrOutOfRange)
	}
	out := make([]uint32, hi-lo)
	if lo == hi {
		return out, nil
	}
	err := array.New(t.tm, eraValueSize).IterateRange(t.eraRoot, uint64(t.nrBlocks), lo, hi, func(i uint64, v []byte) error {
		out[i-lo] = binary.LittleEndian.Uint32(v)
		return nil
	})
	if errors.Is(err, array.ErrOutOfRange) {
		err = block.Corruptf(t.eraRoot, "era array", "shorter than its %d blocks: %v", t.nrBlocks, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read era array: %w", err)
	}
	sets, err := t.writesets(0)
	if err != nil {
		return nil, err
	}
	// Ascending eras: the last writeset that marks a block wins.
	err = t.writesetWords(ctx, sets, lo, hi, func(ws writesetEntry, wlo uint64, words []uint64) {
		for k, w := range words {
			for w != 0 {
				j := uint64(bits64.TrailingZeros64(w))
				w &= w - 1
				if b := (wlo+uint64(k))*64 + j; b >= lo && b < hi && ws.era > out[b-lo] {
					out[b-lo] = ws.era
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pin returns the trees of the device's last commit, their blocks kept
// from reuse until release is called. It holds the device's lock only to
// take the pin: a query then runs while first writes commit.
func (d *Device) pin() (t eraTrees, release func(), err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state.Load() == stateClosed {
		return eraTrees{}, nil, ErrClosed
	}
	p := d.md.sm.Pin()
	return d.md.committedTrees(), sync.OnceFunc(func() {
		d.mu.Lock()
		d.md.sm.Unpin(p)
		d.mu.Unlock()
	}), nil
}

// query runs fn on the pinned trees of the last commit.
func (d *Device) query(fn func(t eraTrees) error) error {
	t, release, err := d.pin()
	if err != nil {
		return err
	}
	defer release()
	return fn(t)
}

// WrittenSince returns the blocks written in era n or later (every block
// whose era is >= n), as ascending, coalesced ranges. It includes every
// write acknowledged before the call; first writes go on while it runs.
// n above the current era fails with ErrOutOfRange.
func (d *Device) WrittenSince(n uint32) ([]Range, error) {
	return d.WrittenSinceContext(context.Background(), n)
}

// WrittenSinceContext is WrittenSince with a context that can end a long
// query.
func (d *Device) WrittenSinceContext(ctx context.Context, n uint32) (rs []Range, err error) {
	err = d.query(func(t eraTrees) error {
		rs, err = t.since(ctx, n)
		return err
	})
	return rs, err
}

// WrittenSinceChange returns the blocks written since the era of a change
// ID, after checking that it names a point in this metadata's history
// (ErrStaleChangeID otherwise: a full backup is needed).
func (d *Device) WrittenSinceChange(ctx context.Context, id ChangeID) (rs []Range, err error) {
	err = d.query(func(t eraTrees) error {
		n, err := checkChangeID(id, t.uuid, t.currentEra)
		if err != nil {
			return err
		}
		rs, err = t.since(ctx, n)
		return err
	})
	return rs, err
}

// WrittenSinceSeq streams the answer of WrittenSince from block from on, a
// window of blocks at a time, so that an answer over a large device is
// never built in memory at once. Each window is read from the last commit
// at the time it is read; every write acknowledged before the call is in
// the answer. The consumer may stop early. Errors are yielded once, last.
func (d *Device) WrittenSinceSeq(ctx context.Context, since uint32, from uint64) iter.Seq2[Range, error] {
	return seq(ctx, since, from, d.pin)
}

// BlockEra returns the era in which block b was last written (0: never
// since tracking began).
func (d *Device) BlockEra(b uint64) (era uint32, err error) {
	err = d.query(func(t eraTrees) error {
		era, err = t.blockEra(b)
		return err
	})
	return era, err
}

// BlockEras returns the era each block in [lo, hi) was last written in (0:
// never), reading each metadata block of the range once.
func (d *Device) BlockEras(ctx context.Context, lo, hi uint64) (eras []uint32, err error) {
	err = d.query(func(t eraTrees) error {
		eras, err = t.eras(ctx, lo, hi)
		return err
	})
	return eras, err
}

// since returns WrittenSince(n) of the trees.
func (t eraTrees) since(ctx context.Context, n uint32) ([]Range, error) {
	if n > t.currentEra {
		return nil, fmt.Errorf("written since era %d: the current era is %d: %w", n, t.currentEra, ErrOutOfRange)
	}
	set, err := t.writtenSince(ctx, n, sinceOptions{})
	if err != nil {
		return nil, err
	}
	return rangesOf(set), nil
}
