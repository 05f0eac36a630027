package era

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/era-go/era/erasim"
)

// pitFill fills p with bytes derived from seed, so that a write can be
// logged as its seed and replayed.
func pitFill(p []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
}

// pitWrite is one logged write of a pitWriter.
type pitWrite struct {
	off  int64
	n    int
	seed uint64
}

// pitWriter writes at random into its own region of the origin, one
// write at a time, logging each; started and done count its writes.
type pitWriter struct {
	lo, hi        int64 // its region, bytes
	mu            sync.Mutex
	log           []pitWrite
	started, done atomic.Int64
	replayed      []byte // the region after replayedN writes
	replayedN     int
	rng           *rand.Rand
	blockBytes    int64
}

func (w *pitWriter) run(t *testing.T, d *Device, stop *atomic.Bool) {
	buf := make([]byte, 3*w.blockBytes)
	for !stop.Load() {
		off := w.lo + w.rng.Int64N(w.hi-w.lo)
		n := 1 + w.rng.IntN(int(3*w.blockBytes))
		n = int(min(int64(n), w.hi-off))
		wr := pitWrite{off: off, n: n, seed: w.rng.Uint64()}
		pitFill(buf[:n], wr.seed)
		w.mu.Lock()
		w.log = append(w.log, wr)
		w.mu.Unlock()
		w.started.Add(1)
		if _, err := d.WriteAt(buf[:n], off); err != nil {
			t.Errorf("write: %v", err)
			return
		}
		w.done.Add(1)
	}
}

// regionAfter returns the region after the first j writes (j at least the
// last call's).
func (w *pitWriter) regionAfter(j int) []byte {
	w.mu.Lock()
	log := w.log[:j]
	w.mu.Unlock()
	for ; w.replayedN < j; w.replayedN++ {
		wr := log[w.replayedN]
		pitFill(w.replayed[wr.off-w.lo:][:wr.n], wr.seed)
	}
	return w.replayed
}

// matchRegion returns the j in [lo, hi] whose state equals got, or -1.
// A partly applied write matches none.
func (w *pitWriter) matchRegion(got []byte, lo, hi int) int {
	base := bytes.Clone(w.regionAfter(lo))
	w.mu.Lock()
	log := w.log[:hi]
	w.mu.Unlock()
	for j := lo; ; j++ {
		if bytes.Equal(base, got) {
			return j
		}
		if j == hi {
			return -1
		}
		wr := log[j]
		pitFill(base[wr.off-w.lo:][:wr.n], wr.seed)
	}
}

