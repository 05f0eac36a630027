package array

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/transaction"
)

// memStore is an in-memory metadata device.
type memStore struct{ b []byte }

func newMemStore(nrBlocks uint64) *memStore {
	return &memStore{b: make([]byte, nrBlocks*block.Size)}
}

func (m *memStore) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("memStore: read [%d, %d) out of range", off, off+int64(len(p)))
	}
	return copy(p, m.b[off:]), nil
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("memStore: write [%d, %d) out of range", off, off+int64(len(p)))
	}
	return copy(m.b[off:], p), nil
}

// memSpaceMap is a test-only space map: reference counts in a map, plus a
// copy of the counts at the last commit. Alloc hands out only blocks free in
// both, as the kernel's metadata space map does. Block 0 (the superblock) is
// reserved with a count of 1.
type memSpaceMap struct {
	nrBlocks  uint64
	counts    map[uint64]uint32
	committed map[uint64]uint32
	cursor    uint64
	allocs    int // number of Alloc calls, for tests that count shadows
}

func newMemSpaceMap(nrBlocks uint64) *memSpaceMap {
	sm := &memSpaceMap{nrBlocks: nrBlocks, counts: map[uint64]uint32{0: 1}, cursor: 1}
	sm.commit()
	return sm
}

func (sm *memSpaceMap) Alloc() (uint64, error) {
	for n := uint64(0); n < sm.nrBlocks; n++ {
		b := (sm.cursor + n) % sm.nrBlocks
		if sm.counts[b] == 0 && sm.committed[b] == 0 {
			sm.counts[b] = 1
			sm.cursor = b + 1
			sm.allocs++
			return b, nil
		}
	}
	return 0, block.ErrNoSpace
}

func (sm *memSpaceMap) Inc(b uint64) error {
	if b >= sm.nrBlocks {
		return fmt.Errorf("memSpaceMap: inc of block %d beyond %d", b, sm.nrBlocks)
	}
	sm.counts[b]++
	return nil
}

func (sm *memSpaceMap) Dec(b uint64) error {
	if sm.counts[b] == 0 {
		return fmt.Errorf("memSpaceMap: dec of free block %d", b)
	}
	sm.counts[b]--
	if sm.counts[b] == 0 {
		delete(sm.counts, b)
	}
	return nil
}

func (sm *memSpaceMap) Count(b uint64) (uint32, error) {
	if b >= sm.nrBlocks {
		return 0, fmt.Errorf("memSpaceMap: count of block %d beyond %d", b, sm.nrBlocks)
	}
	return sm.counts[b], nil
}

func (sm *memSpaceMap) commit() { sm.committed = maps.Clone(sm.counts) }

// env is a metadata device in memory with a transaction manager on it.
type env struct {
	t     testing.TB
	store *memStore
	bm    *block.Manager
	sm    *memSpaceMap
	tm    *transaction.Manager
}

func newEnv(t testing.TB, nrBlocks uint64) *env {
	store := newMemStore(nrBlocks)
	bm := block.NewManager(store, nrBlocks, 0)
	sm := newMemSpaceMap(nrBlocks)
	return &env{t: t, store: store, bm: bm, sm: sm, tm: transaction.New(bm, sm)}
}

// commit ends the transaction: every dirty block written and synced, the
// space map's committed state advanced.
func (e *env) commit() {
	e.t.Helper()
	if err := e.tm.Commit(); err != nil {
		e.t.Fatalf("commit: %v", err)
	}
	e.sm.commit()
}

// fresh returns a read-only transaction manager over a new block manager on
// the same bytes, so everything it reads comes from the store.
func (e *env) fresh() *transaction.Manager {
	return transaction.NewReadOnly(block.NewManager(e.store, e.bm.NrBlocks(), 0))
}

// arrayRoot is one live reference to an array: the checker counts a
// reference from outside to the root for each.
type arrayRoot struct {
	a    *Array
	root uint64
}

