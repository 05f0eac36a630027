package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ---------------------------------------------------------------------
// Figure 10: era serve against qemu-nbd, with fio's nbd engine.

// NBDImageBytes is the size of both servers' images in the nbd figure.
const NBDImageBytes = 256 << 20

// FioJob is one fio job of the nbd figure, run against both servers.
type FioJob struct {
	Key     string // short name: randwrite, randread, seqwrite, firstwrite
	Title   string
	RW      string // fio --rw
	BS      string // fio --bs
	IODepth int
	// Checkpoint: the era server starts a new era before the job, so that
	// every write of the job is a first write.
	Checkpoint bool
	// Once: once through the image, not for a time (the untimed fill).
	Once bool
}

// NBDJobs are the jobs of the nbd figure, in the order a round runs them.
var NBDJobs = []FioJob{
	{Key: "randwrite", Title: "4 KiB random writes, iodepth 16, blocks already marked", RW: "randwrite", BS: "4k", IODepth: 16},
	{Key: "randread", Title: "4 KiB random reads, iodepth 16", RW: "randread", BS: "4k", IODepth: 16},
	{Key: "seqwrite", Title: "1 MiB sequential writes, iodepth 4", RW: "write", BS: "1M", IODepth: 4},
	{Key: "firstwrite", Title: "4 KiB random first writes right after a checkpoint, iodepth 16", RW: "randwrite", BS: "4k", IODepth: 16, Checkpoint: true},
}

// FioArgs returns the fio command line that runs jobs one after the other
// (stonewall) against uri, each for dur or once through the image, the
// JSON report written to out. fio takes about a second to start and stop
// whatever the jobs, so the figure runs several jobs per command.
func FioArgs(jobs []FioJob, uri string, dur time.Duration, out string) []string {
	args := []string{"--ioengine=nbd", "--uri=" + uri, fmt.Sprintf("--size=%d", NBDImageBytes),
		"--eta=never", "--output-format=json", "--output=" + out}
	for i, j := range jobs {
		args = append(args, "--name="+j.Key, "--rw="+j.RW, "--bs="+j.BS, fmt.Sprintf("--iodepth=%d", j.IODepth))
		if !j.Once {
			args = append(args, "--time_based", fmt.Sprintf("--runtime=%dms", dur.Milliseconds()))
		}
		if i > 0 {
			args = append(args, "--stonewall")
		}
	}
	return args
}

// FioSide is what one server did in one job, over the rounds.
type FioSide struct {
	IOPS       []float64 // per round
	MedianIOPS float64
	IOs        int64   // summed over rounds
	Bytes      int64   // summed over rounds
	MiBPerSec  float64 // median over rounds
	mibs       []float64
}

// FioJobResult compares the two servers on one job.
type FioJobResult struct {
	Job    FioJob
	Era    FioSide
	Qemu   FioSide
	Ratio  float64 // median over rounds of era IOPS / qemu-nbd IOPS
	Ratios []float64
	// The era server's metadata commits during the job (during its group:
	// the jobs on marked blocks run in one fio command), and per write.
	Commits         uint64
	CommitsPerWrite float64
}

// NBDResult is the nbd figure.
type NBDResult struct {
	Err        string // why it could not be measured, if it could not
	Rounds     int
	JobTime    time.Duration
	ImageBytes int64
	BlockBytes int
	QemuNBD    string // qemu-nbd --version, first line
	Fio        string // fio --version
	Jobs       []FioJobResult
	Command    string // the fio command of the first job, as an example
	// QemuMallocTuned: qemu-nbd ran with glibc's malloc thresholds raised
	// (QemuMallocEnv), so that it reuses its request buffers instead of
	// mapping fresh pages for every request of 1 MiB.
	QemuMallocTuned bool
	SettleTime      time.Duration // untimed: syncing the images after each job
}

// QemuMallocEnv raises glibc's malloc thresholds for qemu-nbd. By default
// glibc serves each 1 MiB request buffer with a fresh mapping (or trims it
// back to the kernel when freed): about 256 page faults per request, which
// on a VM cost qemu-nbd 10 ms a request. With these it keeps the memory.
var QemuMallocEnv = []string{"MALLOC_MMAP_THRESHOLD_=67108864", "MALLOC_TRIM_THRESHOLD_=268435456"}

