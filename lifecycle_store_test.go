package era_test

// Lifecycle tests that use the shared test helpers (internal/etesting):
// a long checkpoint loop and a full store that recovers without a reopen.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/block"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

// TestCheckpointLoopStaysBounded writes and checkpoints as fast as it can
// for a minute (ERA_LOOP_SECONDS to change) on a 2 MiB store: a
// checkpoint that finds the backlog at its bound digests inline, so the
// store never fills (it used to within 140 eras) and Stats shows the
// backlog within its bound.
func TestCheckpointLoopStaysBounded(t *testing.T) {
	seconds := 60
	if s := os.Getenv("ERA_LOOP_SECONDS"); s != "" {
		fmt.Sscan(s, &seconds)
	}
	const nrBlocks = 1 << 16
	meta, origin := memstore.New(2<<20), memstore.New(nrBlocks*4096)
	d := etesting.Open(t, meta, origin, 8)
	bound := uint64(era.MetadataSize(nrBlocks, 0) / block.Size)
	rng := rand.New(rand.NewPCG(3, 4))
	var maxUsed uint64
	maxBacklog, eras := 0, 0
	written := map[uint64]uint32{} // block -> last era written
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for time.Now().Before(deadline) {
		era := d.CurrentEra()
		for range 8 {
			b := uint64(rng.IntN(nrBlocks))
			if _, err := d.WriteAt([]byte{1}, int64(b*4096)); err != nil {
				t.Fatalf("era %d: WriteAt: %v", era, err)
			}
			written[b] = era
		}
		next, err := d.Checkpoint()
		if err != nil {
			t.Fatalf("era %d: Checkpoint: %v", era, err)
		}
		if next != era+1 {
			t.Fatalf("Checkpoint began era %d after era %d", next, era)
		}
		eras++
		st := d.Stats()
		maxUsed = max(maxUsed, st.MetadataUsed)
		maxBacklog = max(maxBacklog, st.Backlog)
	}
	// Every block written since a recent era is reported.
	since := d.CurrentEra() - 20
	rs, err := d.WrittenSince(since)
	if err != nil {
		t.Fatal(err)
	}
	for b, e := range written {
		if e >= since && !etesting.InRanges(rs, b) {
			t.Fatalf("block %d written in era %d not in WrittenSince(%d)", b, e, since)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := era.Check(meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d eras in %ds: at most %d metadata blocks of %d used (sizing rule: %d), backlog at most %d (bound %d)",
		eras, seconds, maxUsed, 512, bound, maxBacklog, era.DefaultMaxBacklog)
	if maxUsed > bound || maxBacklog > era.DefaultMaxBacklog {
		t.Fatalf("metadata used %d blocks (rule %d), backlog %d", maxUsed, bound, maxBacklog)
	}
}

// TestFullStoreRecoversWithoutReopen fills a store while a snapshot keeps
// the old blocks: first writes fail with ErrNoSpace once only the reserve
// is left, the device stays usable (marked blocks are still written, the
// digest and DropSnapshot still work), and once the snapshot is dropped
// the same device accepts first writes again. Nothing is written
// untracked.
func TestFullStoreRecoversWithoutReopen(t *testing.T) {
	const nrBlocks = 1 << 16
	meta, origin := memstore.New(512<<10), etesting.NewSparse(nrBlocks*4096)
	var events []era.Event
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8, OriginSize: nrBlocks * 4096,
		Events: func(e era.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]uint32{}
	var failed uint64
	var ferr error
	for k := uint64(0); k < 10000 && ferr == nil; k++ { // a new bitset block each time
		b := k * 32576 / 4 % nrBlocks
		for i := range uint64(64) {
			if _, ferr = d.WriteAt([]byte{1}, int64((b+i*61)%nrBlocks*4096)); ferr != nil {
				failed = (b + i*61) % nrBlocks
				break
			}
			acked[(b+i*61)%nrBlocks] = d.CurrentEra()
		}
		if ferr == nil {
			_, ferr = d.Checkpoint()
		}
	}
	if !errors.Is(ferr, era.ErrNoSpace) {
		t.Fatalf("filling the store: %v, want ErrNoSpace", ferr)
	}
	st := d.Stats()
	t.Logf("full: %d of %d blocks used, reserve %d; %v", st.MetadataUsed, st.MetadataTotal, st.MetadataReserve, ferr)
	if e, err := d.BlockEra(failed); err != nil || e == d.CurrentEra() {
		t.Fatalf("block %d whose write failed: era %d, %v", failed, e, err)
	}
	if etesting.Usable(d) != nil {
		t.Fatal("the device failed on ErrNoSpace")
	}
	for b, e := range acked { // marked blocks still take writes
		if e == d.CurrentEra() {
			if _, err := d.WriteAt([]byte{2}, int64(b*4096)); err != nil {
				t.Fatalf("write to marked block %d on a full store: %v", b, err)
			}
			break
		}
	}
	if !hasEvent(events, era.EventNoSpace) && !hasEvent(events, era.EventUsage) {
		t.Errorf("no event reported the full store: %v", events)
	}
	if err := d.DropSnapshot(); err != nil {
		t.Fatalf("DropSnapshot on a full store: %v", err)
	}
	var err2 error
	for try := 0; try < 500; try++ {
		if _, err2 = d.WriteAt([]byte{3}, int64(failed*4096)); !errors.Is(err2, era.ErrNoSpace) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the digest frees space in the background
	}
	if err2 != nil {
		t.Fatalf("first write after the snapshot was dropped: %v", err2)
	}
	acked[failed] = d.CurrentEra()
	rs, err := d.WrittenSince(1)
	if err != nil {
		t.Fatal(err)
	}
	for b := range acked {
		if !etesting.InRanges(rs, b) {
			t.Fatalf("acknowledged block %d not reported", b)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := era.Check(meta); err != nil {
		t.Fatal(err)
	}
}

func hasEvent(es []era.Event, k era.EventKind) bool {
	for _, e := range es {
		if e.Kind == k {
			return true
		}
	}
	return false
}
