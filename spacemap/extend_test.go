package spacemap

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/transaction"
)

// newGrowHarness formats a space map of nr blocks on a store of dev blocks,
// leaving room to extend it.
func newGrowHarness(t *testing.T, dev, nr uint64) *harness {
	t.Helper()
	h := &harness{t: t, store: newSparse(), nr: dev, model: map[uint64]uint32{}}
	h.tm = transaction.New(block.NewManager(h.store, dev, 64), nil)
	sm, err := Create(h.tm, nr)
	if err != nil {
		t.Fatal(err)
	}
	if sm.NrBlocks() != nr {
		t.Fatalf("Create(%d) on %d blocks manages %d", nr, dev, sm.NrBlocks())
	}
	h.sm = sm
	h.commit()
	return h
}

// extend calls Extend and checks what the kernel's extension does: the new
// size (capped), one index entry per bitmap, and the new bitmaps at the
// first blocks of the new range, one after the other, each counted once.
func (h *harness) extend(to uint64) {
	h.t.Helper()
	old, oldBitmaps := h.sm.NrBlocks(), len(h.sm.index)
	if err := h.sm.Extend(to); err != nil {
		h.t.Fatalf("Extend(%d) from %d: %v", to, old, err)
	}
	want := max(old, min(to, h.nr, MaxBlocks))
	if got := h.sm.NrBlocks(); got != want {
		h.t.Fatalf("Extend(%d) from %d on %d blocks: nr_blocks %d, want %d", to, old, h.nr, got, want)
	}
	if got := h.sm.Root().NrBlocks; got != want {
		h.t.Fatalf("Extend(%d): root nr_blocks %d, want %d", to, got, want)
	}
	if len(h.sm.index) != NrBitmaps(want) {
		h.t.Fatalf("Extend(%d): %d index entries, want %d", to, len(h.sm.index), NrBitmaps(want))
	}
	for i := oldBitmaps; i < len(h.sm.index); i++ {
		loc := h.sm.index[i].Blocknr
		if wantLoc := old + uint64(i-oldBitmaps); loc != wantLoc {
			h.t.Fatalf("Extend(%d) from %d: bitmap %d at %d, want %d", to, old, i, loc, wantLoc)
		}
		if c, err := h.sm.Count(loc); err != nil || c != 1 {
			h.t.Fatalf("Extend(%d): bitmap %d at %d has count %d (%v), want 1", to, i, loc, c, err)
		}
	}
}

// counts returns every count of the space map.
func (h *harness) counts() []uint32 {
	h.t.Helper()
	out := make([]uint32, h.sm.NrBlocks())
	for b := range out {
		c, err := h.sm.Count(uint64(b))
		if err != nil {
			h.t.Fatal(err)
		}
		out[b] = c
	}
	return out
}

// checkDisk reads the committed index from the store and checks it: one
// entry per bitmap, each bitmap's hints as the tools compute them, nothing
// beyond.
func (h *harness) checkDisk(when string) {
	h.t.Helper()
	r, err := DecodeRoot(h.root[:])
	if err != nil {
		h.t.Fatal(err)
	}
	tm := transaction.New(block.NewManager(h.store, h.nr, 0), nil)
	sm, err := Open(tm, h.root[:])
	if err != nil {
		h.t.Fatalf("%s: Open: %v", when, err)
	}
	data, err := tm.Read(r.IndexRoot, block.Index)
	if err != nil {
		h.t.Fatalf("%s: index: %v", when, err)
	}
	entries, err := DecodeIndex(data)
	if err != nil {
		h.t.Fatal(err)
	}
	n := NrBitmaps(r.NrBlocks)
	for i, e := range entries {
		if i >= n {
			if e != (IndexEntry{}) {
				h.t.Fatalf("%s: index entry %d set beyond the %d bitmaps: %+v", when, i, n, e)
			}
			continue
		}
		nrFree, first := naiveFreeHints(sm, i)
		if e.NrFree != nrFree || e.NoneFreeBefore != first {
			h.t.Fatalf("%s: index entry %d hints (%d, %d), bitmap says (%d, %d)", when, i, e.NrFree, e.NoneFreeBefore, nrFree, first)
		}
	}
}

