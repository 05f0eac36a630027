package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/era-go/era"
)

// ErrDemoMismatch reports a restored image whose SHA-256 differs from the
// image's at the backup.
var ErrDemoMismatch = errors.New("restored image differs from the image at its backup")

// DemoConfig sets up a demo run.
type DemoConfig struct {
	// SizeMiB is the image size in MiB.
	SizeMiB int
	// BlockSectors is the tracked block size in sectors.
	BlockSectors uint32
	// Rounds is the number of incremental backups.
	Rounds int
	// Writes is the number of random writes per round.
	Writes int
	// Seed seeds the random writes.
	Seed uint64
	// Sync makes backups and restores sync their files as the command
	// line tool does. Off, the demo's throwaway files stay in the page
	// cache (the era metadata is synced at every commit either way).
	Sync bool
	// Dir holds the image, metadata, repository and restored images; ""
	// makes a temporary directory, removed at the end unless Keep.
	Dir  string
	Keep bool
	// Out receives the running commentary and the tables; Progress the
	// progress bars (nil: none).
	Out      io.Writer
	Progress Progress
}

// DefaultDemo is the demo's default configuration: a 256 MiB image in
// 64 KiB blocks (4096 blocks), four incremental backups of 400 random
// writes each.
var DefaultDemo = DemoConfig{SizeMiB: 256, BlockSectors: 128, Rounds: 4, Writes: 400, Seed: 1}

// DemoPoint is one backup of a demo run and its restore.
type DemoPoint struct {
	Backup Backup
	// During is the number of writes made while the backup copied.
	During int64
	// Want is the image's SHA-256 at the backup's snapshot (taken while
	// the writers were held for it); Got the restored image's.
	Want, Got string
	// Restore is the restore's time.
	Restore float64
}

// DemoResult is what a demo run did.
type DemoResult struct {
	Dir    string
	Points []DemoPoint
}

// demoWriter writes through the device from many goroutines, as an
// application with concurrent I/O would; first writes to a block in an era
// share metadata commits.
const demoWriters = 16

