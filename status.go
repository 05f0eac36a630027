package era

import (
	"fmt"
	"math/bits"

	"github.com/era-go/era/array"
	"github.com/era-go/era/spacemap"
)

// Status is what the kernel's dm-era target reports in its status line.
type Status struct {
	MetadataBlockSize   uint32 // in sectors: 8
	UsedMetadataBlocks  uint64
	TotalMetadataBlocks uint64
	CurrentEra          uint32
	HeldRoot            uint64 // location of the metadata snapshot, valid when Held
	Held                bool

	// Backlog is the number of archived writesets not yet digested into
	// the era array (not part of the dm status line).
	Backlog int

	uuid    [16]byte
	reserve uint64
}

// String returns the dm status line: "8 12/1024 5 -" without a metadata
// snapshot, "8 13/1024 6 66" with one held at block 66.
func (s Status) String() string {
	held := "-"
	if s.Held {
		held = fmt.Sprint(s.HeldRoot)
	}
	return fmt.Sprintf("%d %d/%d %d %s", s.MetadataBlockSize, s.UsedMetadataBlocks, s.TotalMetadataBlocks, s.CurrentEra, held)
}

// Status returns the device's status as of its last commit. It takes no
// lock: it never waits for a commit, a checkpoint or the digest. After
// Close it returns the zero Status.
func (d *Device) Status() Status {
	return *d.status.Load()
}

// MetadataStatus is what era metadata says of itself, as `era status`
// shows it: the dm status fields, and the identity, geometry, snapshot and
// writesets behind them.
type MetadataStatus struct {
	Status
	UUID         [16]byte
	BlockSectors uint32   // tracked block size in 512-byte sectors
	NrBlocks     uint64   // tracked origin blocks
	Writesets    []uint32 // eras of the archived writesets, not yet digested
	// Current is whether there is a current writeset (a device running, or
	// a crash left one); CurrentMarked and CurrentBits its marked blocks
	// and size.
	Current                    bool
	CurrentMarked, CurrentBits uint64
	// SnapshotEra is the era that began when the held metadata snapshot
	// was taken (Held in Status).
	SnapshotEra uint32
}

// Status returns what the metadata the view reads says of itself. For a
// view of a snapshot it describes the snapshot.
func (v *View) Status() (MetadataStatus, error) {
	if err := v.guard(nil); err != nil {
		return MetadataStatus{}, err
	}
	t := v.trees
	root, err := spacemap.DecodeRoot(v.sb.SpaceMapRoot[:])
	if err != nil {
		return MetadataStatus{}, err
	}
	st := MetadataStatus{
		Status: Status{
			MetadataBlockSize:   metadataBlockSize,
			UsedMetadataBlocks:  root.NrAllocated,
			TotalMetadataBlocks: root.NrBlocks,
			CurrentEra:          t.currentEra,
			HeldRoot:            v.sb.MetadataSnap,
			Held:                v.sb.MetadataSnap != 0,
		},
		UUID:         t.uuid,
		BlockSectors: v.blockSectors,
		NrBlocks:     uint64(t.nrBlocks),
	}
	sets, err := t.writesets(0)
	if err != nil {
		return MetadataStatus{}, v.guard(err)
	}
	for _, ws := range sets {
		if t.current.Root != 0 && ws.info == t.current && ws.era == t.currentEra {
			continue // the current writeset, listed last by writesets
		}
		st.Writesets = append(st.Writesets, ws.era)
	}
	st.Backlog = len(st.Writesets)
	if cur := t.current; cur.Root != 0 {
		st.Current, st.CurrentBits = true, uint64(cur.NrBits)
		err := array.NewBitset(t.tm).Words(cur.Root, uint64(cur.NrBits), func(_ uint64, w uint64) error {
			st.CurrentMarked += uint64(bits.OnesCount64(w))
			return nil
		})
		if err != nil {
			return MetadataStatus{}, v.guard(fmt.Errorf("current writeset: %w", err))
		}
	}
	if st.Held && v.snapLoc == 0 {
		sv, err := OpenSnapshot(v.store)
		if err != nil {
			return MetadataStatus{}, fmt.Errorf("metadata snapshot: %w", err)
		}
		st.SnapshotEra = sv.CurrentEra()
	}
	return st, v.guard(nil)
}
