package array

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
)

// NewShared creates an array of length values, each def, and returns its
// root. Its full blocks are one block referenced from every slot of the
// btree (its reference count says how many times), as copy-on-write allows:
// the first change to any of them shadows a private copy. The btree is
// built bottom up (btree.Build). Creating an array of any length thus
// writes at most two array blocks and about length/(max_entries*250)
// btree nodes, instead of a block per max_entries values.
//
// The result is a valid dm-array, read and changed like any other, but not
// laid out as the kernel or era_restore lay theirs out (a block each).
func (a *Array) NewShared(length uint64, def []byte) (uint64, error) {
	if len(def) != a.valueSize {
		return 0, fmt.Errorf("array: default value of %d bytes, want %d", len(def), a.valueSize)
	}
	nb := a.nrBlocks(length)
	if nb == 0 {
		return a.Empty()
	}
	newBlock := func(nr uint32) (uint64, error) {
		loc, buf, err := a.tm.New(block.Array)
		if err != nil {
			return 0, err
		}
		initBlock(buf, a.max, nr, a.valueSize)
		if !isZero(def) {
			for s := uint32(0); s < nr; s++ {
				copy(slot(buf, a.valueSize, s), def)
			}
		}
		return loc, nil
	}
	keys := make([]uint64, nb)
	values := make([]byte, 0, nb*8)
	var full uint64
	for bi := range nb {
		keys[bi] = bi
		nr := a.entriesIn(length, bi)
		var loc uint64
		var err error
		switch {
		case nr < a.max:
			loc, err = newBlock(nr)
		case bi == 0:
			full, err = newBlock(nr)
			loc = full
		default:
			loc, err = full, a.tm.Inc(full)
		}
		if err != nil {
			return 0, err
		}
		values = binary.LittleEndian.AppendUint64(values, loc)
	}
	return a.tree.Build(keys, values)
}
