package main

import (
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

// verifyImage reads a restored image back and checks every block against
// the newest backup of chain that holds it (chunk data or a zero range),
// then returns the image's SHA-256.
func (r *Repo) verifyImage(ctx context.Context, f *os.File, chain []*Backup, prog Progress) (string, error) {
	target := chain[len(chain)-1]
	nr := target.NrBlocks()
	claimed := make([]uint64, (nr+63)/64)
	isClaimed := func(n uint64) bool { return claimed[n/64]&(1<<(n%64)) != 0 }
	var buf []byte
	// check compares the unclaimed blocks of r in the image with want
	// (nil: zeros), and claims them.
	check := func(r Range, want []byte, b *Backup, what string) error {
		n := rangeBytes(r, b.BlockBytes, b.ImageSize)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		got := buf[:n]
		if err := readFull(f, got, int64(r.Begin*b.BlockBytes)); err != nil {
			return fmt.Errorf("read back restored image: %w", err)
		}
		for blk := r.Begin; blk < r.End; blk++ {
			if isClaimed(blk) {
				continue
			}
			lo := (blk - r.Begin) * b.BlockBytes
			hi := lo + uint64(blockLen(blk, b.BlockBytes, b.ImageSize))
			ok := false
			if want == nil {
				ok = isZero(got[lo:hi])
			} else {
				ok = string(got[lo:hi]) == string(want[lo:hi])
			}
			if !ok {
				return fmt.Errorf("block %d differs from backup %d %s: %w", blk, b.ID, what, ErrRestoreMismatch)
			}
			claimed[blk/64] |= 1 << (blk % 64)
		}
		return nil
	}
	for i := len(chain) - 1; i >= 0; i-- {
		b := chain[i]
		for ci := range b.Chunks {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			data, err := r.readChunk(b, ci)
			if err != nil {
				return "", err
			}
			var off int64
			for _, rg := range b.Chunks[ci].Ranges {
				n := rangeBytes(rg, b.BlockBytes, b.ImageSize)
				if err := check(rg, data[off:off+n], b, fmt.Sprintf("chunk %d", ci+1)); err != nil {
					return "", err
				}
				off += n
			}
		}
		for _, z := range b.Zero {
			if err := check(z, nil, b, "zero ranges"); err != nil {
				return "", err
			}
		}
	}
	for n := range nr {
		if !isClaimed(n) { // cannot happen: the manifest check makes a full backup hold every block
			return "", fmt.Errorf("block %d is in no backup: %w", n, ErrRestoreMismatch)
		}
	}
	return hashImage(ctx, f, target.ImageSize, prog, fmt.Sprintf("verify %d", target.ID))
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
