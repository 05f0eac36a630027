package era

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// PointInTimeOptions shape a point-in-time snapshot (HoldPointInTime).
type PointInTimeOptions struct {
	// Size bounds the bytes of the difference store the snapshot may use,
	// in whole tracked blocks; 0: no bound but the store's own (a write
	// that fails). The copy that would pass it fails the snapshot with
	// ErrSnapshotOverflow.
	Size int64
}

// States of a point-in-time snapshot.
const (
	pitActive int32 = iota
	pitFailed
	pitReleased
)

// pointInTime is the data side of a point-in-time snapshot: the blocks
// overwritten since it was taken, each copied once, before its first
// overwrite, to the difference store.
//
// The copies are laid out in the store in the order they were made, one
// tracked block each; slots maps an origin block to its copy. The index is
// in memory only: a crash (or Close) loses it, and the next Open drops the
// metadata snapshot it belonged to (see Open).
//
// Every writeset of the eras the snapshot is held in points at it
// (writeset.pit); the writes of earlier eras, which the snapshot holds,
// never copy. Those writes may still be in flight when the snapshot is
// taken: ready is closed once they have drained, and no copy is made
// before, so the snapshot is the image at a single moment.
type pointInTime struct {
	d          *Device
	diff       Store
	blockBytes uint64
	size       int64  // origin bytes
	maxSlots   uint64 // 0: unbounded
	era        uint32

	ready  chan struct{}
	state  atomic.Int32
	copied *writeset // blocks whose copy is in the difference store
	next   atomic.Uint64
	locks  [64]sync.Mutex // one copy of a block at a time

	// mu is held shared by copies and reads, and exclusively by release,
	// so that nothing touches the difference store after it is freed.
	mu      sync.RWMutex
	slots   *slotTable // nil once released
	nCopied atomic.Uint64
	err     error // why it failed; set before state, read after it
	errMu   sync.Mutex
	bufs    sync.Pool
}

func newPointInTime(d *Device, diff Store, opts PointInTimeOptions) (*pointInTime, error) {
	if diff == nil {
		return nil, fmt.Errorf("point-in-time snapshot without a difference store: %w", ErrInvalidConfig)
	}
	if opts.Size < 0 {
		return nil, fmt.Errorf("difference store size %d: %w", opts.Size, ErrInvalidConfig)
	}
	p := &pointInTime{
		d:          d,
		diff:       diff,
		blockBytes: d.blockBytes,
		size:       d.size,
		ready:      make(chan struct{}),
		copied:     newWriteset(d.nrBlocks),
		slots:      newSlotTable(d.nrBlocks),
	}
	if opts.Size > 0 {
		p.maxSlots = uint64(opts.Size) / d.blockBytes
		if p.maxSlots == 0 {
			return nil, fmt.Errorf("difference store size %d is less than one %d-byte block: %w", opts.Size, d.blockBytes, ErrInvalidConfig)
		}
	}
	p.bufs.New = func() any { b := make([]byte, p.blockBytes); return &b }
	return p, nil
}

// HoldPointInTime takes a point-in-time snapshot: a metadata snapshot, as
// HoldSnapshot takes, that also preserves the data. While it is held, the
// first write to a block since the snapshot first copies the block's old
// content to diff (a file, a second device, any Store); later writes to it
// go straight through, at the cost of one bit test. The Snapshot reads as
// the image exactly as it was when HoldPointInTime returned (ReadAt), and
// its View answers the queries of that moment. Release frees it, and the
// difference store's space when diff can be truncated (a Truncate method,
// as *os.File has).
//
// When diff is full (opts.Size reached, or a write to it fails) the
// snapshot fails: its reads return ErrSnapshotOverflow, an
// EventSnapshotOverflow is reported, and the device goes on writing and
// tracking as if no snapshot were held. The copy index is kept in memory:
// after a crash, or a Close with the snapshot held, the next Open drops
// the metadata snapshot and reports EventSnapshotLost; the change tracking
// loses nothing either way. ErrSnapshotExists while any snapshot is held.
func (d *Device) HoldPointInTime(diff Store, opts PointInTimeOptions) (*Snapshot, error) {
	p, err := newPointInTime(d, diff, opts)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{owned: true, pit: p}
	if _, err := d.changeEra(s); err != nil {
		return nil, err
	}
	return s, nil
}

