package btree

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// The example keeps 8-byte values in a tree; the metadata lives in memory,
// with the test space map of this package standing in for package spacemap.
func Example() {
	const nrBlocks = 64
	bm := block.NewManager(newMemStore(nrBlocks), nrBlocks, 0)
	tm := transaction.New(bm, newMemSM(nrBlocks, 0))
	tree := New(tm, ValueType{Size: 8})

	root, err := tree.Empty()
	if err != nil {
		panic(err)
	}
	for _, k := range []uint64{30, 10, 20} {
		if root, err = tree.Insert(root, k, binary.LittleEndian.AppendUint64(nil, k*100)); err != nil {
			panic(err)
		}
	}
	if root, _, err = tree.Remove(root, 20); err != nil {
		panic(err)
	}
	if err := tm.Commit(); err != nil {
		panic(err)
	}

	v, found, _ := tree.Lookup(root, 30)
	fmt.Println("30:", binary.LittleEndian.Uint64(v), found)
	_ = tree.Iterate(root, 0, func(k uint64, v []byte) error {
		fmt.Println(k, binary.LittleEndian.Uint64(v))
		return nil
	})
	_ = tree.Walk(root, func(loc uint64, n *Node, depth int) (bool, error) {
		fmt.Printf("node at depth %d: leaf %v, %d of %d entries\n", depth, n.IsLeaf(), n.NrEntries, n.MaxEntries)
		return true, nil
	})
	// Output:
	// 30: 3000 true
	// 10 1000
	// 30 3000
	// node at depth 0: leaf true, 2 of 252 entries
}
