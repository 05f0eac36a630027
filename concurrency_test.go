package era_test

// Concurrency: 32 goroutines write (overlapping and not) while others
// checkpoint, take and drop snapshots, read them, ask for the status and
// query WrittenSince; run it under -race. Every query is checked against
// the writes that had completed before it began, and afterwards power cuts
// of the whole run are checked against every write that reached the origin.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

// checkCompleted checks that every write of done whose era is >= since is in
// rs = WrittenSince(since).
func checkCompleted(rs []era.Range, since uint32, done []etesting.Write) error {
	for _, w := range done {
		if w.Era < since {
			continue
		}
		for b := w.Lo; b < w.Hi; b++ {
			if !etesting.InRanges(rs, b) {
				return fmt.Errorf("block %d, written in era %d or later, missing from WrittenSince(%d)", b, w.Era, since)
			}
		}
	}
	return nil
}

func TestConcurrency(t *testing.T) {
	const (
		writers   = 32
		nrBlocks  = 2048
		blockSize = 4096
		hot       = 64 // blocks every overlapping writer shares
	)
	perWriter := 120
	if etesting.Race || testing.Short() {
		perWriter = 50
	}
	if *crashFull {
		perWriter = 400
	}
	var clock erasim.Clock
	meta := erasim.New(4<<20, erasim.WithClock(&clock))
	origin := erasim.New(nrBlocks*blockSize, erasim.WithClock(&clock))
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	log := &etesting.WriteLog{}
	// calls[id] is the write whose data starts with id, recorded before
	// WriteAt is called: the crash checks find it from the origin's ops.
	calls := make([]etesting.Write, writers*perWriter+1)
	var nextID atomic.Uint64
	var failures []string
	var failMu sync.Mutex
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}

	var writersWG, othersWG sync.WaitGroup
	stop := make(chan struct{})
	for g := range writers {
		writersWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			lastEra := uint32(0)
			for range perWriter {
				var lo uint64
				if g%2 == 0 { // overlapping: the hot region
					lo = rng.Uint64N(hot)
				} else { // a private region per writer
					lo = hot + uint64(g/2)*((nrBlocks-hot)/(writers/2)) + rng.Uint64N((nrBlocks-hot)/(writers/2)-3)
				}
				off := int64(lo*blockSize) + rng.Int64N(blockSize-8)
				n := 8 + rng.Int64N(2*blockSize)
				if rng.IntN(3) == 0 {
					n = 8 + rng.Int64N(32)
				}
				n = min(n, nrBlocks*blockSize-off)
				id := nextID.Add(1)
				p := make([]byte, n)
				binary.LittleEndian.PutUint64(p, id)
				era := d.Status().CurrentEra
				if era < lastEra {
					fail("writer %d saw the era go from %d back to %d", g, lastEra, era)
				}
				lastEra = era
				w := etesting.Write{Lo: uint64(off) / blockSize, Hi: (uint64(off+n) + blockSize - 1) / blockSize, Era: era}
				calls[id] = w
				if _, err := d.WriteAt(p, off); err != nil {
					fail("writer %d: WriteAt: %v", g, err)
					return
				}
				log.Add(w)
			}
		})
	}
	// Checkpoints, snapshots taken, read and dropped.
	var checkpoints, snapshots, snapReads atomic.Int64
	othersWG.Go(func() {
		rng := rand.New(rand.NewPCG(7, 7))
		held := false
		for {
			select {
			case <-stop:
				return
			default:
			}
			switch rng.IntN(4) {
			case 0, 1:
				if _, err := d.Checkpoint(); err != nil {
					fail("Checkpoint: %v", err)
					return
				}
				checkpoints.Add(1)
			case 2:
				if held {
					if err := d.DropSnapshot(); err != nil {
						fail("DropSnapshot: %v", err)
						return
					}
					held = false
					break
				}
				done := log.Snapshot()
				if _, err := d.TakeSnapshot(); err != nil {
					fail("TakeSnapshot: %v", err)
					return
				}
				held = true
				snapshots.Add(1)
				v, err := era.OpenSnapshot(meta)
				if err != nil {
					fail("OpenSnapshot: %v", err)
					return
				}
				since := 1 + rng.Uint32N(v.CurrentEra())
				rs, err := v.WrittenSince(since)
				if err == nil {
					err = checkCompleted(rs, since, done)
				}
				if err != nil {
					fail("snapshot at era %d: %v", v.CurrentEra(), err)
				}
				snapReads.Add(1)
			case 3:
				if err := d.DropSnapshot(); err != nil && !errors.Is(err, era.ErrNoSnapshot) {
					fail("DropSnapshot: %v", err)
				}
				held = false
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
	})
	// Queries.
	var queries atomic.Int64
	for q := range 2 {
		othersWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(q), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				done := log.Snapshot()
				st := d.Status()
				since := 1 + rng.Uint32N(st.CurrentEra)
				rs, err := d.WrittenSince(since)
				if err == nil {
					err = checkCompleted(rs, since, done)
				}
				if err != nil {
					fail("WrittenSince at era %d: %v", st.CurrentEra, err)
					return
				}
				if len(done) > 0 {
					w := done[rng.IntN(len(done))]
					if e, err := d.BlockEra(w.Lo); err != nil || e < w.Era {
						fail("BlockEra(%d) = %d, %v; written in era %d or later", w.Lo, e, err, w.Era)
						return
					}
				}
				queries.Add(1)
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			}
		})
	}
	writersWG.Wait()
	close(stop)
	othersWG.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if t.Failed() {
		d.Close()
		return
	}

	done := log.Snapshot()
	st := d.Status()
	for since := uint32(1); since <= st.CurrentEra; since++ {
		rs, err := d.WrittenSince(since)
		if err == nil {
			err = checkCompleted(rs, since, done)
		}
		if err != nil {
			t.Fatalf("after the run: %v", err)
		}
	}
	stats := d.Stats()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := era.Check(meta); err != nil {
		t.Fatalf("Check after the run: %v", err)
	}
	v, err := era.OpenView(meta)
	if err != nil {
		t.Fatal(err)
	}
	for since := uint32(1); since <= v.CurrentEra(); since++ {
		rs, err := v.WrittenSince(since)
		if err == nil {
			err = checkCompleted(rs, since, done)
		}
		if err != nil {
			t.Fatalf("view after Close: %v", err)
		}
	}
	t.Logf("%d writes (%d first writes in %d mark commits), %d checkpoints, %d snapshots (%d read), %d queries, era %d",
		len(done), stats.FirstWrites, stats.MarkCommits, checkpoints.Load(), snapshots.Load(), snapReads.Load(), queries.Load(), st.CurrentEra)

	// Power cuts of the concurrent run: every write that reached the
	// origin before the cut is marked at its era or later.
	writes, states := checkDurableMarks(t, meta, origin, calls)
	cuts := checkConcurrentCuts(t, &clock, meta, origin, calls)
	t.Logf("every origin write checked against the durable metadata right after it: %d writes, %d durable states; %d power cuts reopened", writes, states, cuts)
	reportf("concurrent writes (32 goroutines) checked against every query", len(done))
	reportf("concurrent origin writes checked against the durable metadata right after them", writes)
	reportf("power cuts of the concurrent run reopened", cuts)
}

