package spacemap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// sparseStore is an in-memory store that holds only the blocks written.
type sparseStore struct {
	mu     sync.Mutex
	blocks map[int64][]byte
}

func newSparse() *sparseStore { return &sparseStore{blocks: map[int64][]byte{}} }

func (s *sparseStore) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(p)
	if b, ok := s.blocks[off/block.Size]; ok {
		copy(p, b)
	}
	return len(p), nil
}

func (s *sparseStore) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocks[off/block.Size] = append([]byte(nil), p...)
	return len(p), nil
}

// harness keeps a space map, its root (as a superblock would) and a model.
type harness struct {
	t     *testing.T
	store *sparseStore
	nr    uint64
	tm    *transaction.Manager
	sm    *SpaceMap
	root  [RootSize]byte
	model map[uint64]uint32 // counts of the blocks the test owns
}

func newHarness(t *testing.T, nr uint64) *harness {
	h := &harness{t: t, store: newSparse(), nr: nr, model: map[uint64]uint32{}}
	h.tm = transaction.New(block.NewManager(h.store, nr, 64), nil)
	sm, err := Create(h.tm, nr)
	if err != nil {
		t.Fatal(err)
	}
	h.sm = sm
	h.commit()
	return h
}

// alloc allocates a block, checks it was free in the model, and owns it.
func (h *harness) alloc(op int, owned *[]uint64) uint64 {
	h.t.Helper()
	b, err := h.sm.Alloc()
	if err != nil {
		h.t.Fatalf("op %d: Alloc: %v", op, err)
	}
	if h.model[b] != 0 {
		h.t.Fatalf("op %d: Alloc returned block %d in use", op, b)
	}
	h.model[b] = 1
	*owned = append(*owned, b)
	return b
}

// fill allocates every free block and returns them, in allocation order,
// without recording them in the model.
func (h *harness) fill() []uint64 {
	h.t.Helper()
	var bs []uint64
	for {
		b, err := h.sm.Alloc()
		if errors.Is(err, block.ErrNoSpace) {
			return bs
		}
		if err != nil {
			h.t.Fatal(err)
		}
		bs = append(bs, b)
	}
}

// inc increments an owned block, in the space map and the model.
func (h *harness) inc(b uint64) {
	h.t.Helper()
	if err := h.sm.Inc(b); err != nil {
		h.t.Fatal(err)
	}
	h.model[b]++
}

// dec decrements owned block i, dropping it when its count reaches 0.
func (h *harness) dec(owned *[]uint64, i int) {
	h.t.Helper()
	b := (*owned)[i]
	if err := h.sm.Dec(b); err != nil {
		h.t.Fatal(err)
	}
	if h.model[b]--; h.model[b] == 0 {
		*owned = append((*owned)[:i], (*owned)[i+1:]...)
		delete(h.model, b)
	}
}

// commit runs the commit protocol: space map, transaction, root.
func (h *harness) commit() {
	h.t.Helper()
	if err := h.sm.Commit(); err != nil {
		h.t.Fatalf("Commit: %v", err)
	}
	if err := h.tm.Commit(); err != nil {
		h.t.Fatal(err)
	}
	h.sm.Root().Encode(h.root[:])
	h.sm.Committed()
}

// reopen reads the space map back from the bytes of the last commit.
func (h *harness) reopen() {
	h.t.Helper()
	h.tm = transaction.New(block.NewManager(h.store, h.nr, 64), nil)
	sm, err := Open(h.tm, h.root[:])
	if err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	h.sm = sm
}

// expected returns the counts a checker would find: the superblock, the
// space map's own blocks, and the test's blocks.
func (h *harness) expected() map[uint64]uint32 {
	h.t.Helper()
	exp := map[uint64]uint32{0: 1}
	for b, c := range h.model {
		if c > 0 {
			exp[b] = c
		}
	}
	if err := h.sm.Walk(func(loc uint64, kind string) error { exp[loc]++; return nil }); err != nil {
		h.t.Fatal(err)
	}
	return exp
}

func (h *harness) verify(when string) {
	h.t.Helper()
	if diff := cmp.Diff([]CountMismatch(nil), h.sm.Compare(h.expected())); diff != "" {
		h.t.Fatalf("%s: counts (-want +got):\n%s", when, diff)
	}
	n := uint64(0)
	for _, c := range h.expected() {
		if c > 0 {
			n++
		}
	}
	if h.sm.NrAllocated() != n {
		h.t.Fatalf("%s: nr_allocated %d, want %d", when, h.sm.NrAllocated(), n)
	}
	if !h.sm.Changed() && h.sm.Pinned() == 0 && h.sm.NrFree() != h.sm.NrBlocks()-n {
		h.t.Fatalf("%s: committed, nothing pinned: NrFree %d, want %d", when, h.sm.NrFree(), h.sm.NrBlocks()-n)
	}
}

