package eraxml

import (
	"fmt"
	"html"
	"io"
	"math/bits"
	"strconv"
)

// xmlWriter buffers output and formats lines without per-line allocation.
// The first write error is kept and returned by flush.
type xmlWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func newXMLWriter(w io.Writer) *xmlWriter {
	return &xmlWriter{w: w, buf: make([]byte, 0, 64<<10)}
}

// s appends a literal string.
func (x *xmlWriter) s(v string) *xmlWriter { x.buf = append(x.buf, v...); return x }

// u appends a decimal number.
func (x *xmlWriter) u(v uint64) *xmlWriter { x.buf = strconv.AppendUint(x.buf, v, 10); return x }

// nl ends a line and writes the buffer out once it is large.
func (x *xmlWriter) nl() {
	x.buf = append(x.buf, '\n')
	if len(x.buf) >= 60<<10 {
		x.write()
	}
}

func (x *xmlWriter) write() {
	if x.err == nil && len(x.buf) > 0 {
		_, x.err = x.w.Write(x.buf)
	}
	x.buf = x.buf[:0]
}

func (x *xmlWriter) flush() error {
	x.write()
	return x.err
}

func (x *xmlWriter) superblockBegin(m *Metadata) {
	x.s(`<superblock uuid="`).s(html.EscapeString(m.UUID)).s(`" block_size="`).u(uint64(m.BlockSize)).
		s(`" nr_blocks="`).u(uint64(m.NrBlocks)).
		s(`" current_era="`).u(uint64(m.CurrentEra)).s(`">`).nl()
}

func (x *xmlWriter) eraArray(eras []uint32) {
	x.s(`  <era_array>`).nl()
	for b, e := range eras {
		x.s(`    <era block="`).u(uint64(b)).s(`" era="`).u(uint64(e)).s(`"/>`).nl()
	}
	x.s(`  </era_array>`).nl()
}

// WriteDump writes m as era_dump 0.9.0 prints it, byte for byte: every bit of
// every writeset (value="true" or "false") and every era-array entry, with
// two-space indentation (era_dump always prints uuid="": the kernel writes
// none; metadata written by era has one, and a restore keeps it).
func WriteDump(w io.Writer, m *Metadata) error {
	return writeDump(w, m, false)
}

// WriteCompactDump is like [WriteDump] but writes each writeset's set bits as
// runs, <marked block_begin="B" len="L"/>, the compact form of the newer
// (Rust) tools. Clear bits are not written.
func WriteCompactDump(w io.Writer, m *Metadata) error {
	return writeDump(w, m, true)
}

func writeDump(w io.Writer, m *Metadata, compact bool) error {
	if err := m.check(); err != nil {
		return err
	}
	x := newXMLWriter(w)
	x.superblockBegin(m)
	for i := range m.Writesets {
		ws := &m.Writesets[i]
		x.s(`  <writeset era="`).u(uint64(ws.Era)).s(`" nr_bits="`).u(uint64(ws.NrBits)).s(`">`).nl()
		if compact {
			for _, r := range ws.marked() {
				x.s(`    <marked block_begin="`).u(r.Begin).s(`" len="`).u(r.End - r.Begin).s(`"/>`).nl()
			}
		} else {
			for b := uint32(0); b < ws.NrBits; b++ {
				v := `" value="false"/>`
				if ws.Test(b) {
					v = `" value="true"/>`
				}
				x.s(`    <bit block="`).u(uint64(b)).s(v).nl()
			}
		}
		x.s(`  </writeset>`).nl()
	}
	x.eraArray(m.EraArray)
	x.s(`</superblock>`).nl()
	return x.flush()
}

// WriteLogicalDump writes m as era_dump --logical prints it: no writesets,
// and for each block the era of a writeset marking it if that era is greater
// than the era-array value.
//
// When several writesets mark a block, the greatest era wins, unless compat
// is set: then, like era_dump 0.9.0, only the lowest-era writeset marking the
// block is considered (so array 3, writesets 3 and 4 give 3, not 4).
func WriteLogicalDump(w io.Writer, m *Metadata, compat bool) error {
	if err := m.check(); err != nil {
		return err
	}
	x := newXMLWriter(w)
	x.superblockBegin(m)
	x.eraArray(m.LogicalEras(compat))
	x.s(`</superblock>`).nl()
	return x.flush()
}

