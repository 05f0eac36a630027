package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestClient(t *testing.T) {
	const size = 40<<20 + 512
	m := newModel(size, 64<<10)
	rnd := rand.New(rand.NewPCG(9, 9))
	for i := range m.data {
		m.data[i] = byte(i * 7)
	}
	for range 30 {
		m.WriteAt([]byte{1}, rnd.Int64N(size))
	}
	_, sock := startServer(t, m, Options{})
	ctx := context.Background()
	c, err := DialURI(ctx, uriOf(sock), "x-era:written-since:1", "x-era:era")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != size {
		t.Fatalf("size %d", c.Size())
	}
	w := bytes.Repeat([]byte{0xee}, 33<<20)
	if n, err := c.WriteAt(w, 5); n != len(w) || err != nil {
		t.Fatalf("WriteAt: %d %v", n, err)
	}
	if err := c.Flush(); err != nil || m.syncs == 0 {
		t.Fatalf("Flush: %v", err)
	}
	if !bytes.Equal(m.data[5:5+len(w)], w) || m.data[4] == 0xee || m.data[5+len(w)] == 0xee {
		t.Fatal("WriteAt did not write its bytes only")
	}
	p := make([]byte, size)
	if n, err := c.ReadAt(p, 0); n != size || err != nil || !bytes.Equal(p, m.data) {
		t.Fatalf("ReadAt: %d %v", n, err)
	}
	if n, err := c.ReadAt(p[:10], size-4); n != 4 || err != io.EOF {
		t.Errorf("ReadAt past the end: %d %v", n, err)
	}
	for _, name := range []string{"x-era:written-since:1", "x-era:era"} {
		var got []extent
		for off := uint64(0); off < size; {
			ext, err := c.BlockStatus(name, off, uint32(min(size-off, 32<<20)))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ext {
				off += uint64(e.Length)
				if k := len(got); k > 0 && got[k-1].flags == e.Flags {
					got[k-1].length += e.Length
				} else {
					got = append(got, extent{e.Length, e.Flags})
				}
			}
		}
		if want := m.expected(name, 0, size); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
	m.mu.Lock()
	m.failQuery = errModelQuery
	m.mu.Unlock()
	if _, err := c.BlockStatus("x-era:era", 0, 4096); !errors.Is(err, ErrRemote) {
		t.Errorf("failing query: %v", err)
	}
	if _, err := c.BlockStatus("base:allocation", 0, 4096); err == nil {
		t.Error("a context not negotiated answered")
	}
	if _, err := DialURI(ctx, uriOf(sock), "x-era:written-since:2"); err == nil {
		t.Error("a context for an era not begun was accepted")
	}
	if _, err := DialURI(ctx, "nbd+unix:///nope?socket="+sock); !errors.Is(err, ErrRemote) {
		t.Errorf("unknown export: %v", err)
	}
}
