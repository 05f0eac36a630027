package btree

// Refs counts the references a checker finds by walking metadata, to
// compare them with a space map's counts: a block is counted once for each
// distinct block (or root) that points to it, however many trees share the
// pointing block. A walk reads a block the first time it is met and skips
// it after that, so the pointers of a shared node count once.
type Refs struct {
	counts map[uint64]uint32
	read   map[uint64]bool
}

// NewRefs returns an empty count.
func NewRefs() *Refs {
	return &Refs{counts: map[uint64]uint32{}, read: map[uint64]bool{}}
}

// Inc counts one reference to block loc.
func (r *Refs) Inc(loc uint64) { r.counts[loc]++ }

// First reports whether block loc is met for the first time by a walk that
// reads blocks: a walk reads it, and counts its pointers, only then.
func (r *Refs) First(loc uint64) bool {
	if r.read[loc] {
		return false
	}
	r.read[loc] = true
	return true
}

// Counts returns the references counted so far, by block.
func (r *Refs) Counts() map[uint64]uint32 { return r.counts }

// CountRefs walks the tree at root as Walk does, checking every rule Walk
// checks, and counts in refs one reference to root and one to each child
// of every node it reads. A node already read by an earlier walk with the
// same refs (a node two trees share) is not read again. leaf, if not nil,
// is called for each entry of each leaf read, to count what values point
// to; its error ends the walk.
func (t *Tree) CountRefs(root uint64, refs *Refs, leaf func(key uint64, v []byte) error) error {
	refs.Inc(root)
	return t.Walk(root, func(loc uint64, n *Node, depth int) (bool, error) {
		if !refs.First(loc) {
			return false, nil
		}
		for i, k := range n.Keys {
			if !n.IsLeaf() {
				refs.Inc(n.Child(i))
			} else if leaf != nil {
				if err := leaf(k, n.Value(i)); err != nil {
					return false, err
				}
			}
		}
		return true, nil
	})
}
