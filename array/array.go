// Package array implements the kernel's dm-array and dm-bitset on-disk
// structures (format.md §5, §6): copy-on-write arrays of fixed-size values
// stored as a btree from array-block index to the location of an array
// block, and bitsets stored as arrays of little-endian u64 words.
//
// The length of an array is not stored on disk; every call that needs it
// takes it from the owner (the superblock's nr_blocks for the era array, a
// writeset's nr_bits for a bitset). Nothing is cached between calls: every
// call reads what is on disk or dirty in the transaction now.
//
// Errors that report damaged metadata wrap block.ErrCorrupt and name the
// block; an index past the end of a consistent array wraps ErrOutOfRange.
// When a change fails half way, the transaction it ran in must be aborted.
package array

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/transaction"
)

// ErrOutOfRange is returned (wrapped) for an index at or past the end of an
// array or bitset that is otherwise consistent.
var ErrOutOfRange = errors.New("index out of range")

// Stop is returned by an Iterate, IterateRange or Words callback to end the
// iteration early; the call then returns nil. It is btree.Stop, so that an
// array user need not import btree to stop a walk.
var Stop = btree.Stop

// Array is a copy-on-write array of fixed-size values (dm-array): a btree
// from array-block index to the location of an array block. An Array holds no
// state besides its configuration; the root is passed to every call and the
// new root returned by every change.
type Array struct {
	tm        *transaction.Manager
	valueSize int
	max       uint32
	tree      *btree.Tree
}

// New returns an Array of values of valueSize bytes (4 for the era array, 8
// for bitset words) over tm. The btree's values are array-block locations;
// its value type increments and decrements the array block they point to, so
// an array block is freed when its count drops to 0. New panics if valueSize
// does not fit an array block.
func New(tm *transaction.Manager, valueSize int) *Array {
	max := MaxEntries(valueSize)
	if max == 0 {
		panic(fmt.Sprintf("array: value size %d does not fit an array block", valueSize))
	}
	a := &Array{tm: tm, valueSize: valueSize, max: max}
	a.tree = btree.New(tm, btree.ValueType{
		Size: 8,
		Inc: func(v []byte) error {
			return tm.Inc(binary.LittleEndian.Uint64(v))
		},
		// The values of era arrays and bitsets hold no references, so
		// dropping an array block's last reference only frees the block.
		Dec: func(v []byte) error {
			return tm.Dec(binary.LittleEndian.Uint64(v))
		},
	})
	return a
}

// ValueSize returns the size of the array's values in bytes.
func (a *Array) ValueSize() int { return a.valueSize }

// MaxEntries returns the number of values an array block holds.
func (a *Array) MaxEntries() uint32 { return a.max }

// Tree returns the btree that maps array-block indices to array blocks.
func (a *Array) Tree() *btree.Tree { return a.tree }

// Empty creates an empty array (an empty btree leaf) and returns its root.
func (a *Array) Empty() (uint64, error) {
	return a.tree.Empty()
}

// Delete drops the array at root: btree nodes and array blocks whose counts
// reach 0 are freed, shared ones are only decremented.
func (a *Array) Delete(root uint64) error {
	return a.tree.Delete(root)
}

// Get returns a copy of value i. An index past the end of the array yields
// an error wrapping ErrOutOfRange; an array whose btree is inconsistent (a
// missing block before the last one, a short block that is not the last)
// yields one wrapping block.ErrCorrupt.
func (a *Array) Get(root, i uint64) ([]byte, error) {
	bi, s := a.split(i)
	b, err := a.lookupBlock(root, bi, nil)
	if err != nil {
		return nil, a.explain(root, i, err)
	}
	if s >= b.NrEntries {
		return nil, a.explain(root, i, &errShort{b: b, bi: bi})
	}
	return append([]byte(nil), b.Value(s)...), nil
}

