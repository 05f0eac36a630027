package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/era-go/era"
)

// threeBackups makes an env with a full backup and two incrementals.
func threeBackups(t *testing.T) *env {
	e := newEnv(t, 2<<20, 8)
	e.write(0, 300<<10)
	e.backup(Full)
	e.scatter(20, 10000)
	e.backup(Incremental)
	e.scatter(20, 10000)
	e.backup(Incremental)
	return e
}

// restoreFails restores backup id into a fresh name and over an existing
// file (with Force), wants the error, and checks that neither output
// changed and no temporary file is left.
func restoreFails(t *testing.T, e *env, id int, target error, words ...string) {
	t.Helper()
	outDir := t.TempDir()
	fresh := filepath.Join(outDir, "fresh.img")
	_, err := e.repo.Restore(context.Background(), RestoreOptions{To: id, Out: fresh, Verify: true})
	wantErr(t, err, target, words...)
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("a failed restore created %s (%v)", fresh, err)
	}
	old := filepath.Join(outDir, "old.img")
	os.WriteFile(old, []byte("the previous image"), 0o644)
	_, err = e.repo.Restore(context.Background(), RestoreOptions{To: id, Out: old, Force: true})
	wantErr(t, err, target, words...)
	if b, _ := os.ReadFile(old); string(b) != "the previous image" {
		t.Fatal("a failed restore changed the existing output")
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Fatalf("a failed restore left %d files in the output directory", len(ents))
	}
}

func TestMissingChunk(t *testing.T) {
	e := threeBackups(t)
	m := mustManifest(t, e.repo)
	c := m.Backups[1].Chunks[0]
	if err := os.Remove(filepath.Join(e.repo.Dir, c.File)); err != nil {
		t.Fatal(err)
	}
	restoreFails(t, e, 3, ErrChunkMissing, "backup 2 chunk 1", c.File)
	// Backup 1 does not need it.
	e.restore(1, true)
	res, err := e.repo.Verify(context.Background(), nil)
	wantErr(t, err, ErrChunkMissing, c.File)
	if len(res.Problems) != 1 {
		t.Fatalf("verify: %d problems, want 1", len(res.Problems))
	}
}

func TestCorruptChunk(t *testing.T) {
	e := threeBackups(t)
	m := mustManifest(t, e.repo)
	c := m.Backups[2].Chunks[0]
	name := filepath.Join(e.repo.Dir, c.File)
	data, _ := os.ReadFile(name)
	data[len(data)/2] ^= 0x40
	os.WriteFile(name, data, 0o644)
	restoreFails(t, e, 3, ErrChunkCorrupt, "backup 3 chunk 1", c.File, "SHA-256", c.SHA256)
	_, err := e.repo.Verify(context.Background(), nil)
	wantErr(t, err, ErrChunkCorrupt, c.File)

	os.WriteFile(name, data[:len(data)-1], 0o644) // short
	restoreFails(t, e, 3, ErrChunkCorrupt, c.File, "bytes, the manifest says")
}

func TestBadManifest(t *testing.T) {
	e := threeBackups(t)
	name := filepath.Join(e.repo.Dir, manifestName)
	good := e.manifestBytes()
	edit := func(f func(m *Manifest)) {
		var m Manifest
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		b, _ := json.Marshal(&m)
		os.WriteFile(name, b, 0o644)
	}
	cases := []struct {
		name  string
		set   func()
		words []string
	}{
		{"not json", func() { os.WriteFile(name, []byte("{\"format\": 1, \"backups\": ["), 0o644) }, []string{manifestName}},
		{"version", func() { edit(func(m *Manifest) { m.Format = 2 }) }, []string{"format version 2", "reads version 1"}},
		{"broken chain", func() { edit(func(m *Manifest) { m.Backups[2].SinceEra++ }) }, []string{"backup 3 starts at era"}},
		{"other image", func() { edit(func(m *Manifest) { m.Backups[1].ImageSize *= 2 }) }, []string{"backup 2 is of a 4194304-byte image"}},
		{"other block size", func() { edit(func(m *Manifest) { m.Backups[2].BlockBytes = 8192 }) }, []string{"backup 3 is of a", "8192-byte blocks"}},
		{"chunk outside", func() { edit(func(m *Manifest) { m.Backups[0].Chunks[0].File = "../../etc/passwd" }) }, []string{"file name"}},
		{"range outside", func() {
			edit(func(m *Manifest) { m.Backups[1].Zero = append(m.Backups[1].Zero, Range{600, 601}) })
		}, []string{"range [600, 601) of a 512-block image"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.set()
			bad, _ := os.ReadFile(name)
			files := repoFiles(t, e.repo.Dir)
			_, err := e.repo.Restore(context.Background(), RestoreOptions{Out: filepath.Join(e.dir, "x.img")})
			wantErr(t, err, ErrManifest, c.words...)
			_, err = e.repo.Verify(context.Background(), nil)
			wantErr(t, err, ErrManifest, c.words...)
			e.write(0, 1)
			_, err = e.repo.Backup(context.Background(), Incremental, e.source(), Options{})
			wantErr(t, err, ErrManifest, c.words...)
			sameBytes(t, "manifest", bad, e.manifestBytes())
			if got := repoFiles(t, e.repo.Dir); !slices.Equal(got, files) {
				t.Fatalf("files changed: %v, before %v", got, files)
			}
			if e.d.Status().Held {
				t.Fatal("snapshot held")
			}
			os.WriteFile(name, good, 0o644)
		})
	}
}

