package eraxml

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// ErrSyntax is wrapped by every error [Read] returns for malformed,
// inconsistent or oversized input (but not for errors of the underlying
// reader).
var ErrSyntax = errors.New("eraxml: syntax error")

// SyntaxError is an error in the XML input of [Read], at a given line.
// It wraps [ErrSyntax]; its text is "line N: message".
type SyntaxError struct {
	Line int    // 1-based line number
	Msg  string // what is wrong, e.g. "writeset era 4: bit 99 >= nr_bits 16"
}

// Error returns "line N: message".
func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// MaxCount is the largest nr_blocks or nr_bits [Read] accepts, 2^31 - 1
// (the kernel's limit on the number of origin blocks).
const MaxCount = 1<<31 - 1

// Read parses era XML as written by era_dump (0.9.0 or newer): a
// <superblock uuid block_size nr_blocks current_era> holding <writeset era
// nr_bits> elements with <bit block value="true|false"/> and/or <marked
// block_begin len/> children, and an <era_array> of <era block era/>
// elements.
//
// It follows era_restore 0.9.0: later <bit> and <era> lines override earlier
// ones for the same block, era-array entries not listed are 0, the uuid is
// ignored, and writesets may come in any order (they are returned sorted by
// era). Duplicate writeset eras, blocks or bits out of range, unknown
// elements, missing attributes and non-whitespace text are errors.
//
// Read streams the input. Memory grows with the data actually seen, except
// that at the end the era array is padded to nr_blocks entries and each
// writeset to ceil(nr_bits/64) words; both counts are capped at [MaxCount].
// Use [ReadLimit] to bound the total for untrusted input.
func Read(r io.Reader) (*Metadata, error) { return ReadLimit(r, 0) }

// ReadLimit is like [Read] but also fails (with [ErrSyntax]) as soon as the
// declared sizes need more than maxBytes bytes in total: 4 bytes per
// nr_blocks plus 8 bytes per 64 nr_bits of each writeset. maxBytes <= 0
// means no limit beyond [MaxCount].
func ReadLimit(r io.Reader, maxBytes int64) (*Metadata, error) {
	p := &reader{d: xml.NewDecoder(r), limit: maxBytes, eras: map[uint32]bool{}}
	if err := p.run(); err != nil {
		return nil, err
	}
	return &p.m, nil
}

// Parser states.
const (
	stTop      = iota // before <superblock>
	stSuper           // inside <superblock>
	stWriteset        // inside <writeset>
	stArray           // inside <era_array>
	stLeaf            // inside <bit>, <marked> or <era>
	stDone            // after </superblock>
)

type reader struct {
	d     *xml.Decoder
	line  int
	limit int64 // bound on used, if > 0
	used  int64 // bytes the declared sizes need
	m     Metadata

	state, leafParent int
	ws                int // index in m.Writesets of the open writeset
	eras              map[uint32]bool
	sawArray          bool
}

func (p *reader) errorf(format string, args ...any) error {
	return &SyntaxError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// wsErrorf is errorf prefixed with the open writeset.
func (p *reader) wsErrorf(format string, args ...any) error {
	return p.errorf("writeset era %d: %s", p.m.Writesets[p.ws].Era, fmt.Sprintf(format, args...))
}

func (p *reader) run() error {
	for {
		tok, err := p.d.Token()
		p.line, _ = p.d.InputPos()
		if err == io.EOF {
			if p.state != stDone {
				return p.errorf("missing <superblock> element")
			}
			return nil
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return &SyntaxError{Line: se.Line, Msg: se.Msg}
			}
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			err = p.start(t)
		case xml.EndElement:
			p.end()
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				err = p.errorf("unexpected text %q", shorten(t))
			}
		}
		if err != nil {
			return err
		}
	}
}

func shorten(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 20 {
		return string(b[:20]) + "..."
	}
	return string(b)
}