// fioOut is the part of fio's JSON output the figure reads.
type fioOut struct {
	Jobs []struct {
		Error int `json:"error"`
		Read  struct {
			IOPS     float64 `json:"iops"`
			TotalIOs int64   `json:"total_ios"`
			Bytes    int64   `json:"io_bytes"`
			Runtime  int64   `json:"runtime"` // ms
		} `json:"read"`
		Write struct {
			IOPS     float64 `json:"iops"`
			TotalIOs int64   `json:"total_ios"`
			Bytes    int64   `json:"io_bytes"`
			Runtime  int64   `json:"runtime"`
		} `json:"write"`
	} `json:"jobs"`
}

// FioStat is what fio reported for one job: its reads for a read job,
// its writes otherwise.
type FioStat struct {
	IOPS  float64
	IOs   int64
	Bytes int64
}

// RunFio runs fio with args (from FioArgs, with out) and returns, job by
// job, the IOPS, I/O count and bytes.
func RunFio(args []string, out string, jobs []FioJob) ([]FioStat, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("fio", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fio %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var o fioOut
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("fio output: %w", err)
	}
	if len(o.Jobs) != len(jobs) {
		return nil, fmt.Errorf("fio output: %d jobs, want %d: %s", len(o.Jobs), len(jobs), stderr.String())
	}
	st := make([]FioStat, len(jobs))
	for i, j := range o.Jobs {
		if j.Error != 0 {
			return nil, fmt.Errorf("fio: job %s failed with error %d: %s", jobs[i].Key, j.Error, stderr.String())
		}
		if strings.Contains(jobs[i].RW, "read") {
			st[i] = FioStat{j.Read.IOPS, j.Read.TotalIOs, j.Read.Bytes}
		} else {
			st[i] = FioStat{j.Write.IOPS, j.Write.TotalIOs, j.Write.Bytes}
		}
		if st[i].IOs == 0 {
			return nil, fmt.Errorf("fio: job %s did no I/O", jobs[i].Key)
		}
	}
	return st, nil
}

// nbdServer is a server process and the URI it serves.
type nbdServer struct {
	name    string
	cmd     *exec.Cmd
	uri     string
	image   string
	control string // era serve only
	eraBin  string
	stderr  bytes.Buffer
}

// stop ends the server with SIGTERM and waits for it (once).
func (s *nbdServer) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %v: %s", s.name, err, strings.TrimSpace(s.stderr.String()))
		}
		return nil
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop on SIGTERM", s.name)
	}
}