// Set stores v (ValueSize bytes) as value i and returns the new root. The
// array block is shadowed; if the shadow moved, the btree entry is
// re-inserted pointing to the copy.
func (a *Array) Set(root, i uint64, v []byte) (uint64, error) {
	if len(v) != a.valueSize {
		return 0, fmt.Errorf("array: value of %d bytes, want %d", len(v), a.valueSize)
	}
	bi, s := a.split(i)
	return a.modifyBlock(root, bi, s, s+1, func(_ uint32, old []byte) bool {
		copy(old, v)
		return true
	})
}

// Update calls fn for every index in [begin, end), in order, with a copy of
// the value; fn may change v in place and returns whether it did. Each array
// block is shadowed at most once, and only if fn changed one of its values.
// v is valid only during the call. If end-1 is past the end of the array,
// Update returns an error wrapping ErrOutOfRange before calling fn. fn must
// not use the array.
func (a *Array) Update(root, begin, end uint64, fn func(i uint64, v []byte) bool) (uint64, error) {
	if begin >= end {
		return root, nil
	}
	// Check the last index first so that a range past the end fails
	// before anything changes.
	if _, err := a.Get(root, end-1); err != nil {
		return 0, err
	}
	for bi := begin / uint64(a.max); bi <= (end-1)/uint64(a.max); bi++ {
		base := bi * uint64(a.max)
		lo := uint32(max(begin, base) - base)
		hi := uint32(min(end, base+uint64(a.max)) - base)
		var err error
		root, err = a.modifyBlock(root, bi, lo, hi, func(s uint32, v []byte) bool {
			return fn(base+uint64(s), v)
		})
		if err != nil {
			return 0, err
		}
	}
	return root, nil
}

// split returns the array block index and the slot of value i.
func (a *Array) split(i uint64) (uint64, uint32) {
	return i / uint64(a.max), uint32(i % uint64(a.max))
}

// errMissing is returned by lookupBlock for a key absent from the btree;
// explain turns it into ErrOutOfRange or ErrCorrupt.
type errMissing struct{ bi uint64 }

func (e *errMissing) Error() string { return fmt.Sprintf("array block %d missing", e.bi) }

