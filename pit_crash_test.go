package era_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/era-go/era"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

// TestPointInTimeCrash cuts runs that hold point-in-time snapshots at
// random instants (metadata, origin and difference store on simulated
// disks sharing a clock). Open must succeed, drop a point-in-time
// snapshot that the cut left held with one EventSnapshotLost naming its
// era, and find every write that had reached the origin at its era or
// later.
func TestPointInTimeCrash(t *testing.T) {
	const nrBlocks = 128
	seeds := 4
	if testing.Short() || etesting.Race {
		seeds = 2
	}
	heldCuts := 0
	for seed := range uint64(seeds) {
		clock := &erasim.Clock{}
		meta := erasim.New(1<<20, erasim.WithClock(clock))
		origin := erasim.New(nrBlocks*4096, erasim.WithClock(clock))
		diff := erasim.New(nrBlocks*4096, erasim.WithClock(clock))
		d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 11))
		var calls []etesting.Write
		var snap *era.Snapshot
		for i := range 300 {
			switch r := rng.IntN(100); {
			case r < 5 && snap == nil:
				if snap, err = d.HoldPointInTime(diff, era.PointInTimeOptions{}); err != nil {
					t.Fatal(err)
				}
			case r < 8 && snap != nil:
				if err := snap.Release(); err != nil {
					t.Fatal(err)
				}
				snap = nil
			case r < 11:
				if _, err := d.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			default:
				lo := uint64(rng.IntN(nrBlocks - 1))
				hi := lo + 1 + uint64(rng.IntN(2))
				p := make([]byte, (hi-lo)*4096)
				era.PitFill(p, uint64(i))
				binary.LittleEndian.PutUint64(p, uint64(len(calls)))
				calls = append(calls, etesting.Write{Lo: lo, Hi: hi, Era: d.CurrentEra()})
				if _, err := d.WriteAt(p, int64(lo)*4096); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		oops := origin.Ops()
		cuts := 120
		if etesting.Race {
			cuts = 40
		}
		for range cuts {
			c := rng.Uint64N(clock.Now() + 1)
			opts := erasim.CrashOptions{Unsynced: erasim.Unsynced(rng.IntN(3)), Tear: rng.IntN(2) == 0}
			img := meta.CrashImage(meta.Point(c), rng, opts)
			if etesting.IsZero(img[:4096]) {
				continue
			}
			wantEra := uint32(0)
			if v, err := era.OpenSnapshot(bytes.NewReader(img)); err == nil {
				wantEra = v.CurrentEra()
				heldCuts++
			}
			var lost []era.Event
			dd, err := era.Open(&memstore.Store{Data: bytes.Clone(img)}, etesting.NoOrigin{}, era.Config{BlockSectors: 8, OriginSize: origin.Size(), Events: func(e era.Event) {
				if e.Kind == era.EventSnapshotLost {
					lost = append(lost, e)
				}
			}})
			if err != nil {
				t.Fatalf("seed %d, cut at %d: Open: %v", seed, c, err)
			}
			if dd.Status().Held {
				t.Fatalf("seed %d, cut at %d: a point-in-time snapshot is still held after Open", seed, c)
			}
			switch {
			case wantEra == 0 && len(lost) != 0:
				t.Fatalf("seed %d, cut at %d: lost events %v with no snapshot held", seed, c, lost)
			case wantEra != 0 && (len(lost) != 1 || lost[0].Era != wantEra):
				t.Fatalf("seed %d, cut at %d: lost events %v, want one of era %d", seed, c, lost, wantEra)
			}
			eras, err := etesting.DeviceEras(dd)
			if err != nil {
				t.Fatal(err)
			}
			if err := etesting.CheckReached(eras, oops, c, calls); err != nil {
				t.Fatalf("seed %d, cut at %d: %v", seed, c, err)
			}
			if err := dd.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if heldCuts == 0 {
		t.Fatal("no cut fell while a point-in-time snapshot was held")
	}
}
