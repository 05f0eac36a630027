package etesting

import (
	"testing"
	"time"

	"github.com/era-go/era"
)

// Open opens a device on meta and origin with blocks of sectors sectors,
// formatting zeroed metadata, and fails t if it cannot.
func Open(t testing.TB, meta, origin era.Store, sectors uint32) *era.Device {
	t.Helper()
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: sectors})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// Usable returns nil while d accepts changes, else why not (an error
// wrapping era.ErrReadOnly once it failed, era.ErrClosed once closed): the
// answer of a zero-length WriteAt, which does no I/O.
func Usable(d *era.Device) error {
	_, err := d.WriteAt(nil, 0)
	return err
}

// WaitDigest waits, for 20 seconds at the most, until the background
// digest has folded every archived writeset into the era array (Stats
// reports no Digesting) or the device no longer accepts changes.
func WaitDigest(d *era.Device) {
	waitDigest(d, false)
}

// WaitDigestOrGiveUp is WaitDigest for a device whose digest may give up
// (on ErrNoSpace it stops until the next era): it also returns once the
// device has done no metadata I/O for 200ms.
func WaitDigestOrGiveUp(d *era.Device) {
	waitDigest(d, true)
}

func waitDigest(d *era.Device, giveUp bool) {
	deadline := time.Now().Add(20 * time.Second)
	last, still := d.Stats(), time.Now()
	for last.Digesting && Usable(d) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
		s := d.Stats()
		if s.Commits != last.Commits || s.MetadataWrites != last.MetadataWrites || s.MetadataReads != last.MetadataReads || s.MetadataHits != last.MetadataHits {
			still = time.Now()
		} else if giveUp && time.Since(still) > 200*time.Millisecond {
			return
		}
		last = s
	}
}
