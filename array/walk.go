package array

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
)

// Iterate calls fn for every value of the array at root, which must hold
// length values, in index order: one btree iteration, each array block read
// once. v is a copy valid only during the call. fn returning Stop ends
// the iteration early with a nil error; any other error ends it and is
// returned.
//
// Iterate checks the array's shape against length as it goes: btree keys
// 0..ceil(length/max)-1 without gaps, every block full but the last, the last
// holding the remainder, and value size and max_entries matching. A mismatch
// is an error wrapping block.ErrCorrupt that names the block.
func (a *Array) Iterate(root, length uint64, fn func(i uint64, v []byte) error) error {
	want := a.nrBlocks(length)
	next := uint64(0)
	stopped := false
	scratch := make([]byte, a.valueSize)
	buf := make([]byte, block.Size) // a scan: blocks not cached are read here, not cached
	err := a.tree.Iterate(root, 0, func(key uint64, value []byte) error {
		if key != next {
			return block.Corruptf(root, block.Node.Name, "array btree has key %d where block %d was expected", key, next)
		}
		if key >= want {
			return block.Corruptf(root, block.Node.Name, "array btree has block %d beyond the length %d", key, length)
		}
		if len(value) != 8 {
			return block.Corruptf(root, block.Node.Name, "array btree value of %d bytes", len(value))
		}
		loc := binary.LittleEndian.Uint64(value)
		b, err := a.readBlockInto(loc, buf)
		if err != nil {
			return err
		}
		if nr := a.entriesIn(length, key); b.NrEntries != nr {
			return block.Corruptf(loc, block.Array.Name, "array block %d holds %d entries, want %d (length %d)", key, b.NrEntries, nr, length)
		}
		base := key * uint64(a.max)
		for s := range b.NrEntries {
			copy(scratch, b.Value(s))
			if err := fn(base+uint64(s), scratch); err != nil {
				if errors.Is(err, Stop) {
					stopped = true
				}
				return err
			}
		}
		next++
		return nil
	})
	if stopped {
		return nil
	}
	if err != nil {
		return err
	}
	if next != want {
		return block.Corruptf(root, block.Node.Name, "array btree has no block %d (length %d needs %d blocks)", next, length, want)
	}
	return nil
}

// Walk visits everything reachable from root, for a reference checker:
// first the btree nodes, as btree.Walk does (visitNode returns whether to
// descend into the node's children), then the array blocks. visitBlock is
// called once for every array-block pointer of every leaf for which
// visitNode returned true, so a block referenced by several distinct leaves
// is visited once per leaf. Array blocks are decoded with DecodeBlock but
// not checked against the array's value size.
func (a *Array) Walk(root uint64, visitNode func(loc uint64, n *btree.Node, depth int) (bool, error), visitBlock func(loc uint64, b *Block) error) error {
	var blocks []uint64
	err := a.tree.Walk(root, func(loc uint64, n *btree.Node, depth int) (bool, error) {
		descend, err := visitNode(loc, n, depth)
		if err != nil || !descend {
			return descend, err
		}
		if n.IsLeaf() {
			for i := range len(n.Keys) {
				blocks = append(blocks, binary.LittleEndian.Uint64(n.Value(i)))
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, loc := range blocks {
		data, err := a.tm.Read(loc, block.Array)
		if err != nil {
			return err
		}
		b, err := DecodeBlock(loc, data)
		if err != nil {
			return err
		}
		if err := visitBlock(loc, b); err != nil {
			return err
		}
	}
	return nil
}

// IterateRange calls fn for values [begin, end) of the array at root, which
// must hold length values, in index order, reading each array block of the
// range once (a btree lookup per block). v is a copy valid only during the
// call. fn returning Stop ends the iteration early with a nil error.
// A range past length yields an error wrapping ErrOutOfRange; an array
// shorter than length, one wrapping block.ErrCorrupt.
func (a *Array) IterateRange(root, length, begin, end uint64, fn func(i uint64, v []byte) error) error {
	if begin > end || end > length {
		return fmt.Errorf("values [%d, %d) of a %d-value array: %w", begin, end, length, ErrOutOfRange)
	}
	if begin == 0 && end == length { // one walk of the btree beats a lookup per block
		return a.Iterate(root, length, fn)
	}
	scratch := make([]byte, a.valueSize)
	buf := make([]byte, block.Size) // a scan: blocks not cached are read here, not cached
	per := uint64(a.max)
	for i := begin; i < end; {
		bi := i / per
		blk, err := a.lookupBlock(root, bi, buf)
		if err != nil {
			return a.explain(root, i, err)
		}
		if nr := a.entriesIn(length, bi); blk.NrEntries != nr {
			return block.Corruptf(root, block.Array.Name, "array block %d holds %d entries, want %d (length %d)", bi, blk.NrEntries, nr, length)
		}
		for stop := min(end, (bi+1)*per); i < stop; i++ {
			copy(scratch, blk.Value(uint32(i%per)))
			if err := fn(i, scratch); err != nil {
				if errors.Is(err, Stop) {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

// CountRefs counts in refs the references of the array at root, for a
// checker: those of its btree, as btree.Tree.CountRefs counts them, and one
// for each array-block pointer of each leaf read. The array blocks are not
// read here; Iterate reads and checks them.
func (a *Array) CountRefs(root uint64, refs *btree.Refs) error {
	return a.tree.CountRefs(root, refs, func(_ uint64, v []byte) error {
		refs.Inc(binary.LittleEndian.Uint64(v))
		return nil
	})
}
