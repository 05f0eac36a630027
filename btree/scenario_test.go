package btree

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/era-go/era/block"
)

// put writes n into a new block and returns its location.
func (e *env) put(n *Node) uint64 {
	e.tb.Helper()
	loc, buf, err := e.tm.New(block.Node)
	if err != nil {
		e.tb.Fatal(err)
	}
	n.Loc = loc
	if err := n.Encode(buf); err != nil {
		e.tb.Fatal(err)
	}
	return loc
}

func (e *env) node(loc uint64) *Node {
	e.tb.Helper()
	data, err := e.tm.Read(loc, block.Node)
	if err != nil {
		e.tb.Fatal(err)
	}
	n, err := DecodeNode(loc, data)
	if err != nil {
		e.tb.Fatal(err)
	}
	return n
}

func leafNode(max uint32, keys ...uint64) *Node {
	n := &Node{Flags: FlagLeaf, MaxEntries: max, ValueSize: 8, Keys: keys, Values: make([]byte, 8*len(keys))}
	for i, k := range keys {
		binary.LittleEndian.PutUint64(n.Values[8*i:], k*10)
	}
	return n
}

func internalNode(keys []uint64, children ...uint64) *Node {
	n := &Node{Flags: FlagInternal, MaxEntries: 252, ValueSize: 8, Keys: keys, Values: make([]byte, 8*len(keys))}
	for i, c := range children {
		n.setChild(i, c)
	}
	return n
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func mustInsert(tb testing.TB, tr *Tree, root, k uint64, v []byte) uint64 {
	tb.Helper()
	root, err := tr.Insert(root, k, v)
	if err != nil {
		tb.Fatalf("insert %d: %v", k, err)
	}
	return root
}

func mustRemove(tb testing.TB, tr *Tree, root, k uint64) uint64 {
	tb.Helper()
	root, found, err := tr.Remove(root, k)
	if err != nil || !found {
		tb.Fatalf("remove %d: %v, %v", k, found, err)
	}
	return root
}

// A full root leaf is not split by an overwrite, is split beneath by an
// insert (keeping its location, becoming internal with 252/8 header), and a
// key below every key lowers the internal key 0.
func TestSplitRules(t *testing.T) {
	e := newEnv(t, 1024)
	tr := e.tree(testType{12, false}, 0, 0)
	root, err := tr.Empty()
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 12)
	for k := uint64(10); k < 10+201; k++ {
		root = mustInsert(t, tr, root, k, v)
	}
	orig := root
	if n := e.node(root); !n.IsLeaf() || n.nr() != 201 || n.MaxEntries != 201 {
		t.Fatalf("root after 201 inserts: leaf %v, %d of %d", n.IsLeaf(), n.nr(), n.MaxEntries)
	}
	v[0] = 1
	root = mustInsert(t, tr, root, 50, v)
	if n := e.node(root); !n.IsLeaf() || n.nr() != 201 {
		t.Fatalf("overwrite in a full leaf split it")
	}
	root = mustInsert(t, tr, root, 1000, v)
	n := e.node(root)
	if root != orig || n.IsLeaf() || n.nr() != 2 || n.MaxEntries != 252 || n.ValueSize != 8 {
		t.Fatalf("split root: loc %d (was %d), leaf %v, nr %d, max %d, vs %d", root, orig, n.IsLeaf(), n.nr(), n.MaxEntries, n.ValueSize)
	}
	root = mustInsert(t, tr, root, 3, v)
	if n := e.node(root); n.Keys[0] != 3 {
		t.Fatalf("internal key 0 = %d after inserting 3, want 3", n.Keys[0])
	}
	if err := tr.Walk(root, nil); err != nil {
		t.Fatal(err)
	}
	if got, found, err := tr.Lookup(root, 3); err != nil || !found || got[0] != 1 {
		t.Fatalf("lookup 3: %x %v %v", got, found, err)
	}
}

