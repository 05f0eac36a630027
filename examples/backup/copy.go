package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/era-go/era"
)

// DefaultChunkBytes is the most data one chunk file holds.
const DefaultChunkBytes = 4 << 20

// Source is what a backup reads: era metadata, for the snapshot, and the
// image the blocks are copied from.
type Source struct {
	// Device is the era device when the backup agent owns it (in-process
	// mode): Backup takes the metadata snapshot and drops it, also when
	// the copy fails. Nil: external mode, where the process that owns the
	// device (or the kernel) must hold a snapshot (TakeSnapshot,
	// take_metadata_snap) for the whole backup, and drops it afterwards.
	Device *era.Device
	// Meta is the metadata store; OpenSnapshot reads the held snapshot
	// from it.
	Meta io.ReaderAt
	// Origin is the image. Nil with a Device: the Device's point-in-time
	// snapshot, which makes the backup consistent. Given with a Device,
	// the backup takes a metadata snapshot only and reads Origin.
	Origin io.ReaderAt
	// Size is the image size in bytes. 0 with a Device: Device.Size().
	Size int64
	// NBD, when set, is a running era serve export to back up instead
	// (the other fields are not used).
	NBD *NBDSource
}

// Options tune Backup.
type Options struct {
	// ChunkBytes bounds a chunk file; 0: DefaultChunkBytes. It is rounded
	// down to whole blocks, at least one.
	ChunkBytes int
	// Progress reports the bytes read; nil: none.
	Progress Progress
	// FullIfStale makes an incremental whose previous change ID the
	// metadata no longer knows take a full backup instead of failing with
	// ErrFullBackupNeeded.
	FullIfStale bool
	// NoSync skips syncing chunk files before they are renamed and
	// listed: for throwaway repositories (the demo, tests) only. The
	// manifest is synced regardless.
	NoSync bool
	// Freeze, in-process and over NBD, is called just before the
	// snapshot is taken, and the function it returns (thaw) just after,
	// as fsfreeze brackets a snapshot; nil: none. The demo uses it to
	// note the image at the snapshot.
	Freeze func() (thaw func())
}

// Result is what Backup did.
type Result struct {
	Backup Backup
	// Cleaned lists what an interrupted earlier run had left and this
	// run removed, relative to the repository.
	Cleaned []string
}

