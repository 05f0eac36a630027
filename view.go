package era

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"sync/atomic"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

// View is a read-only view of era metadata written by this library or by
// the kernel: the committed state (OpenView), the held metadata snapshot
// (OpenSnapshot, SnapshotView, Snapshot.View), or a device's last commit
// (Device.View). It reads committed blocks only, through the checksum and
// location checks. It is safe for concurrent use.
//
// A view of a snapshot checks, around every query, that the snapshot is
// still held, and fails with ErrSnapshotDropped once it is not (its blocks
// may have been reused). A device's view keeps what it reads from reuse
// until Close, and fails with ErrClosed once the device is closed.
type View struct {
	trees        eraTrees
	blockSectors uint32
	sb           *superblock // the superblock or the snapshot clone read

	store   io.ReaderAt // the metadata store
	snapLoc uint64      // a snapshot view's clone, else 0
	dev     *Device     // a device's view
	release func()      // a device's view: releases its pin
	closed  atomic.Bool
}

// OpenView opens the committed state of the metadata: after Close, or as a
// crash left it. It includes the current writeset a crash left behind, so
// no committed mark is missed.
//
// On metadata a live device keeps changing, the blocks a view reads may be
// reused under it; use Device.View in the device's process, and
// TakeSnapshot and OpenSnapshot elsewhere.
func OpenView(metadata io.ReaderAt) (*View, error) {
	bm, sb, err := openReadOnly(metadata)
	if err != nil {
		return nil, err
	}
	v, err := newView(bm, sb, sb.CurrentWriteset)
	if err != nil {
		return nil, err
	}
	v.store = metadata
	return v, nil
}

// OpenSnapshot opens the metadata snapshot a device holds (TakeSnapshot, or
// the kernel's take_metadata_snap). It uses only the snapshot's two tree
// roots, which reference counts keep intact while the snapshot is held.
// ErrNoSnapshot if none is held.
func OpenSnapshot(metadata io.ReaderAt) (*View, error) {
	bm, sb, err := openReadOnly(metadata)
	if err != nil {
		return nil, err
	}
	if sb.MetadataSnap == 0 {
		return nil, ErrNoSnapshot
	}
	clone, err := readSuperblock(bm, sb.MetadataSnap)
	if err != nil {
		return nil, fmt.Errorf("metadata snapshot: %w", err)
	}
	if clone.UUID == ([16]byte{}) {
		clone.UUID = sb.UUID // a snapshot the kernel took
	}
	v, err := newView(bm, clone, writesetInfo{})
	if err != nil {
		return nil, err
	}
	v.store, v.snapLoc = metadata, sb.MetadataSnap
	return v, nil
}

// SnapshotView opens the metadata snapshot the device holds, reading the
// device's own metadata store: OpenSnapshot without the risk of naming the
// wrong file. ErrNoSnapshot if none is held.
func (d *Device) SnapshotView() (*View, error) {
	if d.state.Load() == stateClosed {
		return nil, ErrClosed
	}
	return OpenSnapshot(d.meta)
}

// View returns a view of the device's last commit, which holds every
// write acknowledged before the call. Its blocks are kept from reuse until
// the view is closed, while the device goes on: any number of consumers
// may each hold their own. Close it when done.
func (d *Device) View() (*View, error) {
	t, release, err := d.pin()
	if err != nil {
		return nil, err
	}
	sb := d.committedSuperblock()
	return &View{trees: t, blockSectors: sb.DataBlockSize, sb: &sb, store: d.meta, dev: d, release: release}, nil
}

// committedSuperblock returns a copy of the superblock of the last commit.
func (d *Device) committedSuperblock() superblock {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.md.committed
}

// Close releases the view. Queries after it fail with ErrClosed.
func (v *View) Close() error {
	if v.closed.Swap(true) {
		return ErrClosed
	}
	if v.release != nil {
		v.release()
	}
	return nil
}

