// Package btree implements the persistent-data btree of the Linux kernel
// (drivers/md/persistent-data/dm-btree*.c) over copy-on-write metadata
// blocks: u64 keys, fixed-size values, byte-compatible nodes (format.md §4).
//
// Trees are identified by the block number of their root. Every change
// (Insert, Remove) shadows the nodes it touches through a
// transaction.Manager and returns the new root, so a tree that was committed
// before, or is shared with another root (a metadata snapshot), stays intact.
// Reference counts are kept exact: a node shared with another tree is copied
// and everything the copy references incremented; a node or value that
// leaves the tree is decremented.
//
// The rules every tree written here satisfies are the ones the kernel
// maintains and era_check verifies: internal nodes have value_size 8 and
// max_entries 252, leaves the tree's value size and MaxEntries of it; every
// node except the root holds at least max_entries/3 entries; all leaves are
// at the same depth; key i of an internal node is a lower bound of child i's
// subtree (and every key of child i is below key i+1).
//
// A Tree is not safe for concurrent use. When an operation fails half way,
// the transaction it ran in must be aborted.
package btree

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// Stop is returned by an Iterate callback to end the iteration early;
// Iterate then returns nil. It is a control value, as fs.SkipAll is, not
// an error to report.
//
//lint:ignore ST1012 named like fs.SkipAll: a control value, not an error
var Stop = errors.New("stop iteration")

// maxDepth bounds every traversal, so a cycle in corrupt metadata is
// reported instead of followed forever. A tree of 64 levels would hold more
// than 84^63 entries.
const maxDepth = 64

// ValueType describes the fixed-size values of a tree and what they
// reference.
type ValueType struct {
	// Size is the number of bytes of a value (4, 8, 12, ...).
	Size int
	// Inc, if not nil, takes a new reference on whatever v references. It
	// is called for each value of a shared leaf (count > 1) that gets
	// copied: shadowed, or merged into another node by Remove.
	Inc func(v []byte) error
	// Dec, if not nil, drops a reference on whatever v references. It is
	// called when a value leaves the tree: overwritten by a different value,
	// removed, or released by Delete.
	Dec func(v []byte) error
	// Equal reports whether two values are the same; nil means bytes.Equal.
	// Insert over an existing key calls Dec on the old value unless it is
	// Equal to the new one.
	Equal func(a, b []byte) bool
}

// Tree operates on the btrees of one value type in the metadata managed by
// a transaction.Manager. It holds no state besides the two, so any number
// of roots can be used with one Tree.
type Tree struct {
	tm *transaction.Manager
	vt ValueType

	// leafMax and internalMax override the max_entries given to new leaves
	// (Empty) and to new internal roots (a root split). Zero means the
	// format's value. Only tests set them, to build deep trees from few keys.
	leafMax, internalMax uint32
}

// New returns a Tree whose nodes live in tm and whose leaves hold values of
// type vt.
func New(tm *transaction.Manager, vt ValueType) *Tree {
	return &Tree{tm: tm, vt: vt}
}

func (t *Tree) checkValueType() error {
	if t.vt.Size <= 0 || MaxEntries(t.vt.Size) < 3 {
		return fmt.Errorf("btree: unusable value size %d", t.vt.Size)
	}
	return nil
}

func (t *Tree) equal(a, b []byte) bool {
	if t.vt.Equal != nil {
		return t.vt.Equal(a, b)
	}
	return bytes.Equal(a, b)
}

func (t *Tree) maxLeaf() uint32 {
	if t.leafMax != 0 {
		return t.leafMax
	}
	return uint32(MaxEntries(t.vt.Size))
}

func (t *Tree) maxInternal() uint32 {
	if t.internalMax != 0 {
		return t.internalMax
	}
	return uint32(MaxEntries(childSize))
}

// checkNode applies the checks every operation needs before it trusts a
// node's layout: the value size matches the node's kind (8 for internal
// nodes, the tree's for leaves) and an internal node is not empty.
func (t *Tree) checkNode(loc uint64, n *Node) error {
	if n.IsLeaf() {
		if int(n.ValueSize) != t.vt.Size {
			return block.Corruptf(loc, block.Node.Name, "leaf value_size %d, want %d", n.ValueSize, t.vt.Size)
		}
		return nil
	}
	if n.ValueSize != childSize {
		return block.Corruptf(loc, block.Node.Name, "internal node value_size %d, want %d", n.ValueSize, childSize)
	}
	if n.nr() == 0 {
		return block.Corruptf(loc, block.Node.Name, "internal node with no entries")
	}
	return nil
}

