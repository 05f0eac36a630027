package era_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

// TestAgentsCheckpointingConcurrentlyMissNothing: two backup agents, each
// in its own goroutine, alternate Checkpoint and "what changed since my
// last checkpoint" while writers write. Each remembers the era its own
// Checkpoint returned; whatever the other does meanwhile, every write that
// returned before an agent's Checkpoint is in one of that agent's answers
// (checked against a log of the writes).
func TestAgentsCheckpointingConcurrentlyMissNothing(t *testing.T) {
	const nrBlocks = 4096
	d := etesting.Open(t, memstore.New(4<<20), memstore.New(nrBlocks*4096), 8)
	defer d.Close()
	type write struct {
		block uint64
		done  time.Time
	}
	var mu sync.Mutex
	var log []write
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := uint64(rng.IntN(nrBlocks))
				if _, err := d.WriteAt([]byte{1}, int64(b*4096)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				log = append(log, write{b, time.Now()})
				mu.Unlock()
			}
		}()
	}
	var agents sync.WaitGroup
	for a := range 2 {
		agents.Add(1)
		go func() {
			defer agents.Done()
			since, err := d.Checkpoint()
			if err != nil {
				t.Error(err)
				return
			}
			copied := map[uint64]bool{}
			start := time.Now()
			for round := range 30 {
				cut := time.Now() // writes done before this must be in the answers from here on
				next, err := d.Checkpoint()
				if err != nil {
					t.Error(err)
					return
				}
				rs, err := d.WrittenSince(since)
				if err != nil {
					t.Error(err)
					return
				}
				for _, r := range rs {
					for b := r.Begin; b < r.End; b++ {
						copied[b] = true
					}
				}
				mu.Lock()
				for _, w := range log {
					if w.done.After(start) && w.done.Before(cut) && !copied[w.block] {
						t.Errorf("agent %d round %d: block %d written at %v missed (since era %d, next %d)", a, round, w.block, w.done.Sub(start), since, next)
					}
				}
				mu.Unlock()
				since = next
			}
		}()
	}
	agents.Wait()
	close(stop)
	writers.Wait()
}