// RunDemo runs the demo: it makes a sparse image, writes through an
// era.Device, takes a full backup, then rounds of random writes (some
// rewriting the same blocks, some across block boundaries, some of zeros)
// with checkpoints between them, each followed by an incremental backup
// (one of them in external mode: the device holds the snapshot, the backup
// only reads). The in-process backups read point-in-time snapshots while a
// writer keeps writing through the device during the copy; the image's
// SHA-256 is taken at each snapshot, with the writer held just for it. It
// restores every backup and compares the restored image's SHA-256 with
// the image's at that backup. A mismatch is an
// ErrDemoMismatch error; the result is returned with it.
func RunDemo(ctx context.Context, cfg DemoConfig) (*DemoResult, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	prog := orNoProgress(cfg.Progress)
	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "era-backup-demo-"); err != nil {
			return nil, err
		}
		if !cfg.Keep {
			defer os.RemoveAll(dir)
		}
	}
	res := &DemoResult{Dir: dir}
	size := int64(cfg.SizeMiB) << 20
	image, err := createSparse(filepath.Join(dir, "image.img"), size)
	if err != nil {
		return nil, err
	}
	defer image.Close()
	meta, err := createSparse(filepath.Join(dir, "meta.bin"), metaSizeFor(size))
	if err != nil {
		return nil, err
	}
	defer meta.Close()
	repo, err := InitRepo(filepath.Join(dir, "repo"))
	if err != nil {
		return nil, err
	}
	d, err := era.Open(meta, image, era.Config{Format: true, BlockSectors: cfg.BlockSectors})
	if err != nil {
		return nil, err
	}
	defer func() {
		if d != nil {
			d.Close()
		}
	}()
	bb := int64(d.BlockBytes())
	fmt.Fprintf(out, "demo in %s: %s sparse image, %s blocks (%d), era %d\n",
		dir, fmtBytes(size), fmtBytes(bb), d.NrBlocks(), d.Status().CurrentEra)
	if !cfg.Sync {
		fmt.Fprintf(out, "(backups and restores skip fsync of their throwaway files; --sync to include it)\n")
	}

	w := &demoWrites{d: d, size: size, bb: bb, seed: cfg.Seed}
	t0 := time.Now()
	if err := w.initial(); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "wrote %s of initial data through the era device in %s\n", fmtBytes(w.written), fmtSeconds(time.Since(t0).Seconds()))
	opt := Options{Progress: prog, NoSync: !cfg.Sync}
	// record notes backup r; sum is the image's SHA-256 at its snapshot,
	// "" to take it now (the image did not change since).
	record := func(r *Result, sum string, during int64) error {
		if sum == "" {
			var err error
			if sum, err = hashImage(ctx, image, size, prog, "hash image"); err != nil {
				return err
			}
		}
		b := r.Backup
		res.Points = append(res.Points, DemoPoint{Backup: b, Want: sum, During: during})
		how := "consistent, " + fmt.Sprint(during) + " writes during the copy"
		if !b.Consistent {
			how = "live image, no writes during the copy"
		}
		fmt.Fprintf(out, "backup %d: %-11s %-8s eras %-5s %5d blocks, %s stored; image SHA-256 %s at the snapshot (%s)\n",
			b.ID, b.Kind, b.Mode, b.EraRange(), b.Blocks, fmtBytes(b.StoredBytes), sum[:16], how)
		return nil
	}
	// pitBackup takes an in-process backup from a point-in-time snapshot
	// while a writer keeps writing through the device.
	pitBackup := func(kind Kind, stream int) error {
		bg := w.background(stream)
		var sum string
		var herr error
		var atSnap int64
		popt := opt
		popt.Freeze = func() func() {
			bg.hold.Lock() // no write in flight
			return func() {
				sum, herr = hashImage(ctx, image, size, nil, "")
				atSnap = bg.writes.Load()
				bg.hold.Unlock()
			}
		}
		r, err := repo.Backup(ctx, kind, Source{Device: d, Meta: meta}, popt)
		during, werr := bg.stop()
		if err = errors.Join(err, herr, werr); err != nil {
			return err
		}
		if !r.Backup.Consistent {
			return fmt.Errorf("backup %d was not read from a point-in-time snapshot", r.Backup.ID)
		}
		return record(r, sum, during-atSnap)
	}
	if err := pitBackup(Full, 1000); err != nil {
		return nil, err
	}

	for round := 1; round <= cfg.Rounds; round++ {
		// Three bursts of writes with a checkpoint after each of the
		// first two: the incremental spans three eras.
		start, t0 := w.written, time.Now()
		for burst := range 3 {
			n := cfg.Writes / 3
			if burst == 2 {
				n = cfg.Writes - 2*n
			}
			if err := w.random(round*3+burst, n); err != nil {
				return nil, err
			}
			if burst < 2 {
				if _, err := d.Checkpoint(); err != nil {
					return nil, err
				}
			}
		}
		fmt.Fprintf(out, "round %d: %d random writes (%s) in %s over 3 eras, 2 checkpoints; era now %d\n",
			round, cfg.Writes, fmtBytes(w.written-start), fmtSeconds(time.Since(t0).Seconds()), d.Status().CurrentEra)
		if round == 2 {
			r, err := externalBackup(ctx, repo, d, filepath.Join(dir, "meta.bin"), filepath.Join(dir, "image.img"), opt)
			if err == nil {
				err = record(r, "", 0)
			}
			if err != nil {
				return nil, err
			}
		} else if err := pitBackup(Incremental, 1000+round); err != nil {
			return nil, err
		}
	}
	err = d.Close()
	d = nil
	if err != nil {
		return nil, err
	}

	vr, err := repo.Verify(ctx, prog)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "verify: %d backups, %d chunks, %s: every chunk present with its SHA-256\n",
		vr.Backups, vr.Chunks, fmtBytes(vr.Bytes))

	var mismatch error
	for i := range res.Points {
		p := &res.Points[i]
		outFile := filepath.Join(dir, fmt.Sprintf("restore-%d.img", p.Backup.ID))
		rr, err := repo.Restore(ctx, RestoreOptions{To: p.Backup.ID, Out: outFile, Progress: prog, NoSync: !cfg.Sync})
		if err != nil {
			return nil, err
		}
		p.Restore = rr.Seconds
		if p.Got, err = hashFile(ctx, outFile, prog); err != nil {
			return nil, err
		}
		if p.Got != p.Want {
			mismatch = errors.Join(mismatch, fmt.Errorf("backup %d: restored SHA-256 %s, image had %s: %w",
				p.Backup.ID, p.Got, p.Want, ErrDemoMismatch))
		}
		if !cfg.Keep && cfg.Dir == "" {
			os.Remove(outFile) // keep the disk use down; the hash is what counts
		}
	}

	fmt.Fprintln(out)
	if err := backupTable(backupsOf(res.Points)).write(out); err != nil {
		return nil, err
	}
	fmt.Fprintln(out)
	if err := restoreTable(res.Points).write(out); err != nil {
		return nil, err
	}
	fmt.Fprintln(out)
	if mismatch != nil {
		fmt.Fprintf(out, "FAIL: a restored image differs from the image at its backup\n")
		return res, mismatch
	}
	fmt.Fprintf(out, "OK: all %d restored images equal the image at their backup (SHA-256)\n", len(res.Points))
	return res, nil
}