// read reads, decodes and checks node loc.
func (t *Tree) read(loc uint64) (*Node, error) {
	data, err := t.tm.Read(loc, block.Node)
	if err != nil {
		return nil, err
	}
	n, err := DecodeNode(loc, data)
	if err != nil {
		return nil, err
	}
	if err := t.checkNode(loc, n); err != nil {
		return nil, err
	}
	return n, nil
}

func tooDeep(loc uint64) error {
	return block.Corruptf(loc, block.Node.Name, "btree deeper than %d levels (cycle?)", maxDepth)
}

// Empty creates an empty tree (a leaf with no entries) and returns its root.
func (t *Tree) Empty() (uint64, error) {
	if err := t.checkValueType(); err != nil {
		return 0, err
	}
	o := t.newOp()
	w, err := o.newNode(&Node{Flags: FlagLeaf, MaxEntries: t.maxLeaf(), ValueSize: uint32(t.vt.Size)}, nil)
	if err != nil {
		return 0, err
	}
	if err := o.finish(); err != nil {
		return 0, err
	}
	return w.loc, nil
}

// Lookup returns a copy of the value stored under key in the tree at root.
func (t *Tree) Lookup(root, key uint64) (value []byte, found bool, err error) {
	loc := root
	for depth := 0; ; depth++ {
		if depth >= maxDepth {
			return nil, false, tooDeep(loc)
		}
		n, err := t.read(loc)
		if err != nil {
			return nil, false, err
		}
		i := lowerBound(n.Keys, key)
		if i < 0 {
			return nil, false, nil
		}
		if n.IsLeaf() {
			if n.Keys[i] != key {
				return nil, false, nil
			}
			return bytes.Clone(n.Value(i)), true, nil
		}
		loc = n.Child(i)
	}
}

// Lowest returns the smallest key of the tree at root and a copy of its
// value; found is false for an empty tree.
func (t *Tree) Lowest(root uint64) (key uint64, value []byte, found bool, err error) {
	loc := root
	for depth := 0; ; depth++ {
		if depth >= maxDepth {
			return 0, nil, false, tooDeep(loc)
		}
		n, err := t.read(loc)
		if err != nil {
			return 0, nil, false, err
		}
		if n.IsLeaf() {
			if n.nr() == 0 {
				if depth > 0 {
					return 0, nil, false, block.Corruptf(loc, block.Node.Name, "empty leaf below the root")
				}
				return 0, nil, false, nil
			}
			return n.Keys[0], bytes.Clone(n.Value(0)), true, nil
		}
		loc = n.Child(0)
	}
}

// traversal carries the cross-node checks shared by Iterate and Walk.
type traversal struct {
	t         *Tree
	leafDepth int // depth of the leaves, -1 until the first leaf
	haveLast  bool
	lastKey   uint64 // the last leaf key seen
	lastLeaf  uint64
}

// bounds is the key range a node's keys must fall in: >= lo (the parent's
// key for it) and, if hasHi, < hi (the parent's next key).
type bounds struct {
	lo, hi       uint64
	hasLo, hasHi bool
	parent       uint64
}

// checkChild checks node n at loc against its parent's keys and, for a
// leaf, against the depth and the last key of the previous leaf.
func (tr *traversal) checkChild(loc uint64, n *Node, depth int, b bounds) error {
	name := block.Node.Name
	if nr := n.nr(); nr > 0 {
		if b.hasLo && n.Keys[0] < b.lo {
			return block.Corruptf(loc, name, "first key %d is below the parent's key %d (parent block %d)", n.Keys[0], b.lo, b.parent)
		}
		if b.hasHi && n.Keys[nr-1] >= b.hi {
			return block.Corruptf(loc, name, "key %d is not below the parent's next key %d (parent block %d)", n.Keys[nr-1], b.hi, b.parent)
		}
	}
	if !n.IsLeaf() {
		return nil
	}
	if tr.leafDepth < 0 {
		tr.leafDepth = depth
	} else if depth != tr.leafDepth {
		return block.Corruptf(loc, name, "leaf at depth %d, other leaves at depth %d", depth, tr.leafDepth)
	}
	if nr := n.nr(); nr > 0 {
		if tr.haveLast && n.Keys[0] <= tr.lastKey {
			return block.Corruptf(loc, name, "first key %d not above the last key %d of the previous leaf %d", n.Keys[0], tr.lastKey, tr.lastLeaf)
		}
		tr.haveLast, tr.lastKey, tr.lastLeaf = true, n.Keys[nr-1], loc
	}
	return nil
}

