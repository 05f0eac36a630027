package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RestoreOptions say what Restore rebuilds and where.
type RestoreOptions struct {
	// To is the backup to restore; 0: the latest.
	To int
	// Out is the image file to create. It must not exist, unless Force.
	Out string
	// Force allows replacing an existing Out (atomically, by rename).
	Force bool
	// Verify reads the restored image back before it is renamed into
	// place, checks every block against the backups, and computes its
	// SHA-256.
	Verify bool
	// Progress reports the chunk bytes read; nil: none.
	Progress Progress
	// NoSync skips syncing the restored image before the rename: for
	// throwaway files (the demo, tests) only.
	NoSync bool
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	// Backup is the backup restored; Chain the IDs applied, the full
	// backup first.
	Backup Backup
	Chain  []int
	Out    string
	// Written is the bytes written; Seconds the time taken.
	Written int64
	Seconds float64
	// SHA256 is the restored image's hash, with Verify.
	SHA256 string
}

// Restore rebuilds the image as of backup opt.To into opt.Out: the latest
// full backup at or before it with each incremental after that full backup
// applied in order. It builds the image in a temporary file next to Out
// and renames it to Out only when every chunk checked out (size and
// SHA-256) and, with Verify, the file read back matches. On any error Out
// is left as it was.
//
// Applying backups oldest first would write a block once per backup that
// holds it; Restore gets the same image by going newest first and writing
// each block once, from the newest backup that holds it (see walk). Zero
// blocks are not written at all: the file starts as a hole.
func (r *Repo) Restore(ctx context.Context, opt RestoreOptions) (res *RestoreResult, err error) {
	start := time.Now()
	m, err := r.Manifest()
	if err != nil {
		return nil, err
	}
	chain, err := m.chain(opt.To)
	if err != nil {
		return nil, err
	}
	if opt.Out == "" {
		return nil, errors.New("restore: no output file given")
	}
	if fi, err := os.Stat(opt.Out); err == nil {
		if fi.IsDir() || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("restore output %s is not a regular file: %w", opt.Out, ErrExists)
		}
		if !opt.Force {
			return nil, fmt.Errorf("restore output %s exists; it is not overwritten (use --force to replace it): %w", opt.Out, ErrExists)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	target := chain[len(chain)-1]
	dir, base := filepath.Split(opt.Out)
	f, err := os.CreateTemp(dir, "."+base+".restore-*"+tmpSuffix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Truncate(target.ImageSize); err != nil {
		return nil, err
	}
	res = &RestoreResult{Backup: *target, Out: opt.Out}
	for _, b := range chain {
		res.Chain = append(res.Chain, b.ID)
	}

	prog := orNoProgress(opt.Progress)
	err = r.walk(ctx, chain, prog, fmt.Sprintf("restore %d", target.ID), func(b *Backup, _ string, run Range, data []byte) error {
		if data == nil {
			return nil // zeros: the new file is all zero, and no block is written twice
		}
		if _, err := f.WriteAt(data, int64(run.Begin*b.BlockBytes)); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		res.Written += int64(len(data))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !opt.NoSync {
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	if opt.Verify {
		if res.SHA256, err = r.verifyImage(ctx, f, chain, prog); err != nil {
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), opt.Out); err != nil {
		return nil, err
	}
	if !opt.NoSync {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// chain returns the backups to apply to restore backup to (0: the latest):
// the latest full backup at or before it, then the incrementals up to it.
func (m *Manifest) chain(to int) ([]*Backup, error) {
	if len(m.Backups) == 0 {
		return nil, fmt.Errorf("the repository holds no backup: %w", ErrNoBackup)
	}
	if to == 0 {
		to = len(m.Backups)
	}
	if to < 1 || to > len(m.Backups) {
		return nil, fmt.Errorf("backup %d: the repository holds backups 1 to %d: %w", to, len(m.Backups), ErrNoBackup)
	}
	first := to - 1
	for m.Backups[first].Kind != Full {
		first-- // check ensures backup 1 is full
	}
	var chain []*Backup
	for i := first; i < to; i++ {
		chain = append(chain, &m.Backups[i])
	}
	return chain, nil
}

// readChunk reads chunk ci of backup b and checks its size and SHA-256.
func (r *Repo) readChunk(b *Backup, ci int) ([]byte, error) {
	c := &b.Chunks[ci]
	name := filepath.Join(r.Dir, filepath.FromSlash(c.File))
	data, err := os.ReadFile(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("backup %d chunk %d: %s: %w", b.ID, ci+1, c.File, ErrChunkMissing)
		}
		return nil, fmt.Errorf("backup %d chunk %d: %w", b.ID, ci+1, err)
	}
	if int64(len(data)) != c.Bytes {
		return nil, fmt.Errorf("backup %d chunk %d: %s is %d bytes, the manifest says %d: %w",
			b.ID, ci+1, c.File, len(data), c.Bytes, ErrChunkCorrupt)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
		return nil, fmt.Errorf("backup %d chunk %d: %s has SHA-256 %s, the manifest says %s: %w",
			b.ID, ci+1, c.File, got, c.SHA256, ErrChunkCorrupt)
	}
	return data, nil
}
