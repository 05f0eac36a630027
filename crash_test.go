package era_test

// Crash torture: random workloads run over simulated disks (erasim) that
// share one clock, then every instant of the run is cut and the image the
// power cut would leave is reopened and checked.
//
// The invariant that matters is checked at the strongest point: any write
// that reached the origin (issued before the cut, even if WriteAt had not
// returned) must be found in the reopened metadata at the era it was
// written in or later. Every WriteAt that returned before the cut is one
// of those.
//
// Run the full torture with:
//
//	go test -run TestCrashTorture -crash.full -v .
//
// or regenerate the README's table with `go run ./cmd/crashreport`.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/block"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
	"github.com/era-go/era/internal/tooltest"
)

var (
	crashFull     = flag.Bool("crash.full", false, "run the full crash torture (minutes) and print the reliability table")
	crashSeeds    = flag.Int("crash.seeds", 0, "crash torture: number of random workloads (0: default)")
	crashRandom   = flag.Int("crash.random", 0, "crash torture: random cuts per workload (0: default)")
	crashSeedBase = flag.Uint64("crash.seed", 0, "crash torture: first seed (0: from the time)")
)

// reportf prints one figure of the reliability report for
// cmd/crashreport, in -crash.full runs.
func reportf(name string, value any) {
	if *crashFull {
		fmt.Printf("REPORT\t%s\t%v\n", name, value)
	}
}

// crashSizes returns the number of workloads, their length in operations
// and the random cuts per workload: a bounded run by default (a few
// seconds, or about 20 under -race on two cores), minutes with -crash.full.
func crashSizes() (seeds, ops, random int) {
	seeds, ops, random = 8, 80, 400
	if etesting.Race {
		seeds, ops, random = 3, 60, 150
	}
	if testing.Short() {
		seeds, ops, random = 2, 40, 100
	}
	if *crashFull {
		seeds, ops, random = 120, 150, 3000
	}
	if *crashSeeds > 0 {
		seeds = *crashSeeds
	}
	if *crashRandom > 0 {
		random = *crashRandom
	}
	return seeds, ops, random
}

// recordedWrite is one WriteAt of a workload.
type recordedWrite struct {
	start     uint64 // clock time when WriteAt was called
	originAt  uint64 // clock time of its origin write (noTime: none)
	end       uint64 // clock time when it returned
	lo, hi    uint64 // blocks [lo, hi)
	era       uint32 // era the write was made in
	succeeded bool
}

// recordedOpen is one era.Open of a workload (the first, or a reopen).
type recordedOpen struct {
	start, end uint64
	nrBlocks   uint64
	size       int64
	era        uint32 // the era it began
	grewFrom   uint64 // the metadata's nr_blocks before a grow, else nrBlocks
}

// recordedSnap is one metadata snapshot of a workload.
type recordedSnap struct {
	takeStart, takeEnd uint64
	dropStart, dropEnd uint64 // noTime: never dropped
	era                uint32 // the era the snapshot's view reports
}

// eraFloor records that a commit establishing era was durable at time at.
type eraFloor struct {
	at  uint64
	era uint32
}

const noTime = ^uint64(0)

// recordedRun is a recorded workload.
type recordedRun struct {
	seed       uint64
	sectors    uint32
	blockBytes uint64
	metaSize   int64
	clock      *erasim.Clock
	meta       *erasim.Store
	opens      []recordedOpen
	calls      []recordedWrite
	snaps      []recordedSnap
	floors     []eraFloor
	maxBlocks  uint64
	noSpace    int // operations refused with ErrNoSpace
}

