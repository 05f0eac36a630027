package era

import (
	"runtime"
	"sync/atomic"
	"time"
)

// digester is the state of the background digest worker (digestLoop).
type digester struct {
	kick chan struct{} // wakes the worker; buffered, never blocks
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the worker has returned
	// pending is set while archived writesets wait to be digested
	// (Stats.Digesting).
	pending atomic.Bool
	// wake is closed by the next commit, which a paced worker waits for.
	wake atomic.Pointer[chan struct{}]
}

// kickDigest wakes the digest worker.
func (d *Device) kickDigest() {
	select {
	case d.digest.kick <- struct{}{}:
	default:
	}
}

// Digest pacing. The digest's changes ride on the next commit. While first
// writes are being committed (one ended within digestBusyWindow), the
// digest takes digestStepsPerCommit steps per commit of theirs, then waits
// (up to digestWaitMax) for the next: a first write then waits for at most
// one step, and its commit writes the few blocks the steps changed rather
// than waiting for a commit of the digest's. At digestPendingBusy changed
// blocks it waits without stepping. Otherwise it runs freely and commits on
// its own every digestPendingIdle blocks.
const (
	digestStepsPerCommit = 4
	digestPendingBusy    = 16
	digestPendingIdle    = 64
	digestBusyWindow     = 20 * time.Millisecond
	digestWaitMax        = 10 * time.Millisecond
)

// digestLoop folds archived writesets into the era array, a bounded step
// at a time, off the write path: between steps it releases the lock that
// first writes need. It commits when it has nothing left to do.
func (d *Device) digestLoop() {
	defer close(d.digest.done)
	for {
		select {
		case <-d.digest.stop:
			return
		case <-d.digest.kick:
		}
		for steps := 0; ; {
			more, busy, stalled, seen := d.digestOnce()
			if !more {
				break
			}
			if steps++; stalled || busy && steps >= digestStepsPerCommit {
				d.awaitCommit(seen)
				steps = 0
			}
			select {
			case <-d.digest.stop:
				return
			default:
			}
			runtime.Gosched()
		}
	}
}

// awaitCommit waits for a commit after the count seen, up to
// digestWaitMax.
func (d *Device) awaitCommit(seen uint64) {
	ch := make(chan struct{})
	d.digest.wake.Store(&ch)
	if d.counts.commits.Load() != seen {
		return
	}
	t := time.NewTimer(digestWaitMax)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-d.digest.stop:
	}
}

// digestOnce runs one digest step and reports whether to go on, whether
// first writes are busy (see digest pacing), whether it stalled without a
// step to wait for their commit, and the commit count.
func (d *Device) digestOnce() (more, busy, stalled bool, seen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state.Load() != stateOpen {
		return false, false, false, 0
	}
	busy = time.Since(time.Unix(0, d.marks.lastDone.Load())) < digestBusyWindow
	if dirty := d.md.tm.Dirty(); dirty >= digestPendingBusy {
		if busy && dirty < digestPendingIdle {
			return true, true, true, d.counts.commits.Load()
		}
		if err := d.commitAndPublish(); err != nil {
			return false, false, false, 0
		}
	}
	more, err := d.md.digestStep()
	if err != nil {
		d.abort(err)
		return false, false, false, 0
	}
	if !more {
		if d.md.changed() {
			d.commitAndPublish()
		}
		d.digest.pending.Store(false)
		return false, false, false, 0
	}
	return true, busy, false, d.counts.commits.Load()
}
