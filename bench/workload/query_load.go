package workload

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/era-go/era"
)

// ---------------------------------------------------------------------
// Figure 9: first-write latency while another goroutine queries.

// QueryLoadBlocks is the size of the query-while-writing figure's device:
// 2^24 blocks of 4 KiB (a 64 GiB sparse origin file).
const QueryLoadBlocks = 1 << 24

// QueryLoadRig is a device of QueryLoadBlocks whose history makes a
// realistic query: two eras of scattered extents before the current one
// (the first digested into the era array, the second archived as a
// writeset when the rig is built), so that WrittenSince(Since) reads the
// era array, the archived writeset if still there, and the current
// writeset that the writers fill.
type QueryLoadRig struct {
	*Rig
	Since     uint32 // the era queried: every era of the history
	Digesting bool   // the second era's writeset was still undigested when built
	perm      *Perm
}

// NewQueryLoadRig builds the rig in dir: extents extents of 1 to 16
// blocks in each of two eras, written with the origin discarding (only
// their marks matter), a checkpoint after each, the digest waited for
// after the first only.
func NewQueryLoadRig(dir string, nrBlocks uint64, extents int) (*QueryLoadRig, error) {
	r, err := NewRig(dir, RigConfig{NrBlocks: nrBlocks, Origin: SwitchOrigin})
	if err != nil {
		return nil, err
	}
	first := r.Dev.CurrentEra()
	r.Switch.Discard(true)
	for e := range 2 {
		if err := writeExtents(r.Dev, nrBlocks, extents, uint64(e)); err != nil {
			r.Close()
			return nil, err
		}
		if _, err := r.Dev.Checkpoint(); err != nil {
			r.Close()
			return nil, err
		}
		if e == 0 {
			if err := WaitDigest(r.Dev, 5*time.Minute); err != nil {
				r.Close()
				return nil, err
			}
		}
	}
	r.Switch.Discard(false)
	return &QueryLoadRig{Rig: r, Since: first, Digesting: r.Dev.Stats().Digesting, perm: NewPerm(nrBlocks)}, nil
}

// writeExtents writes n extents of 1 to 16 blocks at random places, from
// 8 goroutines.
func writeExtents(d *era.Device, nrBlocks uint64, n int, seed uint64) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			buf := make([]byte, 16*BlockBytes)
			for range n / 8 {
				k := 1 + rng.Uint64N(16)
				b := rng.Uint64N(nrBlocks - k)
				if _, err := d.WriteAt(buf[:k*BlockBytes], int64(b)*BlockBytes); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Query runs the figure's query once and returns the number of ranges.
func (q *QueryLoadRig) Query() (int, error) {
	rs, err := q.Dev.WrittenSince(q.Since)
	return len(rs), err
}

// Writes runs writers goroutines of first writes (each to a block not yet
// marked in the current era) for dur, latencies kept.
func (q *QueryLoadRig) Writes(writers int, dur time.Duration) (RunResult, error) {
	return RunWrites(q.Dev, q.perm, writers, 0, dur, true)
}

// QueryLoop runs Query back to back on its own goroutine until the
// returned stop is called; stop waits for the query under way and returns
// the durations of the queries completed, the time from the first's start
// to the last's end, and the first error.
func (q *QueryLoadRig) QueryLoop() (stop func() ([]time.Duration, time.Duration, error)) {
	var (
		halt    atomic.Bool
		done    = make(chan struct{})
		ts      []time.Duration
		elapsed time.Duration
		qerr    error
	)
	go func() {
		defer close(done)
		start := time.Now()
		defer func() { elapsed = time.Since(start) }()
		for !halt.Load() {
			t := time.Now()
			if _, err := q.Query(); err != nil {
				qerr = err
				return
			}
			ts = append(ts, time.Since(t))
		}
	}()
	return func() ([]time.Duration, time.Duration, error) {
		halt.Store(true)
		<-done
		return ts, elapsed, qerr
	}
}

// QueryLoadResult compares first-write latency with a query loop running
// against the same writers without one.
type QueryLoadResult struct {
	NrBlocks  uint64
	Since     uint32
	Writers   int
	Rounds    int
	Slice     time.Duration
	Digesting bool // an archived writeset was still undigested when the run began

	With, Without, Busy int // first writes timed with queries, alone, with the busy goroutine
	P50With, P99With    time.Duration
	P50Without          time.Duration
	P99Without          time.Duration
	P50Busy, P99Busy    time.Duration
	Ratio               float64 // P99With / P99Without, all samples of each side pooled
	BusyRatio           float64 // P99Busy / P99Without
	RoundRatio          float64 // median over rounds of the paired p99 ratios
	RoundBusyRatio      float64 // the same for the busy goroutine
	WritesPerSecWith    float64
	WritesPerSecWithout float64
	WritesPerSecBusy    float64
	Queries             int
	QueriesPerSec       float64 // completed, over the time the query loops ran
	QueryP50, QueryMax  time.Duration
	// Go's garbage collector: collections per second of slice with queries
	// and without, and the bytes a query allocates (each metadata block it
	// reads is a fresh 4 KiB buffer): its stop-the-world pauses fall on the
	// writers too.
	GCsPerSecWith, GCsPerSecWithout float64
	GCPauseWith, GCPauseWithout     time.Duration // summed stop-the-world pauses
	AllocPerQuery                   uint64
	RangesFirst, RangesAt           int // ranges in the answer before the run, and after it
}

// BusyLoop keeps a goroutine busy on the CPU, touching no device, until
// the returned stop is called: the control of the figure, to tell a stall
// the device causes from the share of a 2-CPU machine a query loop takes.
func BusyLoop() (stop func()) {
	var halt atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		x := uint64(1)
		for !halt.Load() {
			for i := range 100000 {
				x = x*6364136223846793005 + uint64(i)
			}
		}
		busySink.Store(x)
	}()
	return func() {
		halt.Store(true)
		<-done
	}
}

