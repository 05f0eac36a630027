// Package transaction implements copy-on-write transactions over metadata
// blocks, with reference counts, as the kernel's dm-transaction-manager does.
//
// A block may be changed in place only if it was created or shadowed in the
// current transaction and its reference count is 1. Any other change first
// shadows the block: a new block is allocated, the old content copied into it
// and the old block's count decremented. When the old block was shared
// (count > 1), the caller must increment everything the copy points to; Shadow
// reports that case.
//
// Blocks freed in a transaction are never reused before the commit (the space
// map hands out only blocks free in both the committed and the current
// state), so nothing the last committed superblock can reach is overwritten.
//
// Commit writes every dirty block and syncs. Writing the superblock, and
// syncing again, is a separate step the caller drives (WriteSuperblock).
package transaction

import (
	"errors"
	"fmt"

	"github.com/era-go/era/block"
)

// ErrReadOnly is returned by every change to a read-only Manager.
var ErrReadOnly = errors.New("metadata is read-only")

// SpaceMap keeps the reference count of every metadata block. Its operations
// are in-core; its own blocks are written by its owner before Commit.
type SpaceMap interface {
	// Alloc returns a block that is free in both the committed and the
	// current state, with its count set to 1.
	Alloc() (uint64, error)
	Inc(b uint64) error
	Dec(b uint64) error
	Count(b uint64) (uint32, error)
}

// Manager runs transactions over a block.Manager and a SpaceMap. It is not
// safe for concurrent use; the owner serializes access.
type Manager struct {
	bm       *block.Manager
	sm       SpaceMap
	readOnly bool

	// shadowed holds the blocks created or shadowed in this transaction.
	shadowed map[uint64]struct{}
	// dirty holds the changed blocks not yet written, with their kinds.
	dirty map[uint64]dirtyBlock
}

type dirtyBlock struct {
	kind *block.Kind
	data []byte
}

// New returns a Manager that changes metadata through sm. The space map may
// be set later with SetSpaceMap (it is usually opened through this Manager).
func New(bm *block.Manager, sm SpaceMap) *Manager {
	return &Manager{bm: bm, sm: sm, shadowed: map[uint64]struct{}{}, dirty: map[uint64]dirtyBlock{}}
}

// NewReadOnly returns a Manager that can only read.
func NewReadOnly(bm *block.Manager) *Manager {
	tm := New(bm, nil)
	tm.readOnly = true
	return tm
}

// SetSpaceMap sets the space map used for allocation and counts.
func (tm *Manager) SetSpaceMap(sm SpaceMap) { tm.sm = sm }

// Blocks returns the underlying block manager.
func (tm *Manager) Blocks() *block.Manager { return tm.bm }

// ReadOnly reports whether the Manager refuses changes.
func (tm *Manager) ReadOnly() bool { return tm.readOnly }

// Read returns block loc validated as kind k, including changes not yet
// written. The buffer must not be modified.
func (tm *Manager) Read(loc uint64, k *block.Kind) ([]byte, error) {
	if d, ok := tm.dirty[loc]; ok {
		if d.kind != k {
			return nil, block.Corruptf(loc, k.Name, "block is in use as a %s", d.kind.Name)
		}
		return d.data, nil
	}
	return tm.bm.Read(loc, k)
}

// ReadScan is Read for a scan that reads each block once (see
// block.Manager.ReadScan): buf holds a block read from the store, and is
// reused by the caller from block to block.
func (tm *Manager) ReadScan(loc uint64, k *block.Kind, buf []byte) ([]byte, error) {
	if d, ok := tm.dirty[loc]; ok {
		if d.kind != k {
			return nil, block.Corruptf(loc, k.Name, "block is in use as a %s", d.kind.Name)
		}
		return d.data, nil
	}
	return tm.bm.ReadScan(loc, k, buf)
}

// New allocates a zeroed block of kind k, recorded as created in this
// transaction. The returned buffer may be changed until the next Flush.
func (tm *Manager) New(k *block.Kind) (uint64, []byte, error) {
	if tm.readOnly {
		return 0, nil, ErrReadOnly
	}
	loc, err := tm.sm.Alloc()
	if err != nil {
		return 0, nil, err
	}
	if loc >= tm.bm.NrBlocks() {
		return 0, nil, fmt.Errorf("space map allocated block %d beyond the device (%d blocks): %w", loc, tm.bm.NrBlocks(), block.ErrCorrupt)
	}
	data := make([]byte, block.Size)
	tm.shadowed[loc] = struct{}{}
	tm.dirty[loc] = dirtyBlock{kind: k, data: data}
	return loc, data, nil
}

