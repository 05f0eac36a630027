package era_test

// Fault injection: metadata stores whose writes, syncs or reads fail,
// that fill up, or that transfer short; origins whose writes fail or
// transfer short; metadata too small for the workload.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

// ackedEras is what the device acknowledged: the era each block was last
// successfully written in.
type ackedEras map[uint64]uint32

// checkAcked checks that every acknowledged block is reported written
// at its era or later, by WrittenSince and BlockEra.
func checkAcked(t *testing.T, q interface {
	WrittenSince(uint32) ([]era.Range, error)
	BlockEra(uint64) (uint32, error)
}, acked ackedEras, what string) {
	t.Helper()
	byEra := map[uint32][]uint64{}
	for b, e := range acked {
		byEra[e] = append(byEra[e], b)
		got, err := q.BlockEra(b)
		if err != nil {
			t.Fatalf("%s: BlockEra(%d): %v", what, b, err)
		}
		if got < e {
			t.Fatalf("%s: block %d at era %d, written in era %d", what, b, got, e)
		}
	}
	for e, blocks := range byEra {
		rs, err := q.WrittenSince(e)
		if err != nil {
			t.Fatalf("%s: WrittenSince(%d): %v", what, e, err)
		}
		for _, b := range blocks {
			if !etesting.InRanges(rs, b) {
				t.Fatalf("%s: block %d written in era %d missing from WrittenSince(%d) = %v", what, b, e, e, rs)
			}
		}
	}
}

// metadataFault is one way to break the metadata store after k operations.
type metadataFault struct {
	name   string
	inject func(s *erasim.Store, k int)
	is     error // what the failing call's error wraps
	fails  bool  // whether the fault must put the device in fail mode
	cache  int   // CacheBlocks: small to make the device read
}

var metadataFaults = []metadataFault{
	{"write", func(s *erasim.Store, k int) { s.FailWritesAfter(k) }, erasim.ErrInjected, true, 0},
	{"sync", func(s *erasim.Store, k int) { s.FailSyncAfter(k) }, erasim.ErrInjected, true, 0},
	{"full store", func(s *erasim.Store, k int) { s.SetLimit(int64(12+k) * 4096) }, syscall.ENOSPC, true, 0},
	{"short write", func(s *erasim.Store, k int) { s.FailWritesAfter(-1); s.ShortWrites(k + 1) }, io.ErrShortWrite, true, 0},
	{"read", func(s *erasim.Store, k int) { s.FailReadsAfter(k) }, erasim.ErrInjected, false, 2},
}

// faultScript runs a fixed workload on d until a call fails and returns the
// step and that call's error (nil if none did). acked collects the
// acknowledged writes; a failed WriteAt must leave the origin untouched.
func faultScript(t *testing.T, d *era.Device, origin *erasim.Store, rng *rand.Rand, acked ackedEras) (step int, err error) {
	era := d.Status().CurrentEra
	held := false
	for step = 0; step < 40; step++ {
		switch x := rng.IntN(10); {
		case x < 6:
			b := uint64(rng.IntN(int(d.NrBlocks())))
			before := origin.Len()
			_, err = d.WriteAt([]byte{byte(step), 1, 2}, int64(b*d.BlockBytes()+100))
			if err != nil {
				if origin.Len() != before {
					t.Fatalf("step %d: WriteAt failed (%v) but wrote the origin", step, err)
				}
				return step, err
			}
			acked[b] = era
		case x < 8:
			if _, err = d.Checkpoint(); err != nil {
				return step, err
			}
			era++
			etesting.WaitDigest(d)
		case x < 9 && !held:
			if _, err = d.TakeSnapshot(); err != nil {
				return step, err
			}
			era++
			held = true
			etesting.WaitDigest(d)
		case x < 9:
			if err = d.DropSnapshot(); err != nil {
				return step, err
			}
			held = false
		default:
			if err = d.Sync(); err != nil {
				return step, err
			}
		}
	}
	return step, nil
}