// refused checks that a backup that failed changed nothing: manifest, files,
// no snapshot held.
func refused(t *testing.T, e *env, d *era.Device, before []byte, files []string) {
	t.Helper()
	sameBytes(t, "manifest", before, e.manifestBytes())
	if got := repoFiles(t, e.repo.Dir); !slices.Equal(got, files) {
		t.Fatalf("files changed: %v, before %v", got, files)
	}
	if d != nil && d.Status().Held {
		t.Fatal("a refused backup left a snapshot held")
	}
}

func TestOtherImage(t *testing.T) {
	e := threeBackups(t)
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)

	other := newEnv(t, 3<<20, 8) // another size
	other.write(0, 10)
	era0 := other.d.Status().CurrentEra
	_, err := e.repo.Backup(context.Background(), Incremental, other.source(), Options{})
	wantErr(t, err, ErrImageMismatch, "image is 3145728 bytes", "backup 3", "2097152-byte image")
	refused(t, e, other.d, before, files)
	if other.d.Status().CurrentEra != era0 {
		t.Fatal("a refused backup moved the other device's era")
	}
	_, err = e.repo.Backup(context.Background(), Full, other.source(), Options{})
	wantErr(t, err, ErrImageMismatch, "image is 3145728 bytes")
	refused(t, e, other.d, before, files)

	// External: metadata of another device, on this image.
	other.d.TakeSnapshot()
	_, err = e.repo.Backup(context.Background(), Incremental,
		Source{Meta: other.meta, Origin: e.image, Size: e.d.Size()}, Options{})
	wantErr(t, err, ErrImageMismatch, "metadata tracks 768 blocks", "512 blocks")
	refused(t, e, nil, before, files)
}

func TestOtherBlockSize(t *testing.T) {
	e := threeBackups(t)
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)
	other := newEnv(t, 2<<20, 16) // same size, 8 KiB blocks
	other.write(0, 10)
	_, err := e.repo.Backup(context.Background(), Incremental, other.source(), Options{})
	wantErr(t, err, ErrBlockSize, "8192", "4096")
	refused(t, e, other.d, before, files)

	other.d.TakeSnapshot()
	_, err = e.repo.Backup(context.Background(), Incremental,
		Source{Meta: other.meta, Origin: other.image, Size: other.d.Size()}, Options{})
	wantErr(t, err, ErrBlockSize, "metadata tracks 8192-byte blocks", "4096-byte blocks")
	refused(t, e, nil, before, files)
}

