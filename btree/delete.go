package btree

import "github.com/era-go/era/block"

// Delete drops the tree at root, as the kernel's dm_btree_del does: depth
// first, a node whose reference count is above 1 (shared with another tree)
// is only decremented; otherwise its children (internal node) or its values
// (leaf, through the value type's Dec) are released first, then the node is
// decremented.
func (t *Tree) Delete(root uint64) error {
	if err := t.checkValueType(); err != nil {
		return err
	}
	return t.del(root, 0)
}

func (t *Tree) del(loc uint64, depth int) error {
	if depth >= maxDepth {
		return tooDeep(loc)
	}
	count, err := t.tm.Count(loc)
	if err != nil {
		return err
	}
	switch {
	case count == 0:
		return block.Corruptf(loc, block.Node.Name, "referenced node has a reference count of 0")
	case count > 1:
		return t.tm.Dec(loc)
	}
	n, err := t.read(loc)
	if err != nil {
		return err
	}
	if n.IsLeaf() {
		if t.vt.Dec != nil {
			for i := range n.nr() {
				if err := t.vt.Dec(n.Value(i)); err != nil {
					return err
				}
			}
		}
	} else {
		for i := range n.nr() {
			if err := t.del(n.Child(i), depth+1); err != nil {
				return err
			}
		}
	}
	return t.tm.Dec(loc)
}
