// Package era tracks which blocks of a disk image or device were written in
// which era, in user space, as the Linux device-mapper era target does in
// the kernel, with metadata byte-compatible with the kernel's.
//
// A Device wraps an origin (any io.ReaderAt + io.WriterAt) and a metadata
// store. Every write passes through to the origin, and the device records
// which origin blocks it touched in the current era, a 32-bit counter that
// Checkpoint moves on. WrittenSince answers "which blocks changed since era
// N?", which is what an incremental backup copies.
//
// A write to a block not yet marked in the current era reaches the origin
// only after the mark is committed to the metadata (written, synced,
// superblock last). No crash can hide a change. A write to a block already
// marked costs one bit test.
package era

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/era-go/era/block"
)

// Store is what an origin and a metadata store must be.
type Store interface {
	io.ReaderAt
	io.WriterAt
}

// Config sets up a Device.
type Config struct {
	// BlockSectors is the tracked block size in 512-byte sectors: > 0 and a
	// multiple of 8, as the dm table's <block size>.
	BlockSectors uint32
	// OriginSize is the origin's size in bytes; 0: ask the origin (a
	// Size() int64 method, or Stat() as *os.File has).
	OriginSize int64
	// MetadataSize is the metadata store's size in bytes; 0: ask the store
	// the same way.
	MetadataSize int64
	// CacheBlocks bounds the metadata block cache (4 KiB blocks); 0:
	// block.DefaultCacheBlocks.
	CacheBlocks int
}

// Device states.
const (
	stateOpen int32 = iota
	stateFailed
	stateClosed
)

