// Command bench measures the era device against its speed targets (issue
// 7) side by side in one run and prints a markdown table of ratios with
// pass/fail (or JSON with -json):
//
//	go run ./bench                  # full run, about two to three minutes
//	go run ./bench -quick           # scaled down for CI, well under 2 minutes
//	go run ./bench -json            # machine-readable (-json-out FILE: as well)
//	go run ./bench -only first,bolt # some figures: marked, first, bolt, raw,
//	                                # query, query-while-writing, checkpoint,
//	                                # digest, heap, nbd, pit
//
// Every figure runs on real files in a temporary directory (-dir), so a
// commit's syncs are real syncs (fdatasync on Linux, as bbolt's). The table
// says whether each store syncs. The nbd figure runs fio (its nbd engine)
// against `era serve`, built from this module, and against qemu-nbd. The
// exit status is 1 when a target is missed, 2 when a figure could not be
// measured (a tool it needs is missing: era_invalidate, fio, qemu-nbd). The same workloads back the
// `go test -bench` benchmarks of the root package (bench_test.go).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/era-go/era/bench/workload"
)

type config struct {
	quick     bool
	dur       time.Duration // one throughput slice
	reps      int           // rounds of slices
	marked    int           // rounds of the marked-write comparison
	markedOps int
	queryReps int
	cpMax     int // largest log2(nr_blocks) for checkpoints
	cpReps    int
	digRounds int
	heapLog2  int
	qlRounds  int           // rounds of the query-while-writing figure
	qlDur     time.Duration // one of its slices
	qlWriters int
	nbdRounds int           // rounds of the nbd figure
	nbdJob    time.Duration // one fio job
	qemuTuned bool
	only      map[string]bool
}

func main() {
	var (
		quick     = flag.Bool("quick", false, "scaled down for CI (under 2 minutes)")
		asJSON    = flag.Bool("json", false, "print JSON instead of the markdown table")
		jsonOut   = flag.String("json-out", "", "also write the JSON report to this file")
		dir       = flag.String("dir", "", "directory for the temporary files (default: the system's)")
		dur       = flag.Duration("dur", 0, "length of one throughput slice (default 400ms, 200ms with -quick)")
		reps      = flag.Int("reps", 0, "rounds of throughput slices, every subject once a round (default 12, 5 with -quick)")
		only      = flag.String("only", "", "comma-separated figures to run: marked,first,bolt,raw,query,query-while-writing,checkpoint,digest,heap,nbd,pit")
		cpMax     = flag.Int("checkpoint-max", 0, "largest log2(nr_blocks) for the checkpoint figure (default 24, 20 with -quick)")
		heapLog   = flag.Int("heap-log2", 24, "log2(nr_blocks) of the heap figure's device")
		qlWriters = flag.Int("query-writers", 1, "writer goroutines of the query-while-writing figure")
		qemuPlain = flag.Bool("qemu-nbd-plain", false, "nbd figure: run qemu-nbd without raising glibc's malloc thresholds")
	)
	flag.Parse()
	c := config{quick: *quick, dur: 400 * time.Millisecond, reps: 12, marked: 61, markedOps: 10000, queryReps: 9,
		cpMax: 24, cpReps: 9, digRounds: 3, heapLog2: *heapLog, qlRounds: 12, qlDur: time.Second,
		nbdRounds: 5, nbdJob: 800 * time.Millisecond}
	if c.quick {
		c = config{quick: true, dur: 200 * time.Millisecond, reps: 5, marked: 31, markedOps: 5000, queryReps: 3,
			cpMax: 20, cpReps: 5, digRounds: 1, heapLog2: *heapLog, qlRounds: 6, qlDur: 500 * time.Millisecond,
			nbdRounds: 3, nbdJob: 300 * time.Millisecond}
	}
	c.qlWriters = *qlWriters
	c.qemuTuned = !*qemuPlain
	if *dur > 0 {
		c.dur = *dur
	}
	if *reps > 0 {
		c.reps = *reps
	}
	if *cpMax > 0 {
		c.cpMax = *cpMax
	}
	if *only != "" {
		c.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			c.only[strings.TrimSpace(f)] = true
		}
	}
	root, err := workload.TempDir(*dir, "era-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(root)
	log := os.Stderr
	start := time.Now()
	rep, err := run(c, root, log)
	if err != nil {
		os.RemoveAll(root)
		fatal(err)
	}
	rep.Seconds = time.Since(start).Seconds()
	os.RemoveAll(root) // os.Exit below skips the deferred removal
	if *jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(data, '\n'), 0o644)
		}
		if err != nil {
			fatal(err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fatal(err)
		}
	} else {
		printTable(os.Stdout, rep)
	}
	switch {
	case rep.Unmeasured:
		os.Exit(2)
	case !rep.AllPass:
		os.Exit(1)
	}
}

