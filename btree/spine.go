package btree

import (
	"github.com/era-go/era/block"
)

// This file holds the copy-on-write machinery shared by Insert and Remove
// (the kernel's shadow spine, dm-btree-spine.c): every node an operation
// changes is shadowed through the transaction manager exactly once, kept
// decoded while the operation runs, and encoded back into its block buffer
// when the operation finishes.

// wnode is a node writable in the current operation.
type wnode struct {
	loc    uint64 // current (shadowed or new) location
	buf    []byte // the transaction manager's buffer for loc
	n      *Node
	parent *wnode // the node whose child pointer leads here; nil for the root
}

// op is one tree-changing operation.
type op struct {
	t    *Tree
	root uint64 // the root after the operation
	// nodes holds every node shadowed or created by this operation, by
	// location. A block appears at most once: a second pointer to it means
	// the tree is corrupt, unless it comes from the same parent (the node
	// was shadowed while rebalancing and is now being descended into).
	nodes map[uint64]*wnode
}

func (t *Tree) newOp() *op {
	return &op{t: t, nodes: make(map[uint64]*wnode, 8)}
}

// finish encodes every node of the operation into its buffer.
func (o *op) finish() error {
	for _, w := range o.nodes {
		w.n.Loc = w.loc
		if err := w.n.Encode(w.buf); err != nil {
			return err
		}
	}
	return nil
}

// checkWrite applies, on top of checkNode, what changing a node needs: room
// for at least three entries (so splits and merges leave non-empty nodes).
func (o *op) checkWrite(loc uint64, n *Node) error {
	if err := o.t.checkNode(loc, n); err != nil {
		return err
	}
	if n.MaxEntries < 3 {
		return block.Corruptf(loc, block.Node.Name, "max_entries %d too small to change the node", n.MaxEntries)
	}
	return nil
}

// get returns node loc for reading: the operation's working copy if it has
// one (which must belong to parent), else the node as stored.
func (o *op) get(loc uint64, parent *wnode) (*Node, error) {
	if w, ok := o.nodes[loc]; ok {
		if w.parent != parent || parent == nil {
			return nil, revisited(loc)
		}
		return w.n, nil
	}
	data, err := o.t.tm.Read(loc, block.Node)
	if err != nil {
		return nil, err
	}
	n, err := DecodeNode(loc, data)
	if err != nil {
		return nil, err
	}
	if err := o.checkWrite(loc, n); err != nil {
		return nil, err
	}
	return n, nil
}

func revisited(loc uint64) error {
	return block.Corruptf(loc, block.Node.Name, "node referenced twice on one path of the tree (cycle?)")
}

// shadow makes node loc, the child of parent (nil for the root), writable
// in this operation. When the block was shared, every block the copy
// references gains a reference (inc_children).
func (o *op) shadow(loc uint64, parent *wnode) (*wnode, error) {
	if w, ok := o.nodes[loc]; ok {
		if w.parent != parent || parent == nil {
			return nil, revisited(loc)
		}
		return w, nil
	}
	newLoc, buf, shared, err := o.t.tm.Shadow(loc, block.Node)
	if err != nil {
		return nil, err
	}
	// The buffer holds the old block's bytes, stored location included.
	n, err := DecodeNode(loc, buf)
	if err != nil {
		return nil, err
	}
	if err := o.checkWrite(loc, n); err != nil {
		return nil, err
	}
	if shared {
		if err := o.incChildren(n); err != nil {
			return nil, err
		}
	}
	n.Loc = newLoc
	w := &wnode{loc: newLoc, buf: buf, n: n, parent: parent}
	o.nodes[newLoc] = w
	return w, nil
}

// child shadows child i of the internal node p and points p at the shadow.
func (o *op) child(p *wnode, i int) (*wnode, error) {
	c, err := o.shadow(p.n.Child(i), p)
	if err != nil {
		return nil, err
	}
	p.n.setChild(i, c.loc)
	return c, nil
}

// newNode allocates a node with the header of tmpl (flags, max_entries,
// value_size) and no entries, as a child of parent.
func (o *op) newNode(tmpl *Node, parent *wnode) (*wnode, error) {
	loc, buf, err := o.t.tm.New(block.Node)
	if err != nil {
		return nil, err
	}
	n := &Node{
		Flags:      tmpl.Flags,
		Loc:        loc,
		MaxEntries: tmpl.MaxEntries,
		ValueSize:  tmpl.ValueSize,
		Keys:       []uint64{},
		Values:     []byte{},
	}
	w := &wnode{loc: loc, buf: buf, n: n, parent: parent}
	o.nodes[loc] = w
	return w, nil
}

// take drops node loc, a child of parent, from the tree and returns its
// contents, which the caller moves into other nodes of the tree: the node's
// count is decremented, and when it was shared (it stays alive elsewhere)
// its children gain the references the caller's copy needs.
func (o *op) take(loc uint64, parent *wnode) (*Node, error) {
	if w, ok := o.nodes[loc]; ok {
		if w.parent != parent {
			return nil, revisited(loc)
		}
		// Shadowed or created by this operation: its count is 1.
		delete(o.nodes, loc)
		return w.n, o.t.tm.Dec(loc)
	}
	count, err := o.t.tm.Count(loc)
	if err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, block.Corruptf(loc, block.Node.Name, "referenced node has a reference count of 0")
	}
	n, err := o.get(loc, parent)
	if err != nil {
		return nil, err
	}
	if count > 1 {
		if err := o.incChildren(n); err != nil {
			return nil, err
		}
	}
	return n, o.t.tm.Dec(loc)
}

// incChildren takes a reference on everything n references: its children
// if it is internal, its values (through the value type) if it is a leaf.
func (o *op) incChildren(n *Node) error {
	if !n.IsLeaf() {
		for i := range n.nr() {
			if err := o.t.tm.Inc(n.Child(i)); err != nil {
				return err
			}
		}
		return nil
	}
	if o.t.vt.Inc == nil {
		return nil
	}
	for i := range n.nr() {
		if err := o.t.vt.Inc(n.Value(i)); err != nil {
			return err
		}
	}
	return nil
}