// guard returns the error a query of the view should give: ErrClosed when
// the view or its device is closed, ErrSnapshotDropped when its snapshot
// is gone, else err.
func (v *View) guard(err error) error {
	switch {
	case v.closed.Load():
		return ErrClosed
	case v.dev != nil && v.dev.state.Load() == stateClosed:
		return ErrClosed
	case v.snapLoc != 0:
		if held, herr := v.snapshotHeld(); herr != nil {
			return errors.Join(err, herr)
		} else if !held {
			return fmt.Errorf("snapshot of era %d at block %d: %w", v.trees.currentEra, v.snapLoc, ErrSnapshotDropped)
		}
	}
	return err
}

// snapshotHeld reports whether the store still holds the view's snapshot:
// the superblock points at the same block, which holds the same clone.
// It reads both blocks afresh, past any cache.
func (v *View) snapshotHeld() (bool, error) {
	read := func(loc uint64) (*superblock, error) {
		data := make([]byte, block.Size)
		if _, err := v.store.ReadAt(data, int64(loc*block.Size)); err != nil {
			return nil, fmt.Errorf("re-read metadata block %d: %w", loc, err)
		}
		if err := block.Superblock.Validate(data, loc); err != nil {
			return nil, nil // changed under the view: not ours any more
		}
		sb, err := decodeSuperblock(loc, data)
		if err != nil {
			return nil, nil
		}
		return sb, nil
	}
	sb, err := read(0)
	if err != nil || sb == nil || sb.MetadataSnap != v.snapLoc {
		return false, err
	}
	clone, err := read(v.snapLoc)
	if err != nil || clone == nil {
		return false, err
	}
	if clone.UUID == ([16]byte{}) {
		clone.UUID = sb.UUID
	}
	return *clone == *v.sb, nil
}

// openReadOnly reads and checks the superblock of a metadata store.
func openReadOnly(metadata io.ReaderAt) (*block.Manager, *superblock, error) {
	nr := uint64(math.MaxUint64 / block.Size)
	if size, err := sizeOf(metadata, 0, "metadata"); err == nil {
		nr = uint64(size) / block.Size
	}
	bm := block.NewManager(readOnlyStore{metadata}, nr, 0)
	b0, err := bm.ReadRaw(0)
	if err != nil {
		return nil, nil, fmt.Errorf("read block 0: %w", err)
	}
	switch {
	case isZero(b0):
		return nil, nil, fmt.Errorf("the metadata store is all zero in its first block: %w", ErrNoMetadata)
	case !eraMagicAt(b0):
		return nil, nil, fmt.Errorf("the metadata store holds %s, not era metadata: %w", describe(b0), ErrNoMetadata)
	}
	sb, err := readTopSuperblock(bm)
	if err != nil {
		return nil, nil, err
	}
	root, err := spacemap.DecodeRoot(sb.SpaceMapRoot[:])
	if err != nil {
		return nil, nil, err
	}
	if root.NrBlocks > nr || root.NrBlocks == 0 {
		return nil, nil, block.Corruptf(0, block.Superblock.Name, "space map manages %d blocks, the store holds %d", root.NrBlocks, nr)
	}
	// Bound every read by the space map's size: a block past it cannot be
	// in use.
	return block.NewManager(readOnlyStore{metadata}, root.NrBlocks, 0), sb, nil
}

func newView(bm *block.Manager, sb *superblock, current writesetInfo) (*View, error) {
	v := &View{
		blockSectors: sb.DataBlockSize,
		sb:           sb,
		trees:        treesOf(transaction.NewReadOnly(bm), sb),
	}
	v.trees.current = current
	n := bm.NrBlocks()
	if err := sb.rootsWithin(n, current); err != nil {
		return nil, err
	}
	// An era array of nr_blocks values needs that many values' worth of
	// array blocks; refusing more bounds what queries allocate (a bit
	// per block) by the metadata's size.
	if per := uint64(array.MaxEntries(eraValueSize)); uint64(sb.NrBlocks) > n*per {
		return nil, block.Corruptf(sb.Blocknr, block.Superblock.Name, "nr_blocks %d needs more era-array blocks than the %d metadata blocks", sb.NrBlocks, n)
	}
	return v, nil
}

