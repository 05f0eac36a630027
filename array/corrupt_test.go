package array

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
)

// corruptFixture is a committed 4-block array of 4-byte values (3 full
// blocks and a tail of 5), value i = i.
type corruptFixture struct {
	e    *env
	a    *Array
	root uint64
	locs []uint64 // array block locations by index
}

const fixtureLen = 3*1018 + 5

func newCorruptFixture(t *testing.T) *corruptFixture {
	t.Helper()
	e := newEnv(t, 256)
	a := New(e.tm, 4)
	root, err := a.Empty()
	if err != nil {
		t.Fatal(err)
	}
	if root, err = a.Resize(root, 0, fixtureLen, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if root, err = a.Update(root, 0, fixtureLen, func(i uint64, v []byte) bool {
		binary.LittleEndian.PutUint32(v, uint32(i))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	e.commit()
	f := &corruptFixture{e: e, a: a, root: root}
	for bi := range uint64(4) {
		loc, err := a.lookupLoc(root, bi)
		if err != nil {
			t.Fatal(err)
		}
		f.locs = append(f.locs, loc)
	}
	return f
}

// editBlock shadows array block bi and lets edit change its raw bytes.
func (f *corruptFixture) editBlock(t *testing.T, bi uint64, edit func(data []byte)) {
	t.Helper()
	root, buf, err := f.a.shadowBlock(f.root, bi, f.locs[bi])
	if err != nil {
		t.Fatal(err)
	}
	edit(buf)
	f.root = root
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, block.ErrCorrupt) {
		t.Errorf("%s: err %v, want ErrCorrupt", what, err)
	}
	if errors.Is(err, ErrOutOfRange) {
		t.Errorf("%s: corruption reported as out of range: %v", what, err)
	}
}

func (f *corruptFixture) iterate() error {
	return f.a.Iterate(f.root, fixtureLen, func(uint64, []byte) error { return nil })
}

func TestIterateCorrupt(t *testing.T) {
	t.Run("intact", func(t *testing.T) {
		f := newCorruptFixture(t)
		if err := f.iterate(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.a.Get(f.root, fixtureLen); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Get past the end: %v", err)
		}
	})
	t.Run("missing key", func(t *testing.T) {
		f := newCorruptFixture(t)
		root, found, err := f.a.tree.Remove(f.root, 1)
		if err != nil || !found {
			t.Fatal(found, err)
		}
		f.root = root
		wantCorrupt(t, "Iterate", f.iterate())
		_, err = f.a.Get(f.root, 1018+7)
		wantCorrupt(t, "Get in the missing block", err)
		_, err = f.a.Set(f.root, 1018+7, make([]byte, 4))
		wantCorrupt(t, "Set in the missing block", err)
		_, err = f.a.Update(f.root, 0, fixtureLen, func(uint64, []byte) bool { return false })
		wantCorrupt(t, "Update across the missing block", err)
	})
	t.Run("missing last key", func(t *testing.T) {
		f := newCorruptFixture(t)
		root, _, err := f.a.tree.Remove(f.root, 3)
		if err != nil {
			t.Fatal(err)
		}
		f.root = root
		wantCorrupt(t, "Iterate", f.iterate())
	})
	t.Run("extra key", func(t *testing.T) {
		f := newCorruptFixture(t)
		err := f.a.Iterate(f.root, 2*1018, func(uint64, []byte) error { return nil })
		wantCorrupt(t, "Iterate with a shorter length", err)
		_, err = f.a.Resize(f.root, 2*1018, 2*1018+10, make([]byte, 4))
		wantCorrupt(t, "Resize from a wrong old length", err)
	})
	t.Run("short middle block", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.editBlock(t, 1, func(data []byte) { setNrEntries(data, 1000) })
		wantCorrupt(t, "Iterate", f.iterate())
		_, err := f.a.Get(f.root, 1018+1005)
		wantCorrupt(t, "Get past the short block's entries", err)
		_, err = f.a.Update(f.root, 1018, 1018+1010, func(uint64, []byte) bool { return true })
		wantCorrupt(t, "Update past the short block's entries", err)
		if v, err := f.a.Get(f.root, 1018+999); err != nil || binary.LittleEndian.Uint32(v) != 1018+999 {
			t.Errorf("Get inside the short block: %x, %v", v, err)
		}
	})
	t.Run("wrong value size", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.editBlock(t, 2, func(data []byte) { binary.LittleEndian.PutUint32(data[offValueSize:], 8) })
		wantCorrupt(t, "Iterate", f.iterate())
		_, err := f.a.Get(f.root, 2*1018)
		wantCorrupt(t, "Get", err)
	})
	t.Run("wrong max entries", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.editBlock(t, 0, func(data []byte) { binary.LittleEndian.PutUint32(data[offMaxEntries:], 1017) })
		wantCorrupt(t, "Iterate", f.iterate())
	})
	t.Run("too many entries in the tail", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.editBlock(t, 3, func(data []byte) { setNrEntries(data, 6) })
		wantCorrupt(t, "Iterate", f.iterate())
		_, err := f.a.Resize(f.root, fixtureLen, fixtureLen+1, make([]byte, 4))
		wantCorrupt(t, "Resize of a tail holding more than the length says", err)
	})
	t.Run("nr_entries above max_entries", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.editBlock(t, 3, func(data []byte) { setNrEntries(data, 1019) })
		wantCorrupt(t, "Iterate", f.iterate())
		_, err := f.a.Get(f.root, 3*1018)
		wantCorrupt(t, "Get", err)
	})
	t.Run("length too long", func(t *testing.T) {
		f := newCorruptFixture(t)
		for _, n := range []uint64{fixtureLen + 1, fixtureLen + 1018, 10 * 1018} {
			err := f.a.Iterate(f.root, n, func(uint64, []byte) error { return nil })
			wantCorrupt(t, "Iterate with a longer length", err)
		}
		_, err := f.a.Resize(f.root, fixtureLen+2000, fixtureLen+1, make([]byte, 4))
		wantCorrupt(t, "shrink from a wrong old length", err)
	})
	t.Run("bad checksum on disk", func(t *testing.T) {
		f := newCorruptFixture(t)
		f.e.store.b[f.locs[2]*block.Size+100] ^= 1
		a := New(f.e.fresh(), 4)
		wantCorrupt(t, "Iterate", a.Iterate(f.root, fixtureLen, func(uint64, []byte) error { return nil }))
		_, err := a.Get(f.root, 2*1018+3)
		wantCorrupt(t, "Get", err)
	})
	t.Run("btree points at a btree node", func(t *testing.T) {
		f := newCorruptFixture(t)
		// Make key 1 point at the btree root itself: a block of another kind.
		if err := f.e.tm.Inc(f.root); err != nil {
			t.Fatal(err)
		}
		root, err := f.a.tree.Insert(f.root, 1, le64(f.root))
		if err != nil {
			t.Fatal(err)
		}
		f.root = root
		wantCorrupt(t, "Iterate", f.iterate())
	})
	t.Run("fn error and Stop", func(t *testing.T) {
		f := newCorruptFixture(t)
		boom := errors.New("boom")
		n := 0
		err := f.a.Iterate(f.root, fixtureLen, func(i uint64, v []byte) error {
			n++
			if i == 1500 {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) || n != 1501 {
			t.Errorf("Iterate returned %v after %d values, want boom after 1501", err, n)
		}
		var last []byte
		err = f.a.Iterate(f.root, fixtureLen, func(i uint64, v []byte) error {
			last = bytes.Clone(v)
			if i == 2036 {
				return btree.Stop
			}
			return nil
		})
		if err != nil || binary.LittleEndian.Uint32(last) != 2036 {
			t.Errorf("Iterate with Stop: %v, last %x", err, last)
		}
	})
}
