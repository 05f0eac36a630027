package btree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// memStore is an in-memory metadata device.
type memStore struct{ b []byte }

func newMemStore(nrBlocks uint64) *memStore {
	return &memStore{b: make([]byte, nrBlocks*block.Size)}
}

func (s *memStore) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.b)) {
		return 0, fmt.Errorf("memStore: read of %d bytes at %d out of range", len(p), off)
	}
	return copy(p, s.b[off:]), nil
}

func (s *memStore) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.b)) {
		return 0, fmt.Errorf("memStore: write of %d bytes at %d out of range", len(p), off)
	}
	return copy(s.b[off:], p), nil
}

func (s *memStore) clone() *memStore { return &memStore{b: slices.Clone(s.b)} }

// memSM is a test space map: reference counts in a map, plus the counts as
// of the last commit so that Alloc hands out only blocks free in both.
// It is strict: incrementing a free block or decrementing below 0 fails.
type memSM struct {
	nr        uint64
	counts    map[uint64]uint32
	committed map[uint64]uint32
	cursor    uint64
}

func newMemSM(nrBlocks uint64, reserved ...uint64) *memSM {
	sm := &memSM{nr: nrBlocks, counts: map[uint64]uint32{}, committed: map[uint64]uint32{}}
	for _, b := range reserved {
		sm.counts[b] = 1
	}
	sm.commit()
	return sm
}

func (sm *memSM) Alloc() (uint64, error) {
	for range sm.nr {
		b := sm.cursor
		sm.cursor = (sm.cursor + 1) % sm.nr
		if sm.counts[b] == 0 && sm.committed[b] == 0 {
			sm.counts[b] = 1
			return b, nil
		}
	}
	return 0, block.ErrNoSpace
}

func (sm *memSM) Inc(b uint64) error {
	if b >= sm.nr || sm.counts[b] == 0 {
		return fmt.Errorf("memSM: inc of free block %d", b)
	}
	sm.counts[b]++
	return nil
}

func (sm *memSM) Dec(b uint64) error {
	if b >= sm.nr || sm.counts[b] == 0 {
		return fmt.Errorf("memSM: dec of free block %d", b)
	}
	if sm.counts[b]--; sm.counts[b] == 0 {
		delete(sm.counts, b)
	}
	return nil
}

func (sm *memSM) Count(b uint64) (uint32, error) {
	if b >= sm.nr {
		return 0, fmt.Errorf("memSM: block %d out of range: %w", b, block.ErrCorrupt)
	}
	return sm.counts[b], nil
}

func (sm *memSM) commit() { sm.committed = maps.Clone(sm.counts) }

func (sm *memSM) clone() *memSM {
	c := *sm
	c.counts = maps.Clone(sm.counts)
	c.committed = maps.Clone(sm.committed)
	return &c
}

var _ transaction.SpaceMap = (*memSM)(nil)

// env is a metadata device with a space map and a transaction manager.
type env struct {
	tb    testing.TB
	nr    uint64
	store *memStore
	sm    *memSM
	bm    *block.Manager
	tm    *transaction.Manager
}

// newEnv returns an env of nrBlocks blocks; block 0 (the superblock) is
// reserved.
func newEnv(tb testing.TB, nrBlocks uint64) *env {
	e := &env{tb: tb, nr: nrBlocks, store: newMemStore(nrBlocks), sm: newMemSM(nrBlocks, 0)}
	e.bm = block.NewManager(e.store, nrBlocks, 64)
	e.tm = transaction.New(e.bm, e.sm)
	return e
}

func (e *env) commit() {
	e.tb.Helper()
	if err := e.tm.Commit(); err != nil {
		e.tb.Fatalf("commit: %v", err)
	}
	e.sm.commit()
}

// reopen commits and continues on a fresh block manager over the same
// bytes, so everything afterwards is read back from the store.
func (e *env) reopen() {
	e.tb.Helper()
	e.commit()
	e.bm = block.NewManager(e.store, e.nr, 64)
	e.tm = transaction.New(e.bm, e.sm)
}

// testType describes a tree under test: its value type and how to make and
// recognise values.
type testType struct {
	size int
	ref  bool // values hold a block reference (last 8 bytes)
}

func (tt testType) String() string {
	if tt.ref {
		return fmt.Sprintf("vs%d-ref", tt.size)
	}
	return fmt.Sprintf("vs%d", tt.size)
}

// valueType returns the btree value type; a referencing type counts its
// references in e's space map (looked up at call time, so reopen is fine).
func (tt testType) valueType(e *env) ValueType {
	vt := ValueType{Size: tt.size}
	if tt.ref {
		vt.Inc = func(v []byte) error { return e.sm.Inc(tt.refOf(v)) }
		vt.Dec = func(v []byte) error { return e.sm.Dec(tt.refOf(v)) }
	}
	return vt
}

func (tt testType) refOf(v []byte) uint64 {
	return binary.LittleEndian.Uint64(v[tt.size-8:])
}

// newValue makes a fresh value; for a referencing type it allocates the
// block the value references and the caller's reference passes to the tree.
func (tt testType) newValue(e *env, tag uint64) []byte {
	e.tb.Helper()
	v := make([]byte, tt.size)
	if !tt.ref {
		for i := range v {
			v[i] = byte(tag >> (8 * (i % 8)))
		}
		v[0] ^= byte(tag >> 56)
		return v
	}
	b, err := e.sm.Alloc()
	if err != nil {
		e.tb.Fatalf("alloc value block: %v", err)
	}
	binary.LittleEndian.PutUint32(v, uint32(tag))
	binary.LittleEndian.PutUint64(v[tt.size-8:], b)
	return v
}

func (e *env) tree(tt testType, leafMax, internalMax uint32) *Tree {
	tr := New(e.tm, tt.valueType(e))
	tr.leafMax, tr.internalMax = leafMax, internalMax
	return tr
}

// liveRoot is a root to account for in a reference check.
type liveRoot struct {
	tree *Tree
	root uint64
	tt   testType
}

// checkRefs counts, with CountRefs, every node reachable from the roots
// (each node's pointers counted once, however many trees share it), one
// reference per root and per value held in a distinct leaf, and compares
// the result with every count in the space map. The walk also checks the
// node rules.
func (e *env) checkRefs(roots ...liveRoot) {
	e.tb.Helper()
	refs := NewRefs()
	refs.Inc(0) // the superblock
	for _, r := range roots {
		var leaf func(uint64, []byte) error
		if r.tt.ref {
			leaf = func(_ uint64, v []byte) error { refs.Inc(r.tt.refOf(v)); return nil }
		}
		if err := r.tree.CountRefs(r.root, refs, leaf); err != nil {
			e.tb.Fatalf("walk of root %d: %v", r.root, err)
		}
	}
	want := refs.Counts()
	var bad []string
	for b := range keysOf(want, e.sm.counts) {
		if got := e.sm.counts[b]; got != want[b] {
			bad = append(bad, fmt.Sprintf("block %d: count %d, want %d", b, got, want[b]))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		e.tb.Fatalf("%d reference counts wrong:\n%v", len(bad), bad[:min(len(bad), 20)])
	}
}

func keysOf(ms ...map[uint64]uint32) map[uint64]struct{} {
	ks := map[uint64]struct{}{}
	for _, m := range ms {
		for k := range m {
			ks[k] = struct{}{}
		}
	}
	return ks
}

func isCorrupt(err error) bool { return errors.Is(err, block.ErrCorrupt) }