// TestRootCollapse: a root with a single child (as the kernel leaves it
// after merging the root's last two children) collapses on the next
// remove. When both are shared with a snapshot, the child's values must
// gain a reference because the new root and the snapshot's child both hold
// them (the refcount-underflow fix of format.md §8).
func TestRootCollapse(t *testing.T) {
	for _, shared := range []bool{false, true} {
		tt := testType{8, true}
		e := newEnv(t, 1024)
		tr := e.tree(tt, 6, 6)
		leaf := &Node{Flags: FlagLeaf, MaxEntries: 6, ValueSize: 8}
		for k := uint64(1); k <= 4; k++ {
			leaf.Keys = append(leaf.Keys, k)
			leaf.Values = append(leaf.Values, tt.newValue(e, k)...)
		}
		root := e.put(internalNode([]uint64{1}, e.put(leaf)))
		e.checkRefs(liveRoot{tr, root, tt})
		e.commit()
		var roots []liveRoot
		if shared {
			if err := e.tm.Inc(root); err != nil {
				t.Fatal(err)
			}
			roots = append(roots, liveRoot{tr, root, tt})
		}
		root = mustRemove(t, tr, root, 2)
		if n := e.node(root); !n.IsLeaf() || n.nr() != 3 || n.MaxEntries != 6 {
			t.Fatalf("shared %v: root did not collapse into the leaf: %+v", shared, n)
		}
		roots = append(roots, liveRoot{tr, root, tt})
		e.checkRefs(roots...)
		for _, r := range roots {
			if err := tr.Delete(r.root); err != nil {
				t.Fatal(err)
			}
		}
		e.checkRefs()
	}
}

func TestInsertBadValueSize(t *testing.T) {
	e := newEnv(t, 64)
	tr := e.tree(testType{8, false}, 0, 0)
	root, err := tr.Empty()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Insert(root, 1, make([]byte, 4)); err == nil {
		t.Fatal("insert of a 4-byte value into an 8-byte tree succeeded")
	}
	if _, err := New(e.tm, ValueType{Size: 0}).Empty(); err == nil {
		t.Fatal("tree of 0-byte values accepted")
	}
}

// TestWalkRules builds trees that break one cross-node rule each and
// checks Walk reports it, while Lookup still works where it can.
func TestWalkRules(t *testing.T) {
	type build func(e *env) uint64
	full := func(lo uint64) []uint64 { // 84 keys: the minimum for 252
		ks := make([]uint64, 84)
		for i := range ks {
			ks[i] = lo + uint64(i)
		}
		return ks
	}
	cases := []struct {
		name, want string
		build      build
	}{
		{"valid", "", func(e *env) uint64 {
			return e.put(internalNode([]uint64{0, 100}, e.put(leafNode(252, full(0)...)), e.put(leafNode(252, full(100)...))))
		}},
		{"too few entries", "too few entries: 83", func(e *env) uint64 {
			return e.put(internalNode([]uint64{0, 100}, e.put(leafNode(252, full(0)...)), e.put(leafNode(252, full(100)[:83]...))))
		}},
		{"parent key above child", "below the parent's key 5", func(e *env) uint64 {
			return e.put(internalNode([]uint64{5, 100}, e.put(leafNode(252, full(0)...)), e.put(leafNode(252, full(100)...))))
		}},
		{"child above next key", "not below the parent's next key 50", func(e *env) uint64 {
			return e.put(internalNode([]uint64{0, 50}, e.put(leafNode(252, full(0)...)), e.put(leafNode(252, full(100)...))))
		}},
		{"leaf depths", "leaf at depth 2", func(e *env) uint64 {
			mid := e.put(internalNode(func() []uint64 {
				var ks []uint64
				for i := range 84 {
					ks = append(ks, 100+uint64(i)*1000)
				}
				return ks
			}(), func() []uint64 {
				var cs []uint64
				for i := range 84 {
					cs = append(cs, e.put(leafNode(252, full(100 + uint64(i)*1000)[:84]...)))
				}
				return cs
			}()...))
			return e.put(internalNode([]uint64{0, 100}, e.put(leafNode(252, full(0)...)), mid))
		}},
		{"value size", "leaf value_size 4", func(e *env) uint64 {
			n := leafNode(252, 1, 2)
			n.ValueSize, n.Values = 4, make([]byte, 8)
			return e.put(n)
		}},
		{"max not multiple of 3", "not a multiple of 3", func(e *env) uint64 { return e.put(leafNode(250, 1, 2)) }},
		{"empty internal root", "internal node with no entries", func(e *env) uint64 { return e.put(internalNode(nil)) }},
		{"same child twice", "reached twice", func(e *env) uint64 {
			c := e.put(leafNode(252, full(0)...))
			return e.put(internalNode([]uint64{0, 100}, c, c))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 512)
			tr := e.tree(testType{8, false}, 0, 0)
			root := c.build(e)
			err := tr.Walk(root, nil)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !isCorrupt(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("walk: %v, want ErrCorrupt with %q", err, c.want)
			}
		})
	}
}

