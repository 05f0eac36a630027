package btree

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// corruptBase is a committed deep tree (max_entries 6) to corrupt copies of.
type corruptBase struct {
	store *memStore
	sm    *memSM
	nr    uint64
	root  uint64
	keys  []uint64
	nodes []baseNode
}

type baseNode struct {
	loc       uint64
	leaf      bool
	ancestors []uint64 // root first
}

var (
	baseOnce sync.Once
	base     *corruptBase
)

func corruptTree(tb testing.TB) *corruptBase {
	baseOnce.Do(func() {
		const nr = 2048
		e := newEnv(tb, nr)
		tr := e.tree(testType{8, false}, 6, 6)
		root, err := tr.Empty()
		if err != nil {
			panic(err)
		}
		rng := rand.New(rand.NewPCG(7, 7))
		b := &corruptBase{nr: nr}
		for range 400 {
			k := rng.Uint64N(5000)
			if root, err = tr.Insert(root, k, u64(k)); err != nil {
				panic(err)
			}
			b.keys = append(b.keys, k)
		}
		e.commit()
		var path []uint64
		if err := tr.Walk(root, func(loc uint64, n *Node, depth int) (bool, error) {
			path = append(path[:depth], loc)
			b.nodes = append(b.nodes, baseNode{loc: loc, leaf: n.IsLeaf(), ancestors: append([]uint64(nil), path[:depth]...)})
			return true, nil
		}); err != nil {
			panic(err)
		}
		b.store, b.sm, b.root = e.store, e.sm, root
		base = b
	})
	return base
}

// corruption kinds
const (
	flipByte    = iota // a random byte, checksum left stale
	cycle              // a child pointer to an ancestor or the node itself
	otherNode          // a child pointer to another node of the tree
	randomBlock        // a child pointer to any block number, beyond the device included
	headerField        // a header field set at random, valid checksum
	keyValue           // a key or value set at random, valid checksum
	garbage            // random bytes with a valid checksum and location
	nrKinds
)

// corrupt damages one node of a copy of the base tree, chosen by rng, and
// reports the kind of damage and whether every full traversal must fail.
func corrupt(b *corruptBase, rng *rand.Rand, s *memStore) (kind int, mustFail bool, desc string) {
	kind = rng.IntN(nrKinds)
	var internals []baseNode
	for _, n := range b.nodes {
		if !n.leaf {
			internals = append(internals, n)
		}
	}
	target := b.nodes[rng.IntN(len(b.nodes))]
	if kind == cycle || kind == otherNode || kind == randomBlock {
		target = internals[rng.IntN(len(internals))]
	}
	data := s.b[target.loc*block.Size : (target.loc+1)*block.Size]
	n, err := DecodeNode(target.loc, data)
	if err != nil {
		panic(err)
	}
	le := binary.LittleEndian
	i := rng.IntN(n.nr())
	switch kind {
	case flipByte:
		off := 4 + rng.IntN(block.Size-4)
		data[off] ^= byte(1 + rng.IntN(255))
		return kind, true, fmt.Sprintf("flip byte %d of block %d", off, target.loc)
	case cycle:
		to := append(target.ancestors, target.loc)[rng.IntN(len(target.ancestors)+1)]
		n.setChild(i, to)
		desc, mustFail = fmt.Sprintf("block %d child %d -> ancestor %d", target.loc, i, to), true
	case otherNode:
		to := b.nodes[rng.IntN(len(b.nodes))].loc
		if to == n.Child(i) {
			return kind, false, "no-op"
		}
		n.setChild(i, to)
		desc, mustFail = fmt.Sprintf("block %d child %d -> node %d", target.loc, i, to), true
	case randomBlock:
		to := rng.Uint64N(2 * b.nr)
		if to == n.Child(i) {
			return kind, false, "no-op"
		}
		n.setChild(i, to)
		desc = fmt.Sprintf("block %d child %d -> block %d", target.loc, i, to)
	case headerField:
		off := []int{offFlags, offNrEntries, offMax, offValueSize}[rng.IntN(4)]
		vals := []uint32{0, 1, 2, 3, 5, 6, 8, 12, 251, 252, 253, 1 << 31, ^uint32(0), rng.Uint32()}
		v := vals[rng.IntN(len(vals))]
		le.PutUint32(data[off:], v)
		block.Node.Prepare(data, target.loc)
		return kind, false, fmt.Sprintf("block %d header offset %d = %d", target.loc, off, v)
	case keyValue:
		if rng.IntN(2) == 0 {
			n.Keys[i] = rng.Uint64N(6000)
			desc = fmt.Sprintf("block %d key %d = %d", target.loc, i, n.Keys[i])
		} else {
			binary.LittleEndian.PutUint64(n.Value(i), rng.Uint64N(3*b.nr))
			desc = fmt.Sprintf("block %d value %d", target.loc, i)
		}
		// Keys out of order are rejected by DecodeNode: keep the bytes
		// anyway, encoding by hand.
		for j, k := range n.Keys {
			le.PutUint64(data[headerSize+8*j:], k)
		}
		copy(data[valuesOffset(n.MaxEntries):], n.Values)
		block.Node.Prepare(data, target.loc)
		return kind, false, desc
	case garbage:
		for j := 4; j < block.Size; j++ {
			data[j] = byte(rng.Uint32())
		}
		le.PutUint32(data[offFlags:], uint32(1+rng.IntN(2)))
		le.PutUint32(data[offNrEntries:], uint32(rng.IntN(7)))
		le.PutUint32(data[offMax:], 6)
		le.PutUint32(data[offValueSize:], 8)
		block.Node.Prepare(data, target.loc)
		return kind, false, fmt.Sprintf("garbage in block %d", target.loc)
	}
	if err := n.Encode(data); err != nil {
		panic(err)
	}
	block.Node.Prepare(data, target.loc)
	return kind, mustFail, desc
}

