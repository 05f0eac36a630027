// Package erasim simulates a disk that can lose power, fail and fill up,
// for testing storage code that promises crash safety.
//
// A Store is an in-memory io.ReaderAt and io.WriterAt with a Sync method
// and a Size, so it can stand in for an *os.File (the era package takes
// one as its metadata store or its origin). It records every write and
// every sync it accepts, and CrashImage rebuilds the bytes a power cut
// would have left at any point of that history: everything written before
// the last sync that preceded the cut, plus any subset of the writes issued
// since, each possibly torn at 512-byte sector granularity (every sector
// of the write independently old or new), which is what a disk with a
// volatile write cache is allowed to do.
//
// Several stores can share a Clock, so that one cut hits them all at the
// same instant: Point converts a time on the shared clock into a point of
// one store's history.
//
// A Store also injects faults: writes, syncs or reads failing after a
// count (FailWritesAfter, FailSyncAfter, FailReadsAfter), a device that
// fills up at a byte limit (SetLimit), and short writes and reads
// (ShortWrites, ShortReads) that transfer only part of the buffer.
//
// A Store is safe for concurrent use. It keeps a copy of every write, so
// it suits test workloads of up to a few hundred MiB of writes.
package erasim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
)

// SectorSize is the unit a write can be torn at: after a power cut each
// 512-byte sector a write touched holds either its old or its new bytes.
const SectorSize = 512

// Errors returned by a Store.
var (
	// ErrInjected is returned by a write, sync or read failed on purpose
	// (FailWritesAfter, FailSyncAfter, FailReadsAfter).
	ErrInjected = errors.New("erasim: injected I/O error")
	// ErrFull is returned by a write that reaches past the limit set with
	// SetLimit, as a full device would fail it. errors.Is(ErrFull,
	// syscall.ENOSPC) is true.
	ErrFull error = fullError{}
	// ErrOutOfRange is returned by a write past the end of the store.
	ErrOutOfRange = errors.New("erasim: write past the end of the store")
)

type fullError struct{}

func (fullError) Error() string        { return "erasim: no space left on device" }
func (fullError) Is(target error) bool { return target == syscall.ENOSPC }

// OpKind tells a write from a sync in a Store's history.
type OpKind uint8

// The kinds of recorded operations.
const (
	OpWrite OpKind = iota + 1
	OpSync
)

