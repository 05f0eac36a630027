package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FormatVersion is the manifest format this tool writes and reads.
const FormatVersion = 1

// Names inside a repository directory.
const (
	manifestName = "manifest.json"
	lockName     = "lock"
	backupsDir   = "backups"
	tmpSuffix    = ".tmp"
)

// Errors a repository operation can return, wrapped with the details. Test
// for them with errors.Is.
var (
	// ErrManifest reports a manifest that cannot be read, is of another
	// format version, or breaks a rule (chain of eras, ranges, sizes).
	ErrManifest = errors.New("bad manifest")
	// ErrNoRepo reports a directory without a manifest.
	ErrNoRepo = errors.New("not a backup repository")
	// ErrNoBackup reports a missing backup: an incremental without a
	// previous backup, or a restore of a backup that does not exist.
	ErrNoBackup = errors.New("no such backup")
	// ErrImageMismatch reports an image (or metadata) whose size or block
	// count differs from the repository's.
	ErrImageMismatch = errors.New("image differs from the repository's")
	// ErrBlockSize reports a block size that differs from the repository's.
	ErrBlockSize = errors.New("block size differs from the repository's")
	// ErrEraBackwards reports metadata whose era is not past the era the
	// last backup recorded: the metadata was reformatted, belongs to
	// another device, or its snapshot was already backed up.
	ErrEraBackwards = errors.New("era went backwards")
	// ErrChunkMissing reports a chunk file the manifest lists but the
	// repository does not hold.
	ErrChunkMissing = errors.New("chunk file missing")
	// ErrChunkCorrupt reports a chunk file whose size or SHA-256 differs
	// from the manifest's.
	ErrChunkCorrupt = errors.New("chunk file corrupt")
	// ErrFullBackupNeeded reports metadata that cannot answer what changed
	// since the last backup's change ID (it wraps era.ErrStaleChangeID):
	// only a full backup is safe (backup incr --full-if-stale takes one).
	ErrFullBackupNeeded = errors.New("full backup needed")
	// ErrExists reports an output file that exists (restore does not
	// overwrite one unless told to).
	ErrExists = errors.New("output exists")
)

// Kind is the kind of a backup.
type Kind string

// The kinds of backup.
const (
	Full        Kind = "full"
	Incremental Kind = "incremental"
)

// Range is a half-open range [Begin, End) of block numbers; in JSON a pair
// [begin, end].
type Range struct{ Begin, End uint64 }

// Len returns the number of blocks in r.
func (r Range) Len() uint64 { return r.End - r.Begin }

// MarshalJSON encodes r as [begin, end].
func (r Range) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]uint64{r.Begin, r.End})
}

// UnmarshalJSON decodes [begin, end].
func (r *Range) UnmarshalJSON(b []byte) error {
	var p [2]uint64
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	r.Begin, r.End = p[0], p[1]
	return nil
}

// appendRange appends [b, e) to rs, merging it with the last range when
// they touch.
func appendRange(rs []Range, b, e uint64) []Range {
	if n := len(rs); n > 0 && rs[n-1].End == b {
		rs[n-1].End = e
		return rs
	}
	return append(rs, Range{b, e})
}

// Manifest is a repository's list of backups, in manifest.json.
type Manifest struct {
	// Format is the manifest format version (FormatVersion).
	Format int `json:"format"`
	// Backups are the backups, oldest first; backup i has ID i+1.
	Backups []Backup `json:"backups"`
}