func TestFormatLayout(t *testing.T) {
	h := newHarness(t, 1024)
	r := h.sm.Root()
	if r.IndexRoot != 1 || r.RefCountRoot != 2 || h.sm.index[0].Blocknr != 3 || r.NrAllocated != 4 {
		t.Fatalf("layout: %+v, bitmap at %d", r, h.sm.index[0].Blocknr)
	}
	h.reopen()
	h.verify("after format")
}

func TestAgainstModel(t *testing.T) {
	for _, nr := range []uint64{300, 40000} { // one bitmap; three bitmaps
		t.Run(fmt.Sprint(nr), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(nr, 1))
			h := newHarness(t, nr)
			var owned []uint64
			for op := range 6000 {
				switch r := rng.IntN(100); {
				case r < 40 && uint64(len(owned)) < nr/2:
					h.alloc(op, &owned)
				case r < 65 && len(owned) > 0:
					h.inc(owned[rng.IntN(len(owned))])
				case r < 90 && len(owned) > 0:
					h.dec(&owned, rng.IntN(len(owned)))
				case r < 97:
					h.commit()
					h.verify(fmt.Sprintf("op %d after commit", op))
				default:
					h.commit()
					h.reopen()
					h.verify(fmt.Sprintf("op %d after reopen", op))
				}
				for b, c := range h.model {
					if got, _ := h.sm.Count(b); got != c {
						t.Fatalf("op %d: count(%d) = %d, model %d", op, b, got, c)
					}
					break
				}
			}
			h.commit()
			h.reopen()
			h.verify("end")
		})
	}
}

// TestOverflowCounts drives counts past 2 so they live in the overflow
// btree, across commits and reopen, and back down.
func TestOverflowCounts(t *testing.T) {
	h := newHarness(t, 2000)
	var bs []uint64
	for range 400 { // more than one overflow leaf (336 entries)
		b, err := h.sm.Alloc()
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
		h.model[b] = 1
	}
	for round := range 3 {
		for i, b := range bs {
			n := uint32(i%7 + round)
			for range n {
				if err := h.sm.Inc(b); err != nil {
					t.Fatal(err)
				}
			}
			h.model[b] += n
		}
		h.commit()
		h.reopen()
		h.verify(fmt.Sprint("round ", round))
		if len(h.sm.over) == 0 {
			t.Fatal("no overflow counts")
		}
	}
	for _, b := range bs {
		for h.model[b] > 0 {
			if err := h.sm.Dec(b); err != nil {
				t.Fatal(err)
			}
			h.model[b]--
		}
		delete(h.model, b)
	}
	h.commit()
	h.reopen()
	h.verify("all freed")
	if len(h.sm.over) != 0 {
		t.Fatalf("overflow entries left: %v", h.sm.over)
	}
}

// TestFreedNotReusedBeforeCommit: a block freed in a transaction stays
// allocated-in-the-committed-state, so Alloc must skip it until the commit.
func TestFreedNotReusedBeforeCommit(t *testing.T) {
	h := newHarness(t, 64)
	bs := h.fill()
	h.sm.Committed() // as if committed: bs[0] is in use in the committed state
	if err := h.sm.Dec(bs[0]); err != nil {
		t.Fatal(err)
	}
	if b, err := h.sm.Alloc(); !errors.Is(err, block.ErrNoSpace) {
		t.Fatalf("Alloc reused block %d freed in this transaction (err %v)", b, err)
	}
	h.sm.Committed() // as after a commit with nothing else to write
	if b, err := h.sm.Alloc(); err != nil || b != bs[0] {
		t.Fatalf("Alloc after commit = %d, %v; want %d", b, err, bs[0])
	}
}

