package nbd

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// goRequest is the data of NBD_OPT_INFO and NBD_OPT_GO.
type goRequest struct {
	name  string
	infos []uint16
}

// metaRequest is the data of NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

// reader walks option data; the first short read sets err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%s: %d bytes wanted, %d left: %w", what, n, len(r.b), ErrProtocol)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u16(what string) uint16 {
	if p := r.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if p := r.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// str reads a string of n bytes that the protocol allows: at most 4096
// bytes of UTF-8 without NUL.
func (r *reader) str(n uint32, what string) string {
	if r.err == nil && n > maxStringLen {
		r.err = fmt.Errorf("%s: %d bytes, more than %d: %w", what, n, maxStringLen, ErrProtocol)
	}
	p := r.take(uint64(n), what)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(p) {
		r.err = fmt.Errorf("%s: not UTF-8: %w", what, ErrProtocol)
		return ""
	}
	for _, c := range p {
		if c == 0 {
			r.err = fmt.Errorf("%s: contains NUL: %w", what, ErrProtocol)
			return ""
		}
	}
	return string(p)
}

func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%s: %d bytes left over: %w", what, len(r.b), ErrProtocol)
	}
	return r.err
}

// parseGoRequest parses the data of NBD_OPT_INFO or NBD_OPT_GO.
func parseGoRequest(data []byte) (goRequest, error) {
	r := &reader{b: data}
	var g goRequest
	g.name = r.str(r.u32("export name length"), "export name")
	n := r.u16("information request count")
	if r.err == nil && n > maxInfoRequestCount {
		r.err = fmt.Errorf("%d information requests: %w", n, ErrProtocol)
	}
	for i := 0; i < int(n) && r.err == nil; i++ {
		g.infos = append(g.infos, r.u16("information request"))
	}
	return g, r.end("NBD_OPT_GO data")
}

// parseMetaRequest parses the data of NBD_OPT_LIST_META_CONTEXT or
// NBD_OPT_SET_META_CONTEXT. Every query must begin with a namespace and a
// colon.
func parseMetaRequest(data []byte) (metaRequest, error) {
	r := &reader{b: data}
	var m metaRequest
	m.name = r.str(r.u32("export name length"), "export name")
	n := r.u32("query count")
	// Each query takes at least 4 bytes, so the count cannot exceed what
	// is left; checking first keeps a lying count from allocating.
	if r.err == nil && uint64(n)*4 > uint64(len(r.b)) {
		r.err = fmt.Errorf("%d queries in %d bytes: %w", n, len(r.b), ErrProtocol)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		q := r.str(r.u32("query length"), "query")
		if r.err != nil {
			break
		}
		if !validQuery(q) {
			r.err = fmt.Errorf("query %q: no namespace: %w", q, ErrProtocol)
			break
		}
		m.queries = append(m.queries, q)
	}
	return m, r.end("meta context data")
}

// validQuery reports whether q begins with a non-empty namespace of
// printable non-space characters followed by a colon.
func validQuery(q string) bool {
	for i, c := range q {
		switch {
		case c == ':':
			return i > 0
		case c <= ' ' || c == 0x7f:
			return false
		}
	}
	return false
}