// Device is an origin whose writes are tracked by era. It is safe for
// concurrent use.
type Device struct {
	meta       Store
	origin     Store
	size       int64  // origin bytes
	blockBytes uint64 // tracked block size
	nrBlocks   uint64

	state atomic.Int32
	// cur holds the committed marks of the current era; the write path
	// reads it without locks.
	cur atomic.Pointer[writeset]

	// mu serializes every metadata operation: marking, commits,
	// checkpoints, snapshots, digest steps and queries.
	mu      sync.Mutex
	md      *metadata
	bm      *block.Manager // md's block manager, for Stats
	failure error          // why the device failed, in stateFailed

	// retiring is set while the writeset an era change replaced is still
	// being drained; the next era change waits for it. Only the current
	// writeset is kept: the next era's is allocated at the change (a table
	// of empty chunks), and a retired one is left to the garbage
	// collector, so the device holds at most one bit per block between era
	// changes.
	spareMu   sync.Mutex
	spareCond *sync.Cond
	retiring  bool

	// queue holds first writes waiting for a commit (group commit);
	// committing is set while one of them commits for the others. A new
	// committer may wait for more (gather): gathered is closed by the
	// next arrival, or once the queue reaches gatherAt (if > 0).
	queueMu     sync.Mutex
	queue       []*markRequest
	committing  bool
	gatherAt    int
	gathered    chan struct{}
	lastBatch   int                           // requests of the last commit that found the queue empty
	lastEnd     time.Time                     // when it ended
	lastCommit  atomic.Int64                  // duration of the last mark commit, ns
	lastMarkEnd atomic.Int64                  // when the last mark commit ended, Unix ns
	commitWake  atomic.Pointer[chan struct{}] // closed by the next commit (digest pacing)

	kick       chan struct{}
	stopDigest chan struct{}
	digestDone chan struct{}

	commits atomic.Uint64
	// firstWrites counts mark requests (writes that found a block
	// unmarked); markCommits the commits made for them.
	firstWrites, markCommits atomic.Uint64
	// digesting is set while archived writesets wait to be digested.
	digesting atomic.Bool
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

// Open opens the era device over the metadata store meta and origin. It is a table load
// plus resume in dm terms: it formats the metadata when block 0 is all
// zero, otherwise it validates the superblock and refuses another block
// size (ErrBlockSizeMismatch); it resizes the era array to the origin's
// block count; it archives a current writeset left by a crash, starts a new
// era and commits. A fresh device therefore starts at era 1, as the kernel's.
func Open(meta, origin interface {
	io.ReaderAt
	io.WriterAt
}, cfg Config) (*Device, error) {
	if cfg.BlockSectors == 0 || cfg.BlockSectors%8 != 0 {
		return nil, fmt.Errorf("block size of %d sectors: must be a positive multiple of 8: %w", cfg.BlockSectors, ErrInvalidConfig)
	}
	originSize, err := sizeOf(origin, cfg.OriginSize, "origin")
	if err != nil {
		return nil, err
	}
	metaSize, err := sizeOf(meta, cfg.MetadataSize, "metadata")
	if err != nil {
		return nil, err
	}
	blockBytes := uint64(cfg.BlockSectors) * 512
	nrBlocks := (uint64(originSize) + blockBytes - 1) / blockBytes
	if nrBlocks == 0 || nrBlocks >= 1<<31 {
		return nil, fmt.Errorf("origin of %d bytes is %d blocks of %d bytes; want 1 to 2^31-1: %w", originSize, nrBlocks, blockBytes, ErrInvalidConfig)
	}
	bm := block.NewManager(meta, uint64(metaSize)/block.Size, cfg.CacheBlocks)
	if bm.NrBlocks() < 4 {
		return nil, fmt.Errorf("metadata of %d bytes is too small: %w", metaSize, ErrNoSpace)
	}
	formatted, err := isFormatted(bm)
	if err != nil {
		return nil, err
	}
	var md *metadata
	if formatted {
		md, err = openMetadata(bm)
	} else {
		md, err = formatMetadata(bm, cfg.BlockSectors)
	}
	if err != nil {
		return nil, err
	}
	if md.sb.DataBlockSize != cfg.BlockSectors {
		return nil, fmt.Errorf("metadata block size is %d sectors, asked for %d: %w", md.sb.DataBlockSize, cfg.BlockSectors, ErrBlockSizeMismatch)
	}
	if err := md.resize(uint32(nrBlocks)); err != nil {
		return nil, err
	}
	if err := md.rollover(); err != nil {
		return nil, err
	}
	if err := md.commit(); err != nil {
		return nil, err
	}
	d := &Device{
		meta:       meta,
		origin:     origin,
		size:       originSize,
		blockBytes: blockBytes,
		nrBlocks:   nrBlocks,
		md:         md,
		bm:         bm,
		kick:       make(chan struct{}, 1),
		stopDigest: make(chan struct{}),
		digestDone: make(chan struct{}),
	}
	d.spareCond = sync.NewCond(&d.spareMu)
	d.cur.Store(newWriteset(nrBlocks))
	d.digesting.Store(true)
	go d.digestLoop()
	d.kickDigest()
	return d, nil
}

// sizeOf returns given if non-zero, else asks s for its size.
func sizeOf(s any, given int64, what string) (int64, error) {
	if given < 0 {
		return 0, fmt.Errorf("%s size %d: %w", what, given, ErrInvalidConfig)
	}
	if given > 0 {
		return given, nil
	}
	if sz, ok := s.(interface{ Size() int64 }); ok {
		return sz.Size(), nil
	}
	if st, ok := s.(interface{ Stat() (os.FileInfo, error) }); ok {
		fi, err := st.Stat()
		if err != nil {
			return 0, fmt.Errorf("%s size: %w", what, err)
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return fi.Size(), nil
		}
	}
	if sk, ok := s.(io.Seeker); ok { // block devices report their size this way
		n, err := sk.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("%s size: %w", what, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s size unknown: set it in Config: %w", what, ErrInvalidConfig)
}

// usable returns nil while the device accepts changes.
func (d *Device) usable() error {
	switch d.state.Load() {
	case stateOpen:
		return nil
	case stateClosed:
		return ErrClosed
	}
	return fmt.Errorf("device failed (%v): %w", d.failure, ErrReadOnly)
}

// blocks returns the tracked blocks [lo, hi) that bytes [off, off+n) touch.
func (d *Device) blocks(off int64, n int) (lo, hi uint64, err error) {
	if off < 0 || n < 0 || off > d.size || int64(n) > d.size-off {
		return 0, 0, fmt.Errorf("%d bytes at offset %d of a %d-byte origin: %w", n, off, d.size, ErrOutOfRange)
	}
	return uint64(off) / d.blockBytes, (uint64(off) + uint64(n) + d.blockBytes - 1) / d.blockBytes, nil
}

// ReadAt reads from the origin. A range that extends past the end of the
// origin fails with ErrOutOfRange.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if d.state.Load() == stateClosed {
		return 0, ErrClosed
	}
	if _, _, err := d.blocks(off, len(p)); err != nil {
		return 0, err
	}
	n, err := d.origin.ReadAt(p, off)
	if n < len(p) && err == nil { // an origin breaking io.ReaderAt's contract
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// WriteAt writes to the origin, marking every block the write touches in
// the current era. A block not yet marked is marked and committed before any
// byte reaches the origin; concurrent first writes share one commit. A
// write whose blocks are all marked goes straight to the origin. If the mark
// cannot be committed the write fails and the origin is untouched; if the
// origin write fails its error is returned and the mark stays.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	lo, hi, err := d.blocks(off, len(p))
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, d.usable()
	}
	for {
		if d.state.Load() != stateOpen {
			return 0, d.usable()
		}
		ws := d.cur.Load()
		ws.inflight.Add(1)
		// Re-check after announcing the write: a checkpoint swaps the
		// writeset, then waits for the old one's writes to drain.
		if d.cur.Load() == ws && ws.allSet(lo, hi) {
			n, err := d.origin.WriteAt(p, off)
			ws.inflight.Add(-1)
			if n < len(p) && err == nil { // an origin breaking io.WriterAt's contract
				err = io.ErrShortWrite
			}
			return n, err
		}
		ws.inflight.Add(-1)
		if err := d.mark(lo, hi); err != nil {
			return 0, err
		}
	}
}

// mark commits marks for [lo, hi) in the current era, sharing the commit
// with every other first write waiting at the time (group commit).
//
// One waiter at a time is the committer: it takes the whole queue, commits
// once, and answers every request of the batch, which return at once,
// without waiting for the lock. Requests that arrived during the commit
// form the next batch; the committer's role passes to the first of them,
// which first gives the writers just answered a moment to come back with
// their next first writes (gather), so that one commit serves both.
func (d *Device) mark(lo, hi uint64) error {
	d.firstWrites.Add(1)
	req := &markRequest{lo: lo, hi: hi, done: make(chan markReply, 1)}
	d.queueMu.Lock()
	d.queue = append(d.queue, req)
	if d.gathered != nil && (d.gatherAt <= 0 || len(d.queue) >= d.gatherAt) {
		close(d.gathered)
		d.gathered = nil
	}
	lead := !d.committing
	d.committing = true
	// A committer that finds the queue idle waits for the writers of the
	// last commit, if it just ended and served several.
	expect := 0
	if lead && d.lastBatch > 1 && time.Since(d.lastEnd) < gatherMax {
		expect = d.lastBatch
	}
	d.queueMu.Unlock()
	if !lead {
		if r := <-req.done; !r.lead {
			return r.err
		}
		d.gather(0)
	} else if expect > 0 {
		d.gather(expect)
	}

	d.mu.Lock()
	d.queueMu.Lock()
	batch := d.queue
	d.queue = nil
	d.queueMu.Unlock()
	t0 := time.Now()
	err := d.commitMarks(batch)
	t1 := time.Now()
	d.lastCommit.Store(int64(t1.Sub(t0)))
	d.lastMarkEnd.Store(t1.UnixNano())
	d.mu.Unlock()
	for _, r := range batch {
		if r != req {
			r.done <- markReply{err: err}
		}
	}
	d.queueMu.Lock()
	if len(d.queue) > 0 {
		d.queue[0].done <- markReply{lead: true}
	} else {
		d.committing = false
		d.lastBatch, d.lastEnd = len(batch), time.Now()
	}
	d.queueMu.Unlock()
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
func (d *Device) gather(expect int) {
	limit := min(time.Duration(d.lastCommit.Load())/4, gatherMax)
	if limit <= 0 {
		return
	}
	deadline := time.Now().Add(limit)
	for {
		d.queueMu.Lock()
		if expect > 0 && len(d.queue) >= expect {
			d.queueMu.Unlock()
			return
		}
		ch := make(chan struct{})
		d.gatherAt, d.gathered = expect, ch
		d.queueMu.Unlock()
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
		d.queueMu.Lock()
		if d.gathered == ch {
			d.gathered = nil
		}
		d.queueMu.Unlock()
		if !arrived || expect > 0 || !time.Now().Before(deadline) {
			return
		}
	}
}

// commitMarks sets the on-disk bits of every unmarked block of the batch,
// commits once, and only then sets the in-core bits.
func (d *Device) commitMarks(batch []*markRequest) error {
	if err := d.usable(); err != nil {
		return err
	}
	ws := d.cur.Load()
	var blocks []uint64
	for _, r := range batch {
		blocks = ws.unmarked(r.lo, r.hi, blocks)
	}
	if len(blocks) == 0 {
		return nil
	}
	slices.Sort(blocks)
	blocks = slices.Compact(blocks)
	if err := d.md.mark(blocks); err != nil {
		return d.abort(err)
	}
	if err := d.commit(); err != nil {
		return err
	}
	d.markCommits.Add(1)
	for _, b := range blocks {
		ws.set(b)
	}
	return nil
}

// commit commits the metadata; a failure puts the device in fail mode.
func (d *Device) commit() error {
	if err := d.md.commit(); err != nil {
		return d.abort(err)
	}
	d.commits.Add(1)
	if ch := d.commitWake.Swap(nil); ch != nil {
		close(*ch)
	}
	return nil
}

// abort handles an error in the middle of a metadata change. A full
// metadata store leaves the last commit intact: the change is dropped and
// the metadata reopened from it. Anything else (a failed write or sync)
// leaves the store's state unknown: the device fails, refusing changes
// until reopened, while reads and queries go on.
func (d *Device) abort(err error) error {
	if errors.Is(err, ErrNoSpace) && !errors.Is(err, ErrCorrupt) {
		d.md.tm.Abort()
		md, rerr := openMetadata(d.md.bm)
		if rerr == nil {
			d.md = md
			return err
		}
		err = fmt.Errorf("%w (and reopening the last commit failed: %v)", err, rerr)
	}
	if d.state.Load() == stateOpen { // d.mu is held: no other change races
		d.failure = err // before the state, which readers load first
		d.state.Store(stateFailed)
	}
	return err
}

// Checkpoint starts a new era: it archives the current writeset, creates
// the next one and commits. The era always increments. It returns once
// every write tracked in the old era has reached the origin.
func (d *Device) Checkpoint() error {
	return d.rollover(false)
}

// TakeSnapshot starts a new era, as Checkpoint, and holds a metadata
// snapshot of the state at that point: OpenSnapshot on the metadata store
// reads it while the device goes on. A second one fails with
// ErrSnapshotExists.
func (d *Device) TakeSnapshot() error {
	return d.rollover(true)
}

// rollover moves to a new era, with a metadata snapshot if asked.
func (d *Device) rollover(snapshot bool) error {
	next := newWriteset(d.nrBlocks) // zeroed, before taking the lock
	d.mu.Lock()
	if err := d.usable(); err != nil {
		d.mu.Unlock()
		return err
	}
	if snapshot && d.md.sb.MetadataSnap != 0 {
		d.mu.Unlock()
		return ErrSnapshotExists
	}
	d.waitRetired()
	err := d.md.rollover()
	if err == nil && snapshot {
		err = d.md.takeSnapshot()
	}
	if err != nil {
		err = d.abort(err)
	} else {
		err = d.commit()
	}
	if err != nil {
		d.mu.Unlock()
		return err
	}
	old := d.cur.Swap(next)
	d.digesting.Store(true)
	d.spareMu.Lock()
	d.retiring = true
	d.spareMu.Unlock()
	d.mu.Unlock()
	d.kickDigest()
	d.retire(old)
	return nil
}

// waitRetired waits while the writeset of the last era change is still
// being drained, so that an era change returns only once the writes of
// every earlier era have reached the origin.
func (d *Device) waitRetired() {
	d.spareMu.Lock()
	defer d.spareMu.Unlock()
	for d.retiring {
		d.spareCond.Wait()
	}
}

// retire waits for the writes in flight on a replaced writeset, then lets
// it go. It runs without d.mu, so writers are not held up.
func (d *Device) retire(ws *writeset) {
	drain(ws)
	d.spareMu.Lock()
	d.retiring = false
	d.spareMu.Unlock()
	d.spareCond.Broadcast()
}

// drain waits until no write is in flight on ws.
func drain(ws *writeset) {
	for spins := 0; ws.inflight.Load() != 0; spins++ {
		if spins < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// DropSnapshot releases the held metadata snapshot; ErrNoSnapshot if none.
func (d *Device) DropSnapshot() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	if d.md.sb.MetadataSnap == 0 {
		return ErrNoSnapshot
	}
	if err := d.md.dropSnapshot(); err != nil {
		return d.abort(err)
	}
	return d.commit()
}

// Message runs a dm-era message: "checkpoint", "take_metadata_snap" or
// "drop_metadata_snap" (one word, any case). Anything else fails with
// ErrInvalidMessage.
func (d *Device) Message(msg string) error {
	switch strings.ToLower(strings.TrimSpace(msg)) {
	case "checkpoint":
		return d.Checkpoint()
	case "take_metadata_snap":
		return d.TakeSnapshot()
	case "drop_metadata_snap":
		return d.DropSnapshot()
	}
	return fmt.Errorf("%q: %w", msg, ErrInvalidMessage)
}

// WrittenSince returns the blocks written in era n or later (every block
// whose era is >= n), as ascending, coalesced ranges. It merges the era
// array, the archived writesets and the current writeset.
func (d *Device) WrittenSince(n uint32) ([]Range, error) {
	return d.WrittenSinceContext(context.Background(), n)
}

// WrittenSinceContext is WrittenSince with a context that can end a long
// query.
func (d *Device) WrittenSinceContext(ctx context.Context, n uint32) ([]Range, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	set, err := d.md.trees().writtenSince(ctx, n, sinceOptions{})
	if err != nil {
		return nil, err
	}
	return rangesOf(set), nil
}

// BlockEra returns the era in which block b was last written (0: never
// since tracking began).
func (d *Device) BlockEra(b uint64) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.md.trees().blockEra(b)
}

// NrBlocks returns the number of tracked origin blocks.
func (d *Device) NrBlocks() uint64 { return d.nrBlocks }

// BlockBytes returns the tracked block size in bytes.
func (d *Device) BlockBytes() uint64 { return d.blockBytes }

// Size returns the origin's size in bytes.
func (d *Device) Size() int64 { return d.size }

// Sync commits pending metadata changes (digest progress) and syncs the
// origin if it has a Sync method.
func (d *Device) Sync() error {
	d.mu.Lock()
	err := d.usable()
	if err == nil {
		err = d.commit()
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if s, ok := d.origin.(block.Syncer); ok {
		return s.Sync()
	}
	return nil
}

// Close archives the current writeset, stops the background digest and
// commits; nothing is written after that final commit. Every call after
// Close returns ErrClosed.
func (d *Device) Close() error {
	d.mu.Lock()
	prev := d.state.Swap(stateClosed)
	d.mu.Unlock()
	if prev == stateClosed {
		return ErrClosed
	}
	drain(d.cur.Load())
	close(d.stopDigest)
	<-d.digestDone
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev == stateFailed {
		return fmt.Errorf("device had failed (%v): %w", d.failure, ErrReadOnly)
	}
	if err := d.md.archive(); err != nil {
		return err
	}
	if err := d.md.commit(); err != nil {
		return err
	}
	d.commits.Add(1)
	return nil
}

// kickDigest wakes the digest worker.
func (d *Device) kickDigest() {
	select {
	case d.kick <- struct{}{}:
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
	defer close(d.digestDone)
	for {
		select {
		case <-d.stopDigest:
			return
		case <-d.kick:
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
			case <-d.stopDigest:
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
	d.commitWake.Store(&ch)
	if d.commits.Load() != seen {
		return
	}
	t := time.NewTimer(digestWaitMax)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-d.stopDigest:
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
	busy = time.Since(time.Unix(0, d.lastMarkEnd.Load())) < digestBusyWindow
	if dirty := d.md.tm.Dirty(); dirty >= digestPendingBusy {
		if busy && dirty < digestPendingIdle {
			return true, true, true, d.commits.Load()
		}
		if err := d.commit(); err != nil {
			return false, false, false, 0
		}
	}
	more, err := d.md.digestStep()
	if err != nil {
		d.abort(err)
		return false, false, false, 0
	}
	if !more {
		d.commit()
		d.digesting.Store(false)
		return false, false, false, 0
	}
	return true, busy, false, d.commits.Load()
}

// sortRanges sorts ranges by start (used by callers that merge).
func sortRanges(rs []Range) {
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Begin, b.Begin) })
}
