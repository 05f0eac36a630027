package era

import (
	"testing"
	"time"

	"github.com/era-go/era/block"
)

// waitDigest waits until every archived writeset is folded into the era
// array and the result committed.
func waitDigest(t *testing.T, d *Device) {
	t.Helper()
	for i := 0; ; i++ {
		d.mu.Lock()
		_, _, found, err := d.md.wsTree.Lowest(d.md.sb.WritesetTreeRoot)
		d.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return
		}
		if i > 10000 {
			t.Fatal("digest did not finish")
		}
		d.kickDigest()
		sleepBriefly()
	}
}

// sleepBriefly lets background work (the digest) run.
func sleepBriefly() { time.Sleep(time.Millisecond) }

// blockManagerOf returns a fresh, uncached block manager over a store.
func blockManagerOf(m *memStore) *block.Manager {
	return block.NewManager(m, uint64(len(m.Data))/block.Size, 0)
}
