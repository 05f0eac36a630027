package nbd

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/era-go/era"
)

// model is a test backend: a byte slice with an era per block, tracking
// writes as an era device does (a write marks every block it touches with
// the current era).
type model struct {
	mu         sync.Mutex
	data       []byte
	blockBytes uint64
	eras       []uint32
	current    uint32
	syncs      int
	fastZero   bool
	failQuery  error // returned by the era queries when set
	zeroCalls  int
}

var errModelQuery = errors.New("model: query failed")

func newModel(size int, blockBytes uint64) *model {
	nb := (uint64(size) + blockBytes - 1) / blockBytes
	return &model{data: make([]byte, size), blockBytes: blockBytes, eras: make([]uint32, nb), current: 1}
}

func (m *model) Size() int64 { return int64(len(m.data)) }

func (m *model) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off > int64(len(m.data)) {
		return 0, fmt.Errorf("read at %d: %w", off, era.ErrOutOfRange)
	}
	return copy(p, m.data[off:]), nil
}

func (m *model) mark(off, n int64) {
	if n == 0 {
		return
	}
	for b := uint64(off) / m.blockBytes; b <= uint64(off+n-1)/m.blockBytes; b++ {
		m.eras[b] = m.current
	}
}

func (m *model) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, fmt.Errorf("write at %d: %w", off, era.ErrOutOfRange)
	}
	m.mark(off, int64(len(p)))
	return copy(m.data[off:], p), nil
}

func (m *model) WriteZeroes(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.zeroCalls++
	m.mark(off, n)
	clear(m.data[off : off+n])
	return nil
}

func (m *model) ZeroesFast() bool { return m.fastZero }

func (m *model) Sync() error {
	m.mu.Lock()
	m.syncs++
	m.mu.Unlock()
	return nil
}

func (m *model) BlockBytes() uint64 { return m.blockBytes }

func (m *model) CurrentEra() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current
}

func (m *model) Checkpoint() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current++
	return m.current
}

func (m *model) WrittenSinceSeq(ctx context.Context, since uint32, from uint64) iter.Seq2[era.Range, error] {
	return func(yield func(era.Range, error) bool) {
		m.mu.Lock()
		eras := append([]uint32(nil), m.eras...)
		fail := m.failQuery
		m.mu.Unlock()
		if fail != nil {
			yield(era.Range{}, fail)
			return
		}
		for b := from; b < uint64(len(eras)); {
			if eras[b] < since {
				b++
				continue
			}
			e := b
			for e < uint64(len(eras)) && eras[e] >= since {
				e++
			}
			if !yield(era.Range{Begin: b, End: e}, nil) {
				return
			}
			b = e
		}
	}
}

func (m *model) BlockEras(ctx context.Context, lo, hi uint64) ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failQuery != nil {
		return nil, m.failQuery
	}
	if hi > uint64(len(m.eras)) || lo > hi {
		return nil, era.ErrOutOfRange
	}
	return append([]uint32(nil), m.eras[lo:hi]...), nil
}

// writtenSince is the model's answer, as byte ranges clipped to the size.
func (m *model) writtenSince(since uint32) []era.Range {
	var out []era.Range
	for r := range m.WrittenSinceSeq(context.Background(), since, 0) {
		out = append(out, era.Range{Begin: r.Begin * m.blockBytes, End: min(r.End*m.blockBytes, uint64(len(m.data)))})
	}
	return out
}
