// Package workload holds what the benchmarks of the era package measure:
// the stores, devices, trackers and workloads of every figure of the speed
// targets (issue 7). The root package's `go test -bench` benchmarks and the
// `go run ./bench` program both use it, so both measure the same thing.
package workload

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
)

// BlockBytes is the tracked block size of every figure: 4 KiB (8 sectors).
const BlockBytes = 4096

// BlockSectors is BlockBytes in 512-byte sectors.
const BlockSectors = BlockBytes / 512

// CreateFile creates (or truncates) a sparse file of size bytes.
func CreateFile(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// NullStore is an origin of N bytes that reads zeros and drops writes:
// for figures that measure only the metadata (checkpoints, heap).
type NullStore struct{ N int64 }

// Size returns N.
func (s NullStore) Size() int64 { return s.N }

// ReadAt fills p with zeros.
func (s NullStore) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.N {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.N-off))
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt drops p.
func (s NullStore) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.N {
		return 0, errors.New("write past the end")
	}
	return len(p), nil
}

// SwitchStore is an origin file whose writes can be dropped for a while:
// setting up a full writeset (every block marked) then costs commits only,
// not gigabytes of origin writes.
type SwitchStore struct {
	F       *os.File
	N       int64
	discard atomic.Bool
}

// Discard sets whether writes are dropped.
func (s *SwitchStore) Discard(on bool) { s.discard.Store(on) }

// Size returns the origin's size.
func (s *SwitchStore) Size() int64 { return s.N }

// ReadAt reads the file.
func (s *SwitchStore) ReadAt(p []byte, off int64) (int, error) { return s.F.ReadAt(p, off) }

// WriteAt writes the file, or drops p while Discard is on.
func (s *SwitchStore) WriteAt(p []byte, off int64) (int, error) {
	if s.discard.Load() {
		return len(p), nil
	}
	return s.F.WriteAt(p, off)
}

// Sync syncs the file.
func (s *SwitchStore) Sync() error { return s.F.Sync() }

// MetaBytesFor returns a metadata store size that holds a device of
// nrBlocks tracked blocks with room for copy-on-write: the era array
// (u32 per block) three times over, a few writesets and 8 MiB more.
func MetaBytesFor(nrBlocks uint64) int64 {
	eraBlocks := nrBlocks/1016 + 1
	wsBlocks := nrBlocks/(509*64) + 1
	return int64(3*eraBlocks+8*wsBlocks+2048) * 4096
}

// TempDir returns a new directory under parent ("" for the system's).
func TempDir(parent, pattern string) (string, error) {
	return os.MkdirTemp(parent, pattern)
}

// Paths of a device's two files in dir.
func metaPath(dir string) string   { return filepath.Join(dir, "meta") }
func originPath(dir string) string { return filepath.Join(dir, "origin") }

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
