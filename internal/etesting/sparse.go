package etesting

import "sync"

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
