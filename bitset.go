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
// The bits live in chunks of chunkBits, allocated when a bit in them is
// first set: a new era's writeset is a small table of nil chunk pointers
// (an era change allocates nothing of the order of nr_blocks), and a
// writeset holds memory only for the regions written in its era, one bit
// per block at most.
//
// inflight counts writes that passed the bit test on this writeset and have
// not finished writing to the origin. When a checkpoint retires the
// writeset, it waits for the count to drain, so no write that was tracked
// in the old era lands after the new era began.
type writeset struct {
	chunks   []atomic.Pointer[chunk]
	nbits    uint64
	inflight atomic.Int64
	// pit is the point-in-time snapshot held in the writeset's era, if
	// any: a write must copy the blocks it has not copied yet first.
	pit *pointInTime
}

// Chunks of a writeset: chunkBits blocks, 8 KiB of words.
const (
	chunkShift = 16
	chunkBits  = 1 << chunkShift
	chunkWords = chunkBits / 64
)

type chunk [chunkWords]atomic.Uint64

func newWriteset(nbits uint64) *writeset {
	return &writeset{chunks: make([]atomic.Pointer[chunk], (nbits+chunkBits-1)/chunkBits), nbits: nbits}
}

// word returns word i (blocks 64i to 64i+63).
func (w *writeset) word(i uint64) uint64 {
	c := w.chunks[i/chunkWords].Load()
	if c == nil {
		return 0
	}
	return c[i%chunkWords].Load()
}

// test reports whether block b is marked.
func (w *writeset) test(b uint64) bool {
	return w.word(b/64)&(1<<(b%64)) != 0
}

// allSet reports whether every block in [lo, hi) is marked: the write path's
// whole cost for already-marked blocks.
func (w *writeset) allSet(lo, hi uint64) bool {
	for lo < hi {
		n := min(hi-lo, 64-lo%64)
		mask := (^uint64(0) >> (64 - n)) << (lo % 64)
		if w.word(lo/64)&mask != mask {
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

// set marks block b. Calls must not run concurrently (the device's lock
// serializes them): the one that allocates a chunk publishes it.
func (w *writeset) set(b uint64) {
	cp := &w.chunks[b>>chunkShift]
	c := cp.Load()
	if c == nil {
		c = new(chunk)
		cp.Store(c)
	}
	c[(b/64)%chunkWords].Or(1 << (b % 64))
}

// count returns the number of marked blocks.
func (w *writeset) count() uint64 {
	var n int
	for i := range w.chunks {
		if c := w.chunks[i].Load(); c != nil {
			for j := range c {
				n += bits.OnesCount64(c[j].Load())
			}
		}
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