// measureNBD builds the era command and runs the nbd figure in a
// directory of its own.
func measureNBD(c config, root string) (workload.NBDResult, error) {
	dir, err := os.MkdirTemp(root, "nbd-")
	if err != nil {
		return workload.NBDResult{}, err
	}
	defer os.RemoveAll(dir)
	if why := workload.NBDTools(); why != "" {
		return workload.NBDResult{Err: why}, nil
	}
	bin, err := workload.BuildEra(dir)
	if err != nil {
		return workload.NBDResult{Err: err.Error()}, nil
	}
	return workload.MeasureNBD(bin, dir, c.nbdRounds, c.nbdJob, c.qemuTuned)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(2)
}

// Row is one line of the table.
type Row struct {
	Figure  string  `json:"figure"`
	Ours    string  `json:"ours"`
	Against string  `json:"against"`
	Ratio   float64 `json:"ratio"`
	Target  string  `json:"target"`
	Pass    *bool   `json:"pass,omitempty"` // nil: reported, no target
	Note    string  `json:"note,omitempty"`
	// Unmeasured: the figure could not be measured (a tool is missing).
	Unmeasured bool `json:"unmeasured,omitempty"`
}

// Report is everything one run measured.
type Report struct {
	Command    string                               `json:"command"`
	Machine    string                               `json:"machine"`
	Quick      bool                                 `json:"quick"`
	Rows       []Row                                `json:"rows"`
	AllPass    bool                                 `json:"all_pass"`
	Unmeasured bool                                 `json:"unmeasured,omitempty"` // some figure could not be measured
	Seconds    float64                              `json:"seconds"`
	Marked     *workload.MarkedResult               `json:"marked,omitempty"`
	Throughput map[string]workload.ThroughputResult `json:"throughput,omitempty"`
	Query      *workload.QueryResult                `json:"query,omitempty"`
	QueryLoad  *workload.QueryLoadResult            `json:"query_while_writing,omitempty"`
	Checkpoint []workload.CheckpointResult          `json:"checkpoint,omitempty"`
	Digest     *workload.DigestResult               `json:"digest,omitempty"`
	Heap       *workload.HeapResult                 `json:"heap,omitempty"`
	NBD        *workload.NBDResult                  `json:"nbd,omitempty"`
	PIT        *workload.PITResult                  `json:"pit,omitempty"`
}

func (c config) want(fig string) bool { return c.only == nil || c.only[fig] }

func pass(b bool) *bool { return &b }

