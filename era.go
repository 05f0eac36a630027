package era

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Format lets Open format a metadata store that is all zero in its
	// first block. Without it such a store fails with ErrNoMetadata, so
	// that swapped arguments or a wrong path never overwrite data. A store
	// that holds era metadata is opened either way; one that holds
	// anything else is never formatted.
	Format bool
	// OriginSize is the origin's size in bytes; 0: ask the origin (a
	// Size() int64 method, or Stat() as *os.File has).
	OriginSize int64
	// MetadataSize is the metadata store's size in bytes; 0: ask the store
	// the same way. When the store is larger than its metadata's space map,
	// Open extends the space map to use it.
	MetadataSize int64
	// CacheBlocks bounds the metadata block cache (4 KiB blocks); 0:
	// block.DefaultCacheBlocks.
	CacheBlocks int
	// MaxBacklog bounds the archived writesets that wait to be digested
	// into the era array; 0: DefaultMaxBacklog. An era change that finds
	// the bound reached digests inline first, so the metadata in use stays
	// bounded whatever the rate of checkpoints and reopens.
	MaxBacklog int
	// Events, if set, is called for the events an operator must see (see
	// Event). It runs on the goroutine that caused the event, so it must
	// return quickly and must not call the Device.
	Events func(Event)
	// Logger, if set, receives the same events as log records.
	Logger *slog.Logger
	// SlowCommit is the commit duration from which an EventSlowCommit is
	// reported; 0: one second.
	SlowCommit time.Duration
	// UsageWarn is the share of the metadata store in use (0 to 1) from
	// which an EventUsage is reported, once per crossing; 0: 0.8.
	UsageWarn float64
}

// DefaultMaxBacklog is the bound on undigested archived writesets when
// Config.MaxBacklog is 0.
const DefaultMaxBacklog = 8

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
	cfg        Config
	unlock     func() error // releases the ownership of the metadata store

	state atomic.Int32
	// cur holds the committed marks of the current era; the write path
	// reads it without locks.
	cur atomic.Pointer[writeset]

	// mu serializes every metadata change: marking, commits, checkpoints,
	// snapshots and digest steps. Queries take it only to pin a commit.
	mu      sync.Mutex
	md      *metadata
	bm      *block.Manager // md's block manager, for Stats
	failure error          // why the device failed, in stateFailed
	owner   *Snapshot      // the handle that owns the held snapshot, if any
	// pit is the held point-in-time snapshot, if any; the writesets of
	// its eras point at it too.
	pit atomic.Pointer[pointInTime]

	// status is the status as of the last commit, read without locks.
	status atomic.Pointer[Status]

	// retiring is set while the writeset an era change replaced is still
	// being drained; the next era change waits for it. Only the current
	// writeset is kept: the next era's is allocated at the change (a table
	// of empty chunks), and a retired one is left to the garbage
	// collector, so the device holds at most one bit per block between era
	// changes.
	retireMu   sync.Mutex
	retireCond *sync.Cond
	retiring   bool

	// marks batches first writes into shared commits (group commit).
	marks batch
	// digest is the background digest worker.
	digest digester
	// counts counts commits and their durations.
	counts commitCounts
	// usageHigh is set while the usage is above Config.UsageWarn.
	usageHigh atomic.Bool
}

