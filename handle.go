package era

import (
	"fmt"
	"io"
)

// Snapshot is a held metadata snapshot: a read-only copy of the metadata as
// of the era change that took it, which the kernel's tools and other
// processes can read (OpenSnapshot) while the device goes on. A Snapshot
// from HoldSnapshot is owned by its holder: only its Release drops it, and
// DropSnapshot or the drop_metadata_snap message fail with
// ErrSnapshotOwned meanwhile, so one consumer cannot pull the snapshot
// from under another's reads. A point-in-time Snapshot (HoldPointInTime)
// also preserves the data: ReadAt reads the image of its moment.
type Snapshot struct {
	d     *Device
	era   uint32
	loc   uint64 // the clone's block
	owned bool
	pit   *pointInTime // a point-in-time snapshot's data, else nil
}

// HoldSnapshot starts a new era, as TakeSnapshot does, and returns the
// snapshot as a handle that owns it. ErrSnapshotExists while any snapshot
// is held.
func (d *Device) HoldSnapshot() (*Snapshot, error) {
	s := &Snapshot{owned: true}
	if _, err := d.changeEra(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Era returns the era that began with the snapshot: the snapshot holds
// every write of the eras before it.
func (s *Snapshot) Era() uint32 { return s.era }

// ChangeID returns the change ID of the snapshot's era, to record with a
// backup taken from it.
func (s *Snapshot) ChangeID() ChangeID {
	return ChangeID{UUID: s.d.UUID(), Era: s.era}
}

// View opens a read-only view of the snapshot. Its queries fail with
// ErrSnapshotDropped once the snapshot is released.
func (s *Snapshot) View() (*View, error) {
	v, err := s.d.SnapshotView()
	if err != nil {
		return nil, err
	}
	if v.snapLoc != s.loc {
		return nil, fmt.Errorf("snapshot of era %d: %w", s.era, ErrSnapshotDropped)
	}
	return v, nil
}

// ReadAt reads the image as it was when the snapshot was taken, for a
// point-in-time snapshot (HoldPointInTime); ErrNoData for a metadata-only
// one. It fails with ErrSnapshotOverflow once the snapshot has failed and
// ErrSnapshotDropped once it is released. It is safe for concurrent use,
// with writes to the device going on.
func (s *Snapshot) ReadAt(p []byte, off int64) (int, error) {
	if s.pit == nil {
		return 0, fmt.Errorf("snapshot of era %d: %w", s.era, ErrNoData)
	}
	return s.pit.readAt(p, off)
}

// Size returns the size in bytes of the image ReadAt reads: the origin's.
func (s *Snapshot) Size() int64 { return s.d.size }

// PointInTime reports whether the snapshot preserves data (ReadAt).
func (s *Snapshot) PointInTime() bool { return s.pit != nil }

// Err returns nil while a point-in-time snapshot can be read, and the
// error its reads would return once it cannot (ErrSnapshotOverflow,
// ErrSnapshotDropped). A metadata-only snapshot returns nil.
func (s *Snapshot) Err() error {
	if s.pit == nil {
		return nil
	}
	return s.pit.Err()
}

var _ io.ReaderAt = (*Snapshot)(nil)

// Release drops the snapshot, and frees a point-in-time snapshot's
// difference store. ErrNoSnapshot if it is no longer held.
func (s *Snapshot) Release() error {
	return s.d.dropSnapshotOf(s)
}
