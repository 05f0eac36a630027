package main

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/era-go/era/nbd"
)

// serveExport builds the era command and runs era serve over a fresh
// metadata file and image; it returns the NBD URI and the control socket.
func serveExport(t *testing.T, dir string, size int64, extra ...string) (uri, control string) {
	t.Helper()
	bin := filepath.Join(dir, "era")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/era-go/era/cmd/era").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	meta, image := filepath.Join(dir, "meta"), filepath.Join(dir, "disk.img")
	if err := os.WriteFile(meta, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, size); err != nil {
		t.Fatal(err)
	}
	control = filepath.Join(dir, "control.sock")
	cmd := exec.Command(bin, "serve", "--meta", meta, "--image", image, "--format", "--block-sectors", "16",
		"--socket", filepath.Join(dir, "nbd.sock"), "--control", control)
	cmd.Args = append(cmd.Args, extra...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("era serve: %v\n%s", err, stderr.Bytes())
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Error("era serve did not stop")
		}
	})
	select {
	case uri = <-line:
	case <-time.After(time.Minute):
		t.Fatal("era serve printed no URI")
	}
	if uri == "" {
		t.Fatalf("era serve did not start:\n%s", stderr.Bytes())
	}
	return uri, control
}

// Full and incremental backups of a running era serve export, through NBD
// and its control socket, restore byte-identical to the image at each
// backup, and an incremental copies exactly the blocks written since the
// previous one.
func TestBackupOverNBD(t *testing.T) {
	dir := t.TempDir()
	const size = 24<<20 + 4096
	const bb = 16 * 512
	uri, control := serveExport(t, dir, size)
	ctx := context.Background()
	c, err := nbd.DialURI(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rnd := rand.New(rand.NewPCG(3, 4))
	image := make([]byte, size)
	// write makes n random writes and returns the blocks they touched.
	write := func(n int) map[uint64]bool {
		touched := map[uint64]bool{}
		for range n {
			off := rnd.Int64N(size)
			p := make([]byte, min(rnd.Int64N(3*bb)+1, size-off))
			for i := range p {
				p[i] = byte(rnd.Uint32())
			}
			if _, err := c.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			copy(image[off:], p)
			for b := uint64(off) / bb; b <= uint64(off+int64(len(p))-1)/bb; b++ {
				touched[b] = true
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		return touched
	}
	repo := filepath.Join(dir, "repo")
	backup := func(kind string) string {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(ctx, []string{kind, "--repo", repo, "--nbd", uri, "--control", control}, &out, &errOut); code != 0 {
			t.Fatalf("backup %s: exit %d\n%s%s", kind, code, out.String(), errOut.String())
		}
		return out.String()
	}
	write(200)
	var images [][]byte
	backup("full")
	images = append(images, bytes.Clone(image))
	for range 3 {
		touched := write(40)
		out := backup("incr")
		if !strings.Contains(out, "nbd") || !strings.Contains(out, "not consistent: read from the live image") {
			t.Errorf("backup output:\n%s", out)
		}
		images = append(images, bytes.Clone(image))
		_, m := mustOpenRepo(t, repo)
		b := m.Backups[len(m.Backups)-1]
		if b.Mode != "nbd" || b.Blocks != uint64(len(touched)) {
			t.Errorf("backup %d: mode %s, %d blocks copied, %d written", b.ID, b.Mode, b.Blocks, len(touched))
		}
	}
	r, err := OpenRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range images {
		out := filepath.Join(dir, "restored.img")
		if _, err := r.Restore(ctx, RestoreOptions{To: i + 1, Out: out, Force: true, Verify: true}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("backup %d restores a different image", i+1)
		}
	}
	// The snapshot was dropped each time.
	src := &NBDSource{URI: uri, Control: control}
	if st, err := src.control(ctx, "status"); err != nil || st.Status == nil || st.Status.Snapshot {
		t.Errorf("status after the backups: %+v %v", st, err)
	}
	var out, errOut strings.Builder
	if code := run(ctx, []string{"incr", "--repo", repo, "--nbd", uri}, &out, &errOut); code != exitUsage {
		t.Errorf("--nbd without --control: exit %d", code)
	}
}

// TestBackupOverNBDSnapshot: with era serve --snapshot-store the backups
// read the NAME@snapshot export, say they are consistent, and restore to
// the image at each snapshot although a client kept writing through the
// main export during every copy.
func TestBackupOverNBDSnapshot(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	uri, control := serveExport(t, dir, size, "--snapshot-store", filepath.Join(dir, "diff"))
	ctx := context.Background()
	c, err := nbd.DialURI(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	image := make([]byte, size)
	var hold sync.RWMutex // held by each write; Lock: none in flight
	var writes atomic.Int64
	quit, done := make(chan struct{}), make(chan error, 1)
	go func() {
		rnd := rand.New(rand.NewPCG(7, 8))
		p := make([]byte, 3000)
		for {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			off := rnd.Int64N(size - int64(len(p)))
			for i := range p {
				p[i] = byte(rnd.Uint32())
			}
			hold.RLock()
			_, err := c.WriteAt(p, off)
			if err == nil {
				copy(image[off:], p)
			}
			hold.RUnlock()
			if err != nil {
				done <- err
				return
			}
			writes.Add(1)
		}
	}()
	repo, err := InitRepo(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	var images [][]byte
	var atSnap int64
	opt := Options{NoSync: true, Freeze: func() func() {
		hold.Lock()
		return func() {
			images = append(images, bytes.Clone(image))
			atSnap = writes.Load()
			hold.Unlock()
		}
	}}
	src := Source{NBD: &NBDSource{URI: uri, Control: control}}
	for i, kind := range []Kind{Full, Incremental, Incremental} {
		time.Sleep(20 * time.Millisecond)
		res, err := repo.Backup(ctx, kind, src, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Backup.Consistent || res.Backup.Mode != "nbd" {
			t.Fatalf("backup %d: %+v", i+1, res.Backup)
		}
		if writes.Load() == atSnap {
			t.Fatalf("backup %d: no write during the copy", i+1)
		}
	}
	close(quit)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, want := range images {
		out := filepath.Join(dir, "restored.img")
		if _, err := repo.Restore(ctx, RestoreOptions{To: i + 1, Out: out, Force: true, Verify: true}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("backup %d restores a different image than the one at its snapshot", i+1)
		}
	}
}