// Open opens the era device over the metadata store meta and origin. It is
// a table load plus resume in dm terms. It takes the ownership of the
// metadata store (ErrLocked while another Device has it, see Locker). It
// formats a store whose first block is all zero when cfg.Format is set,
// and refuses it otherwise (ErrNoMetadata), as it refuses a store holding
// anything but era metadata; it validates the superblock and refuses
// another block size (ErrBlockSizeMismatch). It extends the space map to a
// grown store, resizes the era array to the origin's block count, archives
// a current writeset left by a crash, starts a new era and commits. A fresh
// device therefore starts at era 1, as the kernel's.
//
// Blocks that the resize of an existing device adds are recorded as written
// in the era that begins: their content is new to any backup. A shrink
// forgets the blocks past the new end. Either way every answer afterwards
// is the same whatever the background digest had done before.
func Open(meta, origin interface {
	io.ReaderAt
	io.WriterAt
}, cfg Config) (_ *Device, err error) {
	if cfg.BlockSectors == 0 || cfg.BlockSectors%8 != 0 {
		return nil, fmt.Errorf("block size of %d sectors: must be a positive multiple of 8: %w", cfg.BlockSectors, ErrInvalidConfig)
	}
	if cfg.MaxBacklog < 0 || cfg.UsageWarn < 0 || cfg.UsageWarn > 1 || cfg.SlowCommit < 0 {
		return nil, fmt.Errorf("MaxBacklog %d, UsageWarn %g, SlowCommit %v: %w", cfg.MaxBacklog, cfg.UsageWarn, cfg.SlowCommit, ErrInvalidConfig)
	}
	if cfg.MaxBacklog == 0 {
		cfg.MaxBacklog = DefaultMaxBacklog
	}
	if cfg.UsageWarn == 0 {
		cfg.UsageWarn = 0.8
	}
	if cfg.SlowCommit == 0 {
		cfg.SlowCommit = time.Second
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
	unlock, err := lockStore(meta)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	md, fresh, err := loadMetadata(bm, cfg)
	if err != nil {
		return nil, err
	}
	if md.sb.DataBlockSize != cfg.BlockSectors {
		return nil, fmt.Errorf("metadata block size is %d sectors, asked for %d: %w", md.sb.DataBlockSize, cfg.BlockSectors, ErrBlockSizeMismatch)
	}
	if err := md.sm.Extend(bm.NrBlocks()); err != nil {
		return nil, fmt.Errorf("extend the space map to the %d-block store: %w", bm.NrBlocks(), err)
	}
	if md.sb.UUID == ([16]byte{}) { // formatted by the kernel or era_restore
		if md.sb.UUID, err = newUUID(); err != nil {
			return nil, err
		}
	}
	// A point-in-time snapshot's data index died with the process that
	// held it: its metadata snapshot cannot be trusted as an image.
	lostPIT, lostEra, err := md.pitSnapshot()
	if err != nil {
		return nil, err
	}
	if lostPIT {
		if err := md.dropSnap(); err != nil {
			return nil, fmt.Errorf("drop the point-in-time snapshot of era %d: %w", lostEra, err)
		}
	}
	oldBlocks := uint64(md.sb.NrBlocks)
	if err := md.resize(uint32(nrBlocks)); err != nil {
		return nil, err
	}
	if err := md.eraRollover(); err != nil {
		return nil, err
	}
	var added []uint64
	if !fresh && nrBlocks > oldBlocks {
		added = []uint64{oldBlocks, nrBlocks}
		if err := md.markRange(oldBlocks, nrBlocks); err != nil {
			return nil, err
		}
	}
	if err := md.digestDown(cfg.MaxBacklog); err != nil {
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
		cfg:        cfg,
		unlock:     unlock,
		md:         md,
		bm:         bm,
		digest: digester{
			kick: make(chan struct{}, 1),
			stop: make(chan struct{}),
			done: make(chan struct{}),
		},
	}
	d.retireCond = sync.NewCond(&d.retireMu)
	d.marks.commit = d.commitBatch
	ws := newWriteset(nrBlocks)
	if added != nil {
		for b := added[0]; b < added[1]; b++ {
			ws.set(b)
		}
	}
	d.cur.Store(ws)
	d.committed()
	d.digest.pending.Store(md.backlog > 0)
	if lostPIT {
		d.emit(Event{Kind: EventSnapshotLost, Era: lostEra})
	}
	go d.digestLoop()
	d.kickDigest()
	return d, nil
}

// loadMetadata opens the era metadata of bm, or formats it when block 0 is
// all zero and cfg.Format is set. fresh reports a format.
func loadMetadata(bm *block.Manager, cfg Config) (md *metadata, fresh bool, err error) {
	b0, err := bm.ReadRaw(0)
	if err != nil {
		return nil, false, fmt.Errorf("read block 0: %w", err)
	}
	switch {
	case eraMagicAt(b0):
		md, err = openMetadata(bm)
		return md, false, err
	case !isZero(b0):
		return nil, false, fmt.Errorf("the metadata store holds %s, not era metadata: %w", describe(b0), ErrNoMetadata)
	case !cfg.Format:
		return nil, false, fmt.Errorf("the metadata store is all zero in its first block (set Config.Format to format it): %w", ErrNoMetadata)
	}
	uuid, err := newUUID()
	if err != nil {
		return nil, false, err
	}
	md, err = formatMetadata(bm, cfg.BlockSectors)
	if err != nil {
		return nil, false, err
	}
	md.sb.UUID = uuid
	return md, true, nil
}

// isZero reports whether b holds only zeros.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sizeOf returns given if non-zero, else asks s for its size.
func sizeOf(s any, given int64, what string) (int64, error) {
	if given < 0 {
		return 0, fmt.Errorf("%s size %d: %w", what, given, ErrInvalidConfig)
	}
	if given > 0 {
		return given, nil
	}
	n, err := StoreSize(s)
	if err != nil {
		return 0, fmt.Errorf("%s %w", what, err)
	}
	return n, nil
}

// StoreSize returns the size in bytes of a store, as Open finds it when
// Config leaves the size zero: from a Size method, from Stat for anything
// but a device, or by seeking to the end (a block device, whose Stat says
// 0). A store that offers none of them fails with ErrInvalidConfig: give
// its size in Config.
func StoreSize(s any) (int64, error) {
	if sz, ok := s.(interface{ Size() int64 }); ok {
		return sz.Size(), nil
	}
	if st, ok := s.(interface{ Stat() (os.FileInfo, error) }); ok {
		fi, err := st.Stat()
		if err != nil {
			return 0, fmt.Errorf("size: %w", err)
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return fi.Size(), nil
		}
	}
	if sk, ok := s.(io.Seeker); ok {
		n, err := sk.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("size: %w", err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("size unknown (no Size, Stat or Seek): set it in Config: %w", ErrInvalidConfig)
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

// ReadAt reads from the origin, following io.ReaderAt: a read that
// reaches past the end of the origin reads the bytes before the end and
// returns io.EOF; a negative offset fails with ErrOutOfRange.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if d.state.Load() == stateClosed {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: %w", off, ErrOutOfRange)
	}
	if off >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	short := int64(len(p)) > d.size-off
	if short {
		p = p[:d.size-off]
	}
	n, err := d.origin.ReadAt(p, off)
	if n == len(p) && (err == nil || err == io.EOF) {
		if short {
			return n, io.EOF
		}
		return n, nil
	}
	if err == nil || err == io.EOF { // an origin shorter than its size
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// WriteAt writes to the origin, marking every block the write touches in
// the current era. A block not yet marked is marked and committed before any
// byte reaches the origin; concurrent first writes share one commit. A
// write whose blocks are all marked goes straight to the origin. If the mark
// cannot be committed the write fails and the origin is untouched; if the
// origin write fails its error is returned and the mark stays. A write
// past the end of the origin fails with ErrOutOfRange and writes nothing.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	return d.write(off, len(p), func() (int, error) {
		n, err := d.origin.WriteAt(p, off)
		if n < len(p) && err == nil { // an origin breaking io.WriterAt's contract
			err = io.ErrShortWrite
		}
		return n, err
	})
}

// write runs do, which changes bytes [off, off+n) of the origin, once every
// block they touch is marked in the current era, within the era's
// in-flight count (see writeset).
func (d *Device) write(off int64, n int, do func() (int, error)) (int, error) {
	lo, hi, err := d.blocks(off, n)
	if err != nil {
		return 0, err
	}
	if n == 0 {
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
			if p := ws.pit; p != nil && !p.copied.allSet(lo, hi) {
				p.preserve(lo, hi)
			}
			n, err := do()
			ws.inflight.Add(-1)
			return n, err
		}
		ws.inflight.Add(-1)
		if err := d.marks.run(lo, hi); err != nil {
			return 0, err
		}
	}
}

