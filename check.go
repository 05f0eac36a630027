package era

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/era-go/era/array"
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
	c := &checker{
		tm:   transaction.NewReadOnly(bm),
		refs: map[uint64]uint32{},
		seen: map[uint64]bool{},
	}
	c.run(sb)
	return errors.Join(c.problems...)
}

// checker walks everything reachable from a superblock, counting
// references as format.md §3.5 defines them: each distinct block's
// outgoing pointers count once, however many parents share it.
type checker struct {
	tm       *transaction.Manager
	refs     map[uint64]uint32
	seen     map[uint64]bool
	problems []error
}

func (c *checker) fail(err error) {
	if !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	c.problems = append(c.problems, err)
}

func (c *checker) run(sb *superblock) {
	c.refs[0]++
	sm, err := spacemap.Open(c.tm, sb.SpaceMapRoot[:])
	if err != nil {
		c.fail(fmt.Errorf("space map: %w", err))
	} else {
		if err := sm.Walk(func(loc uint64, kind string) error { c.refs[loc]++; return nil }); err != nil {
			c.fail(fmt.Errorf("space map: %w", err))
		}
		root, _ := spacemap.DecodeRoot(sb.SpaceMapRoot[:])
		if root.NrAllocated != sm.NrAllocated() {
			c.fail(block.Corruptf(0, block.Superblock.Name, "space-map nr_allocated %d, bitmaps count %d", root.NrAllocated, sm.NrAllocated()))
		}
	}

	c.trees(sb, "")
	if sb.CurrentWriteset.Root != 0 {
		c.refs[sb.CurrentWriteset.Root]++
		c.bitset(sb.CurrentWriteset, fmt.Sprintf("current writeset (era %d)", sb.CurrentEra))
	}
	if loc := sb.MetadataSnap; loc != 0 {
		c.refs[loc]++
		data, err := c.tm.Read(loc, block.Superblock)
		var clone *superblock
		if err == nil {
			clone, err = decodeSuperblock(loc, data)
		}
		if err != nil {
			c.fail(fmt.Errorf("metadata snapshot: %w", err))
		} else {
			c.trees(clone, "metadata snapshot: ")
		}
	}

	if sm != nil && len(c.problems) == 0 {
		for _, m := range sm.Compare(c.refs) {
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

// trees checks and counts the writeset tree and the era array of sb (the
// superblock or a snapshot clone).
func (c *checker) trees(sb *superblock, prefix string) {
	c.refs[sb.WritesetTreeRoot]++
	c.refs[sb.EraArrayRoot]++

	type entry struct {
		era  uint64
		info writesetInfo
	}
	var sets []entry
	tree := btree.New(c.tm, btree.ValueType{Size: writesetInfoSize})
	err := tree.Walk(sb.WritesetTreeRoot, func(loc uint64, n *btree.Node, depth int) (bool, error) {
		if !c.visit(loc, n) {
			return false, nil
		}
		if n.IsLeaf() {
			for i, k := range n.Keys {
				info := decodeWritesetInfo(n.Value(i))
				c.refs[info.Root]++
				sets = append(sets, entry{k, info})
			}
		}
		return true, nil
	})
	if err != nil {
		c.fail(fmt.Errorf("%swriteset tree: %w", prefix, err))
	}
	for _, ws := range sets {
		what := fmt.Sprintf("%swriteset of era %d", prefix, ws.era)
		switch {
		case ws.era > uint64(sb.CurrentEra):
			c.fail(fmt.Errorf("%s: era beyond the current era %d: %w", what, sb.CurrentEra, ErrCorrupt))
		case ws.era == uint64(sb.CurrentEra) && sb.CurrentWriteset.Root != 0 && prefix == "":
			c.fail(fmt.Errorf("%s: archived while also current: %w", what, ErrCorrupt))
		}
		if ws.info.Root == 0 || ws.info.NrBits == 0 {
			c.fail(fmt.Errorf("%s: empty record (root %d, %d bits): %w", what, ws.info.Root, ws.info.NrBits, ErrCorrupt))
			continue
		}
		c.bitset(ws.info, what)
	}

	eras := array.New(c.tm, eraValueSize)
	c.arrayRefs(eras, sb.EraArrayRoot, prefix+"era array")
	err = eras.Iterate(sb.EraArrayRoot, uint64(sb.NrBlocks), func(i uint64, v []byte) error {
		if e := binary.LittleEndian.Uint32(v); e > sb.CurrentEra {
			return fmt.Errorf("block %d has era %d, beyond the current era %d: %w", i, e, sb.CurrentEra, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		c.fail(fmt.Errorf("%sera array: %w", prefix, err))
	}
}

// bitset checks and counts a writeset's bitset (its root already counted).
func (c *checker) bitset(info writesetInfo, what string) {
	if info.Root == 0 {
		return
	}
	words := array.NewBitset(c.tm)
	c.arrayRefs(words.Array(), info.Root, what)
	err := words.Array().Iterate(info.Root, array.NrWords(uint64(info.NrBits)), func(uint64, []byte) error { return nil })
	if err != nil {
		c.fail(fmt.Errorf("%s: %w", what, err))
	}
}

// arrayRefs counts the references inside an array's btree.
func (c *checker) arrayRefs(a *array.Array, root uint64, what string) {
	err := a.Walk(root, func(loc uint64, n *btree.Node, depth int) (bool, error) {
		if !c.visit(loc, n) {
			return false, nil
		}
		if n.IsLeaf() {
			for i := range n.Keys {
				c.refs[binary.LittleEndian.Uint64(n.Value(i))]++
			}
		}
		return true, nil
	}, func(uint64, *array.Block) error { return nil })
	if err != nil {
		c.fail(fmt.Errorf("%s: %w", what, err))
	}
}

// visit reports whether node loc is seen for the first time, and counts
// the children of an internal node.
func (c *checker) visit(loc uint64, n *btree.Node) bool {
	if c.seen[loc] {
		return false
	}
	c.seen[loc] = true
	if !n.IsLeaf() {
		for i := range n.Keys {
			c.refs[n.Child(i)]++
		}
	}
	return true
}
