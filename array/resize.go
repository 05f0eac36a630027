package array

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/era-go/era/block"
)

// Resize changes the length of the array at root from oldLen to newLen and
// returns the new root. def (ValueSize bytes) is written into every new
// slot.
//
// Growing fills the old tail block (up to full, or to newLen), then appends
// full blocks and a final partial block, each a new array block. Shrinking
// removes the whole blocks beyond the new end from the btree, one remove per
// block, and trims the new tail block's nr_entries, zeroing the trimmed
// slots. oldLen == newLen changes nothing.
//
// oldLen must be the array's length: a tail block whose entry count does not
// match it, a missing block, or a block beyond it is reported as corruption.
func (a *Array) Resize(root, oldLen, newLen uint64, def []byte) (uint64, error) {
	if len(def) != a.valueSize {
		return 0, fmt.Errorf("array: default value of %d bytes, want %d", len(def), a.valueSize)
	}
	switch {
	case newLen == oldLen:
		return root, nil
	case newLen > oldLen:
		return a.grow(root, oldLen, newLen, def)
	default:
		return a.shrink(root, oldLen, newLen)
	}
}

// nrBlocks returns the number of array blocks an array of n values has.
func (a *Array) nrBlocks(n uint64) uint64 {
	blocks := n / uint64(a.max)
	if n%uint64(a.max) != 0 {
		blocks++
	}
	return blocks
}

// entriesIn returns how many values block bi holds in an array of length n
// (0 for a block beyond the end).
func (a *Array) entriesIn(n, bi uint64) uint32 {
	base := bi * uint64(a.max)
	if n <= base {
		return 0
	}
	return uint32(min(n-base, uint64(a.max)))
}

// tailBlock looks up block bi, which must hold exactly nr entries.
func (a *Array) tailBlock(root, bi uint64, nr uint32) (uint64, *Block, error) {
	loc, err := a.lookupLoc(root, bi)
	var missing *errMissing
	if errors.As(err, &missing) {
		return 0, nil, block.Corruptf(root, block.Node.Name, "array btree has no block %d", bi)
	}
	if err != nil {
		return 0, nil, err
	}
	b, err := a.readBlock(loc)
	if err != nil {
		return 0, nil, err
	}
	if b.NrEntries != nr {
		return 0, nil, block.Corruptf(loc, block.Array.Name, "array block %d holds %d entries, want %d", bi, b.NrEntries, nr)
	}
	return loc, b, nil
}

func (a *Array) grow(root, oldLen, newLen uint64, def []byte) (uint64, error) {
	oldBlocks, newBlocks := a.nrBlocks(oldLen), a.nrBlocks(newLen)
	// The array must not already reach past oldLen: inserting over such a
	// block would silently drop it.
	if _, found, err := a.tree.Lookup(root, oldBlocks); err != nil {
		return 0, err
	} else if found {
		return 0, block.Corruptf(root, block.Node.Name, "array btree has block %d beyond the length %d", oldBlocks, oldLen)
	}

	// Fill the old tail block if it is partial.
	if oldNr := uint32(oldLen % uint64(a.max)); oldNr != 0 {
		bi := oldBlocks - 1
		loc, _, err := a.tailBlock(root, bi, oldNr)
		if err != nil {
			return 0, err
		}
		var buf []byte
		root, buf, err = a.shadowBlock(root, bi, loc)
		if err != nil {
			return 0, err
		}
		newNr := a.entriesIn(newLen, bi)
		for s := oldNr; s < newNr; s++ {
			copy(slot(buf, a.valueSize, s), def)
		}
		setNrEntries(buf, newNr)
	}

	// Append new blocks, full ones and a final partial one.
	zero := isZero(def)
	for bi := oldBlocks; bi < newBlocks; bi++ {
		nr := a.entriesIn(newLen, bi)
		loc, buf, err := a.tm.New(block.Array)
		if err != nil {
			return 0, err
		}
		initBlock(buf, a.max, nr, a.valueSize)
		if !zero {
			for s := uint32(0); s < nr; s++ {
				copy(slot(buf, a.valueSize, s), def)
			}
		}
		// The new block's reference passes to the btree.
		newRoot, err := a.tree.Insert(root, bi, le64(loc))
		if err != nil {
			_ = a.tm.Dec(loc) // not referenced by anything
			return 0, err
		}
		root = newRoot
	}
	return root, nil
}

func (a *Array) shrink(root, oldLen, newLen uint64) (uint64, error) {
	oldBlocks, newBlocks := a.nrBlocks(oldLen), a.nrBlocks(newLen)
	for bi := newBlocks; bi < oldBlocks; bi++ {
		newRoot, found, err := a.tree.Remove(root, bi)
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, block.Corruptf(root, block.Node.Name, "array btree has no block %d (length %d)", bi, oldLen)
		}
		root = newRoot
	}

	// Trim the new tail block if it ends up partial.
	newNr := uint32(newLen % uint64(a.max))
	if newNr == 0 {
		return root, nil
	}
	bi := newBlocks - 1
	oldNr := a.entriesIn(oldLen, bi)
	loc, _, err := a.tailBlock(root, bi, oldNr)
	if err != nil {
		return 0, err
	}
	root, buf, err := a.shadowBlock(root, bi, loc)
	if err != nil {
		return 0, err
	}
	clear(buf[headerSize+int(newNr)*a.valueSize : headerSize+int(oldNr)*a.valueSize])
	setNrEntries(buf, newNr)
	return root, nil
}

func isZero(b []byte) bool {
	return bytes.Count(b, []byte{0}) == len(b)
}