// checkDurableMarks cuts the run right after every origin write, keeping
// only the metadata writes synced by then, and checks that the write's
// blocks are marked there: the mark was durable before the data moved.
// It returns the number of origin writes and of durable states checked.
func checkDurableMarks(t *testing.T, meta, origin *erasim.Store, calls []etesting.Write) (int, int) {
	ops, oops := meta.Ops(), origin.Ops()
	buf := make([]byte, meta.Size())
	pending := 0 // ops[pending:i] are written but not synced
	var eras []uint32
	superChanged := true
	states, next := 0, 0 // next origin op to check
	for i, op := range ops {
		if op.Kind != erasim.OpSync {
			continue
		}
		for _, w := range ops[pending:i] {
			copy(buf[w.Off:], w.Data)
			if w.Off == 0 {
				superChanged = true
			}
		}
		pending = i + 1
		end := ^uint64(0) // the next sync: later cuts see more
		for _, o := range ops[i+1:] {
			if o.Kind == erasim.OpSync {
				end = o.Time
				break
			}
		}
		for ; next < len(oops) && oops[next].Time < op.Time; next++ {
			t.Fatalf("origin write at %d before the first metadata sync", oops[next].Time)
		}
		if next == len(oops) || oops[next].Time >= end {
			continue
		}
		if superChanged {
			v, err := era.OpenView(bytes.NewReader(buf))
			if err != nil {
				t.Fatalf("durable metadata at %d: %v", op.Time, err)
			}
			if eras, err = etesting.Eras(v); err != nil {
				t.Fatalf("durable metadata at %d: %v", op.Time, err)
			}
			superChanged = false
			states++
		}
		for ; next < len(oops) && oops[next].Time < end; next++ {
			w := calls[binary.LittleEndian.Uint64(oops[next].Data)]
			for b := w.Lo; b < w.Hi; b++ {
				if eras[b] < w.Era {
					t.Fatalf("origin write at %d: block %d at era %d in the durable metadata, written in era %d or later", oops[next].Time, b, eras[b], w.Era)
				}
			}
		}
	}
	if next != len(oops) {
		t.Fatalf("%d origin writes after the last metadata sync", len(oops)-next)
	}
	return len(oops), states
}

// checkConcurrentCuts cuts the run at a sample of instants (every metadata
// sync and random ones) and checks each image against the origin writes
// issued before the cut.
func checkConcurrentCuts(t *testing.T, clock *erasim.Clock, meta, origin *erasim.Store, calls []etesting.Write) int {
	ops, oops := meta.Ops(), origin.Ops()
	var times []uint64
	for _, op := range ops {
		if op.Kind == erasim.OpSync {
			times = append(times, op.Time, op.Time+1)
		}
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 100 {
		times = append(times, rng.Uint64N(clock.Now()+1))
	}
	limit := 300
	if etesting.Race {
		limit = 80
	}
	if *crashFull {
		limit = 3000
	}
	if len(times) > limit {
		rng.Shuffle(len(times), func(i, j int) { times[i], times[j] = times[j], times[i] })
		times = times[:limit]
	}
	for _, c := range times {
		opts := erasim.CrashOptions{Unsynced: erasim.Unsynced(rng.IntN(3)), Tear: rng.IntN(2) == 0}
		img := meta.CrashImage(meta.Point(c), rng, opts)
		if err := era.Check(bytes.NewReader(img)); err != nil && !etesting.IsZero(img[:4096]) {
			t.Fatalf("cut at %d: Check: %v", c, err)
		}
		d, err := era.Open(&memstore.Store{Data: bytes.Clone(img)}, etesting.NoOrigin{}, era.Config{Format: true, BlockSectors: 8, OriginSize: origin.Size()})
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", c, err)
		}
		eras, err := etesting.DeviceEras(d)
		if err != nil {
			t.Fatalf("cut at %d: %v", c, err)
		}
		if err := etesting.CheckReached(eras, oops, c, calls); err != nil {
			t.Fatalf("cut at %d: %v", c, err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return len(times)
}