// Backup is one backup: the blocks that changed in its era range, stored
// as chunk files, plus the changed blocks that were all zero, stored as
// ranges only.
type Backup struct {
	ID   int  `json:"id"`
	Kind Kind `json:"kind"`
	// Mode is how the metadata was read: "device" (the agent held the
	// era.Device), "external" (another process held the snapshot) or
	// "nbd" (an era serve export, queried over NBD).
	Mode string `json:"mode"`
	// SinceEra and Era bound the eras the backup holds, [SinceEra, Era):
	// every block written in those eras. A full backup has SinceEra 0 and
	// holds every block. Era is the era the metadata snapshot began; the
	// next incremental starts from it.
	SinceEra uint32 `json:"since_era"`
	Era      uint32 `json:"era"`
	// ChangeID is the change ID of Era (era.ChangeID's text form): the
	// metadata's identity with the era. The next incremental asks what
	// changed since it, and a change ID the metadata no longer knows
	// (reformatted, another device) means a full backup is needed.
	ChangeID string `json:"change_id,omitempty"`
	// BlockBytes and ImageSize describe the image backed up.
	BlockBytes uint64    `json:"block_bytes"`
	ImageSize  int64     `json:"image_size"`
	Created    time.Time `json:"created"`
	// Blocks is the number of blocks copied: the chunks' and the zero
	// ranges' blocks.
	Blocks uint64 `json:"blocks"`
	// ReadBytes is what was read from the image; StoredBytes what the
	// chunks hold.
	ReadBytes   int64   `json:"read_bytes"`
	StoredBytes int64   `json:"stored_bytes"`
	Seconds     float64 `json:"seconds"`
	Zero        []Range `json:"zero,omitempty"`
	Chunks      []Chunk `json:"chunks"`
	// Consistent says the blocks were read from a point-in-time snapshot:
	// restored, the backup is the image exactly as it was when Era began,
	// whatever was written during the copy.
	Consistent bool `json:"consistent,omitempty"`
}

// Chunk is one chunk file: the data of its block ranges, concatenated in
// order.
type Chunk struct {
	// File is the path of the chunk file inside the repository, with
	// forward slashes.
	File   string  `json:"file"`
	Ranges []Range `json:"ranges"`
	Bytes  int64   `json:"bytes"`
	SHA256 string  `json:"sha256"`
}

// NrBlocks returns the number of blocks of the image b backs up.
func (b *Backup) NrBlocks() uint64 {
	return (uint64(b.ImageSize) + b.BlockBytes - 1) / b.BlockBytes
}

// blockLen returns the byte length of block n of an image of size bytes
// (the last block can be short).
func blockLen(n, blockBytes uint64, size int64) int64 {
	off := n * blockBytes
	return min(int64(blockBytes), size-int64(off))
}

// rangeBytes returns the byte length of blocks [r.Begin, r.End).
func rangeBytes(r Range, blockBytes uint64, size int64) int64 {
	if r.End <= r.Begin {
		return 0
	}
	end := min(int64(r.End*blockBytes), size)
	return end - int64(r.Begin*blockBytes)
}

// EraRange describes the eras a backup holds: "≤6" for a full backup
// (every block, written in era 6 or before, or never), "7-9" for an
// incremental.
func (b *Backup) EraRange() string {
	if b.Kind == Full {
		return fmt.Sprintf("≤%d", b.Era-1)
	}
	return fmt.Sprintf("%d-%d", b.SinceEra, b.Era-1)
}

