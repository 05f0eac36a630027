package era

import (
	"sync/atomic"
	"time"
)

// commitCounts counts a device's commits, for Stats.
type commitCounts struct {
	commits atomic.Uint64
	marks   atomic.Uint64 // commits made for first writes
	// nanos and maxNanos sum and bound the commit durations.
	nanos, maxNanos atomic.Int64
}

// add counts a commit that took took. Commits are serialized (Device.mu),
// so the maximum needs no compare-and-swap.
func (c *commitCounts) add(took time.Duration) {
	c.commits.Add(1)
	c.nanos.Add(int64(took))
	if int64(took) > c.maxNanos.Load() {
		c.maxNanos.Store(int64(took))
	}
}

// Stats is what a Device has done, for benchmarks and monitoring: the
// commits since Open returned, and the metadata I/O since Open began (its
// format, resize and first commit included). Differences between two calls
// measure a workload. Metadata commits end with the superblock
// written and synced; a first write is a WriteAt that found a block not yet
// marked in the current era and so waited for a commit (group commit: one
// commit serves every first write waiting at the time).
type Stats struct {
	Commits     uint64 // metadata commits
	FirstWrites uint64 // WriteAt calls that needed a mark committed
	MarkCommits uint64 // commits made for first writes (FirstWrites/MarkCommits: mean group size)

	MetadataReads  uint64 // metadata blocks read from the store (cache misses)
	MetadataHits   uint64 // metadata block reads answered by the cache
	MetadataWrites uint64 // metadata blocks (4 KiB) written, superblock included
	MetadataSyncs  uint64 // syncs of the metadata store; 0 if it has no Sync
	CanSync        bool   // whether the metadata store has a Sync method

	// Digesting is true while archived writesets wait to be folded into
	// the era array by the background digest; Backlog is how many there
	// were at the last commit (at most Config.MaxBacklog after an era
	// change).
	Digesting bool
	Backlog   int

	// MetadataUsed and MetadataTotal are the metadata blocks in use and in
	// the store at the last commit; MetadataReserve the blocks kept free
	// for the operations that free space.
	MetadataUsed, MetadataTotal, MetadataReserve uint64

	// CommitTotal and CommitMax are the summed and the longest commit
	// durations (CommitTotal/Commits: the mean).
	CommitTotal, CommitMax time.Duration

	// A held point-in-time snapshot (SnapshotHeld): SnapshotCopied blocks
	// copied to its difference store, SnapshotBytes bytes of SnapshotLimit
	// (0: no bound); SnapshotFailed once it overflowed.
	SnapshotHeld, SnapshotFailed bool
	SnapshotCopied               uint64
	SnapshotBytes, SnapshotLimit int64
}

// Stats returns the counts so far. It takes no lock the write path needs.
func (d *Device) Stats() Stats {
	bm := d.bm.Stats()
	st := d.status.Load()
	s := Stats{
		Commits:         d.counts.commits.Load(),
		FirstWrites:     d.marks.requests.Load(),
		MarkCommits:     d.counts.marks.Load(),
		MetadataReads:   bm.Reads,
		MetadataHits:    bm.Hits,
		MetadataWrites:  bm.Writes,
		MetadataSyncs:   bm.Syncs,
		CanSync:         d.bm.CanSync(),
		Digesting:       d.digest.pending.Load(),
		Backlog:         st.Backlog,
		MetadataUsed:    st.UsedMetadataBlocks,
		MetadataTotal:   st.TotalMetadataBlocks,
		MetadataReserve: st.reserve,
		CommitTotal:     time.Duration(d.counts.nanos.Load()),
		CommitMax:       time.Duration(d.counts.maxNanos.Load()),
	}
	if p := d.pit.Load(); p != nil {
		s.SnapshotHeld = true
		s.SnapshotFailed = p.state.Load() == pitFailed
		s.SnapshotCopied = p.copiedBlocks()
		s.SnapshotBytes = int64(s.SnapshotCopied * p.blockBytes)
		s.SnapshotLimit = int64(p.maxSlots * p.blockBytes)
	}
	return s
}