// TestStaleChangeIDs: a change ID from other metadata (reformatted) or
// from an era the metadata has not reached fails with ErrStaleChangeID,
// and WrittenSince past the current era with ErrOutOfRange.
func TestStaleChangeIDs(t *testing.T) {
	meta := memstore.New(1 << 20)
	d := etesting.Open(t, meta, memstore.New(100*4096), 8)
	id := d.ChangeID()
	if id.UUID == ([16]byte{}) {
		t.Fatal("no UUID at format")
	}
	if _, err := d.WriteAt([]byte{1}, 5*4096); err != nil {
		t.Fatal(err)
	}
	rs, err := d.WrittenSinceChange(context.Background(), id)
	if err != nil || !cmp.Equal(rs, []era.Range{{5, 6}}) {
		t.Fatalf("WrittenSinceChange(own): %v, %v", rs, err)
	}
	future := era.ChangeID{UUID: id.UUID, Era: id.Era + 1}
	if _, err := d.WrittenSinceChange(context.Background(), future); !errors.Is(err, era.ErrStaleChangeID) {
		t.Fatalf("change ID from the future: %v", err)
	}
	if _, err := d.WrittenSince(id.Era + 1); !errors.Is(err, era.ErrOutOfRange) {
		t.Fatalf("WrittenSince past the current era: %v", err)
	}
	text := id.String()
	back, err := era.ParseChangeID(text)
	if err != nil || back != id {
		t.Fatalf("ParseChangeID(%q) = %v, %v", text, back, err)
	}
	for _, bad := range []string{"", "x", "1234:5", id.String() + "x", "0f8fad5b-d9cb-469f-a165-70867728950e:-1"} {
		if _, err := era.ParseChangeID(bad); !errors.Is(err, era.ErrInvalidChangeID) {
			t.Errorf("ParseChangeID(%q): %v", bad, err)
		}
	}
	d.Close()

	// Reformatted: the same store, a new identity.
	clear(meta.Data)
	d = etesting.Open(t, meta, memstore.New(100*4096), 8)
	defer d.Close()
	for range 3 {
		d.Checkpoint()
	}
	if _, err := d.WrittenSinceChange(context.Background(), id); !errors.Is(err, era.ErrStaleChangeID) {
		t.Fatalf("change ID of the store before a reformat: %v", err)
	}
	snap, err := d.HoldSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := snap.View()
	if err != nil {
		t.Fatal(err)
	}
	if v.ChangeID() != snap.ChangeID() {
		t.Fatalf("snapshot view change ID %v, handle %v", v.ChangeID(), snap.ChangeID())
	}
	if _, err := v.WrittenSinceChange(context.Background(), id); !errors.Is(err, era.ErrStaleChangeID) {
		t.Fatalf("view: change ID of the store before a reformat: %v", err)
	}
	if err := snap.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestDroppedSnapshotIsNotCorruption: a consumer's view of a snapshot that
// another dropped fails with ErrSnapshotDropped, never ErrCorrupt; a
// snapshot owned by a handle cannot be dropped by anyone else.
func TestDroppedSnapshotIsNotCorruption(t *testing.T) {
	meta := memstore.New(1 << 20)
	d := etesting.Open(t, meta, memstore.New(1000*4096), 8)
	defer d.Close()
	for b := range int64(50) {
		d.WriteAt([]byte{1}, b*7*4096)
	}
	if _, err := d.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	v, err := era.OpenSnapshot(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WrittenSince(1); err != nil {
		t.Fatal(err)
	}
	if err := d.DropSnapshot(); err != nil {
		t.Fatal(err)
	}
	// Churn so that the snapshot's blocks are reused.
	for b := range int64(200) {
		d.WriteAt([]byte{2}, b*4096)
		if b%20 == 0 {
			d.Checkpoint()
		}
	}
	if _, err := v.WrittenSince(1); !errors.Is(err, era.ErrSnapshotDropped) || errors.Is(err, era.ErrCorrupt) {
		t.Fatalf("query of a dropped snapshot: %v, want ErrSnapshotDropped", err)
	}
	if _, err := v.BlockEra(0); !errors.Is(err, era.ErrSnapshotDropped) {
		t.Fatalf("BlockEra of a dropped snapshot: %v", err)
	}

	owned, err := d.HoldSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DropSnapshot(); !errors.Is(err, era.ErrSnapshotOwned) {
		t.Fatalf("DropSnapshot of an owned snapshot: %v", err)
	}
	if err := d.Message("drop_metadata_snap"); !errors.Is(err, era.ErrSnapshotOwned) {
		t.Fatalf("drop_metadata_snap of an owned snapshot: %v", err)
	}
	ov, err := owned.View()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.WrittenSince(owned.Era() - 1); err != nil {
		t.Fatal(err)
	}
	if err := owned.Release(); err != nil {
		t.Fatal(err)
	}
	if err := owned.Release(); !errors.Is(err, era.ErrNoSnapshot) {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := ov.WrittenSince(1); !errors.Is(err, era.ErrSnapshotDropped) {
		t.Fatalf("view of a released snapshot: %v", err)
	}
}

// TestDeviceViewsPinWhatTheyRead: several in-process views, each of its own
// moment, keep answering the same while the device churns (their blocks are
// not reused), until closed.
func TestDeviceViewsPinWhatTheyRead(t *testing.T) {
	d := etesting.Open(t, memstore.New(512<<10), memstore.New(2000*4096), 8)
	defer d.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	type held struct {
		v    *era.View
		want []era.Range
	}
	var views []held
	for round := range 6 {
		for range 40 {
			d.WriteAt([]byte{1}, int64(rng.IntN(2000))*4096)
		}
		d.Checkpoint()
		v, err := d.View()
		if err != nil {
			t.Fatal(err)
		}
		want, err := v.WrittenSince(1)
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, held{v, want})
		for i, h := range views {
			got, err := h.v.WrittenSince(1)
			if err != nil {
				t.Fatalf("round %d, view %d: %v", round, i, err)
			}
			if diff := cmp.Diff(h.want, got); diff != "" {
				t.Fatalf("round %d, view %d changed under churn:\n%s", round, i, diff)
			}
		}
	}
	for _, h := range views {
		if err := h.v.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := h.v.WrittenSince(1); !errors.Is(err, era.ErrClosed) {
			t.Fatalf("closed view: %v", err)
		}
	}
}

// TestStreamingQueriesAgreeWithTheModel: WrittenSinceSeq from any start
// block and BlockEras over any range agree with WrittenSince, BlockEra and
// the model, on a device whose answers span several windows.
func TestStreamingQueriesAgreeWithTheModel(t *testing.T) {
	const nrBlocks = 3*era.SeqWindow + 777
	d := etesting.Open(t, memstore.New(4<<20), etesting.NewSparse(nrBlocks*4096), 8)
	defer d.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	eras := make([]uint32, nrBlocks)
	for range 6 {
		curEra := d.CurrentEra()
		for range 300 {
			b := rng.IntN(nrBlocks)
			n := 1 + rng.IntN(3)
			if rng.IntN(10) == 0 {
				b = era.SeqWindow*(1+rng.IntN(3)) - 1 // across a window boundary
			}
			n = min(n, nrBlocks-b)
			if _, err := d.WriteAt(make([]byte, n*4096), int64(b)*4096); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				eras[b+i] = curEra
			}
		}
		if _, err := d.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for range 20 {
		since := uint32(rng.IntN(int(d.CurrentEra()) + 1))
		from := uint64(rng.IntN(nrBlocks))
		var want []era.Range
		all, err := d.WrittenSince(since)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.End > from {
				want = append(want, era.Range{max(r.Begin, from), r.End})
			}
		}
		var got []era.Range
		for r, err := range d.WrittenSinceSeq(ctx, since, from) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("WrittenSinceSeq(%d, from %d) (-WrittenSince +seq):\n%s", since, from, diff)
		}
		lo := uint64(rng.IntN(nrBlocks))
		hi := min(nrBlocks, lo+uint64(rng.IntN(5000)))
		be, err := d.BlockEras(ctx, lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(eras[lo:hi], be); diff != "" {
			t.Fatalf("BlockEras(%d, %d) (-model +device):\n%s", lo, hi, diff)
		}
	}
	// Stopping early.
	n := 0
	for range d.WrittenSinceSeq(ctx, 1, 0) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("stopped after %d ranges", n)
	}
}

