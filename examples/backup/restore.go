package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	// Progress reports the bytes written; nil: none.
	Progress Progress
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

// Restore rebuilds the image as of backup opt.To into opt.Out: it applies
// the latest full backup at or before it, then each incremental after that
// full backup in order, to a temporary file next to Out, and renames it to
// Out only when every chunk checked out (size and SHA-256) and, with
// Verify, the file read back matches. On any error Out is left as it was.
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
	var total int64
	for i, b := range chain {
		total += b.StoredBytes
		if i > 0 { // the file starts all zero: the full backup's zero ranges are there already
			for _, z := range b.Zero {
				total += rangeBytes(z, b.BlockBytes, b.ImageSize)
			}
		}
	}
	prog.Start(fmt.Sprintf("restore %d", target.ID), total)
	zero := make([]byte, min(int64(1<<20), target.ImageSize))
	for i, b := range chain {
		for ci := range b.Chunks {
			if err := ctx.Err(); err != nil {
				prog.Done()
				return nil, err
			}
			data, err := r.readChunk(b, ci)
			if err != nil {
				prog.Done()
				return nil, err
			}
			n, err := writeRanges(f, data, b.Chunks[ci].Ranges, b)
			if err != nil {
				prog.Done()
				return nil, fmt.Errorf("write %s: %w", f.Name(), err)
			}
			res.Written += n
			prog.Add(n)
		}
		if i == 0 {
			continue
		}
		for _, z := range b.Zero {
			n, err := writeZero(f, zero, z, b)
			if err != nil {
				prog.Done()
				return nil, fmt.Errorf("write %s: %w", f.Name(), err)
			}
			res.Written += n
			prog.Add(n)
		}
	}
	prog.Done()
	if err := f.Sync(); err != nil {
		return nil, err
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
	if err := syncDir(dir); err != nil {
		return nil, err
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

// writeRanges writes a chunk's data, the blocks of ranges concatenated, to
// their places in w. It returns the bytes written.
func writeRanges(w io.WriterAt, data []byte, ranges []Range, b *Backup) (int64, error) {
	var off int64
	for _, r := range ranges {
		n := rangeBytes(r, b.BlockBytes, b.ImageSize)
		if _, err := w.WriteAt(data[off:off+n], int64(r.Begin*b.BlockBytes)); err != nil {
			return off, err
		}
		off += n
	}
	return off, nil
}

// writeZero writes zeros over the blocks of r, using the zero buffer.
func writeZero(w io.WriterAt, zero []byte, r Range, b *Backup) (int64, error) {
	pos := int64(r.Begin * b.BlockBytes)
	end := pos + rangeBytes(r, b.BlockBytes, b.ImageSize)
	for p := pos; p < end; {
		n := min(int64(len(zero)), end-p)
		if _, err := w.WriteAt(zero[:n], p); err != nil {
			return p - pos, err
		}
		p += n
	}
	return end - pos, nil
}