// LogicalEras returns the era of every block, as WriteLogicalDump prints
// it: the era-array value, raised to the era of a writeset that marks the
// block (bits below both NrBits and the length of EraArray). When several
// writesets mark a block the greatest era wins, or with compat the
// lowest-era one, as era_dump 0.9.0 does.
func (m *Metadata) LogicalEras(compat bool) []uint32 {
	n := uint64(len(m.EraArray))
	out := append([]uint32(nil), m.EraArray...)
	var seen []uint64 // compat: blocks already claimed by a lower-era writeset
	if compat {
		seen = make([]uint64, (n+63)/64)
	}
	for i := range m.Writesets {
		ws := &m.Writesets[i]
		forEachSet(ws.Bits, min(n, uint64(ws.NrBits)), func(b uint64) {
			if compat {
				if seen[b/64]&(1<<(b%64)) != 0 {
					return
				}
				seen[b/64] |= 1 << (b % 64)
			}
			if ws.Era > out[b] {
				out[b] = ws.Era
			}
		})
	}
	return out
}

// WrittenSince returns the blocks era_invalidate --written-since era reports
// (0.9.0): every block b < NrBlocks with EraArray[b] >= era, plus every set bit
// (below the writeset's NrBits) of every writeset whose Era >= era. Like the
// tool, it includes writeset bits at or beyond NrBlocks. The result is
// ascending and coalesced; it is empty (nil) if nothing qualifies.
func WrittenSince(m *Metadata, era uint32) []Range {
	n := min(uint64(m.NrBlocks), uint64(len(m.EraArray)))
	size := n
	for i := range m.Writesets {
		if ws := &m.Writesets[i]; ws.Era >= era {
			size = max(size, uint64(ws.NrBits))
		}
	}
	set := make([]uint64, (size+63)/64)
	for b := uint64(0); b < n; b++ {
		if m.EraArray[b] >= era {
			set[b/64] |= 1 << (b % 64)
		}
	}
	for i := range m.Writesets {
		ws := &m.Writesets[i]
		if ws.Era < era {
			continue
		}
		full := uint64(ws.NrBits) / 64
		for wi, word := range ws.Bits {
			switch {
			case uint64(wi) < full:
				set[wi] |= word
			case uint64(wi) == full && ws.NrBits%64 != 0:
				set[wi] |= word & (1<<(ws.NrBits%64) - 1)
			}
		}
	}
	return runs(set, size)
}

// WriteInvalidate writes ranges as era_invalidate 0.9.0 prints them, byte for
// byte: a run of two or more blocks as <range begin="B" end = "E"/> (exclusive
// end, with the tool's spacing around the second "="), a single block as
// <block block="B"/>, inside <blocks> and </blocks>. An empty Range is an
// error.
func WriteInvalidate(w io.Writer, ranges []Range) error {
	x := newXMLWriter(w)
	x.s(`<blocks>`).nl()
	for _, r := range ranges {
		switch {
		case r.End <= r.Begin:
			return fmt.Errorf("eraxml: empty range [%d, %d)", r.Begin, r.End)
		case r.End-r.Begin == 1:
			x.s(`  <block block="`).u(r.Begin).s(`"/>`).nl()
		default:
			x.s(`  <range begin="`).u(r.Begin).s(`" end = "`).u(r.End).s(`"/>`).nl()
		}
	}
	x.s(`</blocks>`).nl()
	return x.flush()
}

// jsonList writes the n items of a JSON array, one per line, each prefixed
// by indent, and the closing bracket at outdent. The opening bracket must
// already have been written.
func (x *xmlWriter) jsonList(indent, outdent string, n int, item func(i int)) {
	if n == 0 {
		x.s(`]`)
		return
	}
	x.nl()
	for i := 0; i < n; i++ {
		x.s(indent)
		item(i)
		if i < n-1 {
			x.s(`,`)
		}
		x.nl()
	}
	x.s(outdent).s(`]`)
}

// eraRun is a run of blocks [begin, end) sharing one era.
type eraRun struct {
	begin, end uint64
	era        uint32
}

// eraRuns returns the era array as maximal runs of equal values.
func eraRuns(eras []uint32) []eraRun {
	var out []eraRun
	for b, e := range eras {
		if n := len(out); n > 0 && out[n-1].era == e {
			out[n-1].end++
			continue
		}
		out = append(out, eraRun{uint64(b), uint64(b) + 1, e})
	}
	return out
}

