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

// Status returns the device's status. After Close it returns the status at
// the final commit.
func (d *Device) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	sb := &d.md.sb
	return Status{
		MetadataBlockSize:   metadataBlockSize,
		UsedMetadataBlocks:  d.md.sm.NrAllocated(),
		TotalMetadataBlocks: d.md.sm.NrBlocks(),
		CurrentEra:          sb.CurrentEra,
		HeldRoot:            sb.MetadataSnap,
		Held:                sb.MetadataSnap != 0,
	}
}
