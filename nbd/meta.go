package nbd

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Meta context names. The server offers:
//
//	base:allocation            every extent allocated (bit 0, NBD_STATE_HOLE, clear):
//	                           the server claims a hole only where it knows one
//	x-era:written-since:N      bit 0 set: written in era N or later
//	x-era:era                  the whole value: the era the extent was last written in, 0: never
//	qemu:dirty-bitmap:era-N    the same bits as x-era:written-since:N, for tools
//	                           that take a QEMU dirty bitmap name
const (
	ctxAllocationName = "base:allocation"
	ctxSincePrefix    = "x-era:written-since:"
	ctxEraName        = "x-era:era"
	ctxBitmapPrefix   = "qemu:dirty-bitmap:era-"
)

// metaKind is what a meta context reports.
type metaKind int

const (
	metaAllocation metaKind = iota
	metaSince               // written-since or dirty bitmap: 0 or 1
	metaEra                 // the era itself
)

// metaContext is a selected meta context.
type metaContext struct {
	name  string
	kind  metaKind
	since uint32 // metaSince
}

// parseEra parses a canonical decimal era: no sign, no leading zero.
func parseEra(s string) (uint32, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// lookupContext resolves an exact context name for the backend b. It
// returns false for a name that selects nothing: unknown, malformed, not
// offered by the backend, or an era that has not begun.
func (b *backend) lookupContext(name string) (metaContext, bool) {
	switch {
	case name == ctxAllocationName:
		return metaContext{name: name, kind: metaAllocation}, true
	case name == ctxEraName:
		return metaContext{name: name, kind: metaEra}, b.eras != nil
	case strings.HasPrefix(name, ctxSincePrefix), strings.HasPrefix(name, ctxBitmapPrefix):
		if b.since == nil {
			return metaContext{}, false
		}
		leaf := strings.TrimPrefix(strings.TrimPrefix(name, ctxSincePrefix), ctxBitmapPrefix)
		n, ok := parseEra(leaf)
		if !ok || (b.current != nil && n > b.current.CurrentEra()) {
			return metaContext{}, false
		}
		return metaContext{name: name, kind: metaSince, since: n}, true
	}
	return metaContext{}, false
}

// eraRange is the era part of the pattern forms: "1-C" with C the current
// era, or every era when the backend does not say.
func (b *backend) eraRange() string {
	hi := uint32(1<<32 - 1)
	if b.current != nil {
		hi = b.current.CurrentEra()
	}
	return fmt.Sprintf("%d-%d", min(1, hi), hi)
}

// listContexts answers NBD_OPT_LIST_META_CONTEXT: the contexts each query
// matches, with the pattern forms "x-era:written-since:1-C" and
// "qemu:dirty-bitmap:era-1-C" standing for the family of eras (the
// protocol lets a server answer a namespace with a range of values rather
// than every name). No query lists everything.
func (b *backend) listContexts(queries []string) []string {
	if len(queries) == 0 {
		queries = []string{"base:", "x-era:", "qemu:"}
	}
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, q := range queries {
		switch q {
		case "base:":
			add(ctxAllocationName)
		case "x-era:":
			if b.eras != nil {
				add(ctxEraName)
			}
			if b.since != nil {
				add(ctxSincePrefix + b.eraRange())
			}
		case ctxSincePrefix:
			if b.since != nil {
				add(ctxSincePrefix + b.eraRange())
			}
		case "qemu:", "qemu:dirty-bitmap:":
			if b.since != nil {
				add(ctxBitmapPrefix + b.eraRange())
			}
		default:
			if c, ok := b.lookupContext(q); ok {
				add(c.name)
			}
		}
	}
	return out
}

// selectContexts answers NBD_OPT_SET_META_CONTEXT: the exact names among
// the queries that the backend offers, each once. Namespace wildcards
// select nothing, as the protocol asks.
func (b *backend) selectContexts(queries []string) []metaContext {
	var out []metaContext
	seen := map[string]bool{}
	for _, q := range queries {
		if c, ok := b.lookupContext(q); ok && !seen[q] {
			seen[q] = true
			out = append(out, c)
		}
	}
	return out
}

// extent is one block status descriptor.
type extent struct {
	length uint32
	flags  uint32
}

// maxEraWindow bounds the blocks one x-era:era answer looks at; the
// answer covers a prefix of the request, which the protocol allows.
const maxEraWindow = 1 << 18

// blockStatus computes the extents of context c over [off, off+length),
// which lies inside the export. It returns at least one extent, covering
// a prefix of the range (all of it unless the answer would be too long),
// or an error: a query that failed never yields a map of zeroes.
func (b *backend) blockStatus(ctx context.Context, c metaContext, off uint64, length uint32, one bool) ([]extent, error) {
	end := off + uint64(length)
	limit := maxDescriptors
	if one {
		limit = 1
	}
	var out []extent
	pos := off
	// emit extends the answer to [pos, to) with flags; false when the
	// answer is full and that needs another extent.
	emit := func(to uint64, flags uint32) bool {
		to = min(to, end)
		if to <= pos {
			return true
		}
		if n := len(out); n > 0 && out[n-1].flags == flags {
			out[n-1].length += uint32(to - pos)
		} else if n >= limit {
			return false
		} else {
			out = append(out, extent{uint32(to - pos), flags})
		}
		pos = to
		return true
	}
	switch c.kind {
	case metaAllocation:
		emit(end, 0)
	case metaSince:
		bb := b.blockBytes
		open := true
		for r, err := range b.since.WrittenSinceSeq(ctx, c.since, off/bb) {
			if err != nil {
				return nil, err
			}
			if r.Begin*bb >= end {
				break
			}
			if open = emit(r.Begin*bb, 0) && emit(r.End*bb, statusDirty); !open || pos >= end {
				break
			}
		}
		if open {
			emit(end, 0)
		}
	case metaEra:
		bb := b.blockBytes
		lo := off / bb
		hi := min((end+bb-1)/bb, lo+maxEraWindow)
		eras, err := b.eras.BlockEras(ctx, lo, hi)
		if err != nil {
			return nil, err
		}
		if uint64(len(eras)) != hi-lo {
			return nil, fmt.Errorf("era query returned %d eras for %d blocks", len(eras), hi-lo)
		}
		for i, e := range eras {
			if !emit((lo+uint64(i)+1)*bb, e) {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no extent for %s at offset %d", c.name, off)
	}
	return out, nil
}