func TestEraBackwards(t *testing.T) {
	e := threeBackups(t)
	last := mustManifest(t, e.repo).Backups[2]
	e.close()
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)

	// The metadata is reformatted: a new device on the same image.
	if err := e.meta.Truncate(0); err != nil {
		t.Fatal(err)
	}
	e.meta.Truncate(metaSizeFor(e.d.Size()))
	e.open(8)
	e.write(5, 5)
	st := e.d.Status()
	_, err := e.repo.Backup(context.Background(), Incremental, e.source(), Options{})
	wantErr(t, err, ErrFullBackupNeeded, "backup 3 was taken from metadata", "reformatted", "--full-if-stale")
	if !errors.Is(err, era.ErrStaleChangeID) {
		t.Fatalf("%v does not wrap era.ErrStaleChangeID", err)
	}
	refused(t, e, e.d, before, files)
	if now := e.d.Status(); now.CurrentEra != st.CurrentEra || now.Held {
		t.Fatalf("a refused backup changed the device's era or snapshot: %v, before %v", now, st)
	}

	// External mode sees it in the snapshot.
	e.d.TakeSnapshot()
	_, err = e.repo.Backup(context.Background(), Incremental,
		Source{Meta: e.meta, Origin: e.image, Size: e.d.Size()}, Options{})
	wantErr(t, err, ErrFullBackupNeeded, "backup 3 was taken from metadata "+last.ChangeID)
	refused(t, e, nil, before, files)
	e.d.DropSnapshot()

	// Asked to, the incremental takes a full backup instead.
	res, err := e.repo.Backup(context.Background(), Incremental, e.source(), Options{FullIfStale: true})
	if err != nil || res.Backup.Kind != Full || res.Backup.SinceEra != 0 {
		t.Fatalf("incremental with FullIfStale on reformatted metadata: %+v, %v", res, err)
	}

	// A full backup starts over and is allowed.
	b := e.backup(Full)
	if b.ID != 5 || b.Kind != Full {
		t.Fatalf("full backup on new metadata: %+v", b)
	}
	e.write(1<<20, 10)
	e.backup(Incremental)
	if got, want := e.restore(6, true), e.hash(); got != want {
		t.Fatal("restore on the new chain differs")
	}
}

func TestNoFullBackup(t *testing.T) {
	e := newEnv(t, 1<<20, 8)
	_, err := e.repo.Backup(context.Background(), Incremental, e.source(), Options{})
	wantErr(t, err, ErrNoBackup, "take a full backup first")
	_, err = e.repo.Restore(context.Background(), RestoreOptions{Out: filepath.Join(e.dir, "x")})
	wantErr(t, err, ErrNoBackup)
	e.backup(Full)
	_, err = e.repo.Restore(context.Background(), RestoreOptions{To: 2, Out: filepath.Join(e.dir, "x")})
	wantErr(t, err, ErrNoBackup, "backup 2", "backups 1 to 1")
	_, err = OpenRepo(e.dir)
	wantErr(t, err, ErrNoRepo, manifestName)
}

func TestRestoreRefusesExisting(t *testing.T) {
	e := threeBackups(t)
	out := filepath.Join(e.dir, "exists.img")
	os.WriteFile(out, []byte("keep me"), 0o644)
	_, err := e.repo.Restore(context.Background(), RestoreOptions{Out: out})
	wantErr(t, err, ErrExists, out, "--force")
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("overwritten")
	}
	_, err = e.repo.Restore(context.Background(), RestoreOptions{Out: e.dir})
	wantErr(t, err, ErrExists, "not a regular file")
}

// TestSnapshotAlreadyHeld: an in-process backup refuses to run while the
// device holds a snapshot, and leaves it held.
func TestSnapshotAlreadyHeld(t *testing.T) {
	e := threeBackups(t)
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)
	e.d.TakeSnapshot()
	_, err := e.repo.Backup(context.Background(), Incremental, e.source(), Options{})
	wantErr(t, err, era.ErrSnapshotExists, "already holds a metadata snapshot")
	sameBytes(t, "manifest", before, e.manifestBytes())
	if got := repoFiles(t, e.repo.Dir); !slices.Equal(got, files) {
		t.Fatal("files changed")
	}
	if !e.d.Status().Held {
		t.Fatal("the refused backup dropped a snapshot it did not take")
	}
}

// TestMetadataRolledBack: the same metadata (same identity) put back to an
// earlier state, as from a copy, is below the era the last backup
// recorded: ErrEraBackwards, nothing written.
func TestMetadataRolledBack(t *testing.T) {
	e := newEnv(t, 2<<20, 8)
	e.write(0, 300<<10)
	e.backup(Full)
	e.close()
	old, err := os.ReadFile(e.meta.Name())
	if err != nil {
		t.Fatal(err)
	}
	e.open(8)
	e.scatter(20, 10000)
	e.backup(Incremental)
	e.backup(Incremental)
	last := mustManifest(t, e.repo).Backups[2]
	e.close()
	if _, err := e.meta.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	e.open(8)
	before, files := e.manifestBytes(), repoFiles(t, e.repo.Dir)
	_, err = e.repo.Backup(context.Background(), Incremental, e.source(), Options{FullIfStale: true})
	wantErr(t, err, ErrEraBackwards, "below era "+strconv.FormatUint(uint64(last.Era), 10))
	refused(t, e, e.d, before, files)
}