// settle writes the image's dirty pages back (untimed, after every job),
// so that a job never pays for the page-cache writeback of the one before.
func (s *nbdServer) settle() error {
	f, err := os.OpenFile(s.image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// startEraServe runs `era serve` (eraBin) over a fresh image of
// NBDImageBytes and a fresh metadata file in dir, formatted with 4 KiB
// blocks.
func startEraServe(eraBin, dir string) (*nbdServer, error) {
	image := filepath.Join(dir, "era-image")
	meta := filepath.Join(dir, "era-meta")
	for _, f := range []struct {
		path string
		size int64
	}{{image, NBDImageBytes}, {meta, MetaBytesFor(NBDImageBytes / BlockBytes)}} {
		fh, err := CreateFile(f.path, f.size)
		if err != nil {
			return nil, err
		}
		fh.Close()
	}
	s := &nbdServer{name: "era serve", image: image, control: filepath.Join(dir, "era.ctl"), eraBin: eraBin}
	s.cmd = exec.Command(eraBin, "serve", "--meta", meta, "--image", image, "--format",
		"--block-sectors", fmt.Sprint(BlockSectors), "--socket", filepath.Join(dir, "era.sock"), "--control", s.control)
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case s.uri = <-line:
	case <-time.After(time.Minute):
	}
	if !strings.HasPrefix(s.uri, "nbd") {
		err := s.stop()
		return nil, fmt.Errorf("era serve printed no URI (%q): %v", s.uri, err)
	}
	return s, nil
}

// startQemuNBD serves a raw image of NBDImageBytes in dir with qemu-nbd,
// with QemuMallocEnv if tuned.
func startQemuNBD(dir string, tuned bool) (*nbdServer, error) {
	image := filepath.Join(dir, "qemu-image")
	fh, err := CreateFile(image, NBDImageBytes)
	if err != nil {
		return nil, err
	}
	fh.Close()
	sock := filepath.Join(dir, "qemu.sock")
	s := &nbdServer{name: "qemu-nbd", image: image, uri: "nbd+unix:///?socket=" + sock}
	s.cmd = exec.Command("qemu-nbd", "-t", "--cache=writeback", "-f", "raw", "--socket", sock, image)
	s.cmd.Stderr = &s.stderr
	if tuned {
		s.cmd.Env = append(os.Environ(), QemuMallocEnv...)
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			err := s.stop()
			return nil, fmt.Errorf("qemu-nbd did not listen on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eraControl runs `era message|status --control` and returns its output.
func (s *nbdServer) eraControl(args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(s.eraBin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("era %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// commits returns the era server's metadata commits so far (era status
// --control --json).
func (s *nbdServer) commits() (uint64, error) {
	out, err := s.eraControl("status", "--control", s.control, "--json")
	if err != nil {
		return 0, err
	}
	var r struct {
		Status *struct {
			Commits uint64 `json:"commits"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Status == nil {
		return 0, fmt.Errorf("era status --json: %q: %v", out, err)
	}
	return r.Status.Commits, nil
}

// firstLine runs a command and returns the first line of its output.
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(l)
}

// NBDTools returns why the nbd figure cannot run ("" if it can): fio
// (with its nbd engine) and qemu-nbd must be installed.
func NBDTools() string {
	var missing []string
	if _, err := exec.LookPath("fio"); err != nil {
		missing = append(missing, "fio")
	} else if out, _ := exec.Command("fio", "--enghelp=nbd").CombinedOutput(); !bytes.Contains(out, []byte("uri")) {
		return "fio has no nbd engine"
	}
	if _, err := exec.LookPath("qemu-nbd"); err != nil {
		missing = append(missing, "qemu-nbd (qemu-utils)")
	}
	if len(missing) > 0 {
		return strings.Join(missing, " and ") + " not installed"
	}
	return ""
}

// BuildEra builds the era command of this module into dir and returns its
// path.
func BuildEra(dir string) (string, error) {
	bin := filepath.Join(dir, "era")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/era-go/era/cmd/era").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/era: %v: %s", err, out)
	}
	return bin, nil
}

// MeasureNBD runs the nbd figure: era serve (eraBin, 4 KiB blocks) and
// qemu-nbd (with QemuMallocEnv if tuneQemu), each serving its own image
// of NBDImageBytes in dir, in rounds, the server order flipping every
// round. In a round, against each server: the image written through once
// with 1 MiB writes (untimed; on qemu-nbd in the first round only: it
// allocates the file, and on era serve marks every block in the current
// era), one fio command running the jobs on marked blocks one after the
// other, jobTime each, then (on era serve after a checkpoint) one running
// the first-write job. Each image is synced after each fio command,
// untimed, so that no job pays for the writeback of another's dirty
// pages. A missing tool is reported in Err, not as an error.
func MeasureNBD(eraBin, dir string, rounds int, jobTime time.Duration, tuneQemu bool) (NBDResult, error) {
	res := NBDResult{Rounds: rounds, JobTime: jobTime, ImageBytes: NBDImageBytes, BlockBytes: BlockBytes, QemuMallocTuned: tuneQemu}
	if why := NBDTools(); why != "" {
		res.Err = why
		return res, nil
	}
	res.QemuNBD = firstLine("qemu-nbd", "--version")
	res.Fio = firstLine("fio", "--version")
	eraSrv, err := startEraServe(eraBin, dir)
	if err != nil {
		return res, err
	}
	defer eraSrv.stop()
	qemuSrv, err := startQemuNBD(dir, tuneQemu)
	if err != nil {
		return res, err
	}
	defer qemuSrv.stop()
	out := filepath.Join(dir, "fio.json")
	res.Command = "fio " + strings.Join(FioArgs(NBDJobs[:1], "$URI", jobTime, "out.json"), " ")

	// The jobs on marked blocks run in one fio command, the first writes
	// (after a checkpoint) in another.
	fill := []FioJob{{Key: "fill", RW: "write", BS: "1M", IODepth: 4, Once: true}}
	var marked, first []FioJob
	for _, j := range NBDJobs {
		if j.Checkpoint {
			first = append(first, j)
		} else {
			marked = append(marked, j)
		}
	}
	res.Jobs = make([]FioJobResult, len(NBDJobs))
	for i, j := range NBDJobs {
		res.Jobs[i].Job = j
	}
	byKey := func(k string) *FioJobResult {
		for i := range res.Jobs {
			if res.Jobs[i].Job.Key == k {
				return &res.Jobs[i]
			}
		}
		return nil
	}
	writes := make([]uint64, len(NBDJobs))
	settle := func(s *nbdServer) error {
		t := time.Now()
		err := s.settle()
		res.SettleTime += time.Since(t)
		return err
	}
	// run runs a group of jobs against s and records them; on the era
	// server, with its commits.
	run := func(s *nbdServer, jobs []FioJob) error {
		era := s == eraSrv
		var c0 uint64
		if era {
			if jobs[0].Checkpoint {
				if _, err := s.eraControl("message", "--control", s.control, "checkpoint"); err != nil {
					return err
				}
			}
			if c0, err = s.commits(); err != nil {
				return err
			}
		}
		st, err := RunFio(FioArgs(jobs, s.uri, jobTime, out), out, jobs)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		var commits uint64
		if era {
			c1, err := s.commits()
			if err != nil {
				return err
			}
			commits = c1 - c0
		}
		for i, j := range jobs {
			jr := byKey(j.Key)
			side := &jr.Qemu
			if era {
				side = &jr.Era
				jr.Commits += commits // for the group
				if !strings.Contains(j.RW, "read") {
					writes[slices.Index(NBDJobs, j)] += uint64(st[i].IOs)
				}
			}
			side.IOPS = append(side.IOPS, st[i].IOPS)
			side.IOs += st[i].IOs
			side.Bytes += st[i].Bytes
			side.mibs = append(side.mibs, st[i].IOPS*float64(st[i].Bytes)/float64(st[i].IOs)/(1<<20))
		}
		return settle(s)
	}
	for r := range rounds {
		servers := []*nbdServer{eraSrv, qemuSrv}
		if r%2 == 1 {
			servers = []*nbdServer{qemuSrv, eraSrv}
		}
		for _, s := range servers {
			if r == 0 || s == eraSrv { // the era image again: only the marks are gone
				if _, err := RunFio(FioArgs(fill, s.uri, 0, out), out, fill); err != nil {
					return res, fmt.Errorf("%s: fill: %w", s.name, err)
				}
				if err := settle(s); err != nil {
					return res, err
				}
			}
			if err := run(s, marked); err != nil {
				return res, err
			}
			if err := run(s, first); err != nil {
				return res, err
			}
		}
		for i := range res.Jobs {
			jr := &res.Jobs[i]
			if q := jr.Qemu.IOPS[r]; q > 0 {
				jr.Ratios = append(jr.Ratios, jr.Era.IOPS[r]/q)
			}
		}
	}
	for i := range res.Jobs {
		jr := &res.Jobs[i]
		jr.Ratio = Median(jr.Ratios)
		for _, s := range []*FioSide{&jr.Era, &jr.Qemu} {
			s.MedianIOPS, s.MiBPerSec = Median(s.IOPS), Median(s.mibs)
		}
		if writes[i] > 0 {
			jr.CommitsPerWrite = float64(jr.Commits) / float64(writes[i])
		}
	}
	return res, errors.Join(eraSrv.stop(), qemuSrv.stop())
}