func run(c config, root string, log io.Writer) (*Report, error) {
	rep := &Report{
		Command:    strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " ")),
		Machine:    fmt.Sprintf("%s/%s, %d CPUs, GOMAXPROCS %d, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version()),
		Quick:      c.quick,
		Throughput: map[string]workload.ThroughputResult{},
	}
	step := func(what string) func() {
		fmt.Fprintf(log, "bench: %s ...", what)
		t := time.Now()
		return func() { fmt.Fprintf(log, " %.1fs\n", time.Since(t).Seconds()) }
	}

	// Heap first, while the process holds little else.
	if c.want("heap") {
		done := step(fmt.Sprintf("heap, 2^%d blocks", c.heapLog2))
		h, err := workload.MeasureHeap(root, 1<<c.heapLog2, 0)
		done()
		if err != nil {
			return nil, fmt.Errorf("heap: %w", err)
		}
		rep.Heap = &h
	}
	if c.want("marked") {
		done := step("marked-block writes vs raw writes")
		m, err := workload.MeasureMarked(root, c.marked, c.markedOps)
		done()
		if err != nil {
			return nil, fmt.Errorf("marked: %w", err)
		}
		rep.Marked = &m
	}
	// Throughput: every subject on its own files, run in turn for a slice
	// at a time, round after round, so that the machine's changing load
	// (other processes' I/O) falls on all of them alike.
	var subjects []*workload.Subject
	defer func() {
		for _, s := range subjects {
			s.Close()
		}
	}()
	add := func(s *workload.Subject, err error) error {
		if err != nil {
			return err
		}
		subjects = append(subjects, s)
		return nil
	}
	if c.want("first") {
		for _, g := range []int{1, 16, 64} {
			if err := add(workload.NewEraSubject(root, g)); err != nil {
				return nil, err
			}
		}
	}
	if c.want("bolt") {
		for _, g := range []int{1, 16} {
			for _, batch := range []bool{false, true} {
				if err := add(workload.NewBoltSubject(root, g, batch)); err != nil {
					return nil, err
				}
			}
		}
	}
	if c.want("raw") {
		if err := add(workload.NewRawSubject(root)); err != nil {
			return nil, err
		}
	}
	if len(subjects) > 0 {
		done := step(fmt.Sprintf("first writes: %d subjects, %d rounds of %v each", len(subjects), c.reps, c.dur))
		tp, err := workload.RunSubjects(subjects, c.dur, c.reps, nil)
		done()
		if err != nil {
			return nil, err
		}
		rep.Throughput = tp
	}
	if c.want("query") {
		done := step("WrittenSince vs era_invalidate, 1,000,000 blocks")
		q, err := workload.MeasureQuery(root, workload.QueryBlocks, 8, c.queryReps)
		done()
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		rep.Query = &q
	}
	if c.want("checkpoint") {
		for lg := 10; lg <= c.cpMax; lg += 2 {
			done := step(fmt.Sprintf("checkpoint, 2^%d blocks", lg))
			cp, err := workload.MeasureCheckpoint(root, 1<<lg, c.cpReps)
			done()
			if err != nil {
				return nil, fmt.Errorf("checkpoint 2^%d: %w", lg, err)
			}
			rep.Checkpoint = append(rep.Checkpoint, cp)
		}
	}
	if c.want("query-while-writing") {
		done := step(fmt.Sprintf("first writes while WrittenSince runs in a loop, 2^24 blocks, %d rounds of 3 × %v", c.qlRounds, c.qlDur))
		q, err := workload.MeasureQueryLoad(root, workload.QueryLoadBlocks, c.qlWriters, c.qlRounds, c.qlDur)
		done()
		if err != nil {
			return nil, fmt.Errorf("query-while-writing: %w", err)
		}
		rep.QueryLoad = &q
	}
	if c.want("digest") {
		done := step("writer latency during the digest of a 2^20-block writeset")
		d, err := workload.MeasureDigestLatency(root, 1<<20, c.digRounds, 200)
		done()
		if err != nil {
			return nil, fmt.Errorf("digest: %w", err)
		}
		rep.Digest = &d
	}
	if c.want("nbd") {
		done := step(fmt.Sprintf("fio over NBD: era serve vs qemu-nbd, %d rounds of %d jobs of %v each", c.nbdRounds, len(workload.NBDJobs), c.nbdJob))
		n, err := measureNBD(c, root)
		done()
		if err != nil {
			return nil, fmt.Errorf("nbd: %w", err)
		}
		rep.NBD = &n
	}
	if c.want("pit") {
		done := step("point-in-time snapshot: copies and reads vs raw")
		reads := 9
		if c.quick {
			reads = 5
		}
		p, err := workload.MeasurePointInTime(root, c.marked, 256, reads)
		done()
		if err != nil {
			return nil, fmt.Errorf("pit: %w", err)
		}
		rep.PIT = &p
	}
	rep.Rows = rows(rep)
	rep.Rows = append(rep.Rows, pitRows(rep.PIT)...)
	rep.AllPass = true
	for _, r := range rep.Rows {
		if r.Pass != nil && !*r.Pass {
			rep.AllPass = false
		}
		if r.Unmeasured {
			rep.Unmeasured = true
		}
	}
	return rep, nil
}

func ops(r workload.ThroughputResult) string {
	return fmt.Sprintf("%.0f writes/s (p99 %s)", r.OpsPerSec, dur(r.P99))
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
}

