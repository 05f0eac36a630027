package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrRestoreMismatch reports a restored image that, read back, differs
// from the backups it was built from.
var ErrRestoreMismatch = errors.New("restored image differs from the backups")

// VerifyResult is what Verify checked.
type VerifyResult struct {
	Backups, Chunks int
	// Bytes is the chunk data read and hashed.
	Bytes int64
	// Problems are the chunks that failed, one error each.
	Problems []error
	// Leftovers are files an interrupted backup left; the next backup
	// removes them. They are not a problem.
	Leftovers []string
}

// Verify checks the manifest and every chunk of every backup: present,
// of the size and SHA-256 the manifest records. It goes on past a bad
// chunk and returns every problem, joined, as its error. It changes
// nothing.
func (r *Repo) Verify(ctx context.Context, prog Progress) (*VerifyResult, error) {
	m, err := r.Manifest()
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Backups: len(m.Backups)}
	if res.Leftovers, err = r.leftovers(m); err != nil {
		return nil, err
	}
	prog = orNoProgress(prog)
	var total int64
	for _, b := range m.Backups {
		total += b.StoredBytes
	}
	prog.Start("verify", total)
	defer prog.Done()
	for i := range m.Backups {
		b := &m.Backups[i]
		for ci := range b.Chunks {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res.Chunks++
			if _, err := r.readChunk(b, ci); err != nil {
				res.Problems = append(res.Problems, err)
				continue
			}
			res.Bytes += b.Chunks[ci].Bytes
			prog.Add(b.Chunks[ci].Bytes)
		}
	}
	return res, errors.Join(res.Problems...)
}

// walk visits every block of the image as of the last backup of chain
// once, with the data the newest backup of chain that holds it recorded:
// it goes through the backups newest first, reading and checking each
// chunk (readChunk), and calls fn for each run of consecutive blocks of a
// chunk or zero range that no newer backup held, with their data (nil for
// zeros). what names the chunk or zero ranges, for errors. The full backup
// at the head of chain holds every block, so every block is visited.
func (r *Repo) walk(ctx context.Context, chain []*Backup, prog Progress, desc string,
	fn func(b *Backup, what string, run Range, data []byte) error) error {
	target := chain[len(chain)-1]
	nr := target.NrBlocks()
	seen := make([]uint64, (nr+63)/64)
	isSeen := func(n uint64) bool { return seen[n/64]&(1<<(n%64)) != 0 }
	visit := func(b *Backup, what string, rg Range, data []byte) error {
		for blk := rg.Begin; blk < rg.End; {
			if isSeen(blk) {
				blk++
				continue
			}
			end := blk + 1
			for end < rg.End && !isSeen(end) {
				end++
			}
			run := Range{blk, end}
			var d []byte
			if data != nil {
				lo := (blk - rg.Begin) * b.BlockBytes
				d = data[lo : lo+uint64(rangeBytes(run, b.BlockBytes, b.ImageSize))]
			}
			if err := fn(b, what, run, d); err != nil {
				return err
			}
			for n := blk; n < end; n++ {
				seen[n/64] |= 1 << (n % 64)
			}
			blk = end
		}
		return nil
	}
	prog = orNoProgress(prog)
	var total int64
	for _, b := range chain {
		total += b.StoredBytes
	}
	prog.Start(desc, total)
	defer prog.Done()
	for i := len(chain) - 1; i >= 0; i-- {
		b := chain[i]
		for ci := range b.Chunks {
			if err := ctx.Err(); err != nil {
				return err
			}
			data, err := r.readChunk(b, ci)
			if err != nil {
				return err
			}
			var off int64
			what := fmt.Sprintf("chunk %d", ci+1)
			for _, rg := range b.Chunks[ci].Ranges {
				n := rangeBytes(rg, b.BlockBytes, b.ImageSize)
				if err := visit(b, what, rg, data[off:off+n]); err != nil {
					return err
				}
				off += n
			}
			prog.Add(int64(len(data)))
		}
		for _, z := range b.Zero {
			if err := visit(b, "zero ranges", z, nil); err != nil {
				return err
			}
		}
	}
	for n := range nr {
		if !isSeen(n) { // cannot happen: the manifest check makes a full backup hold every block
			return fmt.Errorf("block %d is in no backup: %w", n, ErrManifest)
		}
	}
	return nil
}

// verifyImage reads a restored image back and checks every block against
// the newest backup of chain that holds it, then returns the image's
// SHA-256.
func (r *Repo) verifyImage(ctx context.Context, f *os.File, chain []*Backup, prog Progress) (string, error) {
	target := chain[len(chain)-1]
	var buf []byte
	err := r.walk(ctx, chain, prog, fmt.Sprintf("verify %d", target.ID), func(b *Backup, what string, run Range, data []byte) error {
		n := rangeBytes(run, b.BlockBytes, b.ImageSize)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		got := buf[:n]
		if err := readFull(f, got, int64(run.Begin*b.BlockBytes)); err != nil {
			return fmt.Errorf("read back restored image: %w", err)
		}
		if data == nil && isZero(got) || data != nil && bytes.Equal(got, data) {
			return nil
		}
		for blk := run.Begin; ; blk++ { // name the first block that differs
			lo := (blk - run.Begin) * b.BlockBytes
			hi := lo + uint64(blockLen(blk, b.BlockBytes, b.ImageSize))
			if data == nil && !isZero(got[lo:hi]) || data != nil && !bytes.Equal(got[lo:hi], data[lo:hi]) {
				return fmt.Errorf("restored image block %d differs from backup %d %s: %w", blk, b.ID, what, ErrRestoreMismatch)
			}
		}
	})
	if err != nil {
		return "", err
	}
	return hashImage(ctx, f, target.ImageSize, prog, fmt.Sprintf("hash %d", target.ID))
}

// hashImage returns the SHA-256 of the first size bytes of r.
func hashImage(ctx context.Context, r io.ReaderAt, size int64, prog Progress, desc string) (string, error) {
	prog = orNoProgress(prog)
	prog.Start(desc, size)
	defer prog.Done()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		p := buf[:min(int64(len(buf)), size-off)]
		if err := readFull(r, p, off); err != nil {
			return "", err
		}
		h.Write(p)
		prog.Add(int64(len(p)))
		off += int64(len(p))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