// recordWorkload runs a random workload of n operations and records it.
func recordWorkload(t testing.TB, seed uint64, n int) *recordedRun {
	rng := rand.New(rand.NewPCG(seed, 0xC0FFEE))
	r := &recordedRun{seed: seed, clock: new(erasim.Clock)}
	r.sectors = []uint32{8, 8, 16, 24}[rng.IntN(4)]
	r.blockBytes = uint64(r.sectors) * 512
	r.metaSize = []int64{256 << 10, 512 << 10, 1 << 20}[rng.IntN(3)]
	r.meta = erasim.New(r.metaSize, erasim.WithClock(r.clock))
	newSize := func() int64 {
		nr := 20 + rng.IntN(600)
		return int64(nr)*int64(r.blockBytes) - int64(rng.IntN(int(r.blockBytes)))
	}
	size := newSize()
	const maxSize = 700 * 24 * 512
	origin := erasim.New(maxSize, erasim.WithClock(r.clock))

	var d *era.Device
	curEra := uint32(0)
	open := func() {
		o := recordedOpen{start: r.clock.Now(), size: size}
		var err error
		d, err = era.Open(r.meta, origin, era.Config{Format: true, BlockSectors: r.sectors, OriginSize: size})
		if errors.Is(err, era.ErrNoSpace) && len(r.opens) > 0 {
			// Small metadata, filled by writesets the digest had not
			// folded: Open wrote nothing; the run ends here.
			r.noSpace++
			d = nil
			return
		}
		if err != nil {
			t.Fatalf("seed %d: Open: %v", seed, err)
		}
		o.end, o.nrBlocks = r.clock.Now(), d.NrBlocks()
		r.maxBlocks = max(r.maxBlocks, o.nrBlocks)
		curEra = d.Status().CurrentEra
		o.era, o.grewFrom = curEra, o.nrBlocks
		if n := len(r.opens); n > 0 && r.opens[n-1].nrBlocks < o.nrBlocks {
			o.grewFrom = r.opens[n-1].nrBlocks // the added blocks are written in o.era
		}
		r.opens = append(r.opens, o)
		r.floors = append(r.floors, eraFloor{o.end, curEra})
	}
	open()
	held := -1 // index in r.snaps of the held snapshot
	var recent []int64
	for range n {
		switch x := rng.IntN(100); {
		case x < 62: // write
			var off, length int64
			switch y := rng.IntN(10); {
			case y < 3 && len(recent) > 0: // again, likely the fast path
				off = recent[rng.IntN(len(recent))]
				length = 1 + rng.Int64N(512)
			case y < 5: // a few bytes, maybe across a block boundary
				length = 1 + rng.Int64N(20)
				b := 1 + rng.Int64N(max(1, d.Size()/int64(r.blockBytes)-1))
				off = b*int64(r.blockBytes) - rng.Int64N(length)
			default: // up to three blocks, unaligned
				length = 1 + rng.Int64N(3*int64(r.blockBytes))
				off = rng.Int64N(max(1, d.Size()-length))
			}
			off = max(0, min(off, d.Size()-1))
			length = min(length, d.Size()-off)
			recent = append(recent, off)
			if len(recent) > 8 {
				recent = recent[1:]
			}
			p := make([]byte, length)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			c := recordedWrite{start: r.clock.Now(), era: curEra, originAt: noTime,
				lo: uint64(off) / r.blockBytes, hi: (uint64(off+length) + r.blockBytes - 1) / r.blockBytes}
			before := origin.Len()
			_, err := d.WriteAt(p, off)
			c.end = r.clock.Now()
			if ops := origin.Ops(); len(ops) > before {
				c.originAt = ops[before].Time
			}
			c.succeeded = err == nil
			if err != nil && !errors.Is(err, era.ErrNoSpace) {
				t.Fatalf("seed %d: WriteAt(%d bytes at %d): %v", seed, length, off, err)
			}
			if err != nil {
				r.noSpace++
				if c.originAt != noTime {
					t.Fatalf("seed %d: WriteAt failed with %v but wrote the origin", seed, err)
				}
			}
			r.calls = append(r.calls, c)
		case x < 72:
			if _, err := d.Checkpoint(); errors.Is(err, era.ErrNoSpace) {
				r.noSpace++
				break
			} else if err != nil {
				t.Fatalf("seed %d: Checkpoint: %v", seed, err)
			}
			curEra++
			r.floors = append(r.floors, eraFloor{r.clock.Now(), curEra})
		case x < 78:
			s := recordedSnap{takeStart: r.clock.Now(), era: curEra + 1, dropStart: noTime, dropEnd: noTime}
			_, err := d.TakeSnapshot()
			if held >= 0 {
				if !errors.Is(err, era.ErrSnapshotExists) {
					t.Fatalf("seed %d: second TakeSnapshot: %v", seed, err)
				}
				break
			}
			if errors.Is(err, era.ErrNoSpace) {
				// Never committed: no image may hold it.
				r.noSpace++
				s.takeEnd, s.dropStart, s.dropEnd = noTime, s.takeStart, r.clock.Now()
				r.snaps = append(r.snaps, s)
				break
			}
			if err != nil {
				t.Fatalf("seed %d: TakeSnapshot: %v", seed, err)
			}
			curEra++
			s.takeEnd = r.clock.Now()
			r.floors = append(r.floors, eraFloor{s.takeEnd, curEra})
			r.snaps = append(r.snaps, s)
			held = len(r.snaps) - 1
		case x < 83:
			start := r.clock.Now()
			err := d.DropSnapshot()
			if held < 0 {
				if !errors.Is(err, era.ErrNoSnapshot) {
					t.Fatalf("seed %d: DropSnapshot without one: %v", seed, err)
				}
				break
			}
			if errors.Is(err, era.ErrNoSpace) {
				r.noSpace++ // still held
				break
			}
			if err != nil {
				t.Fatalf("seed %d: DropSnapshot: %v", seed, err)
			}
			r.snaps[held].dropStart, r.snaps[held].dropEnd = start, r.clock.Now()
			held = -1
		case x < 90: // clean close and reopen, sometimes resized
			if err := d.Close(); err != nil {
				t.Fatalf("seed %d: Close: %v", seed, err)
			}
			if rng.IntN(2) == 0 {
				size = newSize()
			}
			if open(); d == nil {
				return r
			}
		case x < 93:
			if err := d.Sync(); err != nil {
				t.Fatalf("seed %d: Sync: %v", seed, err)
			}
		default: // let the digest run
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatalf("seed %d: Close: %v", seed, err)
	}
	return r
}

// cutBounds is what a cut at some time allows the metadata to say about
// each block: its era is at least req (a write that reached the origin)
// and at most up (the newest write to it that had started).
type cutBounds struct {
	open     recordedOpen // the Open in force: reopen with its size
	opened   bool         // an Open had completed
	req, up  []uint32
	floor    uint32 // the era of the last durable commit
	acked    int    // WriteAt calls that had returned
	inFlight int    // calls whose origin write was issued but had not returned
	snap     *recordedSnap
	snapMust bool // the snapshot was committed and not being dropped
}

func (r *recordedRun) bounds(c uint64) *cutBounds {
	b := &cutBounds{req: make([]uint32, r.maxBlocks), up: make([]uint32, r.maxBlocks), open: r.opens[0]}
	oi := 0
	for _, call := range r.calls {
		for oi < len(r.opens) && r.opens[oi].start < call.start {
			r.applyOpen(b, oi, c)
			oi++
		}
		if call.start >= c {
			break
		}
		for blk := call.lo; blk < call.hi; blk++ {
			b.up[blk] = max(b.up[blk], call.era)
			if call.originAt < c {
				b.req[blk] = max(b.req[blk], call.era)
			}
		}
		if call.end <= c {
			b.acked++
		} else if call.originAt < c {
			b.inFlight++
		}
	}
	for ; oi < len(r.opens); oi++ {
		r.applyOpen(b, oi, c)
	}
	for _, f := range r.floors {
		if f.at <= c {
			b.floor = max(b.floor, f.era)
		}
	}
	for i := range r.snaps {
		s := &r.snaps[i]
		if s.takeStart < c && s.dropEnd > c {
			b.snap = s
			b.snapMust = s.takeEnd <= c && s.dropStart >= c
		}
	}
	return b
}

// applyOpen applies Open number i if it started before the cut: a shrink
// forgets the blocks past the new end, and a grow writes the blocks it adds
// in the era it begins.
func (r *recordedRun) applyOpen(b *cutBounds, i int, c uint64) {
	o := r.opens[i]
	if o.start >= c {
		return
	}
	b.open = o
	b.opened = b.opened || o.end <= c
	for blk := o.nrBlocks; blk < uint64(len(b.req)); blk++ {
		b.req[blk] = 0
	}
	for blk := o.grewFrom; blk < o.nrBlocks; blk++ {
		b.up[blk] = max(b.up[blk], o.era)
		if o.end <= c {
			b.req[blk] = max(b.req[blk], o.era)
		}
	}
}

// reopenedImage is what a reopened image showed; identical images are reopened
// once.
type reopenedImage struct {
	formatted bool
	imgEra    uint32 // era in the image's superblock
	imgBlocks uint64 // nr_blocks in the image's superblock
	held      bool
	snapEra   uint32
	nrBlocks  uint64
	eras      []uint32 // era of every block, from the reopened device
	snapEras  []uint32 // era of every block in the held snapshot
	err       error    // why the image could not be reopened
}

// tortureStats are the figures of the reliability report.
type tortureStats struct {
	mu          sync.Mutex
	workloads   int
	metaOps     int // metadata writes and syncs recorded
	cuts        int // (cut, policy) pairs checked
	images      int // images checked
	reopened    int // distinct images reopened with Open
	unformatted int // images cut before the first superblock
	blocks      int // (image, block) pairs checked against both bounds
	written     int // of those, blocks a write had reached
	acked       int // (image, acknowledged write) pairs
	inFlight    int // (image, write in flight) pairs
	underReport int
	overReport  int
	unopenable  int
	eraBack     int
	snapChecked int
	snapLost    int
	continued   int // images reopened, written to and closed again
	noSpace     int // workload operations refused with ErrNoSpace
	eraCheck    int // images era_check passed
	failures    []string
}

func (s *tortureStats) failf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 20 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

// imageChecker checks the crash images of one run.
type imageChecker struct {
	t     testing.TB
	r     *recordedRun
	st    *tortureStats
	seen  map[uint64]*reopenedImage
	hseed maphash.Seed
	rng   *rand.Rand
	// sample keeps a few images for era_check.
	sample [][]byte
	local  tortureStats
}

// reopen opens an image (a private copy of it) and reads what it shows.
func (k *imageChecker) reopen(img []byte, o recordedOpen) *reopenedImage {
	s := &reopenedImage{formatted: !etesting.IsZero(img[:block.Size])}
	k.local.reopened++
	if s.formatted {
		if err := era.Check(bytes.NewReader(img)); err != nil {
			s.err = fmt.Errorf("Check: %w", err)
			return s
		}
		v, err := era.OpenView(bytes.NewReader(img))
		if err != nil {
			s.err = fmt.Errorf("OpenView: %w", err)
			return s
		}
		s.imgEra, s.imgBlocks = v.CurrentEra(), v.NrBlocks()
		if sv, err := era.OpenSnapshot(bytes.NewReader(img)); err == nil {
			s.held, s.snapEra = true, sv.CurrentEra()
			if s.snapEras, err = etesting.Eras(sv); err == nil {
				err = checkQueriesAgree(sv, s.snapEras, s.snapEra, k.rng)
			}
			if err != nil {
				s.err = fmt.Errorf("snapshot: %w", err)
				return s
			}
		} else if !errors.Is(err, era.ErrNoSnapshot) {
			s.err = fmt.Errorf("OpenSnapshot: %w", err)
			return s
		}
	}
	store := &memstore.Store{Data: bytes.Clone(img)}
	d, err := era.Open(store, etesting.NoOrigin{}, era.Config{Format: true, BlockSectors: k.r.sectors, OriginSize: o.size})
	if err != nil {
		s.err = fmt.Errorf("Open: %w", err)
		return s
	}
	defer func() {
		if err := d.Close(); err != nil && s.err == nil {
			s.err = fmt.Errorf("Close: %w", err)
		}
	}()
	st := d.Status()
	if want := s.imgEra + 1; st.CurrentEra != want {
		s.err = fmt.Errorf("reopened at era %d, image at era %d", st.CurrentEra, s.imgEra)
		return s
	}
	if st.Held != s.held {
		s.err = fmt.Errorf("reopened device holds a snapshot: %v, image: %v", st.Held, s.held)
		return s
	}
	s.nrBlocks = d.NrBlocks()
	s.eras, err = etesting.DeviceEras(d)
	if err == nil {
		err = checkQueriesAgree(d, s.eras, st.CurrentEra, k.rng)
	}
	if err != nil {
		s.err = fmt.Errorf("reopened device: %w", err)
	}
	return s
}

// checkQueriesAgree checks the public queries against eras: WrittenSince
// at era 1 and at a random era, and BlockEra of a few blocks.
func checkQueriesAgree(q interface {
	WrittenSince(uint32) ([]era.Range, error)
	BlockEra(uint64) (uint32, error)
}, eras []uint32, current uint32, rng *rand.Rand) error {
	for _, e := range []uint32{1, 1 + rng.Uint32N(current)} {
		rs, err := q.WrittenSince(e)
		if err != nil {
			return err
		}
		want := etesting.WrittenSince(eras, e)
		if !slices.Equal(rs, want) {
			return fmt.Errorf("WrittenSince(%d) = %v, the era array and writesets say %v", e, rs, want)
		}
	}
	for range 3 {
		if len(eras) == 0 {
			break
		}
		b := rng.IntN(len(eras))
		e, err := q.BlockEra(uint64(b))
		if err != nil {
			return err
		}
		if e != eras[b] {
			return fmt.Errorf("BlockEra(%d) = %d, the era array and writesets say %d", b, e, eras[b])
		}
	}
	return nil
}

// check cuts the run at clock time c with the given policy and checks the
// image against the bounds at c.
func (k *imageChecker) check(c uint64, opts erasim.CrashOptions, what string) *reopenedImage {
	r := k.r
	point := r.meta.Point(c)
	img := r.meta.CrashImage(point, k.rng, opts)
	b := r.bounds(c)
	k.local.cuts++
	k.local.images++
	h := maphash.Bytes(k.hseed, img)
	s, ok := k.seen[h]
	if !ok {
		s = k.reopen(img, b.open)
		k.seen[h] = s
		if s.err == nil && s.formatted && len(k.sample) < 4 && k.rng.IntN(8) == 0 {
			k.sample = append(k.sample, img)
		}
		if s.err == nil && k.rng.IntN(25) == 0 {
			k.carryOn(img, b.open)
		}
	}
	fail := func(format string, args ...any) {
		k.st.failf("seed %d, cut at time %d (metadata point %d of %d, %s): %s", r.seed, c, point, r.meta.Len(), what, fmt.Sprintf(format, args...))
	}
	if s.err != nil {
		k.local.unopenable++
		fail("image unusable: %v", s.err)
		return s
	}
	if !s.formatted {
		k.local.unformatted++
		if b.opened {
			k.local.unopenable++
			fail("superblock lost after the first Open completed")
		}
		return s
	}
	if s.imgEra < b.floor {
		k.local.eraBack++
		fail("era went back: image at era %d, a commit of era %d had completed", s.imgEra, b.floor)
	}
	k.local.acked += b.acked
	k.local.inFlight += b.inFlight
	for blk := range s.nrBlocks {
		k.local.blocks++
		if b.req[blk] > 0 {
			k.local.written++
		}
		if s.eras[blk] < b.req[blk] {
			k.local.underReport++
			fail("block %d under-reported: era %d, written in era %d", blk, s.eras[blk], b.req[blk])
		}
		if s.eras[blk] > b.up[blk] && !(blk >= s.imgBlocks && s.eras[blk] == s.imgEra+1) { // the reopen grew the image
			k.local.overReport++
			fail("block %d reported in era %d, but no write to it in an era above %d had started", blk, s.eras[blk], b.up[blk])
		}
	}
	switch {
	case s.held && b.snap == nil:
		fail("image holds a snapshot, none was being taken or held")
	case s.held:
		k.local.snapChecked++
		if s.snapEra != b.snap.era {
			fail("snapshot at era %d, want %d", s.snapEra, b.snap.era)
			break
		}
		sb := r.bounds(b.snap.takeStart)
		for blk := range uint64(len(s.snapEras)) {
			if s.snapEras[blk] < sb.req[blk] || s.snapEras[blk] > sb.up[blk] {
				fail("snapshot block %d at era %d, want %d..%d", blk, s.snapEras[blk], sb.req[blk], sb.up[blk])
				break
			}
		}
	case b.snapMust:
		k.local.snapLost++
		fail("committed snapshot taken at time %d lost", b.snap.takeStart)
	}
	return s
}

// carryOn reopens an image, writes to it, checkpoints and closes it: a
// recovered device must go on working and stay consistent.
func (k *imageChecker) carryOn(img []byte, o recordedOpen) {
	k.local.continued++
	store := &memstore.Store{Data: bytes.Clone(img)}
	origin := erasim.New(o.size)
	d, err := era.Open(store, origin, era.Config{Format: true, BlockSectors: k.r.sectors, OriginSize: o.size})
	if err != nil {
		k.st.failf("seed %d: carry on: Open: %v", k.r.seed, err)
		return
	}
	curEra := d.Status().CurrentEra
	blk := k.rng.Int64N(int64(d.NrBlocks()))
	_, err = d.WriteAt([]byte{1, 2, 3}, blk*int64(k.r.blockBytes))
	if err == nil {
		_, err = d.Checkpoint()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = era.Check(bytes.NewReader(store.Data))
	}
	if err == nil {
		var v *era.View
		if v, err = era.OpenView(bytes.NewReader(store.Data)); err == nil {
			var e uint32
			if e, err = v.BlockEra(uint64(blk)); err == nil && e < curEra {
				err = fmt.Errorf("block %d at era %d after a write in era %d", blk, e, curEra)
			}
		}
	}
	if err != nil {
		k.st.failf("seed %d: carry on after a crash: %v", k.r.seed, err)
	}
}

// checkWorkload cuts a recorded run at every instant (synced writes only,
// every write, and a random subset with tears) and at random instants.
func checkWorkload(t testing.TB, r *recordedRun, st *tortureStats, random int) [][]byte {
	k := &imageChecker{t: t, r: r, st: st, seen: map[uint64]*reopenedImage{}, hseed: maphash.MakeSeed(),
		rng: rand.New(rand.NewPCG(r.seed, 99))}
	end := r.clock.Now()
	lastEra, lastPoint := uint32(0), -1
	for c := uint64(0); c <= end; c++ {
		point := r.meta.Point(c)
		// The era of the durable images never goes back.
		if s := k.check(c, erasim.CrashOptions{Unsynced: erasim.KeepNone}, "synced writes only"); s.err == nil && s.formatted {
			if s.imgEra < lastEra {
				k.local.eraBack++
				st.failf("seed %d: durable era went from %d back to %d at time %d", r.seed, lastEra, s.imgEra, c)
			}
			lastEra = s.imgEra
		}
		if point == lastPoint {
			continue // the same metadata history: only the bounds moved
		}
		lastPoint = point
		k.check(c, erasim.CrashOptions{Unsynced: erasim.KeepAll}, "every write")
		k.check(c, erasim.CrashOptions{Tear: true}, "random writes, torn")
	}
	for range random {
		c := k.rng.Uint64N(end + 1)
		k.check(c, erasim.CrashOptions{Unsynced: erasim.KeepSome, Tear: k.rng.IntN(4) != 0}, "random cut")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	l := &k.local
	st.workloads++
	st.metaOps += r.meta.Len()
	st.noSpace += r.noSpace
	st.cuts += l.cuts
	st.images += l.images
	st.reopened += l.reopened
	st.unformatted += l.unformatted
	st.blocks += l.blocks
	st.written += l.written
	st.acked += l.acked
	st.inFlight += l.inFlight
	st.underReport += l.underReport
	st.overReport += l.overReport
	st.unopenable += l.unopenable
	st.eraBack += l.eraBack
	st.snapChecked += l.snapChecked
	st.snapLost += l.snapLost
	st.continued += l.continued
	return k.sample
}

// table renders the figures as a markdown table, and prints them for
// cmd/crashreport in -crash.full runs.
func (st *tortureStats) table(elapsed time.Duration) string {
	var b strings.Builder
	row := func(name string, v any) {
		fmt.Fprintf(&b, "| %s | %v |\n", name, v)
		if name != "time" {
			reportf(name, v)
		}
	}
	b.WriteString("| crash torture | |\n|---|---:|\n")
	row("random workloads", st.workloads)
	row("metadata writes and syncs recorded", st.metaOps)
	row("workload operations refused with ErrNoSpace (small metadata)", st.noSpace)
	row("cut points tried", st.cuts)
	row("distinct images reopened (era.Open, Check, OpenView, OpenSnapshot)", st.reopened)
	row("images cut before the first superblock (reformatted)", st.unformatted)
	row("blocks checked (image × block)", st.blocks)
	row("written blocks checked for under-reporting", st.written)
	row("acknowledged writes checked (image × write)", st.acked)
	row("held snapshots checked", st.snapChecked)
	row("recovered images written to, checkpointed and closed", st.continued)
	row("images era_check passed", st.eraCheck)
	row("**under-reported blocks**", st.underReport)
	row("**unopenable images**", st.unopenable)
	row("phantom marks (era above any write started)", st.overReport)
	row("eras gone backwards", st.eraBack)
	row("committed snapshots lost", st.snapLost)
	row("time", elapsed.Round(time.Second))
	return b.String()
}

// TestCrashTorture records random workloads and checks the image of a
// power cut at every instant of each, and at random instants with random
// subsets of the unsynced writes, torn at sector granularity.
func TestCrashTorture(t *testing.T) {
	seeds, ops, random := crashSizes()
	base := *crashSeedBase
	if base == 0 {
		base = uint64(time.Now().UnixNano())
	}
	t.Logf("seeds %d..%d (rerun one with -crash.seed=N -crash.seeds=1)", base, base+uint64(seeds)-1)
	st := &tortureStats{}
	var sample [][]byte
	var sampleMu sync.Mutex
	start := time.Now()
	t.Run("workloads", func(t *testing.T) {
		for i := range seeds {
			seed := base + uint64(i)
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				r := recordWorkload(t, seed, ops)
				s := checkWorkload(t, r, st, random)
				sampleMu.Lock()
				sample = append(sample, s...)
				sampleMu.Unlock()
			})
		}
	})
	t.Run("era_check", func(t *testing.T) {
		tooltest.Need(t, "era_check")
		dir := t.TempDir()
		for i, img := range sample {
			p := filepath.Join(dir, fmt.Sprintf("img%d", i))
			if err := os.WriteFile(p, img, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, stderr, err := tooltest.Try(t, "era_check", p); err != nil {
				t.Errorf("era_check on a crash image: %v\n%s%s", err, out, stderr)
				continue
			}
			st.eraCheck++
		}
	})
	for _, f := range st.failures {
		t.Error(f)
	}
	t.Logf("\n%s", st.table(time.Since(start)))
	if st.underReport != 0 || st.unopenable != 0 {
		t.Fatalf("%d under-reported blocks, %d unopenable images", st.underReport, st.unopenable)
	}
}

// TestSuperblockTearsCleanly checks that every superblock the device
// writes keeps its meaningful bytes in the first sector (bytes 512..4095
// zero), so a write torn at any sector leaves the old or the new
// superblock, both valid.
func TestSuperblockTearsCleanly(t *testing.T) {
	meta := erasim.New(1 << 20)
	origin := erasim.New(256 << 10)
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 40 {
		if _, err := d.WriteAt([]byte{byte(i)}, rng.Int64N(256<<10)); err != nil {
			t.Fatal(err)
		}
		switch i % 10 {
		case 3:
			_, err = d.Checkpoint()
		case 5:
			_, err = d.TakeSnapshot()
		case 8:
			err = d.DropSnapshot()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var supers [][]byte
	for _, op := range meta.Ops() {
		if op.Kind != erasim.OpWrite || op.Off != 0 {
			continue
		}
		if len(op.Data) != block.Size {
			t.Fatalf("superblock written with %d bytes", len(op.Data))
		}
		if !etesting.IsZero(op.Data[era.SuperblockEnd:]) {
			t.Fatalf("superblock write has non-zero bytes past the superblock and its identity copy (%d)", era.SuperblockEnd)
		}
		supers = append(supers, op.Data)
	}
	if len(supers) < 10 {
		t.Fatalf("only %d superblock writes", len(supers))
	}
	// Tear each superblock write over its predecessor in every way.
	for i := 1; i < len(supers); i++ {
		old, cur := supers[i-1], supers[i]
		for mask := range 1 << 8 {
			torn := make([]byte, block.Size)
			for s := range 8 {
				src := old
				if mask&(1<<s) != 0 {
					src = cur
				}
				copy(torn[s*512:(s+1)*512], src[s*512:])
			}
			want := old
			if mask&1 != 0 {
				want = cur
			}
			if !bytes.Equal(torn, want) {
				t.Fatalf("superblock %d torn with mask %#x is neither the old nor the new one", i, mask)
			}
			if err := block.Superblock.Validate(torn, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	// And the superblock of a fresh format torn over zeros: the first
	// sector decides, the rest is zero either way.
	first := supers[0]
	if !slices.Equal(first[512:], make([]byte, block.Size-512)) {
		t.Fatal("first superblock has bytes past the first sector")
	}
}
