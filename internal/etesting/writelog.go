package etesting

import "sync"

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