// lookupLoc returns the location of array block bi.
func (a *Array) lookupLoc(root, bi uint64) (uint64, error) {
	v, found, err := a.tree.Lookup(root, bi)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, &errMissing{bi}
	}
	if len(v) != 8 {
		return 0, block.Corruptf(root, block.Node.Name, "array btree value of %d bytes", len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// readBlock reads and decodes the array block at loc and checks that it
// belongs to this array.
func (a *Array) readBlock(loc uint64) (*Block, error) {
	return a.readBlockInto(loc, nil)
}

// readBlockInto is readBlock for a scan: with buf (one block), a block not
// in the cache is read into buf and not cached (transaction.ReadScan), so
// the result is valid only until buf is reused.
func (a *Array) readBlockInto(loc uint64, buf []byte) (*Block, error) {
	var data []byte
	var err error
	if buf != nil {
		data, err = a.tm.ReadScan(loc, block.Array, buf)
	} else {
		data, err = a.tm.Read(loc, block.Array)
	}
	if err != nil {
		return nil, err
	}
	b, err := DecodeBlock(loc, data)
	if err != nil {
		return nil, err
	}
	if err := b.checkShape(a.valueSize); err != nil {
		return nil, err
	}
	return b, nil
}

// lookupBlock returns array block bi; with buf, read for a scan (see
// readBlockInto).
func (a *Array) lookupBlock(root, bi uint64, buf []byte) (*Block, error) {
	loc, err := a.lookupLoc(root, bi)
	if err != nil {
		return nil, err
	}
	return a.readBlockInto(loc, buf)
}

// errShort is the internal error for an index past the entries of array
// block b (block index bi); explain classifies it.
type errShort struct {
	b  *Block
	bi uint64
}

func (e *errShort) Error() string {
	return fmt.Sprintf("past the %d entries of array block %d", e.b.NrEntries, e.bi)
}

// explain classifies a missing block or a slot past a block's entries: if
// the btree holds a block after the one concerned, the array has a hole or a
// short block in the middle (ErrCorrupt); otherwise i is past the end
// (ErrOutOfRange). Other errors are returned as they are.
func (a *Array) explain(root, i uint64, err error) error {
	var missing *errMissing
	var short *errShort
	var bi uint64
	switch {
	case errors.As(err, &missing):
		bi = missing.bi
	case errors.As(err, &short):
		bi = short.bi
	default:
		return err
	}
	later, lerr := a.hasBlockAfter(root, bi)
	if lerr != nil {
		return lerr
	}
	if later {
		if short != nil {
			return block.Corruptf(short.b.Loc, block.Array.Name, "array block %d holds %d of %d entries but is not the last", bi, short.b.NrEntries, short.b.MaxEntries)
		}
		return block.Corruptf(root, block.Node.Name, "array btree has no block %d but has later blocks", bi)
	}
	return fmt.Errorf("array index %d: %w", i, ErrOutOfRange)
}

// hasBlockAfter reports whether the btree holds a key greater than bi.
func (a *Array) hasBlockAfter(root, bi uint64) (bool, error) {
	if bi == ^uint64(0) {
		return false, nil
	}
	found := false
	err := a.tree.Iterate(root, bi+1, func(uint64, []byte) error {
		found = true
		return Stop
	})
	if err != nil && !errors.Is(err, Stop) {
		return false, err
	}
	return found, nil
}

// modifyBlock calls fn(slot, v) for the slots [lo, hi) of array block bi
// with a copy of each value, and stores the values fn reports changed. The
// block is shadowed (and the btree entry re-inserted if the shadow moved) the
// first time fn reports a change, so at most once.
func (a *Array) modifyBlock(root, bi uint64, lo, hi uint32, fn func(s uint32, v []byte) bool) (uint64, error) {
	loc, err := a.lookupLoc(root, bi)
	if err != nil {
		return 0, a.explain(root, bi*uint64(a.max)+uint64(lo), err)
	}
	b, err := a.readBlock(loc)
	if err != nil {
		return 0, err
	}
	if hi > b.NrEntries {
		return 0, a.explain(root, bi*uint64(a.max)+uint64(max(lo, b.NrEntries)), &errShort{b: b, bi: bi})
	}
	var buf []byte // the shadow, once there is one
	scratch := make([]byte, a.valueSize)
	for s := lo; s < hi; s++ {
		if buf == nil {
			copy(scratch, b.Value(s))
		} else {
			copy(scratch, slot(buf, a.valueSize, s))
		}
		if !fn(s, scratch) {
			continue
		}
		if buf == nil {
			root, buf, err = a.shadowBlock(root, bi, loc)
			if err != nil {
				return 0, err
			}
		}
		copy(slot(buf, a.valueSize, s), scratch)
	}
	return root, nil
}

// shadowBlock shadows array block bi, found at loc, and returns the new root
// and the block buffer to change. If the shadow moved, the btree entry is
// re-inserted pointing to the copy. The transaction manager has already
// decremented the old block, but the btree still references it and the
// insert decrements the value it overwrites, so the old block is incremented
// first. Array values hold no references, so a shadow of a shared block
// needs nothing else incremented.
func (a *Array) shadowBlock(root, bi, loc uint64) (uint64, []byte, error) {
	newLoc, buf, _, err := a.tm.Shadow(loc, block.Array)
	if err != nil {
		return 0, nil, err
	}
	if newLoc == loc {
		return root, buf, nil
	}
	if err := a.tm.Inc(loc); err != nil {
		return 0, nil, err
	}
	root, err = a.tree.Insert(root, bi, le64(newLoc))
	if err != nil {
		return 0, nil, err
	}
	return root, buf, nil
}

func le64(v uint64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return b[:]
}