// TestPointInTimeWriters holds point-in-time snapshots while random
// writers keep writing (and checkpoints go on), and checks that each
// reads as the image of one moment: every writer's region as it was
// between two of its writes, those that had returned when the snapshot
// was asked for included and those begun after it was taken excluded,
// and the same bytes (SHA-256) however late it is read.
func TestPointInTimeWriters(t *testing.T) {
	const (
		blockBytes = 4096
		nrBlocks   = 512
		nWriters   = 4
	)
	origin := newMem(nrBlocks * blockBytes)
	initial := make([]byte, len(origin.Data))
	pitFill(initial, 42)
	copy(origin.Data, initial)
	d := openT(t, newMem(4<<20), origin, 8)
	defer d.Close()

	var stop atomic.Bool
	var wg sync.WaitGroup
	ws := make([]*pitWriter, nWriters)
	region := int64(nrBlocks / nWriters * blockBytes)
	for i := range ws {
		w := &pitWriter{lo: int64(i) * region, hi: int64(i+1) * region, rng: rand.New(rand.NewPCG(uint64(i), 7)), blockBytes: blockBytes}
		w.replayed = bytes.Clone(initial[w.lo:w.hi])
		ws[i] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(t, d, &stop) }()
	}
	defer func() { stop.Store(true); wg.Wait() }()

	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		time.Sleep(2 * time.Millisecond)
		lo := make([]int, nWriters)
		for i, w := range ws {
			lo[i] = int(w.done.Load())
		}
		diff := newMem(nrBlocks * blockBytes)
		snap, err := d.HoldPointInTime(diff, PointInTimeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hi := make([]int, nWriters)
		for i, w := range ws {
			hi[i] = int(w.started.Load())
		}
		if round%2 == 1 {
			if _, err := d.Checkpoint(); err != nil { // the snapshot stays held across era changes
				t.Fatal(err)
			}
		}
		first := make([]byte, snap.Size())
		if _, err := snap.ReadAt(first, 0); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(first))
		for i, w := range ws {
			got := first[w.lo:w.hi]
			j := w.matchRegion(got, lo[i], hi[i])
			if j < 0 {
				t.Fatalf("round %d: writer %d's region in the snapshot is no state between its writes %d and %d", round, i, lo[i], hi[i])
			}
			copy(want[w.lo:], got)
		}
		time.Sleep(3 * time.Millisecond) // the writers go on overwriting
		again := make([]byte, snap.Size())
		for off := 0; off < len(again); off += 12345 { // unaligned pieces
			n, err := snap.ReadAt(again[off:min(len(again), off+12345)], int64(off))
			if err != nil && !(errors.Is(err, io.EOF) && off+n == len(again)) {
				t.Fatal(err)
			}
		}
		if sha256.Sum256(again) != sha256.Sum256(want) {
			t.Fatalf("round %d: the snapshot changed while held", round)
		}
		st := d.Stats()
		if !st.SnapshotHeld || st.SnapshotFailed || st.SnapshotCopied == 0 {
			t.Fatalf("round %d: stats %+v", round, st)
		}
		v, err := snap.View()
		if err != nil {
			t.Fatal(err)
		}
		if v.CurrentEra() != snap.Era() {
			t.Fatalf("view era %d, snapshot era %d", v.CurrentEra(), snap.Era())
		}
		v.Close()
		if err := snap.Release(); err != nil {
			t.Fatal(err)
		}
		if _, err := snap.ReadAt(again[:1], 0); !errors.Is(err, ErrSnapshotDropped) {
			t.Fatalf("read after Release: %v, want ErrSnapshotDropped", err)
		}
		if d.Stats().SnapshotHeld {
			t.Fatal("stats: snapshot still held after Release")
		}
	}
}