func ns(x float64) string { return dur(time.Duration(x)) }

func mib(b uint64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

func rows(rep *Report) []Row {
	var out []Row
	if m := rep.Marked; m != nil {
		out = append(out, Row{
			Figure:  "4 KiB WriteAt to an already-marked block",
			Ours:    ns(m.TrackedNs),
			Against: "raw WriteAt, same file: " + ns(m.RawNs),
			Ratio:   m.Ratio, Target: "≤ 1.05× the time",
			Pass: pass(m.Ratio <= 1.05 && m.FirstWrites == 0),
			Note: fmt.Sprintf("median of %d alternating rounds of %d writes", m.Rounds, m.Ops),
		})
	}
	tp := rep.Throughput
	e1, ok1 := tp["era/1"]
	e16, ok16 := tp["era/16"]
	e64, ok64 := tp["era/64"]
	if ok1 && ok64 {
		r := workload.PairedRatio(e64, e1)
		out = append(out, Row{
			Figure:  "durable first writes, 64 goroutines vs 1",
			Ours:    "64: " + ops(e64),
			Against: "1: " + ops(e1),
			Ratio:   r, Target: "≥ 8× the throughput", Pass: pass(r >= 8),
			Note: fmt.Sprintf("%.1f first writes per commit at 64; metadata synced: %s; %s", e64.MeanGroup, yes(e64.Synced), paired(e1)),
		})
	}
	bestBolt := func(g int) ([]workload.ThroughputResult, string, bool) {
		u, okU := tp[fmt.Sprintf("bolt-update/%d", g)]
		b, okB := tp[fmt.Sprintf("bolt-batch/%d", g)]
		switch {
		case okU && okB:
			if b.OpsPerSec > u.OpsPerSec {
				return []workload.ThroughputResult{u, b}, fmt.Sprintf("bbolt db.Batch %s (db.Update: %.0f/s)", ops(b), u.OpsPerSec), true
			}
			return []workload.ThroughputResult{u, b}, fmt.Sprintf("bbolt db.Update %s (db.Batch: %.0f/s)", ops(u), b.OpsPerSec), true
		case okU:
			return []workload.ThroughputResult{u}, "bbolt db.Update " + ops(u), true
		}
		return nil, "", false
	}
	if b, desc, ok := bestBolt(16); ok && ok16 {
		r := workload.PairedRatio(e16, b...)
		out = append(out, Row{
			Figure:  "durable first writes, 16 writers, vs bbolt",
			Ours:    ops(e16),
			Against: desc,
			Ratio:   r, Target: "≥ 3× the better of the two", Pass: pass(r >= 3),
			Note: "both sync with fdatasync; " + paired(e16),
		})
	}
	if b, desc, ok := bestBolt(1); ok && ok1 {
		r := workload.PairedRatio(e1, b...)
		out = append(out, Row{
			Figure:  "durable first writes, 1 writer, vs bbolt",
			Ours:    ops(e1),
			Against: desc,
			Ratio:   r, Target: "no slower (≥ 1×)", Pass: pass(r >= 1),
			Note: paired(e1),
		})
	}
	if raw, ok := tp["raw-fsync/1"]; ok && ok1 {
		out = append(out, Row{
			Figure:  "durable first writes, 1 writer, vs raw 4 KiB write + fsync",
			Ours:    ops(e1),
			Against: "raw write + fsync " + ops(raw),
			Ratio:   workload.PairedRatio(e1, raw), Target: "reported: share of the raw rate",
			Note: fmt.Sprintf("a commit is %.1f syncs (data, then superblock), the raw write one", e1.SyncsPerCommit),
		})
	}
	for _, k := range []string{"era/1", "era/16", "era/64"} {
		if e, ok := tp[k]; ok {
			out = append(out, Row{
				Figure:  "metadata per commit, first writes, " + strings.TrimPrefix(k, "era/") + " writers",
				Ours:    fmt.Sprintf("%.1f blocks written, %.1f syncs per commit", e.BlocksPerCommit, e.SyncsPerCommit),
				Against: fmt.Sprintf("%.3f commits per first write", e.CommitsPerWrite),
				Ratio:   e.CommitsPerWrite, Target: "reported",
				Note: fmt.Sprintf("store has Sync: %s", yes(e.Synced)),
			})
		}
	}
	if q := rep.Query; q != nil {
		row := Row{
			Figure: fmt.Sprintf("WrittenSince(%d) over %d blocks after digest (%d ranges)", q.Since, q.NrBlocks, q.Ranges),
			Ours: fmt.Sprintf("OpenView+WrittenSince+XML %s (OpenView+WrittenSince %s; open device %s)",
				ns(q.ViewXMLNs), ns(q.ViewNs), ns(q.DeviceNs)),
			Target: "≥ 2× faster",
		}
		if q.ToolErr != "" {
			row.Against = "era_invalidate: " + q.ToolErr
			row.Ours += "; could not be measured"
			row.Unmeasured = true
		} else {
			row.Against = "era_invalidate 0.9.0 (exec): " + ns(q.ToolNs)
			row.Ratio = q.ToolNs / q.ViewXMLNs
			row.Pass = pass(row.Ratio >= 2 && q.Same)
			row.Note = "same answer as era_invalidate: " + yes(q.Same)
		}
		out = append(out, row)
	}
	if q := rep.QueryLoad; q != nil {
		digest := "digested"
		if q.Digesting {
			digest = "one still being digested when the run began"
		}
		out = append(out, Row{
			Figure: fmt.Sprintf("first-write p99 while WrittenSince(%d) runs in a loop, 2^%d blocks", q.Since, int(math.Log2(float64(q.NrBlocks)))),
			Ours: fmt.Sprintf("p99 %s (p50 %s, %.0f writes/s); %.1f queries/s (median %s, %d to %d ranges)",
				dur(q.P99With), dur(q.P50With), q.WritesPerSecWith, q.QueriesPerSec, dur(q.QueryP50), q.RangesFirst, q.RangesAt),
			Against: fmt.Sprintf("no queries: p99 %s (p50 %s, %.0f writes/s)", dur(q.P99Without), dur(q.P50Without), q.WritesPerSecWithout),
			Ratio:   q.Ratio, Target: "≤ 2×", Pass: pass(q.Ratio <= 2 && q.With > 0 && q.Queries > 0),
			Note: fmt.Sprintf("%d writer(s), %d rounds of %v slices in rotating order, %d and %d writes; median of the per-round p99 ratios %.2f×; 2 past eras of 4000 extents, %s; "+
				"control, a goroutine spinning on the CPU instead of querying: p99 %s (%.2f×, per-round median %.2f×), %.0f writes/s; "+
				"Go GCs per second %.1f with queries (%s of pauses), %.1f without (%s); a query allocates %s",
				q.Writers, q.Rounds, q.Slice, q.With, q.Without, q.RoundRatio, digest, dur(q.P99Busy), q.BusyRatio, q.RoundBusyRatio, q.WritesPerSecBusy,
				q.GCsPerSecWith, dur(q.GCPauseWith), q.GCsPerSecWithout, dur(q.GCPauseWithout), mib(q.AllocPerQuery)),
		})
	}
	if cps := rep.Checkpoint; len(cps) > 1 {
		lo, hi := cps[0], cps[len(cps)-1]
		var per []string
		for _, c := range cps {
			per = append(per, fmt.Sprintf("2^%d: %s", int(math.Log2(float64(c.NrBlocks))), dur(c.Median)))
		}
		r := float64(hi.Median) / float64(lo.Median)
		out = append(out, Row{
			Figure:  fmt.Sprintf("Checkpoint latency, 2^%d blocks vs 2^%d", int(math.Log2(float64(hi.NrBlocks))), int(math.Log2(float64(lo.NrBlocks)))),
			Ours:    fmt.Sprintf("%s (%.0f metadata blocks written)", dur(hi.Median), hi.BlocksWritten),
			Against: fmt.Sprintf("%s (%.0f blocks written)", dur(lo.Median), lo.BlocksWritten),
			Ratio:   r, Target: "flat (≤ 2×)", Pass: pass(r <= 2),
			Note: "medians: " + strings.Join(per, ", "),
		})
	}
	if d := rep.Digest; d != nil {
		out = append(out, Row{
			Figure:  "writer p99 while a 2^20-block writeset is digested",
			Ours:    fmt.Sprintf("p99 %s (p50 %s, %d writes)", dur(d.P99With), dur(d.P50With), d.With),
			Against: fmt.Sprintf("no digest: p99 %s (p50 %s, %d writes)", dur(d.P99Without), dur(d.P50Without), d.Without),
			Ratio:   d.Ratio, Target: "≤ 2×", Pass: pass(d.Ratio <= 2 && d.With > 0),
			Note: fmt.Sprintf("digest of a full writeset took %s", dur(d.DigestTime)),
		})
	}
	if n := rep.NBD; n != nil {
		out = append(out, nbdRows(n)...)
	}
	if h := rep.Heap; h != nil {
		r := float64(h.HeapBytes) / float64(h.BudgetBytes)
		out = append(out, Row{
			Figure:  fmt.Sprintf("heap for a 2^%d-block device", int(math.Log2(float64(h.NrBlocks)))),
			Ours:    fmt.Sprintf("%s (%.2f bits per block)", mib(h.HeapBytes), h.BitsPerBlock),
			Against: fmt.Sprintf("2 bits per block + %d × 4 KiB cache = %s", h.CacheBlocks, mib(h.BudgetBytes)),
			Ratio:   r, Target: "≤ 1× the budget", Pass: pass(r <= 1),
		})
	}
	return out
}

// nbdRows are the rows of the nbd figure.
func nbdRows(n *workload.NBDResult) []Row {
	if n.Err != "" {
		return []Row{{Figure: "era serve vs qemu-nbd (fio, nbd engine)", Ours: "could not be measured", Against: n.Err,
			Target: "≥ 1× qemu-nbd's IOPS", Unmeasured: true}}
	}
	var out []Row
	for _, j := range n.Jobs {
		row := Row{
			Figure:  "NBD, " + j.Job.Title,
			Ours:    fmt.Sprintf("era serve %s", iops(j.Era)),
			Against: fmt.Sprintf("qemu-nbd %s", iops(j.Qemu)),
			Ratio:   j.Ratio,
			Note: fmt.Sprintf("fio --rw=%s --bs=%s --iodepth=%d, %d rounds of %v each; ratio: median of the paired rounds; %s",
				j.Job.RW, j.Job.BS, j.Job.IODepth, len(j.Ratios), n.JobTime, commitNote(j)),
		}
		if j.Job.Checkpoint {
			row.Target = "reported, with the commits per write"
			row.Note += fmt.Sprintf(", %.3f per write (4 KiB blocks: every write is a first write)", j.CommitsPerWrite)
		} else {
			row.Target = "≥ 1× qemu-nbd's IOPS"
			row.Pass = pass(j.Ratio >= 1)
		}
		out = append(out, row)
	}
	return out
}

func commitNote(j workload.FioJobResult) string {
	if j.Job.Checkpoint {
		return fmt.Sprintf("era metadata commits during the job: %d", j.Commits)
	}
	return fmt.Sprintf("era metadata commits during the jobs on marked blocks (one fio command): %d", j.Commits)
}

func iops(s workload.FioSide) string {
	return fmt.Sprintf("%.0f IOPS (%.0f MiB/s)", s.MedianIOPS, s.MiBPerSec)
}

// paired describes how the throughput ratios are taken.
func paired(r workload.ThroughputResult) string {
	return fmt.Sprintf("ratio: median over %d rounds of the paired rates", len(r.Rounds))
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printTable(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "`%s` — %s, %.0f s\n\n", rep.Command, rep.Machine, rep.Seconds)
	fmt.Fprintln(w, "| figure | era | measured against | ratio | target | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rep.Rows {
		res := "—"
		if r.Pass != nil {
			res = "**FAIL**"
			if *r.Pass {
				res = "pass"
			}
		}
		fig := r.Figure
		if r.Note != "" {
			fig += " <br><sub>" + r.Note + "</sub>"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %s | %s |\n", fig, r.Ours, r.Against, r.Ratio, r.Target, res)
	}
	verdict := "all targets met"
	if !rep.AllPass {
		verdict = "some targets missed"
	}
	fmt.Fprintf(w, "\n%s\n", verdict)
}