// Backup takes a backup of kind Full or Incremental into the repository.
//
// It takes (in-process) or finds (external) the metadata snapshot, opens
// it with era.OpenSnapshot, and copies every block (Full) or the blocks
// written since the era the previous backup recorded (Incremental), as
// chunk files. The new backup records the snapshot's era. The manifest is
// replaced last: until then the repository is as it was, and what a
// failed or killed run left is removed by the next one.
//
// Before it writes anything it checks the image and metadata against the
// repository: ErrImageMismatch, ErrBlockSize, ErrEraBackwards,
// era.ErrNoSnapshot (external mode without a held snapshot),
// era.ErrSnapshotExists (in-process with a snapshot already held). If the
// copy succeeded and only dropping the snapshot failed, the backup is
// recorded and its Result comes with the error.
//
// In-process (without Source.Origin), the snapshot is a point-in-time one (era's
// HoldPointInTime, with a difference store in the repository, removed
// afterwards): the blocks are read as they were at the snapshot while
// writes go on, and the backup is consistent (Backup.Consistent). Over
// NBD the same holds when era serve runs with --snapshot-store and offers
// NAME@snapshot. Otherwise (external mode, or era serve without it) the
// blocks are read from the live image: a block written after the snapshot
// may be copied with its newer data; its era is the snapshot's or later,
// so the next incremental copies it again.
func (r *Repo) Backup(ctx context.Context, kind Kind, src Source, opt Options) (res *Result, err error) {
	if kind != Full && kind != Incremental {
		return nil, fmt.Errorf("backup kind %q: want %q or %q", kind, Full, Incremental)
	}
	if src.NBD != nil {
		return r.backupNBD(ctx, kind, src.NBD, opt)
	}
	mode := "external"
	var pit *era.Snapshot // in-process: the point-in-time snapshot read
	usePIT := false
	if d := src.Device; d != nil {
		mode = "device"
		if src.Origin == nil {
			src.Origin, usePIT = d, true
		}
		if src.Size == 0 {
			src.Size = d.Size()
		}
	}
	if src.Meta == nil || src.Origin == nil || src.Size <= 0 {
		return nil, errors.New("backup source: metadata, image and image size are required")
	}

	m, prev, res, unlock, err := r.begin(kind)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if prev != nil && src.Size != prev.ImageSize {
		return nil, fmt.Errorf("image is %d bytes, backup %d in %s is of a %d-byte image: %w",
			src.Size, prev.ID, r.Dir, prev.ImageSize, ErrImageMismatch)
	}

	if d := src.Device; d != nil {
		if prev != nil && d.BlockBytes() != prev.BlockBytes {
			return nil, fmt.Errorf("device blocks are %d bytes, backup %d in %s used %d-byte blocks: %w",
				d.BlockBytes(), prev.ID, r.Dir, prev.BlockBytes, ErrBlockSize)
		}
		st := d.Status()
		if st.Held {
			return nil, fmt.Errorf("the device already holds a metadata snapshot (another backup running, or one that crashed): %w", era.ErrSnapshotExists)
		}
		if kind == Incremental {
			if _, stale := sinceChange(prev, d.ChangeID()); stale != nil {
				if kind, err = fullIfStale(kind, stale, opt); err != nil {
					return nil, err
				}
			} else if st.CurrentEra < prev.Era {
				return nil, eraBackwards(st.CurrentEra, prev)
			}
		}
		if usePIT {
			snap, release, err := r.holdPointInTime(d, opt)
			if err != nil {
				return nil, err
			}
			defer func() {
				if derr := release(); derr != nil {
					err = errors.Join(err, fmt.Errorf("drop point-in-time snapshot: %w", derr))
				}
			}()
			pit, src.Origin = snap, snap
		} else {
			if _, err := d.TakeSnapshot(); err != nil {
				return nil, fmt.Errorf("take metadata snapshot: %w", err)
			}
			defer func() {
				if derr := d.DropSnapshot(); derr != nil {
					err = errors.Join(err, fmt.Errorf("drop metadata snapshot: %w", derr))
				}
			}()
		}
	}

	var view *era.View
	if pit != nil {
		view, err = pit.View()
		if err == nil {
			defer view.Close()
		}
	} else {
		view, err = era.OpenSnapshot(src.Meta)
	}
	if errors.Is(err, era.ErrNoSnapshot) && src.Device == nil {
		return nil, fmt.Errorf("metadata holds no snapshot: the process that owns the device must take one "+
			"(Device.TakeSnapshot, or dmsetup message <dev> 0 take_metadata_snap) before the backup and drop it after: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open metadata snapshot: %w", err)
	}
	snapEra := view.CurrentEra()
	blockBytes := uint64(view.BlockSectors()) * 512
	if d := src.Device; d != nil && blockBytes != d.BlockBytes() {
		return nil, fmt.Errorf("metadata snapshot has %d-byte blocks, the device %d-byte blocks: not this device's metadata: %w",
			blockBytes, d.BlockBytes(), ErrImageMismatch)
	}
	if prev != nil && blockBytes != prev.BlockBytes {
		return nil, fmt.Errorf("metadata tracks %d-byte blocks, backup %d in %s used %d-byte blocks: %w",
			blockBytes, prev.ID, r.Dir, prev.BlockBytes, ErrBlockSize)
	}
	nrBlocks := (uint64(src.Size) + blockBytes - 1) / blockBytes
	if view.NrBlocks() != nrBlocks {
		return nil, fmt.Errorf("metadata tracks %d blocks, the %d-byte image has %d blocks of %d bytes: %w",
			view.NrBlocks(), src.Size, nrBlocks, blockBytes, ErrImageMismatch)
	}
	var ranges []Range
	if kind == Incremental {
		var changed []era.Range
		id, stale := sinceChange(prev, view.ChangeID())
		switch {
		case stale != nil:
			err = stale
		case snapEra <= prev.Era:
			return nil, eraBackwards(snapEra, prev)
		case id != nil:
			changed, err = view.WrittenSinceChange(ctx, *id)
		default: // a backup of an older version of this tool
			changed, err = view.WrittenSinceContext(ctx, prev.Era)
		}
		if kind, err = fullIfStale(kind, err, opt); err != nil {
			return nil, fmt.Errorf("blocks written since era %d: %w", prev.Era, err)
		}
		for _, c := range changed {
			ranges = append(ranges, Range{c.Begin, c.End})
		}
	}
	if kind == Full {
		ranges = []Range{{0, nrBlocks}}
	}

	b := Backup{
		ID:         len(m.Backups) + 1,
		Kind:       kind,
		Mode:       mode,
		Era:        snapEra,
		ChangeID:   view.ChangeID().String(),
		BlockBytes: blockBytes,
		ImageSize:  src.Size,
		Created:    time.Now().UTC().Truncate(time.Second),
		Chunks:     []Chunk{},
		Consistent: pit != nil,
	}
	if kind == Incremental {
		b.SinceEra = prev.Era
	}
	return r.store(ctx, m, res, b, src.Origin, ranges, opt)
}

