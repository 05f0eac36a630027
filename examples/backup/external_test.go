package main

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/era-go/era"
)

// externalSource opens the env's metadata and image read-only, as a backup
// agent in another process would.
func externalSource(t *testing.T, e *env) Source {
	t.Helper()
	meta, err := os.Open(e.meta.Name())
	if err != nil {
		t.Fatal(err)
	}
	image, err := os.Open(e.image.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close(); image.Close() })
	return Source{Meta: meta, Origin: image, Size: e.d.Size()}
}

// TestExternalWhileWriting: the device owner holds a snapshot and keeps
// writing while the backup reads the snapshot through OpenSnapshot on the
// metadata file. The backup holds every write made before the snapshot;
// writes made during it go into the next incremental.
func TestExternalWhileWriting(t *testing.T) {
	const size = 8 << 20
	const half = size / 2
	e := newEnv(t, size, 8)
	e.write(0, 1<<20)
	ctx := context.Background()

	if _, err := e.d.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	r, err := e.repo.Backup(ctx, Full, externalSource(t, e), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backup.Mode != "external" {
		t.Fatalf("mode %q", r.Backup.Mode)
	}
	if !e.d.Status().Held {
		t.Fatal("an external backup dropped the owner's snapshot")
	}
	e.d.DropSnapshot()
	want1 := e.hash()

	// Writes to the first half, then a snapshot, then writes to the second
	// half while the backup runs.
	for range 50 {
		l := 1 + e.rng.IntN(10000)
		e.write(e.rng.Int64N(half-int64(l)), l)
	}
	if _, err := e.d.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	snapEra := e.d.Status().CurrentEra
	firstHalf := make([]byte, half)
	e.image.ReadAt(firstHalf, 0)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var during atomic.Int64
	wg.Go(func() {
		p := make([]byte, 5000)
		for i := int64(0); !stop.Load(); i++ {
			p[0] = byte(i)
			if _, err := e.d.WriteAt(p, half+(i*7919)%(half-int64(len(p)))); err != nil {
				t.Error(err)
				return
			}
			during.Add(1)
		}
	})
	// The backup waits in its progress reports for the owner's writes, so
	// they land while it copies.
	wait := &waitProgress{until: func() bool { return during.Load() >= 20 }}
	r, err = e.repo.Backup(ctx, Incremental, externalSource(t, e), Options{ChunkBytes: 64 << 10, Progress: wait})
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if r.Backup.Era != snapEra || r.Backup.SinceEra != mustManifest(t, e.repo).Backups[0].Era {
		t.Fatalf("backup 2 eras [%d, %d); snapshot era %d", r.Backup.SinceEra, r.Backup.Era, snapEra)
	}
	e.d.DropSnapshot()

	out := e.dir + "/r2.img"
	if _, err := e.repo.Restore(ctx, RestoreOptions{To: 2, Out: out, Verify: true}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got[:half], firstHalf) {
		t.Fatal("restore 2: the first half differs from the image at the snapshot")
	}

	// The next snapshot's incremental catches the writes made during
	// backup 2: its restore equals the image.
	e.d.TakeSnapshot()
	if _, err := e.repo.Backup(ctx, Incremental, externalSource(t, e), Options{}); err != nil {
		t.Fatal(err)
	}
	e.d.DropSnapshot()
	if got, want := e.restore(3, true), e.hash(); got != want {
		t.Fatal("restore 3 differs from the image")
	}
	if got := e.restore(1, false); got != want1 {
		t.Fatal("restore 1 differs")
	}
}

func TestExternalNoSnapshot(t *testing.T) {
	e := threeBackups(t)
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)
	e.write(0, 10)
	_, err := e.repo.Backup(context.Background(), Incremental, externalSource(t, e), Options{})
	wantErr(t, err, era.ErrNoSnapshot, "take_metadata_snap", "TakeSnapshot")
	refused(t, e, e.d, before, files)
}

func TestExternalSameSnapshotTwice(t *testing.T) {
	e := threeBackups(t)
	e.write(0, 10)
	e.d.TakeSnapshot()
	if _, err := e.repo.Backup(context.Background(), Incremental, externalSource(t, e), Options{}); err != nil {
		t.Fatal(err)
	}
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)
	_, err := e.repo.Backup(context.Background(), Incremental, externalSource(t, e), Options{})
	wantErr(t, err, ErrEraBackwards, "already recorded", "drop it and take a new one")
	refused(t, e, nil, before, files)
}

// TestExternalCLI runs "backup incr --external" against a device this
// test process keeps open.
func TestExternalCLI(t *testing.T) {
	e := threeBackups(t)
	e.write(3000, 10000)
	args := []string{"incr", "--external", "--repo", e.repo.Dir, "--meta", e.meta.Name(), "--image", e.image.Name()}
	var out, errOut strings.Builder
	if code := run(context.Background(), args, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "metadata holds no snapshot") {
		t.Fatalf("without a snapshot: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	files := repoFiles(t, e.repo.Dir)
	e.d.TakeSnapshot()
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "backup 4 (incremental") || !strings.Contains(out.String(), "external") {
		t.Fatalf("output:\n%s", out.String())
	}
	if got := repoFiles(t, e.repo.Dir); slices.Equal(got, files) {
		t.Fatal("no new files")
	}
	if !e.d.Status().Held {
		t.Fatal("the external backup dropped the snapshot")
	}
	e.d.DropSnapshot()
	if got, want := e.restore(4, true), e.hash(); got != want {
		t.Fatal("restore 4 differs")
	}
}

// waitProgress blocks its first Add until until() holds.
type waitProgress struct {
	noProgress
	until func() bool
	once  sync.Once
}

func (w *waitProgress) Add(int64) {
	w.once.Do(func() {
		for !w.until() {
			time.Sleep(time.Millisecond)
		}
	})
}