func (k OpKind) String() string {
	switch k {
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one operation a Store accepted. Failed operations are not
// recorded: a failed write changed nothing and a failed sync made nothing
// durable.
type Op struct {
	Kind OpKind
	// Time is when the operation happened on the store's Clock.
	Time uint64
	// Off and Data are the offset and the bytes of a write (for a short
	// write, the bytes actually written). Data must not be modified.
	Off  int64
	Data []byte
}

func (o Op) String() string {
	if o.Kind == OpSync {
		return fmt.Sprintf("@%d sync", o.Time)
	}
	return fmt.Sprintf("@%d write %d bytes at %d", o.Time, len(o.Data), o.Off)
}

// A Clock orders the operations of the stores that share it. Its zero
// value is ready to use.
type Clock struct{ n atomic.Uint64 }

// Now returns the time the next operation on any store of the clock will
// get: a cut at Now falls after every operation so far.
func (c *Clock) Now() uint64 { return c.n.Load() }

func (c *Clock) tick() uint64 { return c.n.Add(1) - 1 }

// Option configures a Store made by New.
type Option func(*Store)

// WithClock makes the store stamp its operations on clock c, shared with
// other stores, instead of a clock of its own.
func WithClock(c *Clock) Option { return func(s *Store) { s.clock = c } }

// WithContents starts the store with a copy of data (the store's size is
// still the one given to New; data longer than that is an error).
func WithContents(data []byte) Option {
	return func(s *Store) {
		if int64(len(data)) > s.size {
			panic(fmt.Sprintf("erasim: %d bytes of contents for a store of %d", len(data), s.size))
		}
		copy(s.initial, data)
		copy(s.data, data)
	}
}

// Store is a simulated disk. See the package documentation.
type Store struct {
	mu      sync.Mutex
	size    int64
	clock   *Clock
	initial []byte // contents before the first recorded operation
	data    []byte // contents now, as reads see them
	ops     []Op
	syncs   []int // indices in ops of the syncs

	// durable caches the contents the syncs up to ops[durableAt] made
	// durable, so that walking the history forwards is linear.
	durable   []byte
	durableAt int

	failWrites, failSyncs, failReads int // operations left before failing; <0: never
	faults                           int // operations failed on purpose so far
	limit                            int64
	shortWrites, shortReads          int // every nth is short; 0: never
	nWrites, nReads                  int // calls so far, for the short counters
}

// New returns a zero-filled store of size bytes.
func New(size int64, opts ...Option) *Store {
	if size < 0 {
		panic("erasim: negative size")
	}
	s := &Store{
		size:       size,
		initial:    make([]byte, size),
		data:       make([]byte, size),
		failWrites: -1,
		failSyncs:  -1,
		failReads:  -1,
		limit:      -1,
	}
	for _, o := range opts {
		o(s)
	}
	if s.clock == nil {
		s.clock = new(Clock)
	}
	return s
}

// Size returns the store's size in bytes.
func (s *Store) Size() int64 { return s.size }

// ReadAt reads the store's current contents, as io.ReaderAt. Reading past
// the end returns io.EOF with the bytes that exist.
func (s *Store) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("erasim: read at negative offset %d", off)
	}
	if s.failReads == 0 {
		s.faults++
		return 0, fmt.Errorf("read %d bytes at %d: %w", len(p), off, ErrInjected)
	}
	if s.failReads > 0 {
		s.failReads--
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := p
	s.nReads++
	if s.shortReads > 0 && s.nReads%s.shortReads == 0 && len(p) > 1 {
		s.faults++
		want = p[:len(p)/2]
	}
	n := copy(want, s.data[off:])
	if n < len(want) {
		return n, io.EOF
	}
	// A short read returns fewer bytes without an error, as a careless
	// store does.
	return n, nil
}

// WriteAt writes p at off, as io.WriterAt, and records the write.
func (s *Store) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off > s.size || int64(len(p)) > s.size-off {
		return 0, fmt.Errorf("write %d bytes at %d of a %d-byte store: %w", len(p), off, s.size, ErrOutOfRange)
	}
	if s.failWrites == 0 {
		s.faults++
		return 0, fmt.Errorf("write %d bytes at %d: %w", len(p), off, ErrInjected)
	}
	if s.limit >= 0 && off+int64(len(p)) > s.limit {
		s.faults++
		n := 0
		if off < s.limit {
			n = int(s.limit - off)
			s.record(p[:n], off)
		}
		return n, fmt.Errorf("write %d bytes at %d: %w", len(p), off, ErrFull)
	}
	if s.failWrites > 0 {
		s.failWrites--
	}
	s.nWrites++
	if s.shortWrites > 0 && s.nWrites%s.shortWrites == 0 && len(p) > 1 {
		s.faults++
		n := len(p) / 2
		s.record(p[:n], off)
		return n, nil // short, without an error, as a careless store does
	}
	s.record(p, off)
	return len(p), nil
}

func (s *Store) record(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	data := make([]byte, len(p))
	copy(data, p)
	copy(s.data[off:], data)
	s.ops = append(s.ops, Op{Kind: OpWrite, Time: s.clock.tick(), Off: off, Data: data})
}

// Sync records that every write so far is durable.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSyncs == 0 {
		s.faults++
		return fmt.Errorf("sync: %w", ErrInjected)
	}
	if s.failSyncs > 0 {
		s.failSyncs--
	}
	s.syncs = append(s.syncs, len(s.ops))
	s.ops = append(s.ops, Op{Kind: OpSync, Time: s.clock.tick()})
	return nil
}

// Len returns the number of operations recorded: the points of the
// history run from 0 (before the first) to Len (after the last).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ops)
}

// Ops returns a copy of the recorded history. The Data of each write is
// shared with the store and must not be modified.
func (s *Store) Ops() []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Op(nil), s.ops...)
}

// Point returns the point of the store's history at clock time t: the
// number of its operations stamped before t. With a shared Clock, a cut
// at time t hits every store at its own Point(t).
func (s *Store) Point(t uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sort.Search(len(s.ops), func(i int) bool { return s.ops[i].Time >= t })
}

// Clock returns the clock the store stamps its operations on.
func (s *Store) Clock() *Clock { return s.clock }

// Bytes returns a copy of the store's current contents.
func (s *Store) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data...)
}

// Unsynced selects which writes issued after the last sync survive a cut.
type Unsynced int