// holdPointInTime takes a point-in-time snapshot of d, bracketed by
// opt.Freeze, with a difference store in the repository (a temporary
// file: what a killed run leaves, the next one removes). release drops
// the snapshot and removes the store.
func (r *Repo) holdPointInTime(d *era.Device, opt Options) (*era.Snapshot, func() error, error) {
	diff, err := os.CreateTemp(r.Dir, ".snapshot-*"+tmpSuffix)
	if err != nil {
		return nil, nil, fmt.Errorf("difference store for the point-in-time snapshot: %w", err)
	}
	thaw := func() {}
	if opt.Freeze != nil {
		thaw = opt.Freeze()
	}
	snap, err := d.HoldPointInTime(diff, era.PointInTimeOptions{})
	thaw()
	if err != nil {
		diff.Close()
		os.Remove(diff.Name())
		return nil, nil, fmt.Errorf("take point-in-time snapshot: %w", err)
	}
	return snap, func() error {
		return errors.Join(snap.Release(), diff.Close(), os.Remove(diff.Name()))
	}, nil
}

// begin starts a backup of kind into the repository: it takes the writer
// lock (the caller runs unlock), reads the manifest, removes what an
// interrupted run left, and returns the previous backup, which an
// incremental needs.
func (r *Repo) begin(kind Kind) (m *Manifest, prev *Backup, res *Result, unlock func(), err error) {
	release, err := r.lock()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	if m, err = r.Manifest(); err != nil {
		return nil, nil, nil, nil, err
	}
	res = &Result{}
	if res.Cleaned, err = r.cleanup(m); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("remove what an interrupted backup left: %w", err)
	}
	if n := len(m.Backups); n > 0 {
		prev = &m.Backups[n-1]
	}
	if kind == Incremental && prev == nil {
		return nil, nil, nil, nil, fmt.Errorf("%s holds no backup to continue from; take a full backup first: %w", r.Dir, ErrNoBackup)
	}
	return m, prev, res, release, nil
}

// sinceChange returns the change ID the previous backup recorded (nil for
// a backup recorded without one), or an error wrapping
// ErrFullBackupNeeded when it belongs to other metadata than cur's.
func sinceChange(prev *Backup, cur era.ChangeID) (*era.ChangeID, error) {
	if prev.ChangeID == "" {
		return nil, nil
	}
	id, err := era.ParseChangeID(prev.ChangeID)
	if err != nil {
		return nil, fmt.Errorf("backup %d: %w: %w", prev.ID, err, ErrManifest)
	}
	if id.UUID != cur.UUID {
		return nil, fmt.Errorf("backup %d was taken from metadata %v, this is %v (reformatted, restored or another device): %w: %w",
			prev.ID, id, cur, era.ErrStaleChangeID, ErrFullBackupNeeded)
	}
	return &id, nil
}

// fullIfStale turns a stale change ID into a full backup when opt asks for
// one, or into ErrFullBackupNeeded.
func fullIfStale(kind Kind, err error, opt Options) (Kind, error) {
	if !errors.Is(err, era.ErrStaleChangeID) {
		return kind, err
	}
	if opt.FullIfStale {
		return Full, nil
	}
	if !errors.Is(err, ErrFullBackupNeeded) {
		err = fmt.Errorf("%w: %w", err, ErrFullBackupNeeded)
	}
	return kind, fmt.Errorf("%w (backup incr --full-if-stale takes one)", err)
}

// store copies the ranges of origin into backup b's chunk files, then
// records b in the manifest m.
func (r *Repo) store(ctx context.Context, m *Manifest, res *Result, b Backup, origin io.ReaderAt, ranges []Range, opt Options) (_ *Result, err error) {
	dir := filepath.Join(r.Dir, backupsDir, backupDirName(b.ID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir) // best effort; the next run removes it too
		}
	}()
	start := time.Now()
	c := newCopier(&b, origin, opt)
	if err := c.copy(ctx, dir, ranges); err != nil {
		return nil, fmt.Errorf("backup %d: %w", b.ID, err)
	}
	b.Seconds = time.Since(start).Seconds()
	if !opt.NoSync {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	m.Backups = append(m.Backups, b)
	if err := m.check(); err != nil { // a bug here must not reach the disk
		return nil, fmt.Errorf("new manifest: %w", err)
	}
	if err := r.writeManifest(m); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	res.Backup = b
	return res, nil
}

// eraBackwards returns the error for metadata at era e after backup prev.
func eraBackwards(e uint32, prev *Backup) error {
	if e == prev.Era {
		return fmt.Errorf("metadata snapshot is at era %d, the era backup %d already recorded: "+
			"this snapshot was backed up; drop it and take a new one: %w", e, prev.ID, ErrEraBackwards)
	}
	return fmt.Errorf("metadata is at era %d, below era %d recorded by backup %d: "+
		"the metadata was reformatted or belongs to another device; take a full backup to start a new chain: %w",
		e, prev.Era, prev.ID, ErrEraBackwards)
}