// TestExtendAgainstModel runs random allocations, increments, decrements,
// commits and reopens against a count model, and extends the space map at
// random points: by one block, to a bitmap boundary, one short of it and
// one past it, by up to most of a bitmap, and past the end of the store
// (capped). Allocation must reach the new blocks.
func TestExtendAgainstModel(t *testing.T) {
	const dev = 3*EntriesPerBitmap + 700
	for _, start := range []uint64{16, 300, EntriesPerBitmap - 1, EntriesPerBitmap} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(start, 7))
			h := newGrowHarness(t, dev, start)
			var owned []uint64
			extends, crossed, byOne := 0, 0, 0
			beyondStart := false
			for op := range 4000 {
				nr := h.sm.NrBlocks()
				switch r := rng.IntN(100); {
				case r < 5 && nr < dev:
					boundary := (nr/EntriesPerBitmap + 1) * EntriesPerBitmap
					var to uint64
					switch k := rng.IntN(10); {
					case k < 3:
						to = nr + 1
					case k < 5 && boundary-nr <= 1000:
						to = boundary - 1 + uint64(rng.IntN(3)) // one short, on it, one past
					case k < 5:
						to = boundary - 1000 + uint64(rng.IntN(500)) // approach it
					case k == 5 && op > 3000:
						to = dev + uint64(rng.IntN(100)) // capped at the store
					default:
						to = nr + uint64(rng.IntN(300)) // may be no larger: a no-op
					}
					before := h.counts()
					h.extend(to)
					if got := h.sm.NrBlocks(); got > nr {
						extends++
						if got == nr+1 {
							byOne++
						}
					}
					if len(h.sm.index) > NrBitmaps(nr) {
						crossed++
					}
					after := h.counts()
					for b, c := range before {
						if after[b] != c {
							t.Fatalf("op %d: Extend(%d) changed count(%d) from %d to %d", op, to, b, c, after[b])
						}
					}
					newBitmaps := uint64(len(h.sm.index) - NrBitmaps(nr))
					for b := len(before); b < len(after); b++ {
						want := uint32(0)
						if uint64(b) < nr+newBitmaps {
							want = 1 // a new bitmap
						}
						if after[b] != want {
							t.Fatalf("op %d: Extend(%d): new block %d has count %d, want %d", op, to, b, after[b], want)
						}
					}
					h.verify(fmt.Sprintf("op %d after Extend(%d) from %d", op, to, nr))
				case r < 40 && uint64(len(owned)) < nr/3:
					if h.alloc(op, &owned) >= start {
						beyondStart = true
					}
				case r < 60 && len(owned) > 0:
					h.inc(owned[rng.IntN(len(owned))])
				case r < 85 && len(owned) > 0:
					h.dec(&owned, rng.IntN(len(owned)))
				case r < 96:
					h.commit()
					h.verify(fmt.Sprintf("op %d after commit", op))
				default:
					h.commit()
					before := h.counts()
					h.checkDisk(fmt.Sprintf("op %d", op))
					h.reopen()
					if after := h.counts(); len(after) != len(before) {
						t.Fatalf("op %d: reopen manages %d blocks, committed %d", op, len(after), len(before))
					} else {
						for b := range before {
							if before[b] != after[b] {
								t.Fatalf("op %d: after reopen count(%d) = %d, committed %d", op, b, after[b], before[b])
							}
						}
					}
					h.verify(fmt.Sprintf("op %d after reopen", op))
				}
			}
			h.commit()
			h.checkDisk("end")
			h.reopen()
			h.verify("end")
			t.Logf("%d extends (%d by one block, %d crossing a bitmap boundary), %d -> %d blocks", extends, byOne, crossed, start, h.sm.NrBlocks())
			if extends < 10 || byOne == 0 || crossed == 0 || h.sm.NrBlocks() != dev || (start < 1000 && !beyondStart) {
				t.Fatalf("weak run: %d extends (%d by one block, %d crossing a bitmap boundary), %d -> %d blocks, allocation beyond the start %v",
					extends, byOne, crossed, start, h.sm.NrBlocks(), beyondStart)
			}
		})
	}
}