// commitBatch commits the marks of a batch of first writes under the
// device's lock.
func (d *Device) commitBatch(batch []*markRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.commitMarks(batch)
}

// commitMarks sets the on-disk bits of every unmarked block of the batch,
// commits once, and only then sets the in-core bits. It refuses the batch
// with ErrNoSpace, leaving the device usable, when the marks would eat
// into the reserve of metadata blocks kept for the operations that free
// space (digest, dropping a snapshot, the era changes they need).
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
	if free, need := d.md.free(), d.md.reserve()+d.md.markCost(blocks); free < need {
		d.kickDigest()
		return fmt.Errorf("marking %d blocks needs up to %d free metadata blocks beyond the %d kept in reserve; %d are free (digest, drop the snapshot or grow the store): %w",
			len(blocks), need-d.md.reserve(), d.md.reserve(), free, ErrNoSpace)
	}
	if err := d.md.mark(blocks); err != nil {
		return d.abort(err)
	}
	if err := d.commitAndPublish(); err != nil {
		return err
	}
	d.counts.marks.Add(1)
	for _, b := range blocks {
		ws.set(b)
	}
	return nil
}

// commitAndPublish commits the metadata, counts the commit and publishes
// the status; a failure puts the device in fail mode.
func (d *Device) commitAndPublish() error {
	if err := d.commitCounted(); err != nil {
		return err
	}
	d.committed()
	return nil
}

