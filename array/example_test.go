package array

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// Example folds a writeset into an era array, the way the era target's
// digest does: the blocks marked in the bitset get the writeset's era.
func Example() {
	// An in-memory metadata device of 64 blocks. A real device gets its
	// space map from package spacemap; this test one keeps counts in memory.
	const nrBlocks = 64
	bm := block.NewManager(newMemStore(nrBlocks), nrBlocks, 0)
	tm := transaction.New(bm, newMemSpaceMap(nrBlocks))

	// The era array: 2000 origin blocks, all era 0.
	eras := New(tm, 4)
	eraRoot, _ := eras.Empty()
	eraRoot, _ = eras.Resize(eraRoot, 0, 2000, make([]byte, 4))

	// The writeset of era 3: blocks 5, 1500 and 1999 written.
	bits := NewBitset(tm)
	wsRoot, _ := bits.Create(2000)
	wsRoot, _ = bits.SetBits(wsRoot, 2000, []uint64{1999, 5, 1500})

	// Fold it: only the array blocks holding marked entries are shadowed.
	words, _ := bits.ReadWords(wsRoot, 2000, 0, NrWords(2000))
	eraRoot, err := eras.Update(eraRoot, 0, 2000, func(i uint64, v []byte) bool {
		if words[i/64]>>(i%64)&1 == 0 {
			return false
		}
		binary.LittleEndian.PutUint32(v, 3)
		return true
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = tm.Commit()

	_ = eras.Iterate(eraRoot, 2000, func(i uint64, v []byte) error {
		if era := binary.LittleEndian.Uint32(v); era != 0 {
			fmt.Printf("block %d: era %d\n", i, era)
		}
		return nil
	})
	// Output:
	// block 5: era 3
	// block 1500: era 3
	// block 1999: era 3
}
