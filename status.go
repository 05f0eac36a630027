package era

import "fmt"

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
