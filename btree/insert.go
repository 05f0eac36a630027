package btree

import (
	"fmt"

	"github.com/era-go/era/block"
)

// Insert stores value under key in the tree at root and returns the new
// root. The caller's reference on whatever value references passes to the
// tree (Insert does not call Inc). When key is already present, the old
// value is released with Dec unless it is Equal to the new one.
//
// Like the kernel's dm_btree_insert, Insert walks down from the root
// shadowing each node and makes room before descending: a full root is split
// beneath (its entries move into two new children and it becomes an internal
// node with two entries, keeping its location), a full node below the root
// is split in two into its parent. A full leaf that already holds key is
// not split.
func (t *Tree) Insert(root, key uint64, value []byte) (uint64, error) {
	if err := t.checkValueType(); err != nil {
		return 0, err
	}
	if len(value) != t.vt.Size {
		return 0, fmt.Errorf("btree: insert of a %d-byte value into a tree of %d-byte values", len(value), t.vt.Size)
	}
	o := t.newOp()
	if err := o.insert(root, key, value); err != nil {
		return 0, err
	}
	return o.root, o.finish()
}

func (o *op) insert(root, key uint64, value []byte) error {
	cur, err := o.shadow(root, nil)
	if err != nil {
		return err
	}
	o.root = cur.loc
	for depth := 0; ; depth++ {
		if depth >= maxDepth {
			return tooDeep(cur.loc)
		}
		n := cur.n
		if n.nr() >= int(n.MaxEntries) && !(n.IsLeaf() && hasKey(n, key)) {
			if cur.parent == nil {
				if cur, err = o.splitBeneath(cur, key); err != nil {
					return err
				}
			} else if cur, err = o.splitIntoParent(cur, key); err != nil {
				return err
			}
			n = cur.n
		}
		i := lowerBound(n.Keys, key)
		if n.IsLeaf() {
			return o.insertInLeaf(cur, i, key, value)
		}
		if i < 0 {
			// Below every key: lower the bound of the first child.
			n.Keys[0] = key
			i = 0
		}
		if cur, err = o.child(cur, i); err != nil {
			return err
		}
	}
}

func hasKey(n *Node, key uint64) bool {
	i := lowerBound(n.Keys, key)
	return i >= 0 && n.Keys[i] == key
}

func (o *op) insertInLeaf(leaf *wnode, i int, key uint64, value []byte) error {
	n := leaf.n
	if i >= 0 && n.Keys[i] == key {
		old := n.Value(i)
		if !o.t.equal(old, value) && o.t.vt.Dec != nil {
			if err := o.t.vt.Dec(old); err != nil {
				return err
			}
		}
		copy(old, value)
		return nil
	}
	return n.insertAt(i+1, key, value)
}

// moveUpper moves the entries [from, nr) of src into the empty node dst.
func moveUpper(dst, src *Node, from int) {
	vs := int(src.ValueSize)
	dst.Keys = append(dst.Keys[:0], src.Keys[from:]...)
	dst.Values = append(dst.Values[:0], src.Values[from*vs:]...)
	src.Keys = src.Keys[:from]
	src.Values = src.Values[:from*vs]
}

// splitBeneath splits the full root: its entries move into two new nodes
// and the root becomes an internal node with those two as children. It
// returns the child key belongs in. The root keeps its location.
func (o *op) splitBeneath(root *wnode, key uint64) (*wnode, error) {
	n := root.n
	left, err := o.newNode(n, root)
	if err != nil {
		return nil, err
	}
	right, err := o.newNode(n, root)
	if err != nil {
		return nil, err
	}
	half := n.nr() / 2
	moveUpper(right.n, n, half)
	moveUpper(left.n, n, 0)

	n.Flags = FlagInternal
	n.MaxEntries = o.t.maxInternal()
	n.ValueSize = childSize
	n.Keys = []uint64{left.n.Keys[0], right.n.Keys[0]}
	n.Values = make([]byte, 2*childSize)
	n.setChild(0, left.loc)
	n.setChild(1, right.loc)
	if key >= right.n.Keys[0] {
		return right, nil
	}
	if key < n.Keys[0] {
		n.Keys[0] = key
	}
	return left, nil
}

// splitIntoParent splits the full node cur in two: its upper half moves to
// a new right sibling, inserted into the parent after cur (the parent has
// room: it was split first if it was full). It returns the half key belongs
// in.
func (o *op) splitIntoParent(cur *wnode, key uint64) (*wnode, error) {
	p := cur.parent
	pi := -1
	for i := range p.n.nr() {
		if p.n.Child(i) == cur.loc {
			pi = i
			break
		}
	}
	if pi < 0 {
		return nil, block.Corruptf(p.loc, block.Node.Name, "child %d not found in its parent", cur.loc)
	}
	if p.n.nr() >= int(p.n.MaxEntries) {
		return nil, block.Corruptf(p.loc, block.Node.Name, "no room in the parent to split child %d", cur.loc)
	}
	right, err := o.newNode(cur.n, p)
	if err != nil {
		return nil, err
	}
	moveUpper(right.n, cur.n, cur.n.nr()/2)
	var v [childSize]byte
	if err := p.n.insertAt(pi+1, right.n.Keys[0], v[:]); err != nil {
		return nil, err
	}
	p.n.setChild(pi+1, right.loc)
	if key >= right.n.Keys[0] {
		return right, nil
	}
	return cur, nil
}
