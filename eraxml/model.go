package eraxml

import (
	"fmt"
	"math/bits"
)

// Metadata is the logical content of era metadata as the tools see it.
type Metadata struct {
	UUID       string     // the superblock's uuid attribute: "" or 8-4-4-4-12 hex digits
	BlockSize  uint32     // data_block_size in sectors
	NrBlocks   uint32     // number of tracked origin blocks
	CurrentEra uint32     // current era counter
	Writesets  []Writeset // archived writesets, ascending era
	EraArray   []uint32   // era of each block; len == NrBlocks
}

// Writeset is one archived writeset: the set of blocks written during Era.
type Writeset struct {
	Era    uint32
	NrBits uint32
	Bits   []uint64 // ceil(NrBits/64) words, bit i = word i/64, bit i%64 (LSB first)
}

// Test reports whether bit i is set. Bits at or beyond NrBits, or beyond the
// end of Bits, read as clear.
func (w *Writeset) Test(i uint32) bool {
	if i >= w.NrBits || int(i/64) >= len(w.Bits) {
		return false
	}
	return w.Bits[i/64]&(1<<(i%64)) != 0
}

// Set sets bit i. If Bits is shorter than ceil(NrBits/64) words it is first
// extended to that length. Set panics if i >= NrBits.
func (w *Writeset) Set(i uint32) {
	if i >= w.NrBits {
		panic(fmt.Sprintf("eraxml: Writeset.Set(%d) with NrBits %d", i, w.NrBits))
	}
	if n := nrWords(w.NrBits); len(w.Bits) < n {
		w.Bits = append(w.Bits, make([]uint64, n-len(w.Bits))...)
	}
	w.Bits[i/64] |= 1 << (i % 64)
}

// Range is a half-open range of block numbers [Begin, End).
type Range struct{ Begin, End uint64 }

// nrWords returns ceil(n/64).
func nrWords(n uint32) int { return int((uint64(n) + 63) / 64) }

// check reports metadata the writers cannot render faithfully.
func (m *Metadata) check() error {
	if uint64(len(m.EraArray)) != uint64(m.NrBlocks) {
		return fmt.Errorf("eraxml: era array has %d entries, nr_blocks is %d", len(m.EraArray), m.NrBlocks)
	}
	for i := 1; i < len(m.Writesets); i++ {
		if m.Writesets[i].Era <= m.Writesets[i-1].Era {
			return fmt.Errorf("eraxml: writeset eras not strictly ascending (%d after %d)",
				m.Writesets[i].Era, m.Writesets[i-1].Era)
		}
	}
	return nil
}

// forEachSet calls f for every set bit i < limit of words, ascending.
func forEachSet(words []uint64, limit uint64, f func(i uint64)) {
	for wi, w := range words {
		base := uint64(wi) * 64
		if base >= limit {
			return
		}
		for w != 0 {
			i := base + uint64(bits.TrailingZeros64(w))
			if i >= limit {
				return
			}
			f(i)
			w &= w - 1
		}
	}
}

// runs returns the maximal runs of set bits i < limit of words, ascending.
func runs(words []uint64, limit uint64) []Range {
	var out []Range
	forEachSet(words, limit, func(i uint64) {
		if n := len(out); n > 0 && out[n-1].End == i {
			out[n-1].End++
			return
		}
		out = append(out, Range{i, i + 1})
	})
	return out
}

// marked returns the runs of set bits of w (below NrBits).
func (w *Writeset) marked() []Range {
	return runs(w.Bits, uint64(w.NrBits))
}
