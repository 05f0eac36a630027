package nbd

import (
	"context"
	"io"
	"iter"

	"github.com/era-go/era"
)

// Backend is what an export serves: a fixed-size byte range that can be
// read, written and made durable. *era.Device is one.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	// Size is the export's size in bytes.
	Size() int64
	// Sync makes every completed write durable (data and, for an era
	// device, the era metadata). FLUSH and FUA call it.
	Sync() error
}

// The optional interfaces below are found by type assertion; a backend
// without one does not offer what it enables.

// WrittenSinceSeqer lists the blocks written in era since or later, from
// block from on, as ascending ranges. It enables the meta contexts
// x-era:written-since:N and qemu:dirty-bitmap:era-N (with BlockByteser).
type WrittenSinceSeqer interface {
	WrittenSinceSeq(ctx context.Context, since uint32, from uint64) iter.Seq2[era.Range, error]
}

// BlockEraser returns the era each block of [lo, hi) was last written in
// (0: never). It enables x-era:era (with BlockByteser).
type BlockEraser interface {
	BlockEras(ctx context.Context, lo, hi uint64) ([]uint32, error)
}

// BlockByteser gives the size in bytes of the blocks the era queries count.
type BlockByteser interface {
	BlockBytes() uint64
}

// CurrentEraer gives the current era; with it the server refuses to select
// written-since contexts for eras that have not begun.
type CurrentEraer interface {
	CurrentEra() uint32
}

// Zeroer writes zeroes over [off, off+n), punching a hole where it can.
// Without it WRITE_ZEROES writes buffers of zeroes through WriteAt.
type Zeroer interface {
	WriteZeroes(off, n int64) error
}

// FastZeroer says whether WriteZeroes is fast (punches holes rather than
// writing zeroes). The server offers TRIM, and honours FAST_ZERO, only
// when it is.
type FastZeroer interface {
	ZeroesFast() bool
}

// backend is a Backend with its optional interfaces resolved once.
type backend struct {
	Backend
	since      WrittenSinceSeqer // nil: not offered
	eras       BlockEraser
	blockBytes uint64 // 0 when the era contexts are not offered
	current    CurrentEraer
	zeroer     Zeroer
	fastZero   bool
}

func resolve(b Backend) *backend {
	r := &backend{Backend: b}
	if bb, ok := b.(BlockByteser); ok && bb.BlockBytes() > 0 {
		r.blockBytes = bb.BlockBytes()
		r.since, _ = b.(WrittenSinceSeqer)
		r.eras, _ = b.(BlockEraser)
	}
	r.current, _ = b.(CurrentEraer)
	r.zeroer, _ = b.(Zeroer)
	if fz, ok := b.(FastZeroer); ok && r.zeroer != nil {
		r.fastZero = fz.ZeroesFast()
	}
	return r
}
