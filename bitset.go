package era

import (
	"math/bits"
	"sync/atomic"

	"github.com/bits-and-blooms/bitset"
)

// writeset is the in-core copy of the current era's writeset: one bit per
// origin block, set only once the mark is committed on disk (kernel fix
// 2099b145d77c), so the write path may trust every set bit. Bits are read
// and set atomically: the write path tests them without a lock.
//
// inflight counts writes that passed the bit test on this writeset and have
// not finished writing to the origin. When a checkpoint retires the
// writeset, it waits for the count to drain, so no write that was tracked
// in the old era lands after the new era began.
type writeset struct {
	words    []atomic.Uint64
	nbits    uint64
	inflight atomic.Int64
}

func newWriteset(nbits uint64) *writeset {
	return &writeset{words: make([]atomic.Uint64, (nbits+63)/64), nbits: nbits}
}

// test reports whether block b is marked.
func (w *writeset) test(b uint64) bool {
	return w.words[b/64].Load()&(1<<(b%64)) != 0
}

// allSet reports whether every block in [lo, hi) is marked: the write path's
// whole cost for already-marked blocks.
func (w *writeset) allSet(lo, hi uint64) bool {
	for lo < hi {
		i := lo / 64
		n := min(hi-lo, 64-lo%64)
		mask := (^uint64(0) >> (64 - n)) << (lo % 64)
		if w.words[i].Load()&mask != mask {
			return false
		}
		lo += n
	}
	return true
}

// unmarked appends the blocks in [lo, hi) not yet marked to dst.
func (w *writeset) unmarked(lo, hi uint64, dst []uint64) []uint64 {
	for b := lo; b < hi; b++ {
		if !w.test(b) {
			dst = append(dst, b)
		}
	}
	return dst
}

// set marks block b.
func (w *writeset) set(b uint64) {
	w.words[b/64].Or(1 << (b % 64))
}

// reset clears every bit. Only for a writeset no writer can reach.
func (w *writeset) reset() {
	for i := range w.words {
		w.words[i].Store(0)
	}
}

// count returns the number of marked blocks.
func (w *writeset) count() uint64 {
	var n int
	for i := range w.words {
		n += bits.OnesCount64(w.words[i].Load())
	}
	return uint64(n)
}

// rangesOf returns the set bits of s as ascending, coalesced ranges.
func rangesOf(s *bitset.BitSet) []Range {
	var out []Range
	for i, ok := s.NextSet(0); ok; {
		end, more := s.NextClear(i)
		if !more {
			end = s.Len()
		}
		out = append(out, Range{Begin: uint64(i), End: uint64(end)})
		if !more {
			break
		}
		i, ok = s.NextSet(end)
	}
	return out
}