// WriteJSON writes m as JSON in this stable schema (all numbers are
// integers, all ranges half-open [begin, end) in blocks, one range per line):
//
//	{
//	  "block_size": 128,
//	  "nr_blocks": 16,
//	  "current_era": 5,
//	  "writesets": [
//	    {"era": 4, "nr_bits": 16, "marked": [
//	      {"begin": 0, "end": 2},
//	      {"begin": 5, "end": 6}
//	    ]}
//	  ],
//	  "era_array": [
//	    {"begin": 0, "end": 1, "era": 1},
//	    {"begin": 1, "end": 16, "era": 0}
//	  ]
//	}
//
// "block_size" is the data block size in 512-byte sectors. "writesets" lists
// the archived writesets in ascending era, each with the runs of blocks it
// marks ("marked", empty list if none). "era_array" lists maximal runs of
// blocks with the same era; together they cover [0, nr_blocks). Empty lists
// are written as [].
func WriteJSON(w io.Writer, m *Metadata) error {
	if err := m.check(); err != nil {
		return err
	}
	x := newXMLWriter(w)
	x.s(`{`).nl()
	x.s(`  "block_size": `).u(uint64(m.BlockSize)).s(`,`).nl()
	x.s(`  "nr_blocks": `).u(uint64(m.NrBlocks)).s(`,`).nl()
	x.s(`  "current_era": `).u(uint64(m.CurrentEra)).s(`,`).nl()
	x.s(`  "writesets": [`)
	x.jsonList(`    `, `  `, len(m.Writesets), func(i int) {
		ws := &m.Writesets[i]
		x.s(`{"era": `).u(uint64(ws.Era)).s(`, "nr_bits": `).u(uint64(ws.NrBits)).s(`, "marked": [`)
		rs := ws.marked()
		x.jsonList(`      `, `    `, len(rs), func(j int) {
			x.s(`{"begin": `).u(rs[j].Begin).s(`, "end": `).u(rs[j].End).s(`}`)
		})
		x.s(`}`)
	})
	x.s(`,`).nl()
	x.s(`  "era_array": [`)
	er := eraRuns(m.EraArray)
	x.jsonList(`    `, `  `, len(er), func(i int) {
		x.s(`{"begin": `).u(er[i].begin).s(`, "end": `).u(er[i].end).s(`, "era": `).u(uint64(er[i].era)).s(`}`)
	})
	x.nl()
	x.s(`}`).nl()
	return x.flush()
}

// WriteRangesJSON writes block ranges (such as [WrittenSince] returns) as JSON:
//
//	{
//	  "ranges": [
//	    {"begin": 0, "end": 2},
//	    {"begin": 3, "end": 4}
//	  ]
//	}
//
// Ranges are half-open [begin, end) in blocks; an empty result is
// "ranges": []. If blockBytes > 0 (the data block size in bytes), the object
// also has "block_bytes": blockBytes as its first member and each range also
// carries its byte extent, "byte_begin" = begin*blockBytes and "byte_end" =
// end*blockBytes. An empty range or a byte offset overflowing uint64 is an
// error.
func WriteRangesJSON(w io.Writer, ranges []Range, blockBytes uint64) error {
	for _, r := range ranges {
		if r.End <= r.Begin {
			return fmt.Errorf("eraxml: empty range [%d, %d)", r.Begin, r.End)
		}
		if hi, _ := bits.Mul64(r.End, blockBytes); hi != 0 {
			return fmt.Errorf("eraxml: range [%d, %d) times block size %d overflows", r.Begin, r.End, blockBytes)
		}
	}
	x := newXMLWriter(w)
	x.s(`{`).nl()
	if blockBytes > 0 {
		x.s(`  "block_bytes": `).u(blockBytes).s(`,`).nl()
	}
	x.s(`  "ranges": [`)
	x.jsonList(`    `, `  `, len(ranges), func(i int) {
		r := ranges[i]
		x.s(`{"begin": `).u(r.Begin).s(`, "end": `).u(r.End)
		if blockBytes > 0 {
			x.s(`, "byte_begin": `).u(r.Begin * blockBytes).s(`, "byte_end": `).u(r.End * blockBytes)
		}
		x.s(`}`)
	})
	x.nl()
	x.s(`}`).nl()
	return x.flush()
}