// Policies for the writes a cut catches in the disk's cache.
const (
	// KeepSome keeps each unsynced write with probability 1/2 (the
	// default).
	KeepSome Unsynced = iota
	// KeepNone keeps only what the syncs made durable.
	KeepNone
	// KeepAll keeps every write issued before the cut, as if the cache
	// had been written out just before it.
	KeepAll
)

// CrashOptions shape the image CrashImage builds.
type CrashOptions struct {
	Unsynced Unsynced
	// Tear lets each surviving unsynced write be torn: each 512-byte
	// sector it touched independently keeps its old or gets its new
	// bytes.
	Tear bool
}

// CrashImage returns the contents a power cut at point (0 to Len) would
// leave: every write before the last sync before point, then the unsynced
// writes before point that opts and rng select, applied in order (so a
// later write wins where both survive). rng drives the random choices;
// nil uses a fixed seed.
func (s *Store) CrashImage(point int, rng *rand.Rand, opts CrashOptions) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if point < 0 || point > len(s.ops) {
		panic(fmt.Sprintf("erasim: crash point %d outside [0, %d]", point, len(s.ops)))
	}
	if rng == nil {
		rng = rand.New(rand.NewPCG(1, 2))
	}
	// The syncs before point: everything before the last one is durable.
	k := sort.SearchInts(s.syncs, point) // syncs[:k] are before point
	synced := 0
	if k > 0 {
		synced = s.syncs[k-1] + 1
	}
	if s.durable == nil || s.durableAt > synced {
		s.durable = append(s.durable[:0], s.initial...)
		s.durableAt = 0
	}
	for _, op := range s.ops[s.durableAt:synced] {
		if op.Kind == OpWrite {
			copy(s.durable[op.Off:], op.Data)
		}
	}
	s.durableAt = synced
	img := append([]byte(nil), s.durable...)
	if opts.Unsynced == KeepNone {
		return img
	}
	for _, op := range s.ops[synced:point] {
		if op.Kind != OpWrite {
			continue
		}
		if opts.Unsynced == KeepSome && rng.IntN(2) == 0 {
			continue
		}
		if !opts.Tear {
			copy(img[op.Off:], op.Data)
			continue
		}
		for lo := int64(0); lo < int64(len(op.Data)); {
			// the piece of the write in one sector
			hi := min(int64(len(op.Data)), (op.Off+lo)/SectorSize*SectorSize+SectorSize-op.Off)
			if rng.IntN(2) == 0 {
				copy(img[op.Off+lo:], op.Data[lo:hi])
			}
			lo = hi
		}
	}
	return img
}

// Synced returns the point just after the last sync before point: the
// writes before it are durable at a cut at point.
func (s *Store) Synced(point int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sort.SearchInts(s.syncs, point)
	if k == 0 {
		return 0
	}
	return s.syncs[k-1] + 1
}

// FailWritesAfter lets the next n writes succeed and fails every write
// after them with ErrInjected; n < 0 stops failing writes.
func (s *Store) FailWritesAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWrites = max(n, -1)
}

// FailSyncAfter lets the next n syncs succeed and fails every sync after
// them with ErrInjected; n < 0 stops failing syncs.
func (s *Store) FailSyncAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSyncs = max(n, -1)
}

// FailReadsAfter lets the next n reads succeed and fails every read after
// them with ErrInjected; n < 0 stops failing reads.
func (s *Store) FailReadsAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failReads = max(n, -1)
}

// SetLimit makes writes that reach past limit bytes fail with ErrFull, as
// on a full device (a sparse file on a full file system): the part below
// the limit is written. limit < 0 removes it.
func (s *Store) SetLimit(limit int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = max(limit, -1)
}

// ShortWrites makes every nth write from now on (n > 0) write only the
// first half of its buffer and return that count with a nil error, which
// io.WriterAt forbids but careless stores do. 0 turns it off.
func (s *Store) ShortWrites(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shortWrites, s.nWrites = max(n, 0), 0
}

// ShortReads makes every nth read from now on (n > 0) fill only the first
// half of its buffer and return that count with a nil error, which
// io.ReaderAt forbids but careless stores do. 0 turns it off.
func (s *Store) ShortReads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shortReads, s.nReads = max(n, 0), 0
}

// Faults returns the number of operations failed or shortened on purpose
// so far (by the injected faults, the limit or short transfers), to tell
// whether a fault was reached.
func (s *Store) Faults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Heal removes every injected fault, the limit and short transfers.
func (s *Store) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWrites, s.failSyncs, s.failReads, s.limit = -1, -1, -1, -1
	s.shortWrites, s.shortReads = 0, 0
}
