package workload

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/exp/stats"

	"github.com/era-go/era"
	"github.com/era-go/era/eraxml"
)

// Median returns the median of xs (0 for none), interpolated as
// golang.org/x/exp/stats does.
func Median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	return T(stats.Median(floats(xs)))
}

// Percentile returns the p-th percentile (0..100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return time.Duration(stats.Quantiles(floats(ds), p/100)[0])
}

func floats[T int64 | float64 | time.Duration](xs []T) []float64 {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return f
}

// ---------------------------------------------------------------------
// Figure 1: a 4 KiB WriteAt to an already-marked block vs a raw WriteAt.

// MarkedRig is a device over a 64 MiB origin file whose blocks are all
// marked in the current era, and the same file for raw writes.
type MarkedRig struct {
	*Rig
	buf []byte
}

// MarkedBlocks is the size of the marked-write rig's origin, in blocks.
const MarkedBlocks = 16384

// NewMarkedRig opens the rig and marks (and writes) every block once.
func NewMarkedRig(dir string) (*MarkedRig, error) {
	r, err := NewRig(dir, RigConfig{NrBlocks: MarkedBlocks, Origin: FileOrigin})
	if err != nil {
		return nil, err
	}
	all := make([]byte, MarkedBlocks*BlockBytes)
	if _, err := r.Dev.WriteAt(all, 0); err != nil {
		r.Close()
		return nil, err
	}
	buf := make([]byte, BlockBytes)
	for i := range buf {
		buf[i] = byte(i)
	}
	return &MarkedRig{Rig: r, buf: buf}, nil
}

func markedOff(i int) int64 { return int64(i%MarkedBlocks) * BlockBytes }

// Tracked writes 4 KiB to marked block i%MarkedBlocks through the device.
func (m *MarkedRig) Tracked(i int) error {
	_, err := m.Dev.WriteAt(m.buf, markedOff(i))
	return err
}

// Raw writes the same 4 KiB straight to the origin file.
func (m *MarkedRig) Raw(i int) error {
	_, err := m.OriginFile.WriteAt(m.buf, markedOff(i))
	return err
}

// MarkedResult compares the two.
type MarkedResult struct {
	RawNs, TrackedNs float64 // per write, median over rounds
	Ratio            float64 // median of the per-round ratios
	Rounds, Ops      int
	FirstWrites      uint64 // must stay 0: every write hit a marked block
}