var busySink atomic.Uint64

// Load modes of the query-while-writing figure's slices.
const (
	loadNone  = iota // the writers alone
	loadQuery        // and a goroutine running WrittenSince back to back
	loadBusy         // and a goroutine spinning on the CPU
	nLoads
)

// MeasureQueryLoad builds a QueryLoadRig of nrBlocks in dir and runs
// rounds of three slices of dur each, in an order that rotates every
// round: writers goroutines of first writes alone, the same with a
// goroutine running WrittenSince back to back, and the same with a
// goroutine spinning on the CPU (the control), after one warm-up slice of
// each. The origin file is synced after every slice, untimed.
func MeasureQueryLoad(dir string, nrBlocks uint64, writers, rounds int, dur time.Duration) (QueryLoadResult, error) {
	q, err := NewQueryLoadRig(dir, nrBlocks, 4000)
	if err != nil {
		return QueryLoadResult{}, err
	}
	defer q.Close()
	res := QueryLoadResult{NrBlocks: nrBlocks, Since: q.Since, Writers: writers, Rounds: rounds, Slice: dur, Digesting: q.Digesting}
	if res.RangesFirst, err = q.Query(); err != nil {
		return res, err
	}
	var qts []time.Duration
	var qtime time.Duration
	var gcs [nLoads]uint32
	var pauses [nLoads]uint64
	var qalloc uint64
	slice := func(mode int) (RunResult, error) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		defer func() {
			runtime.ReadMemStats(&m1)
			gcs[mode] += m1.NumGC - m0.NumGC
			pauses[mode] += m1.PauseTotalNs - m0.PauseTotalNs
			if mode == loadQuery {
				qalloc += m1.TotalAlloc - m0.TotalAlloc
			}
		}()
		var stopQuery func() ([]time.Duration, time.Duration, error)
		var stopBusy func()
		switch mode {
		case loadQuery:
			stopQuery = q.QueryLoop()
		case loadBusy:
			stopBusy = BusyLoop()
		}
		run, err := q.Writes(writers, dur)
		if stopQuery != nil {
			ts, elapsed, qerr := stopQuery()
			qts, qtime = append(qts, ts...), qtime+elapsed
			err = errors.Join(err, qerr)
		}
		if stopBusy != nil {
			stopBusy()
		}
		if err == nil {
			err = q.OriginFile.Sync()
		}
		return run, err
	}
	for mode := range nLoads {
		if _, err := slice(mode); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	qts, qtime, gcs, pauses, qalloc = nil, 0, [nLoads]uint32{}, [nLoads]uint64{}, 0
	var lat [nLoads][]time.Duration
	var elapsed [nLoads]time.Duration
	var ops [nLoads]int64
	var ratios, busyRatios []float64
	for r := range rounds {
		var p99 [nLoads]time.Duration
		for i := range nLoads {
			mode := (i + r) % nLoads
			run, err := slice(mode)
			if err != nil {
				return res, err
			}
			lat[mode] = append(lat[mode], run.Lat...)
			elapsed[mode] += run.Elapsed
			ops[mode] += run.Ops
			p99[mode] = Percentile(run.Lat, 99)
		}
		if p99[loadNone] > 0 {
			ratios = append(ratios, float64(p99[loadQuery])/float64(p99[loadNone]))
			busyRatios = append(busyRatios, float64(p99[loadBusy])/float64(p99[loadNone]))
		}
	}
	with, without, busy := lat[loadQuery], lat[loadNone], lat[loadBusy]
	res.With, res.Without, res.Busy = len(with), len(without), len(busy)
	res.P50With, res.P99With = Percentile(with, 50), Percentile(with, 99)
	res.P50Without, res.P99Without = Percentile(without, 50), Percentile(without, 99)
	res.P50Busy, res.P99Busy = Percentile(busy, 50), Percentile(busy, 99)
	if res.P99Without > 0 {
		res.Ratio = float64(res.P99With) / float64(res.P99Without)
		res.BusyRatio = float64(res.P99Busy) / float64(res.P99Without)
	}
	res.RoundRatio, res.RoundBusyRatio = Median(ratios), Median(busyRatios)
	rate := func(m int) float64 {
		if elapsed[m] <= 0 {
			return 0
		}
		return float64(ops[m]) / elapsed[m].Seconds()
	}
	res.WritesPerSecWith, res.WritesPerSecWithout, res.WritesPerSecBusy = rate(loadQuery), rate(loadNone), rate(loadBusy)
	gcRate := func(m int) float64 {
		if elapsed[m] <= 0 {
			return 0
		}
		return float64(gcs[m]) / elapsed[m].Seconds()
	}
	res.GCsPerSecWith, res.GCsPerSecWithout = gcRate(loadQuery), gcRate(loadNone)
	res.GCPauseWith, res.GCPauseWithout = time.Duration(pauses[loadQuery]), time.Duration(pauses[loadNone])
	res.Queries = len(qts)
	if len(qts) > 0 {
		res.AllocPerQuery = qalloc / uint64(len(qts))
	}
	if qtime > 0 {
		res.QueriesPerSec = float64(len(qts)) / qtime.Seconds()
	}
	if len(qts) > 0 {
		res.QueryP50, res.QueryMax = Median(qts), slices.Max(qts)
	}
	res.RangesAt, err = q.Query()
	return res, err
}