// TestFaultMetadataStore breaks the metadata store at every point of a
// workload, for each kind of fault, and checks the device's promises: the
// failing write returns an error and leaves the origin untouched; a failed
// metadata write or sync puts the device in fail mode, where every write
// returns ErrReadOnly until it is reopened while reads and queries go on;
// nothing acknowledged is lost, whether the store is healed and reopened
// or cut by a power failure right after the fault.
func TestFaultMetadataStore(t *testing.T) {
	var points atomic.Int64
	t.Run("faults", func(t *testing.T) {
		for _, f := range metadataFaults {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				sweeps, failed := 0, 0
				for k := 0; k < 400; k++ {
					done := runOneFault(t, f, k)
					sweeps++
					if done {
						break
					}
					failed++
				}
				t.Logf("%d injection points, %d failed the workload", sweeps, failed)
				if failed == 0 {
					t.Fatal("the fault never hit the workload")
				}
				points.Add(int64(failed))
			})
		}
	})
	reportf("metadata faults injected (write, sync, full store, short write, read errors)", points.Load())
}

// runOneFault runs the workload with the fault injected after k
// operations; it reports true when the fault never hit.
func runOneFault(t *testing.T, f metadataFault, k int) bool {
	const sectors = 8
	meta := erasim.New(512 << 10)
	origin := erasim.New(300 << 10)
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: sectors, CacheBlocks: f.cache})
	if err != nil {
		t.Fatal(err)
	}
	acked := ackedEras{}
	f.inject(meta, k)
	rng := rand.New(rand.NewPCG(1, 3))
	step, err := faultScript(t, d, origin, rng, acked)
	if err == nil {
		// Let a digest still running meet the fault, if it will.
		etesting.WaitDigest(d)
		if meta.Faults() == 0 {
			if etesting.Usable(d) != nil {
				t.Fatalf("k=%d: the device failed without a fault", k)
			}
			// Close's archive and final commit may meet the fault.
			cerr := d.Close()
			if meta.Faults() == 0 {
				if cerr != nil {
					t.Fatalf("k=%d: Close: %v", k, cerr)
				}
				return true
			}
			what := fmt.Sprintf("%s fault after %d, in Close (%v)", f.name, k, cerr)
			if !errors.Is(cerr, f.is) {
				t.Fatalf("%s: Close's error does not wrap %v", what, f.is)
			}
			meta.Heal()
			checkAfterFault(t, what, meta, origin, acked, k)
			return false
		}
		_, err = d.WriteAt([]byte{1}, 0)
	}
	what := fmt.Sprintf("%s fault after %d, step %d (%v)", f.name, k, step, err)
	if !errors.Is(err, f.is) && !errors.Is(err, era.ErrReadOnly) {
		t.Fatalf("%s: error wraps neither %v nor ErrReadOnly", what, f.is)
	}
	if f.fails {
		// Fail mode: every change is refused, the origin untouched.
		before := origin.Len()
		for b := range uint64(3) {
			if _, err := d.WriteAt([]byte{9}, int64(b*d.BlockBytes())); !errors.Is(err, era.ErrReadOnly) {
				t.Fatalf("%s: WriteAt in fail mode: %v", what, err)
			}
		}
		for blk := range acked { // already marked blocks too
			if _, err := d.WriteAt([]byte{9}, int64(blk*d.BlockBytes())); !errors.Is(err, era.ErrReadOnly) {
				t.Fatalf("%s: WriteAt to a marked block in fail mode: %v", what, err)
			}
			break
		}
		if _, err := d.Checkpoint(); !errors.Is(err, era.ErrReadOnly) {
			t.Fatalf("%s: Checkpoint in fail mode: %v", what, err)
		}
		if _, err := d.TakeSnapshot(); !errors.Is(err, era.ErrReadOnly) {
			t.Fatalf("%s: TakeSnapshot in fail mode: %v", what, err)
		}
		if origin.Len() != before {
			t.Fatalf("%s: the origin was written in fail mode", what)
		}
		// Reads and queries go on.
		p := make([]byte, 4096)
		if _, err := d.ReadAt(p, 0); err != nil {
			t.Fatalf("%s: ReadAt in fail mode: %v", what, err)
		}
		if !bytes.Equal(p, origin.Bytes()[:4096]) {
			t.Fatalf("%s: ReadAt in fail mode returned other bytes", what)
		}
		_ = d.Status()
		checkAcked(t, d, acked, what+", in fail mode")
	}
	meta.Heal()
	cerr := d.Close()
	if f.fails && !errors.Is(cerr, era.ErrReadOnly) {
		t.Fatalf("%s: Close of a failed device: %v", what, cerr)
	}
	checkAfterFault(t, what, meta, origin, acked, k)
	return false
}

