package era

import (
	"errors"
	"fmt"
	"io"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

// CheckOptions tunes Check.
type CheckOptions struct {
	// SuperblockOnly checks only the superblock.
	SuperblockOnly bool
}

// Check verifies era metadata and returns nil when it is sound. Otherwise
// it returns an error joining one error per problem found (errors.Join;
// each wraps ErrCorrupt and names the block).
//
// Beyond what era_check 0.9.0 checks (the superblock, every btree and
// array, array lengths, era values not above the current era) it checks
// what that tool skips: every reachable block's checksum and location, the
// writeset eras, the current writeset, the metadata snapshot's trees, and
// that every space-map reference count equals the references found by
// walking everything reachable (no leak, no over-count), as well as
// nr_allocated.
func Check(metadata io.ReaderAt) error {
	return CheckWith(metadata, CheckOptions{})
}

// CheckWith is Check with options.
func CheckWith(metadata io.ReaderAt, opts CheckOptions) error {
	bm, sb, err := openReadOnly(metadata)
	if err != nil {
		return err
	}
	if opts.SuperblockOnly {
		return nil
	}
	c := &checker{tm: transaction.NewReadOnly(bm), refs: btree.NewRefs()}
	c.run(sb)
	return errors.Join(c.problems...)
}

// checker reads everything reachable from a superblock through eraTrees
// with reference counting on, as format.md §3.5 defines references: each
// distinct block's outgoing pointers count once, however many parents
// share it. It then checks the rules of era metadata on what it read.
type checker struct {
	tm       *transaction.Manager
	refs     *btree.Refs
	problems []error
}

func (c *checker) fail(err error) {
	if !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	c.problems = append(c.problems, err)
}

func (c *checker) run(sb *superblock) {
	c.refs.Inc(0)
	sm, err := spacemap.Open(c.tm, sb.SpaceMapRoot[:])
	if err != nil {
		c.fail(fmt.Errorf("space map: %w", err))
	} else {
		if err := sm.Walk(func(loc uint64, kind string) error { c.refs.Inc(loc); return nil }); err != nil {
			c.fail(fmt.Errorf("space map: %w", err))
		}
		root, _ := spacemap.DecodeRoot(sb.SpaceMapRoot[:])
		if root.NrAllocated != sm.NrAllocated() {
			c.fail(block.Corruptf(0, block.Superblock.Name, "space-map nr_allocated %d, bitmaps count %d", root.NrAllocated, sm.NrAllocated()))
		}
	}

	t := treesOf(c.tm, sb)
	t.refs = c.refs
	c.trees(t, "")
	if t.current.Root != 0 {
		c.bitset(t, t.current, fmt.Sprintf("current writeset (era %d)", t.currentEra))
	}
	if loc := sb.MetadataSnap; loc != 0 {
		c.refs.Inc(loc)
		clone, err := readSuperblock(c.tm, loc)
		if err != nil {
			c.fail(fmt.Errorf("metadata snapshot: %w", err))
		} else {
			t := treesOf(c.tm, clone)
			t.refs = c.refs
			c.trees(t, "metadata snapshot: ")
		}
	}

	if sm != nil && len(c.problems) == 0 {
		for _, m := range sm.Compare(c.refs.Counts()) {
			what := "over-count"
			if m.Expected == 0 {
				what = "leak"
			} else if m.Stored < m.Expected {
				what = "under-count"
			}
			c.fail(fmt.Errorf("space map: block %d has count %d but %d references (%s): %w", m.Block, m.Stored, m.Expected, what, ErrCorrupt))
		}
	}
}

// trees checks the writeset tree and the era array of t (the superblock's
// or a snapshot clone's); a clone's current writeset is not part of it.
func (c *checker) trees(t eraTrees, prefix string) {
	sets, err := t.archived(0, func(err error) error {
		c.fail(fmt.Errorf("%s%w", prefix, err))
		return nil
	})
	if err != nil { // not reached: the handler lets every problem pass
		c.fail(fmt.Errorf("%s%w", prefix, err))
	}
	for _, ws := range sets {
		what := fmt.Sprintf("%swriteset of era %d", prefix, ws.era)
		switch {
		case ws.era > t.currentEra:
			c.fail(fmt.Errorf("%s: era beyond the current era %d: %w", what, t.currentEra, ErrCorrupt))
		case ws.era == t.currentEra && t.current.Root != 0 && prefix == "":
			c.fail(fmt.Errorf("%s: archived while also current: %w", what, ErrCorrupt))
		}
		if ws.info.NrBits == 0 {
			c.fail(fmt.Errorf("%s: empty record (root %d, 0 bits): %w", what, ws.info.Root, ErrCorrupt))
			continue
		}
		c.bitset(t, ws.info, what)
	}

	err = t.eraArray(func(b uint64, era uint32) error {
		if era > t.currentEra {
			return fmt.Errorf("block %d has era %d, beyond the current era %d: %w", b, era, t.currentEra, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		c.fail(fmt.Errorf("%sera array: %w", prefix, err))
	}
}

// bitset checks and counts a writeset's bitset.
func (c *checker) bitset(t eraTrees, ws writesetInfo, what string) {
	if err := t.bitsetWords(ws, func(uint64, uint64) error { return nil }); err != nil {
		c.fail(fmt.Errorf("%s: %w", what, err))
	}
}