// CurrentEra returns the current era of the metadata; for a snapshot, the
// era that began when it was taken (nothing written in it is in the view).
func (v *View) CurrentEra() uint32 { return v.trees.currentEra }

// UUID returns the identity of the metadata (zero for metadata that has
// none: formatted by the kernel or restored from a dump without one).
func (v *View) UUID() [16]byte { return v.trees.uuid }

// ChangeID returns the change ID of the view's current era: a backup that
// copies the blocks of WrittenSinceChange(previous) from the view records
// it for the next.
func (v *View) ChangeID() ChangeID { return ChangeID{UUID: v.trees.uuid, Era: v.trees.currentEra} }

// NrBlocks returns the number of tracked origin blocks.
func (v *View) NrBlocks() uint64 { return uint64(v.trees.nrBlocks) }

// BlockSectors returns the tracked block size in 512-byte sectors.
func (v *View) BlockSectors() uint32 { return v.blockSectors }

// WrittenSince returns the blocks whose era is >= n, as ascending,
// coalesced ranges. n above the view's current era fails with
// ErrOutOfRange.
func (v *View) WrittenSince(n uint32) ([]Range, error) {
	return v.WrittenSinceContext(context.Background(), n)
}

// WrittenSinceContext is WrittenSince with a context that can end a long
// query.
func (v *View) WrittenSinceContext(ctx context.Context, n uint32) ([]Range, error) {
	if err := v.guard(nil); err != nil {
		return nil, err
	}
	rs, err := v.trees.since(ctx, n)
	if err = v.guard(err); err != nil {
		return nil, err
	}
	return rs, nil
}

// WrittenSinceChange returns the blocks written since the era of a change
// ID, after checking that it names a point in this metadata's history
// (ErrStaleChangeID otherwise: a full backup is needed).
func (v *View) WrittenSinceChange(ctx context.Context, id ChangeID) ([]Range, error) {
	n, err := checkChangeID(id, v.trees.uuid, v.trees.currentEra)
	if err != nil {
		return nil, err
	}
	return v.WrittenSinceContext(ctx, n)
}

// WrittenSinceSeq streams the answer of WrittenSince from block from on, a
// window at a time (see Device.WrittenSinceSeq).
func (v *View) WrittenSinceSeq(ctx context.Context, since uint32, from uint64) iter.Seq2[Range, error] {
	inner := seq(ctx, since, from, func() (eraTrees, func(), error) {
		return v.trees, func() {}, v.guard(nil)
	})
	return func(yield func(Range, error) bool) {
		for r, err := range inner {
			if err == nil {
				err = v.guard(nil)
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// BlockEra returns the era in which block b was last written (0: never).
func (v *View) BlockEra(b uint64) (uint32, error) {
	if err := v.guard(nil); err != nil {
		return 0, err
	}
	era, err := v.trees.blockEra(b)
	if err = v.guard(err); err != nil {
		return 0, err
	}
	return era, nil
}

// BlockEras returns the era each block in [lo, hi) was last written in.
func (v *View) BlockEras(ctx context.Context, lo, hi uint64) ([]uint32, error) {
	if err := v.guard(nil); err != nil {
		return nil, err
	}
	eras, err := v.trees.eras(ctx, lo, hi)
	if err = v.guard(err); err != nil {
		return nil, err
	}
	return eras, nil
}

// readOnlyStore refuses writes, so a view cannot change metadata.
type readOnlyStore struct{ io.ReaderAt }

func (readOnlyStore) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("era: view is read-only")
}