// checkAfterFault checks a metadata store after a fault and Close: the image
// of a power cut right then reopens with every acknowledged write and
// passes Check, and so does the store itself, healed and reopened.
func checkAfterFault(t *testing.T, what string, meta, origin *erasim.Store, acked ackedEras, k int) {
	const sectors = 8
	img := meta.CrashImage(meta.Len(), rand.New(rand.NewPCG(uint64(k), 1)), erasim.CrashOptions{Tear: true})
	if err := era.Check(bytes.NewReader(img)); err != nil {
		t.Fatalf("%s: Check of the image of a power cut: %v", what, err)
	}
	cut := &memstore.Store{Data: img}
	d2, err := era.Open(cut, origin, era.Config{Format: true, BlockSectors: sectors})
	if err != nil {
		t.Fatalf("%s: Open after a power cut: %v", what, err)
	}
	checkAcked(t, d2, acked, what+", after a power cut")
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := era.Check(bytes.NewReader(cut.Data)); err != nil {
		t.Fatalf("%s: Check after a power cut: %v", what, err)
	}

	// Healed and reopened: the device works again.
	d3, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: sectors})
	if err != nil {
		t.Fatalf("%s: reopen after the fault: %v", what, err)
	}
	checkAcked(t, d3, acked, what+", reopened")
	if _, err := d3.WriteAt([]byte{7}, 0); err != nil {
		t.Fatalf("%s: WriteAt after reopening: %v", what, err)
	}
	if err := d3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := era.Check(meta); err != nil {
		t.Fatalf("%s: Check after reopening: %v", what, err)
	}
}

// TestFaultOriginWrite: an origin write error is returned, and the mark
// committed before it stays (the block may have changed); the device goes
// on. A short origin write or read is reported as an error, as io.WriterAt
// and io.ReaderAt require, even from an origin that returns none.
func TestFaultOriginWrite(t *testing.T) {
	meta, origin := erasim.New(512<<10), erasim.New(256<<10)
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	era := d.Status().CurrentEra

	origin.FailWritesAfter(0)
	for _, b := range []int64{3, 10, 11} {
		if _, err := d.WriteAt([]byte("x"), b*4096+7); !errors.Is(err, erasim.ErrInjected) {
			t.Fatalf("WriteAt with a failing origin: %v", err)
		}
		if e, err := d.BlockEra(uint64(b)); err != nil || e != era {
			t.Fatalf("block %d after a failed origin write: era %d, %v; want the mark of era %d", b, e, err, era)
		}
	}
	// Already marked: straight to the (still failing) origin.
	metaOps := meta.Len()
	if _, err := d.WriteAt([]byte("y"), 3*4096); !errors.Is(err, erasim.ErrInjected) {
		t.Fatalf("second WriteAt with a failing origin: %v", err)
	}
	if meta.Len() != metaOps {
		t.Fatal("a write to a marked block touched the metadata")
	}
	origin.Heal()
	if _, err := d.WriteAt([]byte("z"), 3*4096); err != nil {
		t.Fatalf("WriteAt after the origin healed: %v", err)
	}
	if _, err := d.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint after origin errors: %v", err)
	}
	checkAcked(t, d, ackedEras{3: era, 10: era, 11: era}, "after origin errors")

	// Short transfers from an origin that reports no error.
	origin.ShortWrites(1)
	n, err := d.WriteAt(make([]byte, 100), 20*4096)
	if err == nil || n >= 100 {
		t.Fatalf("short origin write: WriteAt = %d, %v; want an error", n, err)
	}
	n, err = d.WriteAt(make([]byte, 100), 20*4096) // marked now: the fast path
	if err == nil || n >= 100 {
		t.Fatalf("short origin write on the fast path: WriteAt = %d, %v; want an error", n, err)
	}
	origin.Heal()
	origin.ShortReads(1)
	n, err = d.ReadAt(make([]byte, 100), 0)
	if err == nil || n >= 100 {
		t.Fatalf("short origin read: ReadAt = %d, %v; want an error", n, err)
	}
	origin.Heal()
	origin.FailReadsAfter(0)
	if _, err := d.ReadAt(make([]byte, 10), 0); !errors.Is(err, erasim.ErrInjected) {
		t.Fatalf("ReadAt with a failing origin: %v", err)
	}
	origin.Heal()
	if _, err := d.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
}