// TestReadAtFollowsReaderAt: io.Copy of a SectionReader longer than the
// device reads exactly the image; WriteAt past the end writes nothing.
func TestReadAtFollowsReaderAt(t *testing.T) {
	const size = 100*4096 - 1000
	origin := memstore.New(size)
	for i := range origin.Data {
		origin.Data[i] = byte(i * 7)
	}
	d := etesting.Open(t, memstore.New(1<<20), origin, 8)
	defer d.Close()
	var got writerBuf
	n, err := io.Copy(&got, io.NewSectionReader(d, 0, 1<<40))
	if err != nil || n != size || !cmp.Equal([]byte(got), origin.Data) {
		t.Fatalf("io.Copy: %d bytes, %v; equal %v", n, err, cmp.Equal([]byte(got), origin.Data))
	}
	p := make([]byte, 10)
	if n, err := d.ReadAt(p, size-4); n != 4 || err != io.EOF {
		t.Fatalf("ReadAt across the end: %d, %v", n, err)
	}
	if n, err := d.ReadAt(p, size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d, %v", n, err)
	}
	if n, err := d.WriteAt(p, size-4); n != 0 || !errors.Is(err, era.ErrOutOfRange) {
		t.Fatalf("WriteAt across the end: %d, %v", n, err)
	}
	if want := size - 1; origin.Data[want] != byte(want*7) {
		t.Fatal("WriteAt across the end wrote")
	}
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// TestSyncWithNothingToCommitWritesNoMetadata: Sync on a clean device does
// no metadata I/O, counted on the crash-simulating store.
func TestSyncWithNothingToCommitWritesNoMetadata(t *testing.T) {
	meta := erasim.New(1 << 20)
	d := etesting.Open(t, meta, memstore.New(1000*4096), 8)
	defer d.Close()
	d.WriteAt([]byte{1}, 0)
	d.Checkpoint()
	etesting.WaitDigest(d)
	if err := d.Sync(); err != nil { // commits whatever the digest left
		t.Fatal(err)
	}
	before, commits := meta.Len(), d.Stats().Commits
	for range 100 {
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if meta.Len() != before || d.Stats().Commits != commits {
		t.Fatalf("100 Syncs on a clean device: %d metadata operations, %d commits", meta.Len()-before, d.Stats().Commits-commits)
	}
}

// blockingOrigin holds origin writes at offset 0 until released.
type blockingOrigin struct {
	*memstore.Store
	entered chan struct{}
	release chan struct{}
}

func (o *blockingOrigin) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 {
		o.entered <- struct{}{}
		<-o.release
	}
	return o.Store.WriteAt(p, off)
}

// TestStatusDoesNotWaitBehindADrain: while an origin write is stuck and a
// checkpoint waits for it to drain, Status, Stats, BlockEra, queries and
// views answer (before the write is released).
func TestStatusDoesNotWaitBehindADrain(t *testing.T) {
	origin := &blockingOrigin{Store: memstore.New(100 * 4096), entered: make(chan struct{}), release: make(chan struct{})}
	d := etesting.Open(t, memstore.New(1<<20), origin, 8)
	defer d.Close()
	go d.WriteAt([]byte{1}, 0)
	<-origin.entered // the write is marked and stuck on the origin
	first := make(chan error, 1)
	go func() { _, err := d.Checkpoint(); first <- err }() // returns; leaves the old era draining
	second := make(chan error, 1)
	go func() { <-first; _, err := d.Checkpoint(); second <- err }() // waits for the drain
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for range 3 {
			d.Status()
			d.Stats()
			if _, err := d.BlockEra(0); err != nil {
				t.Error(err)
			}
			if _, err := d.WrittenSince(1); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("status and queries waited behind the drain of a stuck write")
	}
	select {
	case err := <-second:
		t.Fatalf("a second checkpoint returned (%v) while a write of the old era was in flight", err)
	default:
	}
	close(origin.release)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}

// TestEventsReportFailMode: the hook hears of fail mode.
func TestEventsReportFailMode(t *testing.T) {
	meta := erasim.New(1 << 20)
	var mu sync.Mutex
	var got []era.Event
	d, err := era.Open(meta, memstore.New(100*4096), era.Config{Format: true, BlockSectors: 8, Events: func(e era.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	meta.FailSyncAfter(0)
	if _, err := d.WriteAt([]byte{1}, 0); err == nil {
		t.Fatal("WriteAt with failing syncs succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if !hasEvent(got, era.EventFailed) {
		t.Fatalf("events: %v", got)
	}
}

// TestWritesAfterCurrentEraAreInIt: a write begun after CurrentEra returned
// E is tracked in era E or later while checkpoints run, so "written since
// the era I read" misses nothing: the status shows a new era only once its
// writeset is in place (published at the commit, before that, a write to a
// block marked in the era before could land there; TestConcurrency caught
// it). The writers' BlockEra queries overlap without end; each pins only
// its own commit, so the metadata store does not fill (it did when the
// space map kept every commit since the first pin until none was held).
func TestWritesAfterCurrentEraAreInIt(t *testing.T) {
	const writers = 16
	d := etesting.Open(t, memstore.New(1<<20), memstore.New(writers*4096), 8)
	defer d.Close()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := d.Checkpoint(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var writes sync.WaitGroup
	for w := range writers {
		writes.Add(1)
		go func() {
			defer writes.Done()
			buf := make([]byte, 4096)
			for range 5000 {
				e := d.CurrentEra()
				if _, err := d.WriteAt(buf, int64(w)*4096); err != nil {
					t.Error(err)
					return
				}
				got, err := d.BlockEra(uint64(w))
				if err != nil {
					t.Error(err)
					return
				}
				if got < e {
					t.Errorf("block %d written after CurrentEra returned %d is tracked in era %d", w, e, got)
					return
				}
			}
		}()
	}
	writes.Wait()
	close(done)
	wg.Wait()
}
