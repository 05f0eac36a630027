package etesting

import (
	"errors"
	"fmt"
	"sync"
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

// NoOrigin is the origin of a device reopened only to be queried: Open
// never touches the origin, and any read or write of it fails.
type NoOrigin struct{}

// ReadAt fails.
func (NoOrigin) ReadAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

// WriteAt fails.
func (NoOrigin) WriteAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

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
