package etesting

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/era-go/era/erasim"
)

// Write is one WriteAt of a workload: its blocks [Lo, Hi) and the era
// observed before it started; the era it is tracked in can only be later.
type Write struct {
	Lo, Hi uint64
	Era    uint32
}

// WriteLog holds the writes of concurrent writers in the order they
// completed. It is safe for concurrent use.
type WriteLog struct {
	mu   sync.Mutex
	done []Write
}

// Add records a completed write.
func (l *WriteLog) Add(w Write) {
	l.mu.Lock()
	l.done = append(l.done, w)
	l.mu.Unlock()
}

// Snapshot returns a copy of the writes completed so far.
func (l *WriteLog) Snapshot() []Write {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Write(nil), l.done...)
}

// CheckReached checks eras, the era of every block in the image of a power
// cut at clock time c, against the writes that had reached the origin by
// then: each origin write in ops issued before c (its data starting with
// the little-endian index of its Write in calls) must have its blocks at
// its era or later.
func CheckReached(eras []uint32, ops []erasim.Op, c uint64, calls []Write) error {
	for _, op := range ops {
		if op.Time >= c {
			break
		}
		w := calls[binary.LittleEndian.Uint64(op.Data)]
		for b := w.Lo; b < w.Hi; b++ {
			if eras[b] < w.Era {
				return fmt.Errorf("block %d at era %d, its write (era %d or later) had reached the origin", b, eras[b], w.Era)
			}
		}
	}
	return nil
}