// TestFaultMetadataFull fills small metadata stores until a first write
// fails with ErrNoSpace: a held snapshot shares the era array, so the
// digest of a writeset marking every era-array block copies them all. It
// checks: nothing reached the origin, the device does not fail (reads,
// queries and writes to blocks already marked go on), nothing acknowledged
// is lost, the committed metadata stays consistent, and dropping the
// snapshot makes room again.
func TestFaultMetadataFull(t *testing.T) {
	const nrBlocks = 16 * 1016 // 16 era-array blocks
	if _, err := era.Open(erasim.New(16<<10), etesting.NewSparse(nrBlocks*4096), era.Config{Format: true, BlockSectors: 8}); !errors.Is(err, era.ErrNoSpace) {
		t.Fatalf("Open on 4 metadata blocks: %v, want ErrNoSpace", err)
	}
	// Whether the first write of the era gets in before the digest takes
	// the space is a race: sweep again until it has.
	hit, fast := 0, 0
	for sweep := 0; sweep < 10 && fast == 0; sweep++ {
		fullMetadataSweep(t, &hit, &fast)
	}
	if hit == 0 || fast == 0 {
		t.Fatalf("%d metadata sizes made a first write fail with ErrNoSpace, %d then wrote a marked block", hit, fast)
	}
	t.Logf("%d metadata sizes made a first write fail with ErrNoSpace, %d then wrote a marked block", hit, fast)
	reportf("full metadata stores (ErrNoSpace, nothing untracked)", hit)
}

