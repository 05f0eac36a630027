package era

import (
	"sync"
	"sync/atomic"
	"time"
)

// batch shares one metadata commit between every first write waiting at
// the time (group commit), as bbolt's Batch shares a transaction.
//
// One waiter at a time is the committer: it takes the whole queue, commits
// once, and answers every request of the batch, which return at once,
// without waiting for the device's lock. Requests that arrived during the
// commit form the next batch; the committer's role passes to the first of
// them, which first gives the writers just answered a moment to come back
// with their next first writes (gather), so that one commit serves both.
type batch struct {
	// commit commits the marks of a batch (Device.commitBatch).
	commit func([]*markRequest) error

	mu         sync.Mutex
	queue      []*markRequest
	committing bool
	// gathered is closed by the next arrival, or once the queue reaches
	// gatherAt (if > 0), while a new committer gathers.
	gatherAt  int
	gathered  chan struct{}
	lastBatch int       // requests of the last commit that found the queue empty
	lastEnd   time.Time // when it ended

	lastCommit atomic.Int64  // duration of the last commit, ns
	lastDone   atomic.Int64  // when the last commit ended, Unix ns (digest pacing)
	requests   atomic.Uint64 // first writes: requests run
}

// markRequest is a first write waiting for its marks to be committed.
type markRequest struct {
	lo, hi uint64
	done   chan markReply // one reply per request
}

// markReply ends a wait: the commit's result, or the committer's role.
type markReply struct {
	err  error
	lead bool
}

// run commits marks for blocks [lo, hi), sharing the commit with every
// other first write waiting at the time.
func (b *batch) run(lo, hi uint64) error {
	b.requests.Add(1)
	req := &markRequest{lo: lo, hi: hi, done: make(chan markReply, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if b.gathered != nil && (b.gatherAt <= 0 || len(b.queue) >= b.gatherAt) {
		close(b.gathered)
		b.gathered = nil
	}
	lead := !b.committing
	b.committing = true
	// A committer that finds the queue idle waits for the writers of the
	// last commit, if it just ended and served several.
	expect := 0
	if lead && b.lastBatch > 1 && time.Since(b.lastEnd) < gatherMax {
		expect = b.lastBatch
	}
	b.mu.Unlock()
	if !lead {
		if r := <-req.done; !r.lead {
			return r.err
		}
		b.gather(0)
	} else if expect > 0 {
		b.gather(expect)
	}

	b.mu.Lock()
	queue := b.queue
	b.queue = nil
	b.mu.Unlock()
	t0 := time.Now()
	err := b.commit(queue)
	t1 := time.Now()
	b.lastCommit.Store(int64(t1.Sub(t0)))
	b.lastDone.Store(t1.UnixNano())
	for _, r := range queue {
		if r != req {
			r.done <- markReply{err: err}
		}
	}
	b.mu.Lock()
	if len(b.queue) > 0 {
		b.queue[0].done <- markReply{lead: true}
	} else {
		b.committing = false
		b.lastBatch, b.lastEnd = len(queue), time.Now()
	}
	b.mu.Unlock()
	return err
}

// Bounds of gather: it never waits more than gatherMax in all, nor more
// than a quarter of the last commit's duration, nor more than gatherQuiet
// for the next arrival.
const (
	gatherMax   = time.Millisecond
	gatherQuiet = 50 * time.Microsecond
)

// gather lets a new committer wait for more first writes before it takes
// the queue: until expect are queued (expect > 0), or while they keep
// arriving (expect == 0). Writers answered by the last commit come back
// with their next first writes within microseconds; taking them into this
// commit rather than the next doubles the group of a steady set of writers,
// for a delay that a commit's syncs dwarf.
func (b *batch) gather(expect int) {
	limit := min(time.Duration(b.lastCommit.Load())/4, gatherMax)
	if limit <= 0 {
		return
	}
	deadline := time.Now().Add(limit)
	for {
		b.mu.Lock()
		if expect > 0 && len(b.queue) >= expect {
			b.mu.Unlock()
			return
		}
		ch := make(chan struct{})
		b.gatherAt, b.gathered = expect, ch
		b.mu.Unlock()
		wait := time.Until(deadline)
		if expect == 0 {
			wait = min(wait, gatherQuiet)
		}
		arrived := false
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ch:
				arrived = true
			case <-t.C:
			}
			t.Stop()
		}
		b.mu.Lock()
		if b.gathered == ch {
			b.gathered = nil
		}
		b.mu.Unlock()
		if !arrived || expect > 0 || !time.Now().Before(deadline) {
			return
		}
	}
}