// check returns an ErrManifest error naming the first rule m breaks.
func (m *Manifest) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", manifestName, fmt.Sprintf(format, args...), ErrManifest)
	}
	if m.Format != FormatVersion {
		return bad("format version %d; this tool reads version %d", m.Format, FormatVersion)
	}
	for i := range m.Backups {
		b := &m.Backups[i]
		if b.ID != i+1 {
			return bad("backup %d has ID %d", i+1, b.ID)
		}
		if b.BlockBytes == 0 || b.BlockBytes%4096 != 0 || b.ImageSize <= 0 {
			return bad("backup %d: block size %d, image size %d", b.ID, b.BlockBytes, b.ImageSize)
		}
		if i > 0 {
			p := &m.Backups[i-1]
			if b.BlockBytes != p.BlockBytes || b.ImageSize != p.ImageSize {
				return bad("backup %d is of a %d-byte image in %d-byte blocks, backup %d of a %d-byte image in %d-byte blocks",
					b.ID, b.ImageSize, b.BlockBytes, p.ID, p.ImageSize, p.BlockBytes)
			}
		}
		switch b.Kind {
		case Full: // a new chain: its eras need not follow the last backup's
			if b.SinceEra != 0 {
				return bad("full backup %d starts at era %d", b.ID, b.SinceEra)
			}
		case Incremental:
			if i == 0 {
				return bad("backup 1 is incremental; the first backup must be full")
			}
			if prev := m.Backups[i-1].Era; b.SinceEra != prev {
				return bad("backup %d starts at era %d, backup %d ended at era %d", b.ID, b.SinceEra, b.ID-1, prev)
			}
			if b.Era <= b.SinceEra {
				return bad("backup %d ends at era %d, not after its first era %d", b.ID, b.Era, b.SinceEra)
			}
		default:
			return bad("backup %d has kind %q", b.ID, b.Kind)
		}
		if err := b.checkBlocks(); err != nil {
			return bad("backup %d: %v", b.ID, err)
		}
	}
	return nil
}

// checkBlocks checks that the chunks' and zero ranges' blocks are inside
// the image, ascending and disjoint, that they add up to b.Blocks (every
// block, for a full backup), and that chunk sizes and names are sound.
func (b *Backup) checkBlocks() error {
	nr := b.NrBlocks()
	type span struct {
		r    Range
		what string
	}
	var all []span
	for ci, c := range b.Chunks {
		if !validChunkPath(c.File, b.ID) {
			return fmt.Errorf("chunk %d: file name %q", ci+1, c.File)
		}
		if len(c.SHA256) != 64 {
			return fmt.Errorf("chunk %d: SHA-256 %q", ci+1, c.SHA256)
		}
		var want int64
		for _, r := range c.Ranges {
			all = append(all, span{r, fmt.Sprintf("chunk %d", ci+1)})
			want += rangeBytes(r, b.BlockBytes, b.ImageSize)
		}
		if c.Bytes != want {
			return fmt.Errorf("chunk %d: %d bytes, its ranges hold %d", ci+1, c.Bytes, want)
		}
	}
	for _, r := range b.Zero {
		all = append(all, span{r, "zero ranges"})
	}
	// Chunks are in block order, and zero ranges interleave with them;
	// sort by start to check for overlaps.
	slices.SortFunc(all, func(x, y span) int { return cmp.Compare(x.r.Begin, y.r.Begin) })
	var total, next uint64
	for _, s := range all {
		if s.r.End <= s.r.Begin || s.r.End > nr {
			return fmt.Errorf("%s: range [%d, %d) of a %d-block image", s.what, s.r.Begin, s.r.End, nr)
		}
		if s.r.Begin < next {
			return fmt.Errorf("%s: range [%d, %d) overlaps another", s.what, s.r.Begin, s.r.End)
		}
		next = s.r.End
		total += s.r.Len()
	}
	if total != b.Blocks {
		return fmt.Errorf("ranges hold %d blocks, the backup says %d", total, b.Blocks)
	}
	if b.Kind == Full && total != nr {
		return fmt.Errorf("a full backup holds %d of the image's %d blocks", total, nr)
	}
	return nil
}

// chunkPath returns the repository-relative path of chunk seq of backup id.
func chunkPath(id, seq int) string {
	return path.Join(backupsDir, backupDirName(id), fmt.Sprintf("%06d.chunk", seq))
}

// backupDirName returns the name of backup id's directory under backups/.
func backupDirName(id int) string { return fmt.Sprintf("%06d", id) }

// validChunkPath reports whether p is a chunk path of backup id, so that a
// manifest cannot make the tool read outside the repository.
func validChunkPath(p string, id int) bool {
	dir, file := path.Split(p)
	if dir != backupsDir+"/"+backupDirName(id)+"/" || !strings.HasSuffix(file, ".chunk") {
		return false
	}
	_, err := strconv.Atoi(strings.TrimSuffix(file, ".chunk"))
	return err == nil
}

