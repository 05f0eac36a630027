package etesting

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/era-go/era"
)

// Store is a metadata or origin store in memory, over a byte slice of
// fixed size: &Store{Data: img} reopens a crash image without copying it.
// Its methods are safe for concurrent use.
type Store struct {
	mu sync.Mutex
	// Data is the store's contents. Read or change it directly only while
	// no device uses the store.
	Data []byte
}

// NewStore returns a zeroed store of size bytes.
func NewStore(size int) *Store { return &Store{Data: make([]byte, size)} }

// Size returns the store's size in bytes.
func (s *Store) Size() int64 { return int64(len(s.Data)) }

// ReadAt reads len(p) bytes at off; a read past the end fails.
func (s *Store) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off >= int64(len(s.Data)) {
		return 0, fmt.Errorf("read at %d of %d bytes", off, len(s.Data))
	}
	n := copy(p, s.Data[off:])
	if n < len(p) {
		return n, fmt.Errorf("short read at %d", off)
	}
	return n, nil
}

// WriteAt writes p at off; a write past the end fails and writes nothing.
func (s *Store) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(s.Data)) {
		return 0, fmt.Errorf("write at %d past %d", off, len(s.Data))
	}
	return copy(s.Data[off:], p), nil
}

// Bytes returns a copy of the store's contents.
func (s *Store) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.Data)
}

// NoOrigin is the origin of a device reopened only to be queried: Open
// never touches the origin, and any read or write of it fails.
type NoOrigin struct{}

// ReadAt fails.
func (NoOrigin) ReadAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

// WriteAt fails.
func (NoOrigin) WriteAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

// Sparse is an origin that stores only the pages written, for origins
// too large to hold in memory, and counts the writes. It is safe for
// concurrent use.
type Sparse struct {
	mu     sync.Mutex
	size   int64
	pages  map[int64][]byte
	writes int
}

// NewSparse returns an empty (all zero) sparse origin of size bytes.
func NewSparse(size int64) *Sparse { return &Sparse{size: size, pages: map[int64][]byte{}} }

// Size returns the origin's size in bytes.
func (s *Sparse) Size() int64 { return s.size }

// ReadAt reads len(p) bytes at off: zeros where nothing was written.
func (s *Sparse) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range p {
		pg, ok := s.pages[(off+int64(i))/4096]
		p[i] = 0
		if ok {
			p[i] = pg[(off+int64(i))%4096]
		}
	}
	return len(p), nil
}

// WriteAt writes p at off and counts the write.
func (s *Sparse) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	for i, c := range p {
		pg := s.pages[(off+int64(i))/4096]
		if pg == nil {
			pg = make([]byte, 4096)
			s.pages[(off+int64(i))/4096] = pg
		}
		pg[(off+int64(i))%4096] = c
	}
	return len(p), nil
}

// Writes returns the number of WriteAt calls so far.
func (s *Sparse) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// IsZero reports whether every byte of b is zero (an unformatted
// superblock, for instance).
func IsZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Open opens a device on meta and origin with blocks of sectors sectors,
// formatting zeroed metadata, and fails t if it cannot.
func Open(t testing.TB, meta, origin era.Store, sectors uint32) *era.Device {
	t.Helper()
	d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: sectors})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}
