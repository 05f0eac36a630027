package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/era-go/era"
)

// env is an image, its era metadata and device, and a repository, in a
// test's temporary directory.
type env struct {
	t     *testing.T
	dir   string
	image *os.File
	meta  *os.File
	d     *era.Device
	repo  *Repo
	rng   *rand.Rand
}

// newEnv makes an image of size bytes tracked in blocks of sectors
// sectors, and an empty repository.
func newEnv(t *testing.T, size int64, sectors uint32) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 7))}
	var err error
	if e.image, err = createSparse(filepath.Join(dir, "image.img"), size); err != nil {
		t.Fatal(err)
	}
	if e.meta, err = createSparse(filepath.Join(dir, "meta.bin"), metaSizeFor(size)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.image.Close(); e.meta.Close() })
	e.open(sectors)
	if e.repo, err = InitRepo(filepath.Join(dir, "repo")); err != nil {
		t.Fatal(err)
	}
	return e
}

// open opens the era device on the env's files.
func (e *env) open(sectors uint32) {
	e.t.Helper()
	d, err := era.Open(e.meta, e.image, era.Config{Format: true, BlockSectors: sectors})
	if err != nil {
		e.t.Fatal(err)
	}
	e.d = d
	e.t.Cleanup(func() { d.Close() })
}

// close closes the device.
func (e *env) close() {
	e.t.Helper()
	if err := e.d.Close(); err != nil {
		e.t.Fatal(err)
	}
}

// write writes n random bytes at off through the device.
func (e *env) write(off int64, n int) {
	e.t.Helper()
	p := make([]byte, n)
	fill(e.rng, p)
	if _, err := e.d.WriteAt(p, off); err != nil {
		e.t.Fatal(err)
	}
}

// scatter makes n random writes of up to max bytes.
func (e *env) scatter(n, maxLen int) {
	e.t.Helper()
	size := e.d.Size()
	for range n {
		l := 1 + e.rng.IntN(maxLen)
		e.write(e.rng.Int64N(size-int64(l)+1), l)
	}
}

// source is the in-process source for the env's device.
func (e *env) source() Source { return Source{Device: e.d, Meta: e.meta} }

// backup takes a backup in-process and fails the test on error.
func (e *env) backup(kind Kind) Backup {
	e.t.Helper()
	r, err := e.repo.Backup(context.Background(), kind, e.source(), Options{ChunkBytes: 256 << 10})
	if err != nil {
		e.t.Fatalf("%s backup: %v", kind, err)
	}
	return r.Backup
}

// hash returns the SHA-256 of the image now.
func (e *env) hash() string {
	e.t.Helper()
	return fileHash(e.t, e.image.Name())
}

// restore restores backup id and returns the restored image's SHA-256.
func (e *env) restore(id int, verify bool) string {
	e.t.Helper()
	out := filepath.Join(e.dir, "restored.img")
	res, err := e.repo.Restore(context.Background(), RestoreOptions{To: id, Out: out, Force: true, Verify: verify})
	if err != nil {
		e.t.Fatalf("restore %d: %v", id, err)
	}
	got := fileHash(e.t, out)
	if verify && res.SHA256 != got {
		e.t.Fatalf("restore %d: --verify says SHA-256 %s, the file has %s", id, res.SHA256, got)
	}
	return got
}

// manifestBytes returns the manifest file's bytes.
func (e *env) manifestBytes() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.repo.Dir, manifestName))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// fileHash returns the SHA-256 of a file.
func fileHash(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// repoFiles lists every file and directory under the repository except
// the lock file, as paths relative to it.
func repoFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && rel != lockName {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantErr fails the test unless err is target and its message holds
// every word.
func wantErr(t *testing.T, err, target error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q is not %v", err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
}

// failingReader reads from r and fails every read after the first ok.
type failingReader struct {
	r     io.ReaderAt
	ok    int
	reads int
}

var errInjected = errors.New("injected read failure")

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	f.reads++
	if f.reads > f.ok {
		return 0, errInjected
	}
	return f.r.ReadAt(p, off)
}

// sameBytes fails the test if a and b differ.
func sameBytes(t *testing.T, what string, a, b []byte) {
	t.Helper()
	if !bytes.Equal(a, b) {
		t.Fatalf("%s changed", what)
	}
}
