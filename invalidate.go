package era

import (
	"context"
	"fmt"
)

// Invalidate returns the blocks that era_invalidate --written-since since
// prints, as ascending, coalesced ranges: every block whose era-array value
// is >= since, and every set bit (below the writeset's nr_bits) of every
// writeset of the writeset tree whose era is >= since. With includeCurrent
// the current writeset counts too (0.9.0 ignores it, and so misses the
// writes of the current era); on metadata without a current writeset the
// flag changes nothing.
//
// Like 0.9.0, and unlike WrittenSince, it includes writeset bits at or
// beyond nr_blocks (bits of writesets recorded before the origin shrank).
//
// Unlike 0.9.0, an era above the current one fails with ErrOutOfRange: no
// block was written since an era that has not begun, and a caller asking
// for one holds an era from other metadata or a rolled-back store.
func (v *View) Invalidate(since uint32, includeCurrent bool) ([]Range, error) {
	if since > v.trees.currentEra {
		return nil, fmt.Errorf("written since era %d: the current era is %d (an era from other metadata?): %w", since, v.trees.currentEra, ErrOutOfRange)
	}
	set, err := v.trees.writtenSince(context.Background(), since, sinceOptions{noCurrent: !includeCurrent, beyondEnd: true})
	if err = v.guard(err); err != nil {
		return nil, err
	}
	return rangesOf(set), nil
}

// sinceOptions varies what writtenSince counts: the two ways
// era_invalidate 0.9.0 differs from WrittenSince, which Invalidate imitates.
type sinceOptions struct {
	// noCurrent leaves out the current writeset, as era_invalidate 0.9.0
	// does.
	noCurrent bool
	// beyondEnd keeps writeset bits at or past nr_blocks (below the
	// writeset's own nr_bits), as era_invalidate 0.9.0 prints them.
	beyondEnd bool
}