// TestPinsHoldOnlyTheirStates: a pin keeps the blocks in use in its commit
// from reuse, pins of one commit share a state, and a state is let go with
// its last pin, even while readers overlap without end (each pins before
// the one before it lets go): a block freed since is then reused.
func TestPinsHoldOnlyTheirStates(t *testing.T) {
	h := newHarness(t, 64)
	free := h.sm.NrFree()
	bs := h.fill()
	if free != uint64(len(bs)) || h.sm.NrFree() != 0 {
		t.Fatalf("NrFree said %d; Alloc handed out %d, then NrFree said %d", free, len(bs), h.sm.NrFree())
	}
	h.sm.Committed() // as if committed: every block in use
	p := h.sm.Pin()
	q := h.sm.Pin()
	if n := h.sm.Pinned(); n != 1 {
		t.Fatalf("two pins of one commit hold %d states", n)
	}
	h.sm.Unpin(q)
	h.sm.Unpin(q) // a second release does nothing
	for round, b := range bs {
		if err := h.sm.Dec(b); err != nil {
			t.Fatal(err)
		}
		h.sm.Committed()
		if got, err := h.sm.Alloc(); !errors.Is(err, block.ErrNoSpace) || h.sm.NrFree() != 0 {
			t.Fatalf("round %d: Alloc handed out block %d while a pin holds it (err %v, NrFree %d)", round, got, err, h.sm.NrFree())
		}
		next := h.sm.Pin()
		h.sm.Unpin(p)
		p = next
		if n := h.sm.NrFree(); n != 1 {
			t.Fatalf("round %d: NrFree = %d once the pin let go, want 1", round, n)
		}
		if n := h.sm.Pinned(); n != 1 {
			t.Fatalf("round %d: %d states held by one pin", round, n)
		}
		if got, err := h.sm.Alloc(); err != nil || got != b {
			t.Fatalf("round %d: Alloc = %d, %v; want block %d, freed and held by no pin", round, got, err, b)
		}
	}
	h.sm.Unpin(p)
	if n := h.sm.Pinned(); n != 0 {
		t.Fatalf("%d states held with no pin", n)
	}
}

func TestEntryBitOrder(t *testing.T) {
	// format.md §3.3: blocks 0..8 with count 1 are the word 0x2aaaa.
	var w uint64
	for j := range uint(9) {
		w = withEntry(w, j, 1)
	}
	if w != 0x2aaaa {
		t.Fatalf("word %#x, want 0x2aaaa", w)
	}
	for v := range uint32(4) {
		if got := entry(withEntry(0, 5, v), 5); got != v {
			t.Fatalf("entry round trip %d -> %d", v, got)
		}
	}
}

func TestOpenRejectsBadRoots(t *testing.T) {
	h := newHarness(t, 100)
	for name, mutate := range map[string]func(r *Root){
		"zero blocks":      func(r *Root) { r.NrBlocks = 0 },
		"too many blocks":  func(r *Root) { r.NrBlocks = MaxBlocks + 1 },
		"past the device":  func(r *Root) { r.NrBlocks = 101 },
		"index past end":   func(r *Root) { r.IndexRoot = 100 },
		"index is sb":      func(r *Root) { r.IndexRoot = 0 },
		"overflow missing": func(r *Root) { r.RefCountRoot = 0 },
		"index not index":  func(r *Root) { r.IndexRoot = r.RefCountRoot },
	} {
		r, _ := DecodeRoot(h.root[:])
		mutate(&r)
		var buf [RootSize]byte
		r.Encode(buf[:])
		tm := transaction.New(block.NewManager(h.store, 100, 0), nil)
		if _, err := Open(tm, buf[:]); !errors.Is(err, block.ErrCorrupt) {
			t.Errorf("%s: Open = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzOpen opens a space map whose index or bitmap block holds fuzzed
// bytes (with a valid checksum, so the structure checks are reached).
func FuzzOpen(f *testing.F) {
	f.Add(uint8(0), []byte{1, 2, 3})
	f.Add(uint8(1), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		store := newSparse()
		tm := transaction.New(block.NewManager(store, 200, 0), nil)
		sm, err := Create(tm, 200)
		if err != nil {
			t.Fatal(err)
		}
		if err := sm.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := tm.Commit(); err != nil {
			t.Fatal(err)
		}
		var root [RootSize]byte
		sm.Root().Encode(root[:])
		loc, kind := sm.indexLoc, block.Index
		if which%2 == 1 {
			loc, kind = sm.index[0].Blocknr, block.Bitmap
		}
		buf := make([]byte, block.Size)
		copy(buf[16:], data)
		binary.LittleEndian.PutUint64(buf[8:], loc)
		kind.Prepare(buf, loc)
		store.WriteAt(buf, int64(loc)*block.Size)
		tm = transaction.New(block.NewManager(store, 200, 0), nil)
		if sm, err := Open(tm, root[:]); err == nil {
			if _, err := sm.Alloc(); err != nil && !errors.Is(err, block.ErrNoSpace) {
				t.Fatalf("Alloc on an opened map: %v", err)
			}
		} else if !errors.Is(err, block.ErrCorrupt) {
			t.Fatalf("Open error does not wrap ErrCorrupt: %v", err)
		}
	})
}

func FuzzDecodeRoot(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRoot(data)
		if err != nil {
			return
		}
		var buf [RootSize]byte
		r.Encode(buf[:])
		if r2, _ := DecodeRoot(buf[:]); r2 != r {
			t.Fatalf("round trip %+v -> %+v", r, r2)
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(make([]byte, block.Size))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := DecodeIndex(data)
		if err == nil && len(entries) != MaxBitmaps {
			t.Fatalf("%d entries", len(entries))
		}
	})
}