// commitCounted commits the metadata and counts the commit, leaving the
// status to publish (committed) to the caller; a failure puts the device in
// fail mode. An era change publishes only once the new era's writeset is
// in place: a writer that has seen the new era in the status then tracks
// its write in that era, never in the one before.
func (d *Device) commitCounted() error {
	t0 := time.Now()
	if err := d.md.commit(); err != nil {
		return d.abort(err)
	}
	took := time.Since(t0)
	d.counts.add(took)
	if took >= d.cfg.SlowCommit {
		d.emit(Event{Kind: EventSlowCommit, Took: took})
	}
	if ch := d.digest.wake.Swap(nil); ch != nil {
		close(*ch)
	}
	return nil
}

// committed publishes the status of the commit just made, and reports a
// crossing of the usage threshold. d.mu is held.
func (d *Device) committed() {
	st := d.md.status()
	d.status.Store(&st)
	high := float64(st.UsedMetadataBlocks) >= d.cfg.UsageWarn*float64(st.TotalMetadataBlocks)
	if d.usageHigh.Swap(high) != high && high {
		d.emit(Event{Kind: EventUsage, Used: st.UsedMetadataBlocks, Total: st.TotalMetadataBlocks})
	}
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
			md.sm.TakePins(d.md.sm)
			md.backlog = d.md.backlog
			if md.sb != d.md.committed { // cannot happen: the last commit was read back
				rerr = errors.New("reopened metadata differs from the last commit")
			} else {
				d.md = md
				d.emit(Event{Kind: EventNoSpace, Err: err})
				return err
			}
		}
		err = fmt.Errorf("%w (and reopening the last commit failed: %v)", err, rerr)
	}
	if d.state.Load() == stateOpen { // d.mu is held: no other change races
		d.failure = err // before the state, which readers load first
		d.state.Store(stateFailed)
		d.emit(Event{Kind: EventFailed, Err: err})
	}
	return err
}

