package btree

import (
	"math/bits"
	"slices"

	"github.com/era-go/era/block"
)

// Remove deletes key from the tree at root and returns the new root. The
// removed value is released with Dec. When key is not present the tree is
// left untouched: Remove returns root and found=false.
//
// Like the kernel's dm_btree_remove, Remove walks down from the root
// shadowing each node and keeps every node below the root at least one
// third full: a root with a single child takes over the child's contents
// (incrementing the grandchildren first when the child is shared), and a
// child on the path that is at its minimum is rebalanced with its siblings
// before the walk descends into it (two siblings are merged if they hold
// fewer than 2*(max/3)+1 entries, three become two if they hold fewer than
// 4*(max/3)+1, otherwise the entries are spread evenly). Parent keys of
// the nodes after the first of such a group become their first keys.
func (t *Tree) Remove(root, key uint64) (uint64, bool, error) {
	if err := t.checkValueType(); err != nil {
		return 0, false, err
	}
	if _, found, err := t.Lookup(root, key); err != nil || !found {
		return root, false, err
	}
	o := t.newOp()
	if err := o.remove(root, key); err != nil {
		return 0, false, err
	}
	return o.root, true, o.finish()
}

func (o *op) remove(root, key uint64) error {
	cur, err := o.shadow(root, nil)
	if err != nil {
		return err
	}
	o.root = cur.loc
	for depth := 0; ; depth++ {
		if depth >= maxDepth {
			return tooDeep(cur.loc)
		}
		if cur.parent == nil {
			if err := o.collapseRoot(cur); err != nil {
				return err
			}
		}
		n := cur.n
		i := lowerBound(n.Keys, key)
		if n.IsLeaf() {
			if i < 0 || n.Keys[i] != key {
				return block.Corruptf(cur.loc, block.Node.Name, "key %d not found in the leaf the lookup led to", key)
			}
			if o.t.vt.Dec != nil {
				if err := o.t.vt.Dec(n.Value(i)); err != nil {
					return err
				}
			}
			n.deleteRange(i, i+1)
			return nil
		}
		if i < 0 {
			return block.Corruptf(cur.loc, block.Node.Name, "key %d below the node's first key %d", key, n.Keys[0])
		}
		rebalanced, err := o.rebalance(cur, i, key)
		if err != nil {
			return err
		}
		if rebalanced {
			if cur.parent == nil && n.nr() == 1 {
				continue // the children were merged into one: collapse it
			}
			i = lowerBound(n.Keys, key)
		}
		if cur, err = o.child(cur, i); err != nil {
			return err
		}
	}
}

// collapseRoot replaces an internal root that has a single child with the
// child's contents, as often as that applies, and releases the child. A
// shared child stays alive elsewhere, so its children (or values) are
// incremented first: the root now references them too (the refcount fix of
// format.md §8).
func (o *op) collapseRoot(root *wnode) error {
	for range maxDepth {
		n := root.n
		if n.IsLeaf() || n.nr() != 1 {
			return nil
		}
		c, err := o.take(n.Child(0), root)
		if err != nil {
			return err
		}
		n.Flags, n.MaxEntries, n.ValueSize = c.Flags, c.MaxEntries, c.ValueSize
		n.Keys = slices.Clone(c.Keys)
		n.Values = slices.Clone(c.Values)
		// Nodes the child owned in this operation now hang off the root.
		for _, w := range o.nodes {
			if w.parent != nil && w.parent.loc == c.Loc && w.parent != root {
				w.parent = root
			}
		}
	}
	return tooDeep(root.loc)
}

// rebalance makes sure child i of p, on the path to key, holds more than
// max/3 entries before the walk descends into it, so that removing one
// entry below leaves it at least one third full. It reports whether it
// changed p.
func (o *op) rebalance(p *wnode, i int, key uint64) (bool, error) {
	pn := p.n
	child, err := o.get(pn.Child(i), p)
	if err != nil {
		return false, err
	}
	if child.nr() > int(child.MaxEntries/3) || pn.nr() < 2 {
		return false, nil
	}

	// The group: the child and one sibling, or both siblings if it has two.
	first, k := i-1, 3
	switch {
	case i == 0:
		first, k = 0, 2
	case i == pn.nr()-1:
		first, k = i-1, 2
	}
	capacity, total := child.MaxEntries, 0
	for j := range k {
		loc := pn.Child(first + j)
		for jj := range j {
			if pn.Child(first+jj) == loc {
				return false, block.Corruptf(p.loc, block.Node.Name, "child %d referenced twice", loc)
			}
		}
		s, err := o.get(loc, p)
		if err != nil {
			return false, err
		}
		if s.IsLeaf() != child.IsLeaf() || s.ValueSize != child.ValueSize {
			return false, block.Corruptf(loc, block.Node.Name, "sibling of block %d is a different kind of node", pn.Child(i))
		}
		capacity = min(capacity, s.MaxEntries)
		total += s.nr()
	}
	threshold := int(capacity / 3)
	m := k // nodes left after rebalancing
	switch {
	case k == 2 && total < 2*threshold+1:
		m = 1
	case k == 3 && total < 4*threshold+1:
		m = 2
	}
	for m < k && total > m*int(capacity) {
		m++
	}
	if total > m*int(capacity) {
		return false, block.Corruptf(p.loc, block.Node.Name, "children hold more entries than they can")
	}

	// Shadow the nodes that stay, take the contents of those that go.
	nodes := make([]*Node, k)
	kept := make([]*wnode, m)
	for j := range k {
		if j < m {
			if kept[j], err = o.child(p, first+j); err != nil {
				return false, err
			}
			nodes[j] = kept[j].n
		} else if nodes[j], err = o.take(pn.Child(first+j), p); err != nil {
			return false, err
		}
	}
	vs := int(child.ValueSize)
	keys := make([]uint64, 0, total)
	values := make([]byte, 0, total*vs)
	for _, n := range nodes {
		if len(keys) > 0 && n.nr() > 0 && n.Keys[0] <= keys[len(keys)-1] {
			return false, block.Corruptf(n.Loc, block.Node.Name, "first key %d not above its left sibling's last key %d", n.Keys[0], keys[len(keys)-1])
		}
		keys = append(keys, n.Keys...)
		values = append(values, n.Values...)
	}

	pos := max(lowerBound(keys, key), 0)
	sizes := distribute(total, m, pos)
	off := 0
	for j, w := range kept {
		end := off + sizes[j]
		w.n.Keys = slices.Clone(keys[off:end])
		w.n.Values = slices.Clone(values[off*vs : end*vs])
		if j > 0 {
			pn.Keys[first+j] = w.n.Keys[0]
		}
		off = end
	}
	pn.deleteRange(first+m, first+k)
	return true, nil
}

// distribute spreads total entries over m nodes as evenly as possible. Of
// the ways to place the remainder it picks one that makes the node holding
// entry pos (the one the walk descends into) largest.
func distribute(total, m, pos int) []int {
	base, rem := total/m, total%m
	var best []int
	bestSize := -1
	for mask := 0; mask < 1<<m; mask++ {
		if bits.OnesCount(uint(mask)) != rem {
			continue
		}
		sizes := make([]int, m)
		off, at := 0, m-1
		for j := range sizes {
			sizes[j] = base + (mask>>j)&1
			if pos >= off && pos < off+sizes[j] {
				at = j
			}
			off += sizes[j]
		}
		if sizes[at] > bestSize {
			best, bestSize = sizes, sizes[at]
		}
	}
	return best
}