// within runs fn and fails the test if it panics or does not return in time.
func within(t *testing.T, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		done <- fn()
	}()
	select {
	case err := <-done:
		if err != nil && len(err.Error()) > 6 && err.Error()[:6] == "panic:" {
			t.Fatalf("%s: %v", what, err)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no answer after 20s (loop?)", what)
		return nil
	}
}

func runCorruption(t *testing.T, seed uint64) {
	b := corruptTree(t)
	rng := rand.New(rand.NewPCG(seed, 99))
	s := b.store.clone()
	kind, mustFail, desc := corrupt(b, rng, s)
	t.Logf("seed %d: %s", seed, desc)

	bm := block.NewManager(s, b.nr, 16)
	tr := New(transaction.NewReadOnly(bm), ValueType{Size: 8})
	check := func(what string, err error, must bool) {
		t.Helper()
		if err != nil && !isCorrupt(err) {
			t.Fatalf("%s (%s): error not wrapping ErrCorrupt: %v", what, desc, err)
		}
		if must && err == nil {
			t.Fatalf("%s (%s): corruption not reported", what, desc)
		}
	}
	check("walk", within(t, "walk", func() error { return tr.Walk(b.root, nil) }), mustFail)
	check("iterate", within(t, "iterate", func() error {
		return tr.Iterate(b.root, 0, func(uint64, []byte) error { return nil })
	}), mustFail && kind != randomBlock)
	check("iterate from", within(t, "iterate from", func() error {
		return tr.Iterate(b.root, rng.Uint64N(5000), func(uint64, []byte) error { return nil })
	}), false)
	check("lowest", within(t, "lowest", func() error { _, _, _, err := tr.Lowest(b.root); return err }), false)
	for range 20 {
		k := b.keys[rng.IntN(len(b.keys))]
		check("lookup", within(t, "lookup", func() error { _, _, err := tr.Lookup(b.root, k); return err }), false)
	}

	// Changing a corrupt tree may fail in any way, but must not panic or hang.
	tm := transaction.New(block.NewManager(s, b.nr, 16), b.sm.clone())
	wt := New(tm, ValueType{Size: 8})
	root := b.root
	for range 10 {
		k := b.keys[rng.IntN(len(b.keys))]
		if rng.IntN(2) == 0 {
			if r, err := within2(t, func() (uint64, error) { return wt.Insert(root, k+1, u64(k)) }); err == nil {
				root = r
			}
		} else if r, err := within2(t, func() (uint64, error) { r, _, err := wt.Remove(root, k); return r, err }); err == nil {
			root = r
		}
	}
	within(t, "delete", func() error { return wt.Delete(root) })
}

func within2(t *testing.T, fn func() (uint64, error)) (uint64, error) {
	t.Helper()
	var r uint64
	err := within(t, "change", func() error {
		var err error
		r, err = fn()
		return err
	})
	return r, err
}

// TestCorruptTrees damages one node of a deep tree in many ways (stale
// checksum, cycles, pointers to other nodes or anywhere, bad header
// fields, keys and values, garbage) and checks that every read returns
// ErrCorrupt (always, for damage a full traversal must see) instead of
// panicking or looping, and that changes neither panic nor hang.
func TestCorruptTrees(t *testing.T) {
	for seed := range uint64(400) {
		runCorruption(t, seed)
	}
}

func FuzzCorruptTree(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed)
	}
	f.Fuzz(runCorruption)
}

// TestCycleInTransaction: nodes created in the current transaction are
// changed in place, so a cycle among them leads a change back to a node it
// is already changing; that must be reported, not followed.
func TestCycleInTransaction(t *testing.T) {
	for _, toRoot := range []bool{true, false} {
		e := newEnv(t, 1024)
		tr := e.tree(testType{8, false}, 6, 6)
		root, err := tr.Empty()
		if err != nil {
			t.Fatal(err)
		}
		for k := range uint64(200) {
			root = mustInsert(t, tr, root, k+10, u64(k))
		}
		// X: the first child of the root; point X's first child back.
		x := e.node(root).Child(0)
		_, buf, _, err := e.tm.Shadow(x, block.Node) // in place: created in this transaction
		if err != nil {
			t.Fatal(err)
		}
		n, err := DecodeNode(x, buf)
		if err != nil {
			t.Fatal(err)
		}
		to := root
		if !toRoot {
			to = x
		}
		n.setChild(0, to)
		if err := n.Encode(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := within2(t, func() (uint64, error) { return tr.Insert(root, 0, u64(0)) }); !isCorrupt(err) {
			t.Errorf("insert through a cycle to %d: %v, want ErrCorrupt", to, err)
		}
		if err := within(t, "walk", func() error { return tr.Walk(root, nil) }); !isCorrupt(err) {
			t.Errorf("walk through a cycle: %v, want ErrCorrupt", err)
		}
		if _, err := within2(t, func() (uint64, error) { r, _, err := tr.Remove(root, 10); return r, err }); !isCorrupt(err) {
			t.Errorf("remove through a cycle: %v, want ErrCorrupt", err)
		}
	}
}