func childBounds(n *Node, loc uint64, i int) bounds {
	b := bounds{lo: n.Keys[i], hasLo: true, parent: loc}
	if i+1 < n.nr() {
		b.hi, b.hasHi = n.Keys[i+1], true
	}
	return b
}

// Iterate calls fn for every entry of the tree at root whose key is >= from,
// in ascending key order. value is only valid during the call. If fn returns
// Stop, Iterate stops and returns nil; any other error is returned as is.
func (t *Tree) Iterate(root, from uint64, fn func(key uint64, value []byte) error) error {
	tr := &traversal{t: t, leafDepth: -1}
	err := tr.iterate(root, 0, bounds{}, from, true, fn)
	if errors.Is(err, Stop) {
		return nil
	}
	return err
}

func (tr *traversal) iterate(loc uint64, depth int, b bounds, from uint64, seeking bool, fn func(uint64, []byte) error) error {
	if depth >= maxDepth {
		return tooDeep(loc)
	}
	n, err := tr.t.read(loc)
	if err != nil {
		return err
	}
	if depth > 0 && n.nr() == 0 {
		return block.Corruptf(loc, block.Node.Name, "empty node below the root")
	}
	if err := tr.checkChild(loc, n, depth, b); err != nil {
		return err
	}
	start := 0
	if seeking {
		if start = lowerBound(n.Keys, from); start < 0 {
			start = 0
		}
	}
	if n.IsLeaf() {
		for i := start; i < n.nr(); i++ {
			if n.Keys[i] < from {
				continue
			}
			if err := fn(n.Keys[i], n.Value(i)); err != nil {
				return err
			}
		}
		return nil
	}
	for i := start; i < n.nr(); i++ {
		if err := tr.iterate(n.Child(i), depth+1, childBounds(n, loc, i), from, seeking && i == start, fn); err != nil {
			return err
		}
	}
	return nil
}

// Walk visits every node reachable from root, depth first, parents before
// their children, and checks the rules era_check 0.9.0 checks across nodes
// (format.md §4.6): the value size (8 for internal nodes, the tree's for
// leaves); max_entries a multiple of 3; every node but the root holding at
// least max_entries/3 entries; only a leaf root may be empty; each child's
// keys at or above the parent's key for it and below the parent's next key;
// leaf keys strictly ascending from one leaf to the next; all leaves at the
// same depth. A block met twice, and a tree deeper than 64 levels, are
// reported as corruption.
//
// visit, if not nil, is called for each node after the node passed the
// checks, with its depth (the root is at 0). Returning descend=false skips
// the node's children (a checker uses that to visit a node shared by
// several trees once); an error ends the walk and is returned.
func (t *Tree) Walk(root uint64, visit func(loc uint64, n *Node, depth int) (descend bool, err error)) error {
	w := &walker{traversal: traversal{t: t, leafDepth: -1}, visit: visit, seen: map[uint64]struct{}{}}
	return w.walk(root, 0, bounds{})
}

type walker struct {
	traversal
	visit func(uint64, *Node, int) (bool, error)
	seen  map[uint64]struct{}
}

func (w *walker) walk(loc uint64, depth int, b bounds) error {
	name := block.Node.Name
	if depth >= maxDepth {
		return tooDeep(loc)
	}
	if _, ok := w.seen[loc]; ok {
		return block.Corruptf(loc, name, "node reached twice in one tree (parent block %d)", b.parent)
	}
	w.seen[loc] = struct{}{}
	n, err := w.t.read(loc)
	if err != nil {
		return err
	}
	if n.MaxEntries%3 != 0 {
		return block.Corruptf(loc, name, "max_entries %d is not a multiple of 3", n.MaxEntries)
	}
	if depth > 0 {
		if n.nr() == 0 || n.nr() < int(n.MaxEntries/3) {
			return block.Corruptf(loc, name, "too few entries: %d of %d (minimum %d)", n.nr(), n.MaxEntries, n.MaxEntries/3)
		}
	}
	if err := w.checkChild(loc, n, depth, b); err != nil {
		return err
	}
	descend := true
	if w.visit != nil {
		if descend, err = w.visit(loc, n, depth); err != nil {
			return err
		}
	}
	if !descend || n.IsLeaf() {
		return nil
	}
	for i := range n.nr() {
		if err := w.walk(n.Child(i), depth+1, childBounds(n, loc, i)); err != nil {
			return err
		}
	}
	return nil
}
