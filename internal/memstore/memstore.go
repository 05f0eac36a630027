// Package memstore is a store in memory for tests: the metadata store or
// the origin of a device, over a byte slice of fixed size. It imports
// nothing of era, so the package's own tests and its external tests (and
// internal/etesting) share it.
package memstore

import (
	"bytes"
	"fmt"
	"sync"
)

// Store is a store in memory: &Store{Data: img} reopens a crash image
// without copying it. Its methods are safe for concurrent use.
type Store struct {
	mu sync.Mutex
	// Data is the store's contents. Read or change it directly only while
	// no device uses the store.
	Data []byte
}

// New returns a zeroed store of size bytes.
func New(size int) *Store { return &Store{Data: make([]byte, size)} }

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

// Bytes returns a copy of the contents, taken while no write is under way:
// what a crash would leave at that moment.
func (s *Store) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.Data)
}
