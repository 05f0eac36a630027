package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/era-go/era"
)

// TestFullAndIncrementals takes a full backup and incrementals across
// checkpoints, with rewrites, writes across block boundaries, blocks
// rewritten to zeros, and a short last block, and restores every point.
func TestFullAndIncrementals(t *testing.T) {
	const bs = 4096
	size := int64(3<<20 + 1000) // the last block is 1000 bytes
	e := newEnv(t, size, bs/512)
	e.write(0, 200<<10)
	e.write(size-10, 10)
	var want []string
	b := e.backup(Full)
	want = append(want, e.hash())
	if b.Kind != Full || b.Blocks != e.d.NrBlocks() || b.SinceEra != 0 {
		t.Fatalf("full backup: %+v", b)
	}
	for round := range 4 {
		e.scatter(40, 3*bs) // across boundaries
		e.write(100, 5)     // the same block again and again
		if _, err := e.d.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		e.write(101, 5)
		if _, err := e.d.WriteAt(make([]byte, 2*bs), int64(10+round)*bs); err != nil { // zeros
			t.Fatal(err)
		}
		e.write(size-1, 1)
		prev := b
		b = e.backup(Incremental)
		want = append(want, e.hash())
		if b.SinceEra != prev.Era || b.Era <= prev.Era {
			t.Fatalf("backup %d: eras [%d, %d) after backup %d's era %d", b.ID, b.SinceEra, b.Era, prev.ID, prev.Era)
		}
		if b.Blocks >= e.d.NrBlocks()/2 {
			t.Fatalf("incremental %d copied %d of %d blocks", b.ID, b.Blocks, e.d.NrBlocks())
		}
		if len(b.Zero) == 0 {
			t.Fatalf("incremental %d: the blocks rewritten to zeros are not in its zero ranges", b.ID)
		}
	}
	if e.d.Status().Held {
		t.Fatal("snapshot still held after the backups")
	}
	for i, w := range want {
		if got := e.restore(i+1, i%2 == 0); got != w {
			t.Errorf("restore %d: SHA-256 %s, image had %s", i+1, got, w)
		}
	}
	res, err := e.repo.Verify(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backups != 5 || res.Chunks == 0 || len(res.Leftovers) != 0 {
		t.Fatalf("verify: %+v", res)
	}
}

// TestChunks checks chunk files: at most ChunkBytes, named in order, with
// block ranges that cover what changed, and a second full backup in the
// same repository restoring on its own.
func TestChunks(t *testing.T) {
	e := newEnv(t, 8<<20, 8)
	e.write(0, 1<<20)        // 256 blocks
	e.write(5<<20+100, 9000) // blocks 1280-1282
	e.write(7<<20-1, 2)      // blocks 1791-1792
	r, err := e.repo.Backup(context.Background(), Full, e.source(), Options{ChunkBytes: 100 << 10})
	if err != nil {
		t.Fatal(err)
	}
	b := r.Backup
	var nonzero []Range
	for i, c := range b.Chunks {
		if c.Bytes > 100<<10 {
			t.Errorf("chunk %d holds %d bytes", i+1, c.Bytes)
		}
		if c.File != chunkPath(b.ID, i+1) {
			t.Errorf("chunk %d is %s", i+1, c.File)
		}
		fi, err := os.Stat(filepath.Join(e.repo.Dir, c.File))
		if err != nil || fi.Size() != c.Bytes {
			t.Errorf("chunk %d: %v, %d bytes on disk, %d in the manifest", i+1, err, fi.Size(), c.Bytes)
		}
		for _, rg := range c.Ranges {
			nonzero = appendRange(nonzero, rg.Begin, rg.End)
		}
	}
	want := []Range{{0, 256}, {1280, 1283}, {1791, 1793}}
	if !slices.Equal(nonzero, want) {
		t.Fatalf("chunks hold %v, want %v", nonzero, want)
	}
	if len(b.Chunks) != 11 { // 261 non-zero blocks in chunks of 25
		t.Fatalf("%d chunks for 261 blocks in 25-block chunks", len(b.Chunks))
	}
	img := e.hash()
	e.write(3<<20, 10)
	e.backup(Incremental)
	e.write(4<<20, 10)
	full2 := e.backup(Full)
	img2 := e.hash()
	if got := e.restore(1, true); got != img {
		t.Fatal("restore 1 differs")
	}
	res, err := e.repo.Restore(context.Background(), RestoreOptions{To: full2.ID, Out: filepath.Join(e.dir, "r2.img")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Chain, []int{3}) {
		t.Fatalf("restore of the second full backup applied %v", res.Chain)
	}
	if got := fileHash(t, res.Out); got != img2 {
		t.Fatal("restore 3 differs")
	}
}

// TestInterruptedBackup fails the origin reads half way through an
// incremental: the manifest is as before, the snapshot is dropped, the
// partial backup is gone, and the next run succeeds.
func TestInterruptedBackup(t *testing.T) {
	e := newEnv(t, 4<<20, 8)
	e.write(0, 64<<10)
	e.backup(Full)
	for i := range 40 {
		e.write(int64(i)*2*4096+1<<20, 100) // 40 single blocks, one in two
	}
	before := e.manifestBytes()
	files := repoFiles(t, e.repo.Dir)
	era0 := e.d.Status().CurrentEra

	fr := &failingReader{r: e.d, ok: 7}
	_, err := e.repo.Backup(context.Background(), Incremental,
		Source{Device: e.d, Meta: e.meta, Origin: fr}, Options{ChunkBytes: 2 * 4096})
	wantErr(t, err, errInjected, "backup 2", "read image blocks")
	if fr.reads != 8 {
		t.Fatalf("%d reads; the failure came at read 8", fr.reads)
	}
	sameBytes(t, "manifest", before, e.manifestBytes())
	if st := e.d.Status(); st.Held {
		t.Fatal("the failed backup left its metadata snapshot held")
	} else if st.CurrentEra != era0+1 {
		t.Fatalf("era %d; the snapshot moved it from %d to %d", st.CurrentEra, era0, era0+1)
	}
	if got := repoFiles(t, e.repo.Dir); !slices.Equal(got, files) {
		t.Fatalf("the failed backup left files: %v, before %v", got, files)
	}

	b := e.backup(Incremental)
	if b.ID != 2 || b.Blocks != 40 || b.SinceEra != 2 {
		t.Fatalf("backup after the failure: %+v", b)
	}
	if got, want := e.restore(2, true), e.hash(); got != want {
		t.Fatal("restore after the failed run differs")
	}
}

// crashEnv names the environment variable that makes TestCrashHelper run.
const crashEnv = "ERA_BACKUP_TEST_CRASH_DIR"

// TestCrashHelper is not a test: run by TestCrashedBackup in a child
// process, it starts an incremental backup and exits the process in the
// middle of it, as a kill would.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper for TestCrashedBackup")
	}
	meta, err := os.OpenFile(filepath.Join(dir, "meta.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	image, err := os.OpenFile(filepath.Join(dir, "image.img"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := era.Open(meta, image, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := OpenRepo(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	// Blocks are read one at a time (every changed block stands alone) and
	// chunks hold two: at the fourth read chunk 1 is complete and the
	// second is a temporary file holding one block.
	crash := &crashingReader{r: d, at: 4}
	repo.Backup(context.Background(), Incremental, Source{Device: d, Meta: meta, Origin: crash}, Options{ChunkBytes: 2 * 4096})
	t.Fatal("the backup did not crash")
}

// crashingReader exits the process at read number at.
type crashingReader struct {
	r     *era.Device
	at, n int
}

func (c *crashingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n++
	if c.n == c.at {
		os.Exit(3)
	}
	return c.r.ReadAt(p, off)
}

// TestCrashedBackup kills a backup half way (a child process exits in the
// middle of it): the manifest is as before, the run left chunk files and a
// held metadata snapshot, and the next run (the command line tool) drops
// the snapshot, removes the leftovers and succeeds.
func TestCrashedBackup(t *testing.T) {
	e := newEnv(t, 2<<20, 8)
	e.write(0, 100<<10)
	e.backup(Full)
	for i := range 20 {
		e.write(int64(i)*3*4096+1<<20, 10)
	}
	e.close()
	before := e.manifestBytes()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+e.dir)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("crash helper: %v\n%s", err, out)
	}

	sameBytes(t, "manifest", before, e.manifestBytes())
	left, err := e.repo.leftovers(mustManifest(t, e.repo))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{"backups/000002"}) {
		t.Fatalf("leftovers %v", left)
	}
	entries, _ := os.ReadDir(filepath.Join(e.repo.Dir, "backups", "000002"))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	if len(names) != 2 || !strings.HasPrefix(names[0], ".chunk-") || !strings.HasSuffix(names[0], tmpSuffix) || names[1] != "000001.chunk" {
		t.Fatalf("the crash left %v; want a finished chunk and a temporary one", names)
	}
	if v, err := era.OpenSnapshot(e.meta); err != nil {
		t.Fatalf("the crashed backup's snapshot: %v", err)
	} else if v.CurrentEra() < 3 {
		t.Fatalf("snapshot era %d", v.CurrentEra())
	}
	vr, err := e.repo.Verify(context.Background(), nil)
	if err != nil || len(vr.Leftovers) != 1 {
		t.Fatalf("verify after the crash: %v, %+v", err, vr)
	}

	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"incr", "--repo", e.repo.Dir, "--meta", e.meta.Name(), "--image", e.image.Name()}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("incr after the crash: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "dropping a metadata snapshot left by an interrupted backup") ||
		!strings.Contains(stdout.String(), "removed backups/000002, left by an interrupted backup") {
		t.Fatalf("incr after the crash did not say what it cleaned:\n%s%s", stdout.String(), stderr.String())
	}
	m := mustManifest(t, e.repo)
	if len(m.Backups) != 2 || m.Backups[1].Blocks != 20 {
		t.Fatalf("after the crash and a new run: %+v", m.Backups)
	}
	for _, en := range repoFiles(t, e.repo.Dir) {
		if strings.HasSuffix(en, tmpSuffix) {
			t.Fatalf("%s left", en)
		}
	}
	if v, err := era.OpenView(e.meta); err != nil {
		t.Fatal(err)
	} else if _, err := era.OpenSnapshot(e.meta); err == nil {
		t.Fatalf("snapshot still held (era %d)", v.CurrentEra())
	}
	if got, want := e.restore(2, true), e.hash(); got != want {
		t.Fatal("restore after the crash differs from the image")
	}
}