// active reports whether writes must still copy for the snapshot.
func (p *pointInTime) active() bool { return p.state.Load() == pitActive }

// preserve copies to the difference store every block of [lo, hi) not
// copied yet, before a write to them. It never fails the write: a copy
// that cannot be made fails the snapshot instead.
func (p *pointInTime) preserve(lo, hi uint64) {
	if !p.active() {
		return
	}
	<-p.ready
	p.mu.RLock()
	defer p.mu.RUnlock()
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	for b := lo; b < hi && p.active(); b++ {
		if p.copied.test(b) {
			continue
		}
		m := &p.locks[b%uint64(len(p.locks))]
		m.Lock()
		if !p.copied.test(b) && p.active() {
			if err := p.copyBlock(b, *bp); err != nil {
				p.fail(err)
			}
		}
		m.Unlock()
	}
}

// copyBlock copies origin block b to the next slot of the difference
// store. The caller holds b's lock.
func (p *pointInTime) copyBlock(b uint64, buf []byte) error {
	slot := p.next.Add(1) - 1
	if p.maxSlots > 0 && slot >= p.maxSlots {
		return fmt.Errorf("difference store full: %d blocks of %d bytes copied: %w", p.maxSlots, p.blockBytes, ErrSnapshotOverflow)
	}
	off := int64(b * p.blockBytes)
	n := min(int64(p.blockBytes), p.size-off)
	if _, err := p.d.origin.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF)) {
		return fmt.Errorf("read origin block %d to preserve it: %w: %w", b, err, ErrSnapshotOverflow)
	}
	if _, err := p.diff.WriteAt(buf[:n], int64(slot*p.blockBytes)); err != nil {
		return fmt.Errorf("copy block %d to the difference store: %w: %w", b, err, ErrSnapshotOverflow)
	}
	p.slots.set(b, slot)
	p.nCopied.Add(1)
	p.copied.setAtomic(b)
	return nil
}

// fail marks the snapshot failed and reports it, once.
func (p *pointInTime) fail(err error) {
	p.errMu.Lock()
	first := p.err == nil && p.state.Load() == pitActive
	if first {
		p.err = err
		p.state.Store(pitFailed)
	}
	p.errMu.Unlock()
	if first {
		p.d.emit(Event{Kind: EventSnapshotOverflow, Era: p.era, Err: err})
	}
}

// Err returns nil while the snapshot is good.
func (p *pointInTime) Err() error {
	switch p.state.Load() {
	case pitFailed:
		p.errMu.Lock()
		defer p.errMu.Unlock()
		return fmt.Errorf("point-in-time snapshot of era %d: %w", p.era, p.err)
	case pitReleased:
		return fmt.Errorf("point-in-time snapshot of era %d: %w", p.era, ErrSnapshotDropped)
	}
	return nil
}

// release stops the copies and frees the difference store.
func (p *pointInTime) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() == pitReleased {
		return
	}
	p.errMu.Lock()
	p.state.Store(pitReleased)
	p.errMu.Unlock()
	p.slots = nil // p.mu is held: no copy or read is under way
	if t, ok := p.diff.(interface{ Truncate(int64) error }); ok {
		t.Truncate(0) // best effort: the space is the store owner's
	}
}

// readAt reads the image as of the snapshot.
func (p *pointInTime) readAt(buf []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, ErrOutOfRange)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.Err(); err != nil {
		return 0, err
	}
	if off >= p.size {
		return 0, io.EOF
	}
	want := len(buf)
	if int64(want) > p.size-off {
		buf = buf[:p.size-off]
	}
	if err := p.readRange(buf, off); err != nil {
		return 0, err
	}
	// A write that overwrote a block without copying it (the snapshot
	// failed meanwhile) may have changed what was read.
	if err := p.Err(); err != nil {
		return 0, err
	}
	if len(buf) < want {
		return len(buf), io.EOF
	}
	return len(buf), nil
}

