package block

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type memStore struct {
	data  []byte
	syncs int
}

func (m *memStore) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.data)) {
		return 0, fmt.Errorf("past end")
	}
	return copy(p, m.data[off:]), nil
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.data[off:], p), nil
}

func (m *memStore) Sync() error { m.syncs++; return nil }

// TestGoldenChecksums identifies and validates every block of images that
// era_restore 0.9.0 and the Linux kernel wrote.
func TestGoldenChecksums(t *testing.T) {
	images, _ := filepath.Glob("../testdata/golden/*.bin")
	if len(images) < 5 {
		t.Fatalf("only %d golden images", len(images))
	}
	for _, img := range images {
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		for loc := 0; loc+Size <= len(data); loc += Size {
			blk := data[loc : loc+Size]
			if bytes.Count(blk, []byte{0}) == Size {
				continue
			}
			k := Identify(blk)
			if k == nil {
				// Freed blocks keep stale bytes of any kind; only a block
				// that looks like no kind at all is unexpected.
				t.Errorf("%s: block %d matches no kind", img, loc/Size)
				continue
			}
			kinds[k.Name]++
			if err := k.Validate(blk, uint64(loc/Size)); err != nil && k != Superblock {
				t.Errorf("%s: %v", img, err)
			}
		}
		if kinds[Superblock.Name] == 0 || kinds[Node.Name] == 0 || kinds[Array.Name] == 0 || kinds[Bitmap.Name] == 0 || kinds[Index.Name] == 0 {
			t.Errorf("%s: kinds found %v", img, kinds)
		}
	}
}

func TestPrepareValidateRoundTrip(t *testing.T) {
	for _, k := range Kinds {
		data := make([]byte, Size)
		copy(data[40:], "some content")
		k.Prepare(data, 77)
		if err := k.Validate(data, 77); err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
		if err := k.Validate(data, 78); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block 78") {
			t.Fatalf("%s at wrong location: %v", k.Name, err)
		}
		data[4000] ^= 1
		err := k.Validate(data, 77)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), k.Name) {
			t.Fatalf("%s with a flipped bit: %v", k.Name, err)
		}
	}
}

// TestKnownChecksum checks the CRC against format.md §3.3: bitmap block 3
// of m.bin stores 0xc6e33548.
func TestKnownChecksum(t *testing.T) {
	data, err := os.ReadFile("../testdata/golden/m.bin")
	if err != nil {
		t.Fatal(err)
	}
	blk := data[3*Size : 4*Size]
	if got := Bitmap.Checksum(blk); got != 0xc6e33548 {
		t.Fatalf("checksum %#x, want 0xc6e33548", got)
	}
}

func TestManagerCacheAndErrors(t *testing.T) {
	store := &memStore{data: make([]byte, 64*Size)}
	m := NewManager(store, 64, 8)
	for loc := uint64(1); loc < 64; loc++ {
		data := make([]byte, Size)
		data[100] = byte(loc)
		if err := m.Write(loc, Node, data); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.lru.Len(); n > 8 {
		t.Fatalf("cache holds %d blocks, bound 8", n)
	}
	m.Forget()
	for loc := uint64(1); loc < 64; loc++ {
		data, err := m.Read(loc, Node)
		if err != nil || data[100] != byte(loc) {
			t.Fatalf("read %d: %v", loc, err)
		}
	}
	if _, err := m.Read(5, Array); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a node as an array block: %v", err)
	}
	if _, err := m.Read(64, Node); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "beyond the end") {
		t.Fatalf("read past end: %v", err)
	}
	if err := m.Sync(); err != nil || store.syncs != 1 {
		t.Fatalf("sync: %v, %d calls", err, store.syncs)
	}
	s := m.Stats()
	if s.Writes != 63 || s.Syncs != 1 || s.Reads == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(make([]byte, Size), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, loc uint64) {
		for _, k := range Kinds {
			if len(data) >= Size {
				_ = k.Validate(data[:Size], loc)
			} else if err := k.Validate(data, loc); err == nil {
				t.Fatal("short block validated")
			}
		}
		_ = Identify(data)
	})
}
