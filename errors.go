package era

import (
	"errors"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// Errors returned by the package. Test for them with errors.Is: they are
// wrapped with the block and the check that failed.
var (
	// ErrCorrupt reports metadata that fails a check: a checksum, a
	// location, or a rule of the on-disk format. It is the same value as
	// block.ErrCorrupt.
	ErrCorrupt = block.ErrCorrupt
	// ErrNoSpace reports a metadata store with no free block left. The
	// write that needed a new mark did not happen.
	ErrNoSpace = block.ErrNoSpace
	// ErrBlockSizeMismatch reports metadata formatted for another block size.
	ErrBlockSizeMismatch = errors.New("data block size differs from the metadata's")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("era device is closed")
	// ErrSnapshotExists is returned by TakeSnapshot while one is held.
	ErrSnapshotExists = errors.New("a metadata snapshot is already held")
	// ErrNoSnapshot is returned by DropSnapshot and OpenSnapshot when none is held.
	ErrNoSnapshot = errors.New("no metadata snapshot is held")
	// ErrOutOfRange reports a read, write or block number past the end of
	// the origin.
	ErrOutOfRange = errors.New("out of range")
	// ErrInvalidMessage reports a message other than checkpoint,
	// take_metadata_snap and drop_metadata_snap.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrReadOnly is returned by writes once a metadata write or sync has
	// failed (the device's fail mode, as dm's), and by changes through a
	// read-only view. Reads and queries go on working; reopen to recover.
	ErrReadOnly = transaction.ErrReadOnly
	// ErrInvalidConfig reports an unusable Config (block size, sizes).
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrEraOverflow is returned when the 32-bit era counter would wrap.
	ErrEraOverflow = errors.New("era counter would wrap past 2^32-1")
	// ErrNoMetadata is returned by Open and the views when the metadata
	// store holds no era metadata: it is all zero (and Config.Format was
	// not set) or it holds something else, which the message names.
	ErrNoMetadata = errors.New("no era metadata")
	// ErrLocked is returned by Open when another Device, in this process or
	// another, owns the metadata store.
	ErrLocked = errors.New("metadata is in use by another era device")
	// ErrStaleChangeID is returned by queries given a change ID from other
	// metadata or from an era the metadata has not reached: the history it
	// names is gone, and only a full backup is safe.
	ErrStaleChangeID = errors.New("stale change ID")
	// ErrInvalidChangeID reports a change ID text that does not parse.
	ErrInvalidChangeID = errors.New("invalid change ID")
	// ErrSnapshotDropped is returned by a View of a metadata snapshot once
	// the snapshot has been dropped: its blocks may have been reused.
	ErrSnapshotDropped = errors.New("metadata snapshot was dropped")
	// ErrSnapshotOwned is returned by DropSnapshot (and the
	// drop_metadata_snap message) when the held snapshot belongs to a
	// Snapshot handle, which alone may drop it.
	ErrSnapshotOwned = errors.New("metadata snapshot is owned by a Snapshot handle")
	// ErrSnapshotOverflow is returned by the reads of a point-in-time
	// snapshot that failed to preserve a block: its difference store
	// filled up or a copy to it failed. The device and its tracking are
	// unharmed.
	ErrSnapshotOverflow = errors.New("point-in-time snapshot overflowed its difference store")
	// ErrNoData is returned by the reads of a snapshot that preserves no
	// data (TakeSnapshot, HoldSnapshot: metadata only).
	ErrNoData = errors.New("snapshot preserves metadata only")
)