// TestPointInTimeOverflow fills the difference store (its size bound, then
// a failing store): the snapshot fails with ErrSnapshotOverflow and one
// event, while writes and tracking go on exactly.
func TestPointInTimeOverflow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		diff  func() Store
		limit int64
	}{
		{"size bound", func() Store { return newMem(1 << 20) }, 8 * 4096},
		{"write error", func() Store { s := erasim.New(1 << 20); s.FailWritesAfter(8); return s }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const nrBlocks = 64
			var events []Event
			var evMu sync.Mutex
			origin := newMem(nrBlocks * 4096)
			d, err := Open(newMem(1<<20), origin, Config{Format: true, BlockSectors: 8, Events: func(e Event) {
				evMu.Lock()
				events = append(events, e)
				evMu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			model := make([]byte, len(origin.Data))
			written := make([]bool, nrBlocks)
			snap, err := d.HoldPointInTime(tc.diff(), PointInTimeOptions{Size: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 40 {
				b := rng.IntN(nrBlocks)
				p := make([]byte, 4096)
				pitFill(p, uint64(i))
				if _, err := d.WriteAt(p, int64(b)*4096); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				copy(model[b*4096:], p)
				written[b] = true
			}
			if !bytes.Equal(origin.Data, model) {
				t.Fatal("origin differs from the model")
			}
			if _, err := snap.ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrSnapshotOverflow) {
				t.Fatalf("read: %v, want ErrSnapshotOverflow", err)
			}
			if !errors.Is(snap.Err(), ErrSnapshotOverflow) {
				t.Fatalf("Err: %v", snap.Err())
			}
			if st := d.Stats(); !st.SnapshotFailed || st.SnapshotCopied != 8 || st.SnapshotLimit != tc.limit {
				t.Fatalf("stats %+v", st)
			}
			evMu.Lock()
			n := 0
			for _, e := range events {
				if e.Kind == EventSnapshotOverflow {
					n++
					if e.Era != snap.Era() || !errors.Is(e.Err, ErrSnapshotOverflow) {
						t.Fatalf("event %+v", e)
					}
				}
			}
			evMu.Unlock()
			if n != 1 {
				t.Fatalf("%d overflow events, want 1", n)
			}
			rs, err := d.WrittenSince(snap.Era())
			if err != nil {
				t.Fatal(err)
			}
			got := make([]bool, nrBlocks)
			for _, r := range rs {
				for b := r.Begin; b < r.End; b++ {
					got[b] = true
				}
			}
			for b := range got {
				if got[b] != written[b] {
					t.Fatalf("block %d: written since the snapshot %v, model %v", b, got[b], written[b])
				}
			}
			if err := snap.Release(); err != nil {
				t.Fatal(err)
			}
			// A new one works again.
			snap, err = d.HoldPointInTime(newMem(1<<20), PointInTimeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Err(); err != nil {
				t.Fatal(err)
			}
			snap.Release()
		})
	}
}

// TestPointInTimeRules: the errors around point-in-time snapshots.
func TestPointInTimeRules(t *testing.T) {
	meta := newMem(1 << 20)
	d := openT(t, meta, newMem(64*4096), 8)
	if _, err := d.HoldPointInTime(nil, PointInTimeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil store: %v", err)
	}
	if _, err := d.HoldPointInTime(newMem(4096), PointInTimeOptions{Size: 100}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("size under a block: %v", err)
	}
	ms, err := d.HoldSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrNoData) {
		t.Fatalf("metadata-only read: %v", err)
	}
	if _, err := d.HoldPointInTime(newMem(4096), PointInTimeOptions{}); !errors.Is(err, ErrSnapshotExists) {
		t.Fatalf("second snapshot: %v", err)
	}
	ms.Release()
	snap, err := d.HoldPointInTime(newMem(64*4096), PointInTimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DropSnapshot(); !errors.Is(err, ErrSnapshotOwned) {
		t.Fatalf("DropSnapshot: %v", err)
	}
	if _, err := snap.ReadAt(make([]byte, 10), -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("negative offset: %v", err)
	}
	if n, err := snap.ReadAt(make([]byte, 10), snap.Size()-4); n != 4 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	d.WriteAt([]byte("x"), 0)
	// Close drops the snapshot: its copies lived in this process.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var lost int
	d, err = Open(meta, newMem(64*4096), Config{BlockSectors: 8, Events: func(e Event) {
		if e.Kind == EventSnapshotLost {
			lost++
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status().Held || lost != 0 {
		t.Fatalf("after Close and Open: held %v, %d lost events", d.Status().Held, lost)
	}
	d.Close()
}

// gatedStore holds a write at offset 0 until gate is closed.
type gatedStore struct {
	*memStore
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedStore) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 && g.gate != nil {
		close(g.entered)
		<-g.gate
	}
	return g.memStore.WriteAt(p, off)
}

// TestPointInTimeInFlight: a two-block write in flight when the snapshot
// is taken, overlapped by a write of the new era to its second block, is
// whole in the snapshot: the new era's copy waits for the old era's
// writes to drain.
func TestPointInTimeInFlight(t *testing.T) {
	origin := &gatedStore{memStore: newMem(16 * 4096)}
	d := openT(t, newMem(1<<20), origin, 8)
	defer d.Close()
	a := bytes.Repeat([]byte{'A'}, 2*4096)
	if _, err := d.WriteAt(a[:2*4096], 0); err != nil { // marks blocks 0 and 1
		t.Fatal(err)
	}
	a = bytes.Repeat([]byte{'B'}, 2*4096)
	origin.entered, origin.gate = make(chan struct{}), make(chan struct{})
	wrote := make(chan error)
	go func() { _, err := d.WriteAt(a, 0); wrote <- err }()
	<-origin.entered // the old era's write is in flight
	old := d.cur.Load()
	took := make(chan *Snapshot)
	go func() {
		s, err := d.HoldPointInTime(newMem(16*4096), PointInTimeOptions{})
		if err != nil {
			t.Error(err)
		}
		took <- s
	}()
	for d.cur.Load() == old {
		time.Sleep(100 * time.Microsecond)
	}
	late := make(chan error)
	go func() { _, err := d.WriteAt(bytes.Repeat([]byte{'C'}, 4096), 4096); late <- err }()
	time.Sleep(20 * time.Millisecond) // let the new era's write reach its copy
	close(origin.gate)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	s := <-took
	if err := <-late; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2*4096)
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatalf("snapshot holds %q...%q, want the in-flight write whole", got[:1], got[4096:4097])
	}
}