// mustManifest reads the repository's manifest.
// mustOpenRepo opens the repository in dir and reads its manifest, failing
// the test on any error.
func mustOpenRepo(t *testing.T, dir string) (*Repo, *Manifest) {
	t.Helper()
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, mustManifest(t, r)
}

// mustManifest returns the repository's manifest, failing the test if it
// cannot be read.
func mustManifest(t *testing.T, r *Repo) *Manifest {
	t.Helper()
	m, err := r.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCLI runs the command line tool in-process mode end to end.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "disk.img")
	meta := filepath.Join(dir, "disk.meta")
	repo := filepath.Join(dir, "repo")
	f, err := createSparse(image, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("written before tracking began"), 12345)
	f.Close()
	cli := func(want int, args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(context.Background(), args, &out, &errOut); code != want {
			t.Fatalf("backup %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	out := cli(0, "full", "--repo", repo, "--meta", meta, "--image", image, "--block-sectors", "16")
	if !strings.Contains(out, "created metadata file") || !strings.Contains(out, "backup 1 (full") {
		t.Fatalf("full: %s", out)
	}
	hashes := []string{fileHash(t, image)}
	for i := range 3 { // an application writes through its own era.Device between backups
		mf, _ := os.OpenFile(meta, os.O_RDWR, 0)
		imf, _ := os.OpenFile(image, os.O_RDWR, 0)
		d, err := era.Open(mf, imf, era.Config{Format: true, BlockSectors: 16})
		if err != nil {
			t.Fatal(err)
		}
		d.WriteAt([]byte("round "+strconv.Itoa(i)), int64(i)*300000+8190)
		d.Checkpoint()
		d.WriteAt([]byte("again"), 1<<20)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		mf.Close()
		imf.Close()
		out = cli(0, "incr", "--repo", repo, "--meta", meta, "--image", image)
		if !strings.Contains(out, "incremental") || !strings.Contains(out, "throughput") {
			t.Fatalf("incr: %s", out)
		}
		hashes = append(hashes, fileHash(t, image))
	}
	out = cli(0, "list", "--repo", repo)
	if !strings.Contains(out, "4 backups") || !strings.Contains(out, "total") {
		t.Fatalf("list: %s", out)
	}
	cli(0, "verify", "--repo", repo)
	for i, h := range hashes {
		restored := filepath.Join(dir, "restored-"+strconv.Itoa(i+1)+".img")
		out = cli(0, "restore", "--repo", repo, "--to", strconv.Itoa(i+1), "--out", restored, "--verify")
		if !strings.Contains(out, "SHA-256 "+h) || fileHash(t, restored) != h {
			t.Fatalf("restore %d: want SHA-256 %s\n%s", i+1, h, out)
		}
	}
	cli(1, "restore", "--repo", repo, "--out", filepath.Join(dir, "restored-1.img"))
	cli(2, "restore", "--repo", repo)
	cli(2, "bogus")
	cli(2, "full", "--repo", repo)
	cli(0, "help")
}
