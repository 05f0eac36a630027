package era

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

// View is a read-only view of era metadata written by this library or by
// the kernel: either the committed state (OpenView) or the held metadata
// snapshot (OpenSnapshot). It reads committed blocks only, through the
// checksum and location checks. It is safe for concurrent use.
type View struct {
	trees        eraTrees
	blockSectors uint32
	sb           *Superblock // the superblock or the snapshot clone read
}

// OpenView opens the committed state of the metadata: after Close, or as a
// crash left it. It includes the current writeset a crash left behind, so
// no committed mark is missed.
//
// On metadata a live device keeps changing, the blocks a view reads may be
// reused under it; use TakeSnapshot and OpenSnapshot there.
func OpenView(metadata io.ReaderAt) (*View, error) {
	bm, sb, err := openReadOnly(metadata)
	if err != nil {
		return nil, err
	}
	return newView(bm, sb, sb.CurrentWriteset)
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
	return newView(bm, clone, WritesetInfo{})
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

// openReadOnly reads and checks the superblock of a metadata store.
func openReadOnly(metadata io.ReaderAt) (*block.Manager, *Superblock, error) {
	nr := uint64(math.MaxUint64 / block.Size)
	if size, err := sizeOf(metadata, 0, "metadata"); err == nil {
		nr = uint64(size) / block.Size
	}
	bm := block.NewManager(readOnlyStore{metadata}, nr, 0)
	sb, err := readSuperblock(bm, 0)
	if err != nil {
		return nil, nil, err
	}
	if sb.Blocknr != 0 {
		return nil, nil, block.Corruptf(0, block.Superblock.Name, "stored location %d", sb.Blocknr)
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

func newView(bm *block.Manager, sb *Superblock, current WritesetInfo) (*View, error) {
	v := &View{
		blockSectors: sb.DataBlockSize,
		sb:           sb,
		trees: eraTrees{
			tm:         transaction.NewReadOnly(bm),
			nrBlocks:   sb.NrBlocks,
			currentEra: sb.CurrentEra,
			wsRoot:     sb.WritesetTreeRoot,
			eraRoot:    sb.EraArrayRoot,
			current:    current,
		},
	}
	n := bm.NrBlocks()
	for _, r := range []uint64{sb.WritesetTreeRoot, sb.EraArrayRoot, current.Root} {
		if r >= n {
			return nil, block.Corruptf(sb.Blocknr, block.Superblock.Name, "root %d beyond the %d metadata blocks", r, n)
		}
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

// NrBlocks returns the number of tracked origin blocks.
func (v *View) NrBlocks() uint64 { return uint64(v.trees.nrBlocks) }

// BlockSectors returns the tracked block size in 512-byte sectors.
func (v *View) BlockSectors() uint32 { return v.blockSectors }

// WrittenSince returns the blocks whose era is >= n, as ascending,
// coalesced ranges.
func (v *View) WrittenSince(n uint32) ([]Range, error) {
	return v.WrittenSinceContext(context.Background(), n)
}

// WrittenSinceContext is WrittenSince with a context that can end a long
// query.
func (v *View) WrittenSinceContext(ctx context.Context, n uint32) ([]Range, error) {
	set, err := v.trees.writtenSince(ctx, n, sinceOptions{})
	if err != nil {
		return nil, err
	}
	return rangesOf(set), nil
}

// BlockEra returns the era in which block b was last written (0: never).
func (v *View) BlockEra(b uint64) (uint32, error) {
	return v.trees.blockEra(b)
}

// readOnlyStore refuses writes, so a view cannot change metadata.
type readOnlyStore struct{ io.ReaderAt }

func (readOnlyStore) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("era: view is read-only")
}