// readRange reads buf at off, within the image: each run of blocks not
// copied in one origin read, each copied block from its copy. A block
// copied during the origin read may have been overwritten meanwhile: it
// is read again from its copy, which was written before any overwrite.
func (p *pointInTime) readRange(buf []byte, off int64) error {
	bb := int64(p.blockBytes)
	for done := 0; done < len(buf); {
		pos := off + int64(done)
		b := uint64(pos / bb)
		last := uint64((off + int64(len(buf)) - 1) / bb)
		if p.copied.test(b) {
			// The run of blocks copied to consecutive slots from b on.
			slot, err := p.slotOf(b)
			if err != nil {
				return err
			}
			end := b + 1
			for end <= last && p.copied.test(end) {
				if s, ok := p.slots.get(end); !ok || s != slot+(end-b) {
					break
				}
				end++
			}
			n := min(len(buf)-done, int(int64(end)*bb-pos))
			at := int64(slot*p.blockBytes) + pos%bb
			if _, err := p.diff.ReadAt(buf[done:done+n], at); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read block %d from the difference store: %w", b, err)
			}
			done += n
			continue
		}
		// The run of blocks not copied from b on.
		end := b + 1
		for end <= last && !p.copied.test(end) {
			end++
		}
		n := min(len(buf)-done, int(int64(end)*bb-pos))
		piece := buf[done : done+n]
		if _, err := p.d.origin.ReadAt(piece, pos); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read origin at %d: %w", pos, err)
		}
		for c := b; c < end; c++ {
			if !p.copied.test(c) {
				continue
			}
			lo := max(pos, int64(c)*bb)
			hi := min(pos+int64(n), int64(c+1)*bb)
			if err := p.readCopy(c, uint64(lo%bb), piece[lo-pos:hi-pos]); err != nil {
				return err
			}
		}
		done += n
	}
	return nil
}

// slotOf returns the slot of copied block b.
func (p *pointInTime) slotOf(b uint64) (uint64, error) {
	slot, ok := p.slots.get(b)
	if !ok { // cannot happen: the caller holds p.mu and b is copied
		return 0, errors.Join(p.Err(), fmt.Errorf("era: point-in-time copy of block %d vanished", b))
	}
	return slot, nil
}

// readCopy reads piece from the copy of block b, at offset in.
func (p *pointInTime) readCopy(b, in uint64, piece []byte) error {
	slot, err := p.slotOf(b)
	if err != nil {
		return err
	}
	if _, err := p.diff.ReadAt(piece, int64(slot*p.blockBytes+in)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read block %d from the difference store: %w", b, err)
	}
	return nil
}

// copiedBlocks returns the number of blocks copied to the difference
// store.
func (p *pointInTime) copiedBlocks() uint64 { return p.nCopied.Load() }

// slotTable maps origin blocks to their slots in the difference store:
// 4 bytes per block (slot+1; 0: none), in chunks allocated when a block in
// them is first copied, so that it costs memory only where writes went.
type slotTable struct {
	chunks []atomic.Pointer[slotChunk]
}

const slotShift = 16

type slotChunk [1 << slotShift]atomic.Uint32

func newSlotTable(n uint64) *slotTable {
	return &slotTable{chunks: make([]atomic.Pointer[slotChunk], (n+1<<slotShift-1)>>slotShift)}
}

// get returns block b's slot, if it has one.
func (t *slotTable) get(b uint64) (uint64, bool) {
	c := t.chunks[b>>slotShift].Load()
	if c == nil {
		return 0, false
	}
	v := c[b&(1<<slotShift-1)].Load()
	return uint64(v) - 1, v != 0
}

// set records block b's slot (below 2^32-1: there is one slot per block
// copied, and fewer than 2^31 blocks). Calls may run concurrently.
func (t *slotTable) set(b, slot uint64) {
	cp := &t.chunks[b>>slotShift]
	c := cp.Load()
	if c == nil {
		cp.CompareAndSwap(nil, new(slotChunk)) // or another caller published one
		c = cp.Load()
	}
	c[b&(1<<slotShift-1)].Store(uint32(slot + 1))
}

// setAtomic marks block b; unlike set, calls may run concurrently.
func (w *writeset) setAtomic(b uint64) {
	cp := &w.chunks[b>>chunkShift]
	c := cp.Load()
	if c == nil {
		cp.CompareAndSwap(nil, new(chunk)) // or another caller published one
		c = cp.Load()
	}
	c[(b/64)%chunkWords].Or(1 << (b % 64))
}

// A point-in-time snapshot's clone carries pitMark past the identity copy
// (bytes 224 to 247), so that Open recognizes one whose holder is gone.
const pitMarkOff = identityTagOff + 8

var pitMark = []byte("era-pit1")