// end handles an end tag; the decoder has checked that it matches.
func (p *reader) end() {
	switch p.state {
	case stLeaf:
		p.state = p.leafParent
	case stWriteset:
		ws := &p.m.Writesets[p.ws]
		ws.Bits = grow(ws.Bits, nrWords(ws.NrBits), nrWords(ws.NrBits))
		p.state = stSuper
	case stArray:
		p.state = stSuper
	case stSuper:
		p.m.EraArray = grow(p.m.EraArray, int(p.m.NrBlocks), int(p.m.NrBlocks))
		slices.SortFunc(p.m.Writesets, func(a, b Writeset) int { return cmp.Compare(a.Era, b.Era) })
		p.state = stDone
	}
}

// grow returns s extended with zeros to at least need elements, growing
// geometrically but never beyond total elements.
func grow[T uint32 | uint64](s []T, need, total int) []T {
	if len(s) >= need {
		return s
	}
	if need <= cap(s) {
		return s[:need] // the spare capacity is still zero
	}
	n := min(max(need, 2*cap(s), 64), total)
	t := make([]T, need, n)
	copy(t, s)
	return t
}

func (p *reader) start(t xml.StartElement) error {
	name := t.Name.Local
	if t.Name.Space != "" {
		name = t.Name.Space + ":" + name
	}
	switch {
	case p.state == stTop && name == "superblock":
		return p.superblock(t)
	case p.state == stSuper && name == "writeset":
		return p.writeset(t)
	case p.state == stSuper && name == "era_array":
		if p.sawArray {
			return p.errorf("second <era_array>")
		}
		p.sawArray = true
		p.state = stArray
		return nil
	case p.state == stWriteset && name == "bit":
		return p.leaf(p.bit(t))
	case p.state == stWriteset && name == "marked":
		return p.leaf(p.marked(t))
	case p.state == stArray && name == "era":
		return p.leaf(p.era(t))
	}
	where := map[int]string{
		stTop: "at top level", stSuper: "in <superblock>", stWriteset: "in <writeset>",
		stArray: "in <era_array>", stLeaf: "in an empty element", stDone: "after </superblock>",
	}[p.state]
	return p.errorf("unexpected <%s> %s", name, where)
}

// leaf enters a leaf element if err is nil.
func (p *reader) leaf(err error) error {
	if err == nil {
		p.leafParent, p.state = p.state, stLeaf
	}
	return err
}

// attrs returns the values of the named attributes of t, in order. All are
// required unless listed in optional. Unknown attributes are ignored.
func (p *reader) attrs(t xml.StartElement, names []string, optional string) ([]string, error) {
	vals := make([]string, len(names))
	seen := make([]bool, len(names))
	for _, a := range t.Attr {
		if a.Name.Space != "" {
			continue
		}
		if i := slices.Index(names, a.Name.Local); i >= 0 {
			if seen[i] {
				return nil, p.errorf("<%s>: duplicate attribute %s", t.Name.Local, a.Name.Local)
			}
			seen[i], vals[i] = true, a.Value
		}
	}
	for i, n := range names {
		if !seen[i] && n != optional {
			return nil, p.errorf("<%s>: missing attribute %s", t.Name.Local, n)
		}
	}
	return vals, nil
}

// nums parses the named attributes of t as decimal uint32s.
func (p *reader) nums(t xml.StartElement, names ...string) ([]uint32, error) {
	vals, err := p.attrs(t, names, "")
	if err != nil {
		return nil, err
	}
	out := make([]uint32, len(vals))
	for i, v := range vals {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, p.errorf("<%s>: bad %s %q", t.Name.Local, names[i], v)
		}
		out[i] = uint32(n)
	}
	return out, nil
}

// charge checks a declared count against MaxCount and adds the bytes it
// will need to the total, checking that against the limit.
func (p *reader) charge(what string, n, bytes int64) error {
	if n > MaxCount {
		return p.errorf("%s %d too large (max %d)", what, n, MaxCount)
	}
	p.used += bytes
	if p.limit > 0 && p.used > p.limit {
		return p.errorf("%s %d exceeds the memory limit of %d bytes", what, n, p.limit)
	}
	return nil
}