// Shadow prepares block loc of kind k for change. It returns the location to
// use from now on (loc itself if the block may be changed in place), a buffer
// that may be changed until the next Flush, and whether the old block was
// shared, in which case the caller must increment every block the copy
// references.
func (tm *Manager) Shadow(loc uint64, k *block.Kind) (uint64, []byte, bool, error) {
	if tm.readOnly {
		return 0, nil, false, ErrReadOnly
	}
	count, err := tm.sm.Count(loc)
	if err != nil {
		return 0, nil, false, err
	}
	if count == 0 {
		return 0, nil, false, block.Corruptf(loc, k.Name, "referenced block has a reference count of 0")
	}
	if _, ok := tm.shadowed[loc]; ok && count == 1 {
		if d, ok := tm.dirty[loc]; ok {
			if d.kind != k {
				return 0, nil, false, block.Corruptf(loc, k.Name, "block is in use as a %s", d.kind.Name)
			}
			return loc, d.data, false, nil
		}
		old, err := tm.bm.Read(loc, k)
		if err != nil {
			return 0, nil, false, err
		}
		data := make([]byte, block.Size)
		copy(data, old)
		tm.dirty[loc] = dirtyBlock{kind: k, data: data}
		return loc, data, false, nil
	}
	old, err := tm.Read(loc, k)
	if err != nil {
		return 0, nil, false, err
	}
	newLoc, data, err := tm.New(k)
	if err != nil {
		return 0, nil, false, err
	}
	copy(data, old)
	if err := tm.sm.Dec(loc); err != nil {
		return 0, nil, false, err
	}
	return newLoc, data, count > 1, nil
}

// Inc increments the reference count of block b.
func (tm *Manager) Inc(b uint64) error {
	if tm.readOnly {
		return ErrReadOnly
	}
	return tm.sm.Inc(b)
}

// Dec decrements the reference count of block b.
func (tm *Manager) Dec(b uint64) error {
	if tm.readOnly {
		return ErrReadOnly
	}
	return tm.sm.Dec(b)
}

// Count returns the reference count of block b.
func (tm *Manager) Count(b uint64) (uint32, error) {
	if tm.sm == nil {
		return 0, ErrReadOnly
	}
	return tm.sm.Count(b)
}

// Dirty returns the number of changed blocks not yet written.
func (tm *Manager) Dirty() int { return len(tm.dirty) }

// Flush writes every dirty block without syncing. It is safe at any time
// between operations, because dirty blocks are never reachable from the
// committed superblock; buffers handed out before are invalid afterwards.
func (tm *Manager) Flush() error {
	n := len(tm.dirty)
	for loc, d := range tm.dirty {
		if err := tm.bm.Write(loc, d.kind, d.data); err != nil {
			return err
		}
		delete(tm.dirty, loc)
	}
	if n > keepMapsBelow {
		tm.dirty = map[uint64]dirtyBlock{}
	}
	return nil
}

// keepMapsBelow: a map that held more entries than this is dropped rather
// than cleared when emptied, so that a large transaction (formatting or
// resizing a big device) leaves no table of its size behind: a cleared Go
// map keeps its capacity.
const keepMapsBelow = 1024

// clearShadowed forgets the blocks shadowed in the transaction.
func (tm *Manager) clearShadowed() {
	if len(tm.shadowed) > keepMapsBelow {
		tm.shadowed = map[uint64]struct{}{}
		return
	}
	clear(tm.shadowed)
}

// Commit writes every dirty block, syncs, and starts a new transaction. The
// caller then writes the superblock with WriteSuperblock.
func (tm *Manager) Commit() error {
	if tm.readOnly {
		return ErrReadOnly
	}
	if err := tm.Flush(); err != nil {
		return err
	}
	if err := tm.bm.Sync(); err != nil {
		return err
	}
	tm.clearShadowed()
	return nil
}

// WriteSuperblock writes data as the superblock at block 0 and syncs. It is
// the last step of a commit.
func (tm *Manager) WriteSuperblock(data []byte) error {
	if tm.readOnly {
		return ErrReadOnly
	}
	if err := tm.bm.Write(0, block.Superblock, data); err != nil {
		return err
	}
	return tm.bm.Sync()
}

// Abort drops every change not yet written. Blocks already flushed stay on
// the store but are unreachable from the committed superblock.
func (tm *Manager) Abort() {
	if len(tm.dirty) > keepMapsBelow {
		tm.dirty = map[uint64]dirtyBlock{}
	} else {
		clear(tm.dirty)
	}
	tm.clearShadowed()
}