// TestExtendLayout pins the layout of an extension, case by case.
func TestExtendLayout(t *testing.T) {
	t.Run("two new bitmaps from a partial one", func(t *testing.T) {
		h := newGrowHarness(t, 40000, 100)
		h.extend(40000) // bitmaps 1 and 2 go at blocks 100 and 101
		h.commit()
		h.checkDisk("committed")
		h.reopen()
		h.verify("reopened")
		if h.sm.index[1].Blocknr != 100 || h.sm.index[2].Blocknr != 101 {
			t.Fatalf("new bitmaps at %d and %d, want 100 and 101", h.sm.index[1].Blocknr, h.sm.index[2].Blocknr)
		}
		// Every free block, old range and new, is allocatable.
		free := 40000 - h.sm.NrAllocated()
		seen := map[uint64]bool{}
		for _, b := range h.fill() {
			seen[b] = true
		}
		if uint64(len(seen)) != free || !seen[39999] || !seen[EntriesPerBitmap] || !seen[102] {
			t.Fatalf("allocated %d blocks of %d free (last block %v, first of bitmap 1 %v)", len(seen), free, seen[39999], seen[EntriesPerBitmap])
		}
	})
	t.Run("from a bitmap boundary", func(t *testing.T) {
		h := newGrowHarness(t, EntriesPerBitmap+1, EntriesPerBitmap)
		h.extend(EntriesPerBitmap + 1) // the new bitmap counts itself
		h.commit()
		h.checkDisk("committed")
		h.reopen()
		h.verify("reopened")
		if e := h.sm.index[1]; e.Blocknr != EntriesPerBitmap || e.NrFree != 0 || e.NoneFreeBefore != 1 {
			t.Fatalf("index entry 1: %+v", e)
		}
	})
	t.Run("by one block in a bitmap", func(t *testing.T) {
		h := newGrowHarness(t, 301, 300)
		free := h.sm.index[0].NrFree
		h.extend(301)
		h.commit()
		h.checkDisk("committed")
		h.reopen()
		h.verify("reopened")
		if len(h.sm.index) != 1 || h.sm.index[0].NrFree != free+1 {
			t.Fatalf("%d bitmaps, nr_free %d -> %d, want 1 bitmap and %d", len(h.sm.index), free, h.sm.index[0].NrFree, free+1)
		}
	})
}

// TestExtendCaps: nrBlocks is capped at the store and at MaxBlocks, and
// asking for no more blocks changes nothing.
func TestExtendCaps(t *testing.T) {
	h := newGrowHarness(t, MaxBlocks+100, 1000)
	h.extend(MaxBlocks + 50)
	if h.sm.NrBlocks() != MaxBlocks || len(h.sm.index) != MaxBitmaps {
		t.Fatalf("%d blocks, %d bitmaps", h.sm.NrBlocks(), len(h.sm.index))
	}
	h.commit()
	h.checkDisk("at MaxBlocks")
	h.reopen()
	h.verify("at MaxBlocks")

	h = newGrowHarness(t, 5000, 1000)
	h.extend(9000)
	if h.sm.NrBlocks() != 5000 {
		t.Fatalf("nr_blocks %d past the store's 5000", h.sm.NrBlocks())
	}
	h.commit()
	root := h.sm.Root()
	writes := h.tm.Blocks().Stats().Writes
	for _, n := range []uint64{0, 4000, 5000, 6000} {
		if err := h.sm.Extend(n); err != nil {
			t.Fatalf("Extend(%d): %v", n, err)
		}
	}
	h.commit()
	if h.sm.Root() != root || h.tm.Blocks().Stats().Writes != writes {
		t.Fatalf("no-op extends changed the space map: root %+v -> %+v, %d blocks written",
			root, h.sm.Root(), h.tm.Blocks().Stats().Writes-writes)
	}
}

// TestExtendFullStore: a full store grown by one block cannot commit (the
// last bitmap and the index both move), and the error says so; grown by
// two it can.
func TestExtendFullStore(t *testing.T) {
	for _, grow := range []uint64{1, 2} {
		h := newGrowHarness(t, 200, 100)
		for _, b := range h.fill() {
			h.model[b] = 1
		}
		h.extend(100 + grow)
		err := h.sm.Commit()
		if grow == 1 {
			if !errors.Is(err, block.ErrNoSpace) {
				t.Fatalf("grown by 1: Commit = %v, want ErrNoSpace", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("grown by %d: Commit: %v", grow, err)
		}
		if err := h.tm.Commit(); err != nil {
			t.Fatal(err)
		}
		h.sm.Root().Encode(h.root[:])
		h.sm.Committed()
		h.checkDisk("grown")
		h.reopen()
		h.verify("grown")
	}
}