// externalBackup takes an incremental backup as an agent that does not own
// the device: the owner (here, this process's device) takes the metadata
// snapshot, the agent reads it through OpenSnapshot on its own read-only
// handles, then the owner drops it.
func externalBackup(ctx context.Context, repo *Repo, d *era.Device, metaPath, imagePath string, opt Options) (*Result, error) {
	if _, err := d.TakeSnapshot(); err != nil {
		return nil, err
	}
	meta, err := os.Open(metaPath)
	if err == nil {
		defer meta.Close()
	}
	image, ierr := os.Open(imagePath)
	if ierr == nil {
		defer image.Close()
	}
	var r *Result
	if err = errors.Join(err, ierr); err == nil {
		r, err = repo.Backup(ctx, Incremental, Source{Meta: meta, Origin: image, Size: d.Size()}, opt)
	}
	return r, errors.Join(err, d.DropSnapshot())
}

// hashFile returns the SHA-256 of the file name.
func hashFile(ctx context.Context, name string, prog Progress) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	size, err := era.StoreSize(f)
	if err != nil {
		return "", err
	}
	return hashImage(ctx, f, size, prog, "hash "+filepath.Base(name))
}

// createSparse creates (or truncates) a file of size bytes with no data.
func createSparse(name string, size int64) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// demoWrites makes the demo's writes through the device.
type demoWrites struct {
	d       *era.Device
	size    int64
	bb      int64
	seed    uint64
	written int64

	mu  sync.Mutex
	hot []int64 // offsets written before, for rewrites
}

// initial writes the first sixteenth of the image in 4 MiB writes, the
// image's last bytes, and 200 random writes.
func (w *demoWrites) initial() error {
	rng := rand.New(rand.NewPCG(w.seed, 0))
	buf := make([]byte, 4<<20)
	for off := int64(0); off < w.size/16; off += int64(len(buf)) {
		fill(rng, buf)
		n := min(int64(len(buf)), w.size/16-off)
		if _, err := w.d.WriteAt(buf[:n], off); err != nil {
			return err
		}
		w.written += n
	}
	tail := buf[:1000]
	fill(rng, tail)
	if _, err := w.d.WriteAt(tail, w.size-int64(len(tail))); err != nil {
		return err
	}
	w.written += int64(len(tail))
	return w.random(0, 200)
}

// random makes n random writes from demoWriters goroutines (see pick).
func (w *demoWrites) random(stream, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, demoWriters)
	var written [demoWriters]int64
	for g := range demoWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(w.seed, uint64(stream*demoWriters+g+1)))
			buf := make([]byte, 3*w.bb)
			for i := g; i < n; i += demoWriters {
				off, data := w.pick(rng, buf)
				if _, err := w.d.WriteAt(data, off); err != nil {
					errs[g] = err
					return
				}
				written[g] += int64(len(data))
			}
		}()
	}
	wg.Wait()
	for _, n := range written {
		w.written += n
	}
	return errors.Join(errs...)
}

// pick returns the offset and data of one random write: one in twenty
// writes zeros over whole blocks, a quarter rewrite a place written before,
// some are large (up to three blocks, across boundaries), and the rest are
// small (up to 8 KiB), half of them straddling a block boundary.
func (w *demoWrites) pick(rng *rand.Rand, buf []byte) (int64, []byte) {
	x := rng.IntN(20)
	switch {
	case x == 0: // zeros over whole blocks
		nb := 1 + rng.Int64N(2)
		blk := rng.Int64N(w.size/w.bb - nb)
		data := buf[:nb*w.bb]
		clear(data)
		return blk * w.bb, data
	case x < 6: // rewrite a place written before
		w.mu.Lock()
		var off int64 = -1
		if len(w.hot) > 0 {
			off = w.hot[rng.IntN(len(w.hot))]
		}
		w.mu.Unlock()
		if off >= 0 {
			data := buf[:min(1+rng.Int64N(4096), w.size-off)]
			fill(rng, data)
			return off, data
		}
	}
	var n, off int64
	switch {
	case x < 9: // large
		n = 1 + rng.Int64N(int64(len(buf)))
		off = rng.Int64N(w.size - n)
	case x < 15: // small, across a boundary
		n = 2 + rng.Int64N(8191)
		boundary := w.bb * (1 + rng.Int64N(w.size/w.bb-1))
		off = max(0, min(boundary-1-rng.Int64N(n-1), w.size-n))
	default: // small, anywhere
		n = 1 + rng.Int64N(8192)
		off = rng.Int64N(w.size - n)
	}
	data := buf[:n]
	fill(rng, data)
	w.mu.Lock()
	w.hot = append(w.hot, off)
	w.mu.Unlock()
	return off, data
}