// Checkpoint starts a new era and returns it: it archives the current
// writeset, creates the next one and commits. The era always increments.
// It returns once every write tracked in the old era has reached the
// origin. A backup that records the era returned (or ChangeID with it)
// and later asks for WrittenSince of it gets every write made after this
// call returned, whatever other callers checkpoint meanwhile.
func (d *Device) Checkpoint() (uint32, error) {
	return d.changeEra(nil)
}

// TakeSnapshot starts a new era, as Checkpoint, holds a metadata snapshot
// of the state at that point, and returns the era. OpenSnapshot on the
// metadata store (or SnapshotView) reads it while the device goes on; it
// holds every write of the eras before the one returned. A second one
// fails with ErrSnapshotExists. Anyone may drop it (DropSnapshot), as with
// the kernel's messages; a Snapshot handle (HoldSnapshot) is owned.
func (d *Device) TakeSnapshot() (uint32, error) {
	return d.changeEra(&Snapshot{})
}

// changeEra moves to a new era, taking a metadata snapshot for snap if it is
// not nil.
func (d *Device) changeEra(snap *Snapshot) (uint32, error) {
	next := newWriteset(d.nrBlocks) // zeroed, before taking the lock
	d.lockRetired()
	if err := d.usable(); err != nil {
		d.mu.Unlock()
		return 0, err
	}
	if snap != nil && d.md.sb.MetadataSnap != 0 {
		d.mu.Unlock()
		return 0, ErrSnapshotExists
	}
	if d.md.backlog >= d.cfg.MaxBacklog {
		d.emit(Event{Kind: EventBacklog, Backlog: d.md.backlog})
	}
	err := d.md.digestDown(d.cfg.MaxBacklog - 1)
	if err == nil {
		err = d.md.eraRollover()
	}
	if err == nil && snap != nil {
		err = d.md.takeSnap(snap.pit != nil)
	}
	if err != nil {
		err = d.abort(err)
	} else {
		err = d.commitCounted()
	}
	if err != nil {
		d.mu.Unlock()
		return 0, err
	}
	era := d.md.sb.CurrentEra
	if snap != nil {
		snap.d, snap.era, snap.loc = d, era, d.md.sb.MetadataSnap
		if snap.owned {
			d.owner = snap
		}
		if snap.pit != nil {
			snap.pit.era = era
			d.pit.Store(snap.pit)
		}
	}
	next.pit = d.pit.Load()
	old := d.cur.Swap(next)
	d.committed() // the new era, visible once writes are tracked in it
	d.digest.pending.Store(true)
	d.retireMu.Lock()
	d.retiring = true
	d.retireMu.Unlock()
	d.mu.Unlock()
	d.kickDigest()
	d.retire(old)
	if snap != nil && snap.pit != nil {
		close(snap.pit.ready) // the snapshot's moment: copies may begin
	}
	return era, nil
}

// lockRetired takes d.mu once the writeset of the last era change is
// drained, so that an era change returns only once the writes of every
// earlier era have reached the origin. It waits without d.mu: a stuck
// origin write holds up the next era change, not the status or queries.
func (d *Device) lockRetired() {
	for {
		d.retireMu.Lock()
		for d.retiring {
			d.retireCond.Wait()
		}
		d.retireMu.Unlock()
		d.mu.Lock()
		d.retireMu.Lock()
		busy := d.retiring // another era change slipped in
		d.retireMu.Unlock()
		if !busy {
			return
		}
		d.mu.Unlock()
	}
}

