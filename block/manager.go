package block

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Store is what metadata lives on: a file, a block device, or memory.
type Store interface {
	io.ReaderAt
	io.WriterAt
}

// Syncer is implemented by stores that can make their writes durable, as
// *os.File does. A store without it is treated as always durable.
type Syncer interface {
	Sync() error
}

// DefaultCacheBlocks is the number of clean blocks a Manager keeps when the
// caller does not say (4 MiB).
const DefaultCacheBlocks = 1024

// Stats counts the I/O a Manager has done.
type Stats struct {
	Reads  uint64 // blocks read from the store
	Hits   uint64 // reads answered by the cache
	Writes uint64 // blocks written to the store
	Syncs  uint64 // Sync calls on the store
}

// Manager reads and writes validated blocks on a Store, with a bounded LRU
// cache of clean blocks. It is safe for concurrent use.
//
// Buffers returned by Read are shared with the cache and must not be
// modified. A buffer passed to Write is owned by the Manager afterwards.
type Manager struct {
	store    Store
	nrBlocks uint64

	mu    sync.Mutex
	max   int
	lru   *list.List // of *entry, most recent first
	items map[uint64]*list.Element

	reads, hits, writes, syncs atomic.Uint64
}

type entry struct {
	loc  uint64
	kind *Kind // the kind the data was validated as
	data []byte
}

// NewManager returns a Manager for a store of nrBlocks blocks that caches at
// most cacheBlocks clean blocks (DefaultCacheBlocks if cacheBlocks <= 0).
func NewManager(store Store, nrBlocks uint64, cacheBlocks int) *Manager {
	if cacheBlocks <= 0 {
		cacheBlocks = DefaultCacheBlocks
	}
	return &Manager{
		store:    store,
		nrBlocks: nrBlocks,
		max:      cacheBlocks,
		lru:      list.New(),
		items:    make(map[uint64]*list.Element),
	}
}

// NrBlocks returns the number of blocks the store holds.
func (m *Manager) NrBlocks() uint64 { return m.nrBlocks }

// Stats returns the I/O counts so far.
func (m *Manager) Stats() Stats {
	return Stats{Reads: m.reads.Load(), Hits: m.hits.Load(), Writes: m.writes.Load(), Syncs: m.syncs.Load()}
}

// Read returns block loc validated as kind k. The returned buffer must not be
// modified.
func (m *Manager) Read(loc uint64, k *Kind) ([]byte, error) {
	if loc >= m.nrBlocks {
		return nil, Corruptf(loc, k.Name, "location beyond the end of the metadata device (%d blocks)", m.nrBlocks)
	}
	m.mu.Lock()
	if el, ok := m.items[loc]; ok {
		e := el.Value.(*entry)
		m.lru.MoveToFront(el)
		m.mu.Unlock()
		m.hits.Add(1)
		if e.kind != k {
			// The same block read as another kind: validate again, which
			// fails unless the bytes really are of that kind too.
			if err := k.Validate(e.data, loc); err != nil {
				return nil, err
			}
		}
		return e.data, nil
	}
	m.mu.Unlock()

	data, err := m.ReadRaw(loc)
	if err != nil {
		return nil, err
	}
	if err := k.Validate(data, loc); err != nil {
		return nil, err
	}
	m.put(loc, k, data)
	return data, nil
}

// ReadScan is Read for a scan that reads each block once: a block not in the
// cache is read into buf (Size bytes, reused by the caller from block to
// block) and validated, but not cached, so that a long scan neither evicts
// the blocks in use nor allocates a buffer per block. A cached block is
// returned from the cache. The returned buffer must not be modified, and
// is valid only until buf is reused.
func (m *Manager) ReadScan(loc uint64, k *Kind, buf []byte) ([]byte, error) {
	if loc >= m.nrBlocks {
		return nil, Corruptf(loc, k.Name, "location beyond the end of the metadata device (%d blocks)", m.nrBlocks)
	}
	m.mu.Lock()
	_, cached := m.items[loc]
	m.mu.Unlock()
	if cached {
		return m.Read(loc, k)
	}
	buf = buf[:Size]
	n, err := m.store.ReadAt(buf, int64(loc)*Size)
	m.reads.Add(1)
	if n != Size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("block %d: read: %w", loc, err)
	}
	if err := k.Validate(buf, loc); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadRaw reads block loc without validating it or caching it.
func (m *Manager) ReadRaw(loc uint64) ([]byte, error) {
	if loc >= m.nrBlocks {
		return nil, fmt.Errorf("block %d: beyond the end of the metadata device (%d blocks): %w", loc, m.nrBlocks, ErrCorrupt)
	}
	data := make([]byte, Size)
	n, err := m.store.ReadAt(data, int64(loc)*Size)
	m.reads.Add(1)
	if n == Size {
		return data, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("block %d: short read (%d of %d bytes): %w", loc, n, Size, io.ErrUnexpectedEOF)
	}
	return nil, fmt.Errorf("block %d: read: %w", loc, err)
}

// Write fills in the checksum and location of data as a block of kind k and
// writes it at loc. It does not sync. The Manager keeps data in its cache,
// so the caller must not modify it afterwards.
func (m *Manager) Write(loc uint64, k *Kind, data []byte) error {
	if loc >= m.nrBlocks {
		return fmt.Errorf("%s block %d: beyond the end of the metadata device (%d blocks): %w", k.Name, loc, m.nrBlocks, ErrNoSpace)
	}
	if len(data) != Size {
		return fmt.Errorf("%s block %d: buffer of %d bytes", k.Name, loc, len(data))
	}
	k.Prepare(data, loc)
	m.forget(loc)
	n, err := m.store.WriteAt(data, int64(loc)*Size)
	m.writes.Add(1)
	if err == nil && n != Size {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("%s block %d: write: %w", k.Name, loc, err)
	}
	m.put(loc, k, data)
	return nil
}

// Sync makes every write so far durable, if the store can. An *os.File is
// synced with fdatasync on Linux (see datasync), any other Syncer with its
// Sync method.
func (m *Manager) Sync() error {
	s, ok := m.store.(Syncer)
	if !ok {
		return nil
	}
	m.syncs.Add(1)
	done, err := datasync(s)
	if !done {
		err = s.Sync()
	}
	if err != nil {
		return fmt.Errorf("metadata sync: %w", err)
	}
	return nil
}

// CanSync reports whether the store has a Sync method.
func (m *Manager) CanSync() bool {
	_, ok := m.store.(Syncer)
	return ok
}

// Forget drops every cached block, so the next reads go to the store.
func (m *Manager) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lru.Init()
	clear(m.items)
}

func (m *Manager) forget(loc uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[loc]; ok {
		m.lru.Remove(el)
		delete(m.items, loc)
	}
}

func (m *Manager) put(loc uint64, k *Kind, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[loc]; ok {
		el.Value = &entry{loc: loc, kind: k, data: data}
		m.lru.MoveToFront(el)
		return
	}
	m.items[loc] = m.lru.PushFront(&entry{loc: loc, kind: k, data: data})
	for m.lru.Len() > m.max {
		old := m.lru.Back()
		m.lru.Remove(old)
		delete(m.items, old.Value.(*entry).loc)
	}
}