// copier copies blocks from the image into the chunk files of one backup.
type copier struct {
	b           *Backup
	origin      io.ReaderAt
	chunkBlocks uint64
	noSync      bool
	prog        Progress
	buf         []byte

	dir string
	cur *chunkWriter
}

// chunkWriter is the chunk file being written.
type chunkWriter struct {
	f      *os.File
	h      hash.Hash
	ranges []Range
	bytes  int64
	blocks uint64
}

func newCopier(b *Backup, origin io.ReaderAt, opt Options) *copier {
	cb := opt.ChunkBytes
	if cb <= 0 {
		cb = DefaultChunkBytes
	}
	n := max(uint64(cb)/b.BlockBytes, 1)
	return &copier{
		b:           b,
		origin:      origin,
		chunkBlocks: n,
		noSync:      opt.NoSync,
		prog:        orNoProgress(opt.Progress),
		buf:         make([]byte, n*b.BlockBytes),
	}
}

// copy copies the blocks of ranges into chunk files in dir; all-zero
// blocks go into the backup's zero ranges instead.
func (c *copier) copy(ctx context.Context, dir string, ranges []Range) (err error) {
	c.dir = dir
	defer func() {
		if c.cur != nil { // failed half way
			c.cur.f.Close()
		}
	}()
	var total int64
	for _, r := range ranges {
		total += rangeBytes(r, c.b.BlockBytes, c.b.ImageSize)
	}
	c.prog.Start(fmt.Sprintf("backup %d (%s)", c.b.ID, c.b.Kind), total)
	defer c.prog.Done()
	bb := c.b.BlockBytes
	for _, r := range ranges {
		for blk := r.Begin; blk < r.End; {
			if err := ctx.Err(); err != nil {
				return err
			}
			ext := Range{blk, min(r.End, blk+c.chunkBlocks)}
			p := c.buf[:rangeBytes(ext, bb, c.b.ImageSize)]
			if err := readFull(c.origin, p, int64(blk*bb)); err != nil {
				return fmt.Errorf("read image blocks [%d, %d): %w", ext.Begin, ext.End, err)
			}
			for i := range ext.Len() {
				data := p[i*bb : min((i+1)*bb, uint64(len(p)))]
				n := ext.Begin + i
				if isZero(data) {
					c.b.Zero = appendRange(c.b.Zero, n, n+1)
					continue
				}
				if err := c.add(n, data); err != nil {
					return err
				}
			}
			c.b.Blocks += ext.Len()
			c.b.ReadBytes += int64(len(p))
			c.prog.Add(int64(len(p)))
			blk = ext.End
		}
	}
	return c.finish()
}

// add appends block n, data, to the chunk being written, starting one if
// none is, and finishes the chunk when it is full.
func (c *copier) add(n uint64, data []byte) error {
	if c.cur == nil {
		f, err := os.CreateTemp(c.dir, ".chunk-*"+tmpSuffix)
		if err != nil {
			return err
		}
		c.cur = &chunkWriter{f: f, h: sha256.New()}
	}
	w := c.cur
	if _, err := w.f.Write(data); err != nil {
		return err
	}
	w.h.Write(data)
	w.ranges = appendRange(w.ranges, n, n+1)
	w.bytes += int64(len(data))
	w.blocks++
	if w.blocks == c.chunkBlocks {
		return c.finish()
	}
	return nil
}

// finish syncs the chunk being written, if any, and renames it to its
// final name.
func (c *copier) finish() error {
	w := c.cur
	if w == nil {
		return nil
	}
	var err error
	if !c.noSync {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	c.cur = nil
	if err != nil {
		return err
	}
	rel := chunkPath(c.b.ID, len(c.b.Chunks)+1)
	if err := os.Rename(w.f.Name(), filepath.Join(c.dir, filepath.Base(rel))); err != nil {
		return err
	}
	c.b.Chunks = append(c.b.Chunks, Chunk{
		File:   rel,
		Ranges: w.ranges,
		Bytes:  w.bytes,
		SHA256: hex.EncodeToString(w.h.Sum(nil)),
	})
	c.b.StoredBytes += w.bytes
	return nil
}

// readFull reads len(p) bytes at off; an io.EOF with every byte read is
// not an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// zeroPage is what isZero compares with.
var zeroPage [4096]byte

// isZero reports whether p is all zero bytes.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroPage))
		if !bytes.Equal(p[:n], zeroPage[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