// retire waits for the writes in flight on a replaced writeset, then lets
// it go. It runs without d.mu, so writers are not held up.
func (d *Device) retire(ws *writeset) {
	drain(ws)
	d.retireMu.Lock()
	d.retiring = false
	d.retireMu.Unlock()
	d.retireCond.Broadcast()
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

// DropSnapshot releases the held metadata snapshot: ErrNoSnapshot if none
// is held, ErrSnapshotOwned if a Snapshot handle owns it.
func (d *Device) DropSnapshot() error {
	return d.dropSnapshotOf(nil)
}

// dropSnapshotOf drops the held snapshot on behalf of owner (nil: anyone).
func (d *Device) dropSnapshotOf(owner *Snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(); err != nil {
		return err
	}
	if d.md.sb.MetadataSnap == 0 || owner != nil && (owner != d.owner || owner.loc != d.md.sb.MetadataSnap) {
		return ErrNoSnapshot
	}
	if d.owner != nil && owner != d.owner {
		return fmt.Errorf("snapshot of era %d: %w", d.owner.era, ErrSnapshotOwned)
	}
	if err := d.md.dropSnap(); err != nil {
		return d.abort(err)
	}
	if err := d.commitAndPublish(); err != nil {
		return err
	}
	d.owner = nil
	if p := d.pit.Swap(nil); p != nil {
		p.release()
	}
	d.kickDigest() // the snapshot may have held the space the digest needs
	return nil
}

// Message runs a dm-era message: "checkpoint", "take_metadata_snap" or
// "drop_metadata_snap" (one word, any case). Anything else fails with
// ErrInvalidMessage.
func (d *Device) Message(msg string) error {
	var err error
	switch strings.ToLower(strings.TrimSpace(msg)) {
	case "checkpoint":
		_, err = d.Checkpoint()
	case "take_metadata_snap":
		_, err = d.TakeSnapshot()
	case "drop_metadata_snap":
		err = d.DropSnapshot()
	default:
		err = fmt.Errorf("%q: %w", msg, ErrInvalidMessage)
	}
	return err
}

// CurrentEra returns the current era (0 after Close).
func (d *Device) CurrentEra() uint32 { return d.Status().CurrentEra }

// UUID returns the identity of the device's metadata (see ChangeID).
func (d *Device) UUID() [16]byte { return d.status.Load().uuid }

// ChangeID returns the change ID of the current era: what changed since it
// is what will be written from now on.
func (d *Device) ChangeID() ChangeID {
	st := d.status.Load()
	return ChangeID{UUID: st.uuid, Era: st.CurrentEra}
}

// NrBlocks returns the number of tracked origin blocks.
func (d *Device) NrBlocks() uint64 { return d.nrBlocks }

// BlockBytes returns the tracked block size in bytes.
func (d *Device) BlockBytes() uint64 { return d.blockBytes }

// Size returns the origin's size in bytes.
func (d *Device) Size() int64 { return d.size }

// Sync commits pending metadata changes (digest progress), if there are
// any, and syncs the origin if it has a Sync method. With nothing to
// commit it does no metadata I/O.
func (d *Device) Sync() error {
	d.mu.Lock()
	err := d.usable()
	if err == nil && d.md.changed() {
		err = d.commitAndPublish()
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

// Close archives the current writeset, drops a held point-in-time
// snapshot (its copies live in this process), digests the backlog down to
// its bound, stops the background digest, commits and releases the metadata
// store; nothing is written after that final commit. Every call after
// Close returns ErrClosed (or, for the methods without an error, the zero
// value: Status, CurrentEra, ChangeID).
func (d *Device) Close() error {
	d.mu.Lock()
	prev := d.state.Swap(stateClosed)
	d.mu.Unlock()
	if prev == stateClosed {
		return ErrClosed
	}
	drain(d.cur.Load())
	close(d.digest.stop)
	<-d.digest.done
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.status.Store(&Status{})
	defer d.unlock()
	if prev == stateFailed {
		return fmt.Errorf("device had failed (%v): %w", d.failure, ErrReadOnly)
	}
	if p := d.pit.Swap(nil); p != nil {
		// Its copies live in this process only: drop it, as the next
		// Open would.
		p.release()
		if err := d.md.dropSnap(); err != nil {
			return err
		}
		d.owner = nil
	}
	if err := d.md.archive(); err != nil {
		return err
	}
	if err := d.md.digestDown(d.cfg.MaxBacklog); err != nil {
		return err
	}
	if err := d.md.commit(); err != nil {
		return err
	}
	d.counts.commits.Add(1)
	return nil
}