// bgWriter writes through the device in the background (see
// demoWrites.background).
type bgWriter struct {
	hold   sync.RWMutex // held by each write; Lock waits for the one in flight
	quit   chan struct{}
	done   chan error
	writes atomic.Int64
	bytes  atomic.Int64
	w      *demoWrites
}

// background starts a writer that makes random writes (see pick) until
// stop.
func (w *demoWrites) background(stream int) *bgWriter {
	bg := &bgWriter{quit: make(chan struct{}), done: make(chan error, 1), w: w}
	go func() {
		rng := rand.New(rand.NewPCG(w.seed, uint64(stream)))
		buf := make([]byte, 3*w.bb)
		for {
			select {
			case <-bg.quit:
				bg.done <- nil
				return
			default:
			}
			off, data := w.pick(rng, buf)
			bg.hold.RLock()
			_, err := w.d.WriteAt(data, off)
			bg.hold.RUnlock()
			if err != nil {
				bg.done <- err
				return
			}
			bg.writes.Add(1)
			bg.bytes.Add(int64(len(data)))
		}
	}()
	return bg
}

// stop ends the writer and returns the writes it made.
func (bg *bgWriter) stop() (int64, error) {
	close(bg.quit)
	err := <-bg.done
	bg.w.written += bg.bytes.Load()
	return bg.writes.Load(), err
}

// fill fills p with random bytes.
func fill(rng *rand.Rand, p []byte) {
	for len(p) >= 8 {
		v := rng.Uint64()
		p[0], p[1], p[2], p[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		p[4], p[5], p[6], p[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		p = p[8:]
	}
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// backupsOf returns the backups of points.
func backupsOf(ps []DemoPoint) []Backup {
	bs := make([]Backup, len(ps))
	for i, p := range ps {
		bs[i] = p.Backup
	}
	return bs
}

// restoreTable is the demo's restore table: per backup, the image's
// SHA-256 at the backup and the restored image's.
func restoreTable(ps []DemoPoint) *table {
	t := newTable("restore", "eras", "image SHA-256 at backup", "restored image SHA-256", "time", "match").alignRight(0, 4)
	for _, p := range ps {
		match := "yes"
		if p.Got != p.Want {
			match = "NO"
		}
		t.add(fmt.Sprint(p.Backup.ID), p.Backup.EraRange(), short(p.Want), short(p.Got), fmtSeconds(p.Restore), match)
	}
	return t
}

// short shortens a hex digest for a table.
func short(h string) string {
	if len(h) > 24 {
		return h[:24] + "…"
	}
	return h
}

// cmdDemo runs "backup demo".
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultDemo
	fs := newFlags("demo", stderr)
	fs.IntVar(&cfg.SizeMiB, "size", cfg.SizeMiB, "image size in `MiB`")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "incremental backups")
	fs.IntVar(&cfg.Writes, "writes", cfg.Writes, "random writes per round")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	fs.StringVar(&cfg.Dir, "dir", "", "work in this `directory` and keep it (default: a temporary one)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the temporary directory")
	fs.BoolVar(&cfg.Sync, "sync", false, "sync backup chunks and restored images to disk, as the other commands do")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.SizeMiB < 1 || cfg.Rounds < 0 || cfg.Writes < 3 {
		return usageErr("--size must be at least 1, --rounds at least 0, --writes at least 3")
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return err
		}
	}
	cfg.Out = stdout
	cfg.Progress = NewProgress(os.Stdout)
	start := time.Now()
	res, err := RunDemo(ctx, cfg)
	if res != nil && (cfg.Keep || cfg.Dir != "") {
		fmt.Fprintf(stdout, "files kept in %s\n", res.Dir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo took %s\n", fmtSeconds(time.Since(start).Seconds()))
	return nil
}