// MeasureMarked alternates rounds of ops raw and tracked writes (the order
// flipping every round, so drift hits both alike).
func MeasureMarked(dir string, rounds, ops int) (MarkedResult, error) {
	m, err := NewMarkedRig(dir)
	if err != nil {
		return MarkedResult{}, err
	}
	defer m.Close()
	before := m.Dev.Stats()
	timeRun := func(f func(int) error) (float64, error) {
		t0 := time.Now()
		for i := range ops {
			if err := f(i); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(ops), nil
	}
	// Warm up both paths.
	if _, err := timeRun(m.Raw); err != nil {
		return MarkedResult{}, err
	}
	if _, err := timeRun(m.Tracked); err != nil {
		return MarkedResult{}, err
	}
	var raws, tracks, ratios []float64
	for r := range rounds {
		var raw, tr float64
		if r%2 == 0 {
			if raw, err = timeRun(m.Raw); err == nil {
				tr, err = timeRun(m.Tracked)
			}
		} else {
			if tr, err = timeRun(m.Tracked); err == nil {
				raw, err = timeRun(m.Raw)
			}
		}
		if err != nil {
			return MarkedResult{}, err
		}
		raws, tracks, ratios = append(raws, raw), append(tracks, tr), append(ratios, tr/raw)
	}
	return MarkedResult{
		RawNs: Median(raws), TrackedNs: Median(tracks), Ratio: Median(ratios),
		Rounds: rounds, Ops: ops,
		FirstWrites: m.Dev.Stats().FirstWrites - before.FirstWrites,
	}, nil
}

// ---------------------------------------------------------------------
// Figures 2-4: durable first writes.

// FirstWriteBlocks is the size of the first-write figures' devices:
// 2^20 blocks of 4 KiB (a 4 GiB sparse origin file).
const FirstWriteBlocks = 1 << 20

// ThroughputResult is a first-write run.
type ThroughputResult struct {
	Writers   int
	Ops       int64
	Elapsed   time.Duration
	OpsPerSec float64
	P50, P99  time.Duration // per write latency
	Rounds    []float64     // writes/s of each round (RunSubjects)

	// Era device only: what the run cost in metadata.
	Commits            uint64
	CommitsPerWrite    float64 // commits per first write
	BlocksPerCommit    float64 // metadata blocks written per commit (superblock included)
	SyncsPerCommit     float64
	MeanGroup          float64 // first writes per commit
	Synced             bool    // the metadata store has Sync
	MetadataWriteBytes uint64
}

func fill(r RunResult, writers int) ThroughputResult {
	return ThroughputResult{
		Writers: writers, Ops: r.Ops, Elapsed: r.Elapsed, OpsPerSec: r.OpsPerSec(),
		P50: Percentile(r.Lat, 50), P99: Percentile(r.Lat, 99),
	}
}

// Subject is one contender of the first-write figures: a writer (an era
// device, a bbolt tracker or a raw synced file) on its own files, driven
// by Writers goroutines over a permutation of its blocks.
type Subject struct {
	Name    string
	Writers int
	W       Writer
	Dev     *era.Device // era subjects only
	Synced  bool        // the store syncs (fsync/fdatasync)
	perm    *Perm
	close   func() error
	settle  func() error // after each slice, untimed: flush the origin's dirty pages

	run    RunResult
	rounds []float64
	before era.Stats
}

// Close releases the subject's files.
func (s *Subject) Close() error { return s.close() }

func subdir(dir, name string) (string, error) {
	d := filepath.Join(dir, strings.NewReplacer("/", "-").Replace(name))
	return d, os.MkdirAll(d, 0o755)
}

// NewEraSubject opens a fresh device of FirstWriteBlocks blocks, metadata
// and origin being files in dir.
func NewEraSubject(dir string, writers int) (*Subject, error) {
	name := fmt.Sprintf("era/%d", writers)
	sd, err := subdir(dir, name)
	if err != nil {
		return nil, err
	}
	r, err := NewRig(sd, RigConfig{NrBlocks: FirstWriteBlocks, Origin: FileOrigin})
	if err != nil {
		return nil, err
	}
	if err := WaitDigest(r.Dev, time.Minute); err != nil {
		r.Close()
		return nil, err
	}
	return &Subject{Name: name, Writers: writers, W: r.Dev, Dev: r.Dev, Synced: r.Dev.Stats().CanSync,
		perm: NewPerm(FirstWriteBlocks), close: r.Close, settle: r.OriginFile.Sync}, nil
}

// NewBoltSubject opens a fresh BoltTracker (db.Update, or db.Batch) over
// an origin file, both in dir.
func NewBoltSubject(dir string, writers int, batch bool) (*Subject, error) {
	kind := "update"
	if batch {
		kind = "batch"
	}
	name := fmt.Sprintf("bolt-%s/%d", kind, writers)
	sd, err := subdir(dir, name)
	if err != nil {
		return nil, err
	}
	origin, err := CreateFile(originPath(sd), FirstWriteBlocks*BlockBytes)
	if err != nil {
		return nil, err
	}
	t, err := OpenBolt(sd, origin, FirstWriteBlocks, batch)
	if err != nil {
		origin.Close()
		return nil, err
	}
	return &Subject{Name: name, Writers: writers, W: t, Synced: !t.DB.NoSync, perm: NewPerm(FirstWriteBlocks),
		settle: origin.Sync,
		close: func() error {
			err := t.Close()
			origin.Close()
			os.Remove(originPath(sd))
			return err
		}}, nil
}

// NewRawSubject is a raw origin file written 4 KiB at a time, each write
// followed by an fsync, by one goroutine.
func NewRawSubject(dir string) (*Subject, error) {
	name := "raw-fsync/1"
	sd, err := subdir(dir, name)
	if err != nil {
		return nil, err
	}
	f, err := CreateFile(originPath(sd), FirstWriteBlocks*BlockBytes)
	if err != nil {
		return nil, err
	}
	return &Subject{Name: name, Writers: 1, W: SyncedFile{F: f}, Synced: true, perm: NewPerm(FirstWriteBlocks),
		close: func() error {
			err := f.Close()
			os.Remove(originPath(sd))
			return err
		}}, nil
}

// RunSubjects runs the subjects in turn, slice each, rounds times over
// (round robin, so that the machine's changing load falls on all of them
// alike; every other round in reverse order, so that none always follows
// the same one), after a warm-up slice each that is not counted (files
// growing, caches filling), and returns each one's totals. After each
// slice, untimed, a subject's origin file is synced: the origin data every
// tracker writes (unsynced, in all of them) is then not written back by the
// kernel during another subject's slice.
func RunSubjects(subjects []*Subject, slice time.Duration, rounds int, progress func(string)) (map[string]ThroughputResult, error) {
	settle := func(s *Subject) error {
		if s.settle == nil {
			return nil
		}
		return s.settle()
	}
	for _, s := range subjects {
		if progress != nil {
			progress(s.Name + ", warm-up")
		}
		if _, err := RunWrites(s.W, s.perm, s.Writers, 0, slice, false); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		if err := settle(s); err != nil {
			return nil, err
		}
		if s.Dev != nil {
			s.before = s.Dev.Stats()
		}
	}
	for r := range rounds {
		order := slices.Clone(subjects)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			if progress != nil {
				progress(fmt.Sprintf("%s, round %d/%d", s.Name, r+1, rounds))
			}
			run, err := RunWrites(s.W, s.perm, s.Writers, 0, slice, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
			if err := settle(s); err != nil {
				return nil, err
			}
			s.run.Ops += run.Ops
			s.run.Elapsed += run.Elapsed
			s.run.Lat = append(s.run.Lat, run.Lat...)
			s.rounds = append(s.rounds, run.OpsPerSec())
		}
	}
	out := map[string]ThroughputResult{}
	for _, s := range subjects {
		res := fill(s.run, s.Writers)
		res.Synced = s.Synced
		res.Rounds = s.rounds
		if s.Dev != nil {
			fillStats(&res, s.before, s.Dev.Stats())
		}
		out[s.Name] = res
	}
	return out, nil
}

// Run drives the subject for ops writes (its Writers goroutines), for the
// `go test -bench` benchmarks: an era subject's result has the metadata
// counts filled in.
func (s *Subject) Run(ops int64) (ThroughputResult, error) {
	s.run = RunResult{}
	var before era.Stats
	if s.Dev != nil {
		before = s.Dev.Stats()
	}
	run, err := RunWrites(s.W, s.perm, s.Writers, ops, 0, false)
	if err != nil {
		return ThroughputResult{}, err
	}
	res := fill(run, s.Writers)
	res.Synced = s.Synced
	if s.Dev != nil {
		fillStats(&res, before, s.Dev.Stats())
	}
	return res, nil
}

// fillStats fills in the metadata counts of an era run from two Stats.
func fillStats(res *ThroughputResult, before, after era.Stats) {
	res.Commits = after.Commits - before.Commits
	fw := after.FirstWrites - before.FirstWrites
	writes := after.MetadataWrites - before.MetadataWrites
	if fw > 0 {
		res.CommitsPerWrite = float64(res.Commits) / float64(fw)
	}
	if res.Commits > 0 {
		res.BlocksPerCommit = float64(writes) / float64(res.Commits)
		res.SyncsPerCommit = float64(after.MetadataSyncs-before.MetadataSyncs) / float64(res.Commits)
		res.MeanGroup = float64(fw) / float64(res.Commits)
	}
	res.MetadataWriteBytes = writes * BlockBytes
}

// PairedRatio returns the median over rounds of a's rate over the better of
// bs' rates in the same round: the subjects ran one after the other in
// each round, so a burst of load from elsewhere hits a round's figures
// alike, and the median drops the rounds it distorted.
func PairedRatio(a ThroughputResult, bs ...ThroughputResult) float64 {
	var rs []float64
	for i, x := range a.Rounds {
		best := 0.0
		for _, b := range bs {
			if i < len(b.Rounds) {
				best = max(best, b.Rounds[i])
			}
		}
		if best > 0 {
			rs = append(rs, x/best)
		}
	}
	return Median(rs)
}

// MeasureEraFirstWrites opens a fresh device of FirstWriteBlocks blocks on
// files in dir and runs writers goroutines of first writes for dur.
func MeasureEraFirstWrites(dir string, writers int, dur time.Duration) (ThroughputResult, error) {
	s, err := NewEraSubject(dir, writers)
	if err != nil {
		return ThroughputResult{}, err
	}
	defer s.Close()
	res, err := RunSubjects([]*Subject{s}, dur, 1, nil)
	return res[s.Name], err
}

// ---------------------------------------------------------------------
// Figure 5: WrittenSince over 1,000,000 blocks vs era_invalidate.

// QueryBlocks is the size of the WrittenSince figure's device.
const QueryBlocks = 1_000_000

// QueryResult compares the library's answer with era_invalidate's.
type QueryResult struct {
	NrBlocks   uint64
	Eras       int
	Since      uint32
	Ranges     int
	Blocks     uint64  // blocks in the answer
	DeviceNs   float64 // Device.WrittenSince on the open device (after digest)
	ViewNs     float64 // OpenView on the closed file + WrittenSince
	ViewXMLNs  float64 // the same, and the answer rendered as era_invalidate's XML
	ToolNs     float64 // exec era_invalidate --written-since, output read
	Same       bool    // era_invalidate printed exactly our answer
	ToolPath   string
	ToolErr    string // why the tool could not run, if it could not
	NrWritten  uint64
	MetaBlocks uint64
}

// FindEraInvalidate returns the path of era_invalidate, or "".
func FindEraInvalidate() string {
	if p, err := exec.LookPath("era_invalidate"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/era_invalidate", "/sbin/era_invalidate", "/usr/local/sbin/era_invalidate"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// BuildQueryMetadata writes eras eras of random extents (1 to 64 blocks,
// about 6% of the device per era) on a fresh device of nrBlocks, with
// checkpoints between them, waits for the digest, and returns the rig
// (device still open).
func BuildQueryMetadata(dir string, nrBlocks uint64, eras int, seed uint64) (*Rig, error) {
	r, err := NewRig(dir, RigConfig{NrBlocks: nrBlocks, Origin: NullOrigin})
	if err != nil {
		return nil, err
	}
	extents := int(nrBlocks / 500)
	for e := range eras {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(e*16+g)))
				buf := make([]byte, 64*BlockBytes)
				for range extents / 16 {
					n := 1 + rng.Uint64N(64)
					b := rng.Uint64N(nrBlocks - n)
					if _, err := r.Dev.WriteAt(buf[:n*BlockBytes], int64(b)*BlockBytes); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			r.Close()
			return nil, err
		}
		if _, err := r.Dev.Checkpoint(); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := WaitDigest(r.Dev, 5*time.Minute); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func timeReps(reps int, f func() error) (float64, error) {
	var ts []float64
	for range reps {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ts = append(ts, float64(time.Since(t0).Nanoseconds()))
	}
	return Median(ts), nil
}

func toolRanges(rs []era.Range) []eraxml.Range {
	out := make([]eraxml.Range, len(rs))
	for i, r := range rs {
		out[i] = eraxml.Range{Begin: r.Begin, End: r.End}
	}
	return out
}

// QueryFixture is the metadata of the WrittenSince figure: a device of
// QueryBlocks blocks after eras of writes, fully digested, on a file.
type QueryFixture struct {
	Rig   *Rig
	Since uint32 // the era queried: the answer spans about half the eras
}

// NewQueryFixture builds the metadata (BuildQueryMetadata); the device is
// left open.
func NewQueryFixture(dir string, nrBlocks uint64, eras int) (*QueryFixture, error) {
	r, err := BuildQueryMetadata(dir, nrBlocks, eras, 7)
	if err != nil {
		return nil, err
	}
	return &QueryFixture{Rig: r, Since: uint32(eras/2 + 1)}, nil
}

// Device asks the open device.
func (q *QueryFixture) Device() ([]era.Range, error) { return q.Rig.Dev.WrittenSince(q.Since) }

// CloseDevice closes the device, leaving the metadata file for View and
// Tool.
func (q *QueryFixture) CloseDevice() error { return q.Rig.Dev.Close() }

// View opens the committed metadata afresh (OpenView) and asks it.
func (q *QueryFixture) View() ([]era.Range, error) {
	v, err := era.OpenView(q.Rig.Meta)
	if err != nil {
		return nil, err
	}
	return v.WrittenSinceContext(context.Background(), q.Since)
}

// ViewXML is View with the answer rendered as era_invalidate prints it.
func (q *QueryFixture) ViewXML(out *bytes.Buffer) error {
	rs, err := q.View()
	if err != nil {
		return err
	}
	out.Reset()
	return eraxml.WriteInvalidate(out, toolRanges(rs))
}

// Tool runs era_invalidate (at path) --written-since on the metadata file
// and returns its output.
func (q *QueryFixture) Tool(path string) ([]byte, error) {
	var e bytes.Buffer
	cmd := exec.Command(path, "--written-since", fmt.Sprint(q.Since), q.Rig.Meta.Name())
	cmd.Stderr = &e
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", path, err, e.Bytes())
	}
	return out, nil
}

// Close removes the files.
func (q *QueryFixture) Close() error { return q.Rig.Close() }

// MeasureQuery builds the metadata, then times WrittenSince on the open
// device, closes it, and times a fresh View of the file (with and without
// rendering the answer as XML) and era_invalidate on the same file (median
// of reps each).
func MeasureQuery(dir string, nrBlocks uint64, eras int, reps int) (QueryResult, error) {
	q, err := NewQueryFixture(dir, nrBlocks, eras)
	if err != nil {
		return QueryResult{}, err
	}
	defer q.Close()
	res := QueryResult{NrBlocks: nrBlocks, Eras: eras, Since: q.Since}
	var rs []era.Range
	res.DeviceNs, err = timeReps(reps, func() (err error) {
		rs, err = q.Device()
		return err
	})
	if err != nil {
		return res, err
	}
	res.Ranges = len(rs)
	for _, x := range rs {
		res.Blocks += x.Len()
	}
	if err := q.CloseDevice(); err != nil {
		return res, err
	}
	var viewRanges []era.Range
	res.ViewNs, err = timeReps(reps, func() (err error) {
		viewRanges, err = q.View()
		return err
	})
	if err != nil {
		return res, err
	}
	if !slices.Equal(viewRanges, rs) {
		return res, fmt.Errorf("view and device disagree: %d vs %d ranges", len(viewRanges), len(rs))
	}
	var ours bytes.Buffer
	res.ViewXMLNs, err = timeReps(reps, func() error { return q.ViewXML(&ours) })
	if err != nil {
		return res, err
	}
	res.ToolPath = FindEraInvalidate()
	if res.ToolPath == "" {
		res.ToolErr = "era_invalidate not installed"
		return res, nil
	}
	var out []byte
	res.ToolNs, err = timeReps(reps, func() (err error) {
		out, err = q.Tool(res.ToolPath)
		return err
	})
	if err != nil {
		res.ToolErr = err.Error()
		return res, nil
	}
	res.Same = bytes.Equal(out, ours.Bytes())
	return res, nil
}

// ---------------------------------------------------------------------
// Figure 6: Checkpoint latency against nr_blocks.

// CheckpointResult is the latency of Checkpoint on one device size.
type CheckpointResult struct {
	NrBlocks      uint64
	Median, Max   time.Duration
	Reps          int
	OpenTime      time.Duration
	BlocksWritten float64 // metadata blocks written per checkpoint
}

// MeasureCheckpoint opens a device of nrBlocks (metadata on a file, a
// dropping origin) and times reps checkpoints, each after a few first
// writes and once the previous era is digested.
func MeasureCheckpoint(dir string, nrBlocks uint64, reps int) (CheckpointResult, error) {
	t0 := time.Now()
	r, err := NewRig(dir, RigConfig{NrBlocks: nrBlocks, Origin: NullOrigin})
	if err != nil {
		return CheckpointResult{}, err
	}
	defer r.Close()
	res := CheckpointResult{NrBlocks: nrBlocks, Reps: reps, OpenTime: time.Since(t0)}
	perm := NewPerm(nrBlocks)
	var ts []time.Duration
	var written uint64
	for range reps {
		if _, err := RunWrites(r.Dev, perm, 4, 8, 0, false); err != nil {
			return res, err
		}
		if err := WaitDigest(r.Dev, 5*time.Minute); err != nil {
			return res, err
		}
		before := r.Dev.Stats().MetadataWrites
		t := time.Now()
		if _, err := r.Dev.Checkpoint(); err != nil {
			return res, err
		}
		ts = append(ts, time.Since(t))
		written += r.Dev.Stats().MetadataWrites - before
	}
	res.Median = Median(ts)
	res.Max = slices.Max(ts)
	res.BlocksWritten = float64(written) / float64(reps)
	return res, nil
}

// ---------------------------------------------------------------------
// Figure 7: writer p99 while a full 2^20-block writeset is digested.

// DigestResult compares a writer's latency while the digest runs with the
// same writer once it is done.
type DigestResult struct {
	NrBlocks            uint64
	Rounds              int
	With, Without       int // samples
	P50With, P99With    time.Duration
	P50Without          time.Duration
	P99Without          time.Duration
	Ratio               float64 // P99With / P99Without
	DigestTime          time.Duration
	CommitsDuringDigest uint64
}

// MeasureDigestLatency runs rounds of: mark every block of a device of
// nrBlocks (so the writeset is full), checkpoint, and then run one writer
// of first writes (4 KiB, real origin file) while the digest folds the
// full writeset into the era array, and as many writes again after it is
// done. Samples are classed by whether the digest was running when the
// write began.
func MeasureDigestLatency(dir string, nrBlocks uint64, rounds, minSamples int) (DigestResult, error) {
	r, err := NewRig(dir, RigConfig{NrBlocks: nrBlocks, Origin: SwitchOrigin})
	if err != nil {
		return DigestResult{}, err
	}
	defer r.Close()
	res := DigestResult{NrBlocks: nrBlocks, Rounds: rounds}
	perm := NewPerm(nrBlocks)
	buf := make([]byte, BlockBytes)
	var with, without []time.Duration
	write := func() (time.Duration, error) {
		b := perm.Next()
		t := time.Now()
		_, err := r.Dev.WriteAt(buf, int64(b)*BlockBytes)
		return time.Since(t), err
	}
	var digestTimes []time.Duration
	for range rounds {
		if err := r.MarkAll(4096); err != nil {
			return res, err
		}
		if err := WaitDigest(r.Dev, 5*time.Minute); err != nil {
			return res, err
		}
		c0 := r.Dev.Stats().Commits
		t0 := time.Now()
		if _, err := r.Dev.Checkpoint(); err != nil {
			return res, err
		}
		n := 0
		for r.Dev.Stats().Digesting {
			d, err := write()
			if err != nil {
				return res, err
			}
			with = append(with, d)
			n++
		}
		digestTimes = append(digestTimes, time.Since(t0))
		res.CommitsDuringDigest += r.Dev.Stats().Commits - c0
		for range max(n, minSamples) {
			d, err := write()
			if err != nil {
				return res, err
			}
			without = append(without, d)
		}
	}
	res.With, res.Without = len(with), len(without)
	res.P50With, res.P99With = Percentile(with, 50), Percentile(with, 99)
	res.P50Without, res.P99Without = Percentile(without, 50), Percentile(without, 99)
	if res.P99Without > 0 {
		res.Ratio = float64(res.P99With) / float64(res.P99Without)
	}
	res.DigestTime = Median(digestTimes)
	return res, nil
}

// ---------------------------------------------------------------------
// Figure 8: heap for a 2^24-block device.

// HeapResult is the heap a device holds.
type HeapResult struct {
	NrBlocks     uint64
	CacheBlocks  int
	HeapBytes    uint64  // live heap held by the device (after GC)
	BudgetBytes  uint64  // 2 bits per block + CacheBlocks × 4 KiB
	BitsPerBlock float64 // HeapBytes*8/NrBlocks
	CacheFill    uint64  // metadata reads during the run (the cache is full)
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// MeasureHeap opens a device of nrBlocks with a cache of cacheBlocks
// (0: the default), writes, checkpoints, lets the digest run, queries, and
// measures the live heap it holds.
func MeasureHeap(dir string, nrBlocks uint64, cacheBlocks int) (HeapResult, error) {
	return MeasureHeapProfile(dir, nrBlocks, cacheBlocks, nil)
}

// MeasureHeapProfile is MeasureHeap, calling atPeak (if not nil) while
// the device is open, after the measurement: to write a heap profile.
func MeasureHeapProfile(dir string, nrBlocks uint64, cacheBlocks int, atPeak func()) (HeapResult, error) {
	if cacheBlocks <= 0 {
		cacheBlocks = 1024 // block.DefaultCacheBlocks
	}
	base := liveHeap()
	r, err := NewRig(dir, RigConfig{NrBlocks: nrBlocks, Origin: NullOrigin, CacheBlocks: cacheBlocks})
	if err != nil {
		return HeapResult{}, err
	}
	defer r.Close()
	perm := NewPerm(nrBlocks)
	for range 2 {
		if _, err := RunWrites(r.Dev, perm, 16, 2000, 0, false); err != nil {
			return HeapResult{}, err
		}
		if _, err := r.Dev.Checkpoint(); err != nil {
			return HeapResult{}, err
		}
		if err := WaitDigest(r.Dev, 5*time.Minute); err != nil {
			return HeapResult{}, err
		}
	}
	if _, err := RunWrites(r.Dev, perm, 16, 2000, 0, false); err != nil {
		return HeapResult{}, err
	}
	if _, err := r.Dev.WrittenSince(1); err != nil {
		return HeapResult{}, err
	}
	held := liveHeap()
	if atPeak != nil {
		atPeak()
	}
	runtime.KeepAlive(r)
	res := HeapResult{NrBlocks: nrBlocks, CacheBlocks: cacheBlocks, BudgetBytes: 2*nrBlocks/8 + uint64(cacheBlocks)*BlockBytes}
	if held > base {
		res.HeapBytes = held - base
	}
	res.BitsPerBlock = float64(res.HeapBytes) * 8 / float64(nrBlocks)
	res.CacheFill = r.Dev.Stats().MetadataReads
	return res, nil
}
