package transaction_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

type mem struct{ data []byte }

func (m *mem) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.data[off:]), nil }
func (m *mem) WriteAt(p []byte, off int64) (int, error) { return copy(m.data[off:], p), nil }

func setup(t *testing.T) (*transaction.Manager, *spacemap.SpaceMap) {
	t.Helper()
	tm := transaction.New(block.NewManager(&mem{make([]byte, 128*block.Size)}, 128, 16), nil)
	sm, err := spacemap.Create(tm, 128)
	if err != nil {
		t.Fatal(err)
	}
	return tm, sm
}

func commit(t *testing.T, tm *transaction.Manager, sm *spacemap.SpaceMap) {
	t.Helper()
	if err := sm.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tm.Commit(); err != nil {
		t.Fatal(err)
	}
	sm.Committed()
}

// TestShadowRules checks format.md §7.1: in place only when created or
// shadowed in this transaction with count 1; otherwise a copy, the old
// block decremented, and "shared" reported when its count was above 1.
func TestShadowRules(t *testing.T) {
	tm, sm := setup(t)
	loc, buf, err := tm.New(block.Node)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf[64:], "first")
	if got, _, shared, err := tm.Shadow(loc, block.Node); err != nil || got != loc || shared {
		t.Fatalf("shadow of a new block: %d %v %v, want in place", got, shared, err)
	}
	commit(t, tm, sm)

	moved, buf2, shared, err := tm.Shadow(loc, block.Node)
	if err != nil || moved == loc || shared {
		t.Fatalf("shadow after commit: %d %v %v, want a private copy", moved, shared, err)
	}
	if !bytes.Equal(buf2[64:69], []byte("first")) {
		t.Fatal("copy lost the content")
	}
	if c, _ := sm.Count(loc); c != 0 {
		t.Fatalf("old block count %d, want 0", c)
	}
	if again, _, _, _ := tm.Shadow(moved, block.Node); again != moved {
		t.Fatal("second shadow in one transaction moved the block again")
	}
	// The freed block is not reused before the commit.
	for {
		b, err := sm.Alloc()
		if errors.Is(err, block.ErrNoSpace) {
			break
		}
		if err != nil || b == loc {
			t.Fatalf("Alloc = %d, %v: reused a block freed in this transaction", b, err)
		}
	}
	tm.Abort()
}

func TestShadowShared(t *testing.T) {
	tm, sm := setup(t)
	loc, _, err := tm.New(block.Node)
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Inc(loc); err != nil { // a second owner, as a snapshot
		t.Fatal(err)
	}
	if moved, _, shared, err := tm.Shadow(loc, block.Node); err != nil || moved == loc || !shared {
		t.Fatalf("shadow of a shared block: %d %v %v", moved, shared, err)
	}
	if c, _ := sm.Count(loc); c != 1 {
		t.Fatalf("shared block count %d after shadow, want 1", c)
	}
}

func TestReadOnly(t *testing.T) {
	tm := transaction.NewReadOnly(block.NewManager(&mem{make([]byte, 8*block.Size)}, 8, 0))
	if _, _, err := tm.New(block.Node); !errors.Is(err, transaction.ErrReadOnly) {
		t.Fatalf("New: %v", err)
	}
	if _, _, _, err := tm.Shadow(1, block.Node); !errors.Is(err, transaction.ErrReadOnly) {
		t.Fatalf("Shadow: %v", err)
	}
	if err := tm.Commit(); !errors.Is(err, transaction.ErrReadOnly) {
		t.Fatalf("Commit: %v", err)
	}
}

func TestShadowOfFreeBlockIsCorrupt(t *testing.T) {
	tm, _ := setup(t)
	if _, _, _, err := tm.Shadow(100, block.Node); !errors.Is(err, block.ErrCorrupt) {
		t.Fatalf("shadow of a free block: %v", err)
	}
}