func (p *reader) superblock(t xml.StartElement) error {
	uuid, err := p.attrs(t, []string{"uuid"}, "uuid")
	if err != nil {
		return err
	}
	p.m.UUID = uuid[0]
	v, err := p.nums(t, "block_size", "nr_blocks", "current_era")
	if err != nil {
		return err
	}
	p.m.BlockSize, p.m.NrBlocks, p.m.CurrentEra = v[0], v[1], v[2]
	if err := p.charge("nr_blocks", int64(v[1]), 4*int64(v[1])); err != nil {
		return err
	}
	p.state = stSuper
	return nil
}

func (p *reader) writeset(t xml.StartElement) error {
	v, err := p.nums(t, "era", "nr_bits")
	if err != nil {
		return err
	}
	if p.eras[v[0]] {
		return p.errorf("duplicate writeset era %d", v[0])
	}
	if err := p.charge(fmt.Sprintf("writeset era %d: nr_bits", v[0]), int64(v[1]), 8*int64(nrWords(v[1]))); err != nil {
		return err
	}
	p.eras[v[0]] = true
	p.m.Writesets = append(p.m.Writesets, Writeset{Era: v[0], NrBits: v[1]})
	p.ws = len(p.m.Writesets) - 1
	p.state = stWriteset
	return nil
}

func (p *reader) bit(t xml.StartElement) error {
	vals, err := p.attrs(t, []string{"block", "value"}, "")
	if err != nil {
		return err
	}
	b, err := strconv.ParseUint(vals[0], 10, 32)
	if err != nil {
		return p.wsErrorf("<bit>: bad block %q", vals[0])
	}
	ws := &p.m.Writesets[p.ws]
	if b >= uint64(ws.NrBits) {
		return p.wsErrorf("bit %d >= nr_bits %d", b, ws.NrBits)
	}
	switch vals[1] {
	case "true":
		ws.Bits = grow(ws.Bits, int(b/64)+1, nrWords(ws.NrBits))
		ws.Bits[b/64] |= 1 << (b % 64)
	case "false":
		if int(b/64) < len(ws.Bits) {
			ws.Bits[b/64] &^= 1 << (b % 64)
		}
	default:
		return p.wsErrorf("bit %d: bad value %q", b, vals[1])
	}
	return nil
}

func (p *reader) marked(t xml.StartElement) error {
	vals, err := p.attrs(t, []string{"block_begin", "len"}, "")
	if err != nil {
		return err
	}
	ws := &p.m.Writesets[p.ws]
	b, err1 := strconv.ParseUint(vals[0], 10, 32)
	n, err2 := strconv.ParseUint(vals[1], 10, 32)
	switch {
	case err1 != nil:
		return p.wsErrorf("<marked>: bad block_begin %q", vals[0])
	case err2 != nil:
		return p.wsErrorf("<marked>: bad len %q", vals[1])
	case n == 0:
		return p.wsErrorf("<marked>: len 0")
	case b+n > uint64(ws.NrBits):
		return p.wsErrorf("marked blocks [%d, %d) exceed nr_bits %d", b, b+n, ws.NrBits)
	}
	e := b + n
	ws.Bits = grow(ws.Bits, int((e-1)/64)+1, nrWords(ws.NrBits))
	for b < e {
		if b%64 == 0 && e-b >= 64 {
			ws.Bits[b/64] = ^uint64(0)
			b += 64
			continue
		}
		ws.Bits[b/64] |= 1 << (b % 64)
		b++
	}
	return nil
}

func (p *reader) era(t xml.StartElement) error {
	v, err := p.nums(t, "block", "era")
	if err != nil {
		return err
	}
	if v[0] >= p.m.NrBlocks {
		return p.errorf("era_array: block %d >= nr_blocks %d", v[0], p.m.NrBlocks)
	}
	p.m.EraArray = grow(p.m.EraArray, int(v[0])+1, int(p.m.NrBlocks))
	p.m.EraArray[v[0]] = v[1]
	return nil
}