// TestWalkSkip: returning descend=false skips a node's children; depths
// are reported from 0 at the root.
func TestWalkSkip(t *testing.T) {
	e := newEnv(t, 1024)
	tr := e.tree(testType{4, false}, 6, 6)
	root, err := tr.Empty()
	if err != nil {
		t.Fatal(err)
	}
	for k := range uint64(200) {
		root = mustInsert(t, tr, root, k, make([]byte, 4))
	}
	var all, skipped int
	maxDepthSeen := 0
	if err := tr.Walk(root, func(loc uint64, n *Node, depth int) (bool, error) {
		all++
		maxDepthSeen = max(maxDepthSeen, depth)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Walk(root, func(loc uint64, n *Node, depth int) (bool, error) {
		skipped++
		return depth == 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	rootNode := e.node(root)
	if maxDepthSeen < 3 || skipped != 1+rootNode.nr() || all <= skipped {
		t.Fatalf("walk: %d nodes, depth %d; with skipping %d nodes (root has %d children)", all, maxDepthSeen, skipped, rootNode.nr())
	}
}

// TestLargeTree grows a tree of the format's node sizes to three levels
// (sequential inserts leave leaves half full), holds a snapshot of it, then
// removes every key in random order back to an empty leaf root.
func TestLargeTree(t *testing.T) {
	if testing.Short() {
		t.Skip("large tree")
	}
	tt := testType{4, false}
	e := newEnv(t, 4096)
	tr := e.tree(tt, 0, 0)
	root, err := tr.Empty()
	if err != nil {
		t.Fatal(err)
	}
	const n = 60000
	m := model{}
	for k := range uint64(n) {
		v := tt.newValue(e, k)
		root = mustInsert(t, tr, root, k*3, v)
		m[k*3] = v
		if k%5000 == 0 {
			e.commit()
		}
	}
	depth := 0
	if err := tr.Walk(root, func(loc uint64, n *Node, d int) (bool, error) {
		depth = max(depth, d)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if depth != 2 {
		t.Fatalf("tree of %d keys has leaves at depth %d, want 2", n, depth)
	}
	e.reopen()
	tr = e.tree(tt, 0, 0)
	if err := e.tm.Inc(root); err != nil {
		t.Fatal(err)
	}
	snap, snapModel := root, maps.Clone(m)
	rng := rand.New(rand.NewPCG(3, 3))
	keys := slices.Collect(maps.Keys(m))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for i, k := range keys {
		root = mustRemove(t, tr, root, k)
		delete(m, k)
		if i%20000 == 0 {
			e.commit()
			verify(t, tr, root, m, rng, smallKeys(3*n))
			e.checkRefs(liveRoot{tr, root, tt}, liveRoot{tr, snap, tt})
		}
	}
	verify(t, tr, root, m, rng, smallKeys(3*n))
	verify(t, tr, snap, snapModel, rng, smallKeys(3*n))
	e.checkRefs(liveRoot{tr, root, tt}, liveRoot{tr, snap, tt})
	for _, r := range []uint64{snap, root} {
		if err := tr.Delete(r); err != nil {
			t.Fatal(err)
		}
	}
	e.checkRefs()
}