// Repo is a backup repository: a directory holding manifest.json, a lock
// file, and backups/<id>/<seq>.chunk files.
//
// Writers (Backup) take an exclusive lock, remove what an interrupted run
// left, write chunk files under temporary names and rename them, and
// replace the manifest last. Readers (Restore, Verify) only read.
type Repo struct {
	Dir string
}

// InitRepo creates a repository in dir (created if missing) with an empty
// manifest. An existing repository is opened as it is.
func InitRepo(dir string) (*Repo, error) {
	if err := os.MkdirAll(filepath.Join(dir, backupsDir), 0o755); err != nil {
		return nil, err
	}
	r := &Repo{Dir: dir}
	_, err := os.Stat(filepath.Join(dir, manifestName))
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err == nil {
		return r, nil // another process made it meanwhile
	}
	if err := r.writeManifest(&Manifest{Format: FormatVersion, Backups: []Backup{}}); err != nil {
		return nil, err
	}
	return r, nil
}

// OpenRepo opens the repository in dir; ErrNoRepo if it has no manifest.
func OpenRepo(dir string) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s has no %s: %w", dir, manifestName, ErrNoRepo)
		}
		return nil, err
	}
	return &Repo{Dir: dir}, nil
}

// Manifest reads and checks the manifest.
func (r *Repo) Manifest() (*Manifest, error) {
	name := filepath.Join(r.Dir, manifestName)
	data, err := os.ReadFile(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s has no %s: %w", r.Dir, manifestName, ErrNoRepo)
		}
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", name, err, ErrManifest)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Dir, err)
	}
	return &m, nil
}

// writeManifest replaces the manifest atomically: temporary file, sync,
// rename, directory sync.
func (r *Repo) writeManifest(m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	data = append(pairRE.ReplaceAll(data, []byte("[$1, $2]")), '\n')
	return writeFileAtomic(filepath.Join(r.Dir, manifestName), data)
}

// pairRE matches a block range as MarshalIndent spreads it over four lines.
var pairRE = regexp.MustCompile(`\[\s+(\d+),\s+(\d+)\s+\]`)

// writeFileAtomic writes data to name through a temporary file in the same
// directory, synced and renamed, then syncs the directory.
func writeFileAtomic(name string, data []byte) error {
	dir, base := filepath.Split(name)
	f, err := os.CreateTemp(dir, "."+base+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanup removes what an interrupted backup left: temporary files, and
// backup directories the manifest does not list. It returns the paths
// removed, relative to the repository. The caller holds the lock.
func (r *Repo) cleanup(m *Manifest) ([]string, error) {
	left, err := r.leftovers(m)
	if err != nil {
		return nil, err
	}
	for _, p := range left {
		if err := os.RemoveAll(filepath.Join(r.Dir, filepath.FromSlash(p))); err != nil {
			return nil, err
		}
	}
	return left, nil
}

// leftovers lists what an interrupted backup left (see cleanup).
func (r *Repo) leftovers(m *Manifest) ([]string, error) {
	var left []string
	top, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			left = append(left, e.Name())
		}
	}
	dirs, err := os.ReadDir(filepath.Join(r.Dir, backupsDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return left, nil
		}
		return nil, err
	}
	listed := make(map[string]bool, len(m.Backups))
	for _, b := range m.Backups {
		listed[backupDirName(b.ID)] = true
	}
	for _, d := range dirs {
		rel := backupsDir + "/" + d.Name()
		if !listed[d.Name()] {
			left = append(left, rel)
			continue
		}
		files, err := os.ReadDir(filepath.Join(r.Dir, backupsDir, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f.Name(), tmpSuffix) {
				left = append(left, rel+"/"+f.Name())
			}
		}
	}
	return left, nil
}
