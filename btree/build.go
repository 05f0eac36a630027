package btree

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
)

// Build creates a tree holding keys, which must be strictly ascending, with
// values (len(keys)*Size bytes, value i at values[i*Size:]), and returns its
// root. It builds bottom up, writing each node once and reading none: a
// tree of n entries costs about n/250 new blocks, against n shadowing
// inserts. The references the values hold pass to the tree (Build calls no
// Inc).
//
// Each level is filled evenly, so every node but the root holds at least
// half of its max_entries, above the third that the kernel keeps.
func (t *Tree) Build(keys []uint64, values []byte) (uint64, error) {
	if err := t.checkValueType(); err != nil {
		return 0, err
	}
	if len(values) != len(keys)*t.vt.Size {
		return 0, fmt.Errorf("btree: build with %d value bytes for %d keys of %d", len(values), len(keys), t.vt.Size)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i] <= keys[i-1] {
			return 0, fmt.Errorf("btree: build with key %d after %d", keys[i], keys[i-1])
		}
	}
	if len(keys) == 0 {
		return t.Empty()
	}
	keys, locs, err := t.buildLevel(FlagLeaf, t.maxLeaf(), t.vt.Size, keys, values)
	for err == nil && len(locs) > 1 {
		children := make([]byte, 0, len(locs)*childSize)
		for _, l := range locs {
			children = binary.LittleEndian.AppendUint64(children, l)
		}
		keys, locs, err = t.buildLevel(FlagInternal, t.maxInternal(), childSize, keys, children)
	}
	if err != nil {
		return 0, err
	}
	return locs[0], nil
}

// buildLevel writes the entries as ceil(n/max) nodes of flags, filled
// evenly, and returns each node's first key and location.
func (t *Tree) buildLevel(flags, max uint32, valueSize int, keys []uint64, values []byte) ([]uint64, []uint64, error) {
	n := len(keys)
	nodes := (n + int(max) - 1) / int(max)
	firsts := make([]uint64, 0, nodes)
	locs := make([]uint64, 0, nodes)
	for i := range nodes {
		lo, hi := i*n/nodes, (i+1)*n/nodes
		loc, buf, err := t.tm.New(block.Node)
		if err != nil {
			return nil, nil, err
		}
		node := &Node{Flags: flags, Loc: loc, MaxEntries: max, ValueSize: uint32(valueSize),
			Keys: keys[lo:hi], Values: values[lo*valueSize : hi*valueSize]}
		if err := node.Encode(buf); err != nil {
			return nil, nil, err
		}
		firsts = append(firsts, keys[lo])
		locs = append(locs, loc)
	}
	return firsts, locs, nil
}