// checkRefs walks every btree node and array block reachable from roots,
// counting each pointer of each distinct block once (plus one per root and
// one for the reserved superblock), and compares the result with the space
// map: no leak, no double count, no missing count.
func (e *env) checkRefs(roots ...arrayRoot) {
	e.t.Helper()
	want := map[uint64]uint32{0: 1}
	seen := map[uint64]bool{}
	kinds := map[uint64]string{}
	for _, r := range roots {
		err := r.a.Walk(r.root, func(loc uint64, n *btree.Node, depth int) (bool, error) {
			want[loc]++
			if k, ok := kinds[loc]; ok && k != "node" {
				return false, fmt.Errorf("block %d is both a %s and a btree node", loc, k)
			}
			kinds[loc] = "node"
			if seen[loc] {
				return false, nil
			}
			seen[loc] = true
			return true, nil
		}, func(loc uint64, b *Block) error {
			want[loc]++
			if k, ok := kinds[loc]; ok && k != "array" {
				return fmt.Errorf("block %d is both a %s and an array block", loc, k)
			}
			kinds[loc] = "array"
			if b.ValueSize != uint32(r.a.valueSize) {
				return fmt.Errorf("array block %d: value size %d", loc, b.ValueSize)
			}
			return nil
		})
		if err != nil {
			e.t.Fatalf("walk of root %d: %v", r.root, err)
		}
	}
	var problems []string
	for _, b := range slices.Sorted(maps.Keys(want)) {
		if got := e.sm.counts[b]; got != want[b] {
			problems = append(problems, fmt.Sprintf("block %d (%s): space map %d, references %d", b, kinds[b], got, want[b]))
		}
	}
	for _, b := range slices.Sorted(maps.Keys(e.sm.counts)) {
		if _, ok := want[b]; !ok {
			problems = append(problems, fmt.Sprintf("block %d: leaked, count %d, not reachable", b, e.sm.counts[b]))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("... %d more", len(problems)-20))
		}
		e.t.Fatalf("reference counts wrong:\n%s", joinLines(problems))
	}
}

// checkBaseline checks that only the reserved superblock is allocated.
func (e *env) checkBaseline() {
	e.t.Helper()
	if len(e.sm.counts) != 1 || e.sm.counts[0] != 1 {
		keys := slices.Sorted(maps.Keys(e.sm.counts))
		if len(keys) > 20 {
			keys = keys[:20]
		}
		e.t.Fatalf("after deleting everything %d blocks are allocated (want only the superblock): %v", len(e.sm.counts), keys)
	}
}

func joinLines(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}

// readAll reads an array of length n through Iterate.
func readAll(t testing.TB, a *Array, root, n uint64) [][]byte {
	t.Helper()
	out := make([][]byte, 0, n)
	err := a.Iterate(root, n, func(i uint64, v []byte) error {
		if i != uint64(len(out)) {
			return fmt.Errorf("Iterate gave index %d, want %d", i, len(out))
		}
		out = append(out, append([]byte(nil), v...))
		return nil
	})
	if err != nil {
		t.Fatalf("Iterate(root %d, len %d): %v", root, n, err)
	}
	return out
}

type btreeNode = btree.Node

// diffModel compares an array or bitset read back with its model. Equal
// contents (nil and empty alike) give ""; otherwise the go-cmp diff of a
// window around the first difference, since diffing thousands of values
// with go-cmp is slow.
func diffModel[T any](want, got []T) string {
	if len(want) == 0 && len(got) == 0 || reflect.DeepEqual(want, got) {
		return ""
	}
	first := 0
	for first < min(len(want), len(got)) && reflect.DeepEqual(want[first], got[first]) {
		first++
	}
	lo := max(first-2, 0)
	w, g := want[lo:min(len(want), first+3)], got[lo:min(len(got), first+3)]
	return fmt.Sprintf("lengths %d and %d, first difference at index %d; from index %d:\n%s",
		len(want), len(got), first, lo, cmp.Diff(w, g))
}