func fullMetadataSweep(t *testing.T, hit, fast *int) {
	const nrBlocks = 16 * 1016
	for metaBlocks := int64(26); metaBlocks <= 56; metaBlocks++ {
		meta := erasim.New(metaBlocks * 4096)
		origin := etesting.NewSparse(nrBlocks * 4096)
		d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
		if errors.Is(err, era.ErrNoSpace) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("%d metadata blocks", metaBlocks)
		acked := ackedEras{}
		curEra := d.Status().CurrentEra
		write := func(b uint64) error {
			before := origin.Writes()
			_, err := d.WriteAt([]byte{byte(b)}, int64(b*4096))
			switch {
			case err == nil:
				acked[b] = curEra
			case origin.Writes() != before:
				t.Fatalf("%s: WriteAt failed (%v) but wrote the origin", what, err)
			case !errors.Is(err, era.ErrNoSpace) || errors.Is(err, era.ErrReadOnly):
				t.Fatalf("%s: WriteAt on full metadata: %v, want ErrNoSpace", what, err)
			}
			return err
		}
		var failed uint64 // the block whose write failed
		var ferr error
		for b := uint64(0); b < nrBlocks && ferr == nil; b += 1016 {
			if ferr = write(b); ferr != nil {
				failed = b
			}
		}
		if ferr == nil {
			switch _, err := d.TakeSnapshot(); {
			case err == nil:
				curEra++
			case errors.Is(err, era.ErrNoSpace):
				d.Close()
				continue
			default:
				t.Fatalf("%s: TakeSnapshot: %v", what, err)
			}
		}
		// The first write of the new era, likely before the digest
		// takes the space; then new blocks once it is done.
		const marked = nrBlocks - 1
		for _, b := range []uint64{marked, 1, 2, 1017, 1018, 5000, 5001, 9000} {
			if ferr != nil {
				break
			}
			if b == 1 {
				etesting.WaitDigestOrGiveUp(d)
			}
			if ferr = write(b); ferr != nil {
				failed = b
			}
		}
		if ferr == nil {
			d.Close()
			continue
		}
		*hit++
		if etesting.Usable(d) != nil {
			t.Fatalf("%s: the device failed on ErrNoSpace", what)
		}
		if e, err := d.BlockEra(failed); err != nil || e == curEra {
			t.Fatalf("%s: block %d whose write failed is marked in era %d (%v)", what, failed, e, err)
		}
		// A write to a block marked in this era needs no new mark.
		if acked[marked] == curEra {
			before := origin.Writes()
			if _, err := d.WriteAt([]byte{1, 2}, int64(marked*4096)); err != nil {
				t.Fatalf("%s: WriteAt to a marked block on full metadata: %v", what, err)
			}
			if origin.Writes() != before+1 {
				t.Fatalf("%s: WriteAt to a marked block did not reach the origin", what)
			}
			*fast++
		}
		p := make([]byte, 2)
		if _, err := d.ReadAt(p, int64(marked*4096)); err != nil || (acked[marked] == curEra && p[0] != 1) {
			t.Fatalf("%s: ReadAt on full metadata: %v %v", what, p, err)
		}
		checkAcked(t, d, acked, what+", full")
		if err := era.Check(meta); err != nil {
			t.Fatalf("%s: Check on full metadata: %v", what, err)
		}
		// Dropping the snapshot makes room (once the digest, which
		// shares the transaction with marks, is done or has given up).
		if err := d.DropSnapshot(); err == nil {
			err := write(failed)
			for try := 0; try < 100 && errors.Is(err, era.ErrNoSpace); try++ {
				time.Sleep(10 * time.Millisecond)
				err = write(failed)
			}
			// A store this small may still hold too little beyond the
			// reserve for one mark (at most 8 blocks here).
			st := d.Stats()
			if errors.Is(err, era.ErrNoSpace) && st.MetadataTotal-st.MetadataUsed < st.MetadataReserve+8 {
				err = nil
			}
			if err != nil {
				t.Fatalf("%s: WriteAt after dropping the snapshot: %v", what, err)
			}
		} else if !errors.Is(err, era.ErrNoSpace) && !errors.Is(err, era.ErrNoSnapshot) {
			t.Fatalf("%s: DropSnapshot on full metadata: %v", what, err)
		}
		if err := d.Close(); err != nil && !errors.Is(err, era.ErrNoSpace) {
			t.Fatalf("%s: Close on full metadata: %v", what, err)
		}
		if err := era.Check(meta); err != nil {
			t.Fatalf("%s: Check after Close: %v", what, err)
		}
		v, err := era.OpenView(meta)
		if err != nil {
			t.Fatal(err)
		}
		checkAcked(t, v, acked, what+", closed")
	}
}

// TestFaultShortMetadataReads: a metadata store whose reads come back
// short without an error. Open and queries fail with an error instead of
// trusting half a block; writes fail safe; healed, everything is there.
func TestFaultShortMetadataReads(t *testing.T) {
	meta, origin := erasim.New(512<<10), erasim.New(256<<10)
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	acked := ackedEras{}
	for b := range uint64(20) {
		if _, err := d.WriteAt([]byte{1}, int64(b*3*4096)); err != nil {
			t.Fatal(err)
		}
		acked[b*3] = 1
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	opened, refused := 0, 0
	for every := 1; every <= 12; every++ {
		meta.ShortReads(every)
		d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8, CacheBlocks: 1})
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Open with short reads every %d: %v", every, err)
			}
			refused++
			meta.Heal()
			continue
		}
		opened++
		for b := range uint64(10) {
			before := origin.Len()
			if _, err := d.WriteAt([]byte{2}, int64(b*5*4096)); err != nil {
				if origin.Len() != before {
					t.Fatalf("a failed write (%v) reached the origin", err)
				}
				continue
			}
			acked[b*5] = d.Status().CurrentEra
		}
		if _, err := d.WrittenSince(1); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("WrittenSince with short reads: %v", err)
		}
		meta.Heal()
		d.Close()
		v, err := era.OpenView(meta)
		if err != nil {
			t.Fatal(err)
		}
		checkAcked(t, v, acked, fmt.Sprintf("short reads every %d", every))
	}
	if err := era.Check(meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("short reads: Open refused %d times, opened %d times", refused, opened)
}
