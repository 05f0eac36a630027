package erasim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
)

func mustWrite(t *testing.T, s *Store, p []byte, off int64) {
	t.Helper()
	if n, err := s.WriteAt(p, off); err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
	}
}

func mustSync(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func TestReadWriteAndHistory(t *testing.T) {
	s := New(4096, WithContents([]byte("hello")))
	if s.Size() != 4096 {
		t.Fatalf("size %d", s.Size())
	}
	p := make([]byte, 5)
	if n, err := s.ReadAt(p, 0); n != 5 || err != nil || string(p) != "hello" {
		t.Fatalf("ReadAt = %d, %v, %q", n, err, p)
	}
	mustWrite(t, s, []byte("HE"), 0)
	mustSync(t, s)
	mustWrite(t, s, []byte("LLO"), 2)
	if s.Len() != 3 {
		t.Fatalf("Len %d", s.Len())
	}
	ops := s.Ops()
	if ops[0].Kind != OpWrite || ops[1].Kind != OpSync || ops[2].Off != 2 || string(ops[2].Data) != "LLO" {
		t.Fatalf("ops %v", ops)
	}
	if got := string(s.Bytes()[:5]); got != "HELLO" {
		t.Fatalf("contents %q", got)
	}
	// Reads past the end.
	if n, err := s.ReadAt(make([]byte, 10), 4090); n != 6 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if n, err := s.ReadAt(make([]byte, 1), 4096); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	if _, err := s.WriteAt([]byte("x"), 4096); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past the end: %v", err)
	}
	if s.Len() != 3 {
		t.Fatal("a failed write was recorded")
	}
}

func TestCrashImagePolicies(t *testing.T) {
	s := New(3 * SectorSize)
	mustWrite(t, s, fill(SectorSize, 1), 0) // 0
	mustSync(t, s)                          // 1
	mustWrite(t, s, fill(SectorSize, 2), SectorSize)
	mustWrite(t, s, fill(SectorSize, 3), 0) // 3
	mustSync(t, s)                          // 4
	mustWrite(t, s, fill(SectorSize, 4), 2*SectorSize)
	sector := func(img []byte, i int) byte { return img[i*SectorSize] }
	want := []struct {
		point    int
		none     [3]byte
		all      [3]byte
		unsynced int
	}{
		{0, [3]byte{0, 0, 0}, [3]byte{0, 0, 0}, 0},
		{1, [3]byte{0, 0, 0}, [3]byte{1, 0, 0}, 0},
		{2, [3]byte{1, 0, 0}, [3]byte{1, 0, 0}, 2},
		{3, [3]byte{1, 0, 0}, [3]byte{1, 2, 0}, 2},
		{4, [3]byte{1, 0, 0}, [3]byte{3, 2, 0}, 2},
		{5, [3]byte{3, 2, 0}, [3]byte{3, 2, 0}, 5},
		{6, [3]byte{3, 2, 0}, [3]byte{3, 2, 4}, 5},
	}
	// Forwards, then backwards (the durable cache must rewind).
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0}} {
		for _, i := range order {
			w := want[i]
			none := s.CrashImage(w.point, nil, CrashOptions{Unsynced: KeepNone})
			all := s.CrashImage(w.point, nil, CrashOptions{Unsynced: KeepAll})
			for j := range 3 {
				if sector(none, j) != w.none[j] || sector(all, j) != w.all[j] {
					t.Fatalf("point %d sector %d: none %d all %d, want %d %d", w.point, j, sector(none, j), sector(all, j), w.none[j], w.all[j])
				}
			}
			if got := s.Synced(w.point); got != w.unsynced {
				t.Fatalf("Synced(%d) = %d, want %d", w.point, got, w.unsynced)
			}
		}
	}
	// KeepSome at point 4 sees sector 0 as 1 or 3 and sector 1 as 0 or 2,
	// and every combination shows up.
	seen := map[[2]byte]bool{}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		img := s.CrashImage(4, rng, CrashOptions{})
		seen[[2]byte{sector(img, 0), sector(img, 1)}] = true
	}
	if len(seen) != 4 || !seen[[2]byte{1, 0}] || !seen[[2]byte{3, 2}] || !seen[[2]byte{1, 2}] || !seen[[2]byte{3, 0}] {
		t.Fatalf("KeepSome images: %v", seen)
	}
}

// Every byte of a torn image comes, sector by sector, from the durable
// contents or from one of the unsynced writes, and tears happen.
func TestCrashImageTearsAtSectors(t *testing.T) {
	s := New(8 * SectorSize)
	old := fill(8*SectorSize, 0xAA)
	mustWrite(t, s, old, 0)
	mustSync(t, s)
	// An unaligned write over sectors 0..4, then one over 4..7.
	a, b := fill(4*SectorSize, 1), fill(1800, 2)
	mustWrite(t, s, a, 300)
	mustWrite(t, s, b, 2200)
	rng := rand.New(rand.NewPCG(5, 6))
	mixed := 0
	for range 500 {
		img := s.CrashImage(s.Len(), rng, CrashOptions{Tear: true})
		for sec := range 8 {
			part := img[sec*SectorSize : (sec+1)*SectorSize]
			// Within a sector, the bytes a given write covers are all
			// its or all not.
			var fromA, fromB, fromOld int
			for i, v := range part {
				off := sec*SectorSize + i
				switch {
				case v == 2 && off >= 2200 && off < 4000:
					fromB++
				case v == 1 && off >= 300 && off < 300+4*SectorSize:
					fromA++
				case v == 0xAA:
					fromOld++
				default:
					t.Fatalf("sector %d byte %d = %#x", sec, i, v)
				}
			}
			if fromA > 0 && fromOld > 0 {
				// Only where the write does not cover the whole sector.
				lo, hi := max(300, sec*SectorSize), min(300+4*SectorSize, (sec+1)*SectorSize)
				if fromA != hi-lo {
					t.Fatalf("sector %d: write A torn inside a sector (%d of %d bytes)", sec, fromA, hi-lo)
				}
			}
			if fromA > 0 && fromB > 0 {
				mixed++
			}
		}
	}
	if mixed == 0 {
		t.Fatal("never saw a sector mixing two writes")
	}
}

func TestSharedClock(t *testing.T) {
	var c Clock
	a, b := New(1024, WithClock(&c)), New(1024, WithClock(&c))
	mustWrite(t, a, []byte{1}, 0) // t0
	mustWrite(t, b, []byte{2}, 0) // t1
	cut := c.Now()                // 2
	mustSync(t, a)                // t2
	mustWrite(t, b, []byte{3}, 0) // t3
	if a.Point(cut) != 1 || b.Point(cut) != 1 || a.Point(c.Now()) != 2 || b.Point(0) != 0 {
		t.Fatalf("points: a %d b %d", a.Point(cut), b.Point(cut))
	}
	if a.Clock() != &c {
		t.Fatal("Clock")
	}
	if img := b.CrashImage(b.Point(cut), nil, CrashOptions{Unsynced: KeepAll}); img[0] != 2 {
		t.Fatalf("b at the cut: %d", img[0])
	}
}

func TestFaults(t *testing.T) {
	s := New(8192)
	s.FailWritesAfter(1)
	mustWrite(t, s, []byte{1}, 0)
	if _, err := s.WriteAt([]byte{2}, 1); !errors.Is(err, ErrInjected) {
		t.Fatalf("second write: %v", err)
	}
	if _, err := s.WriteAt([]byte{2}, 1); !errors.Is(err, ErrInjected) {
		t.Fatalf("third write: %v", err)
	}
	s.FailWritesAfter(-1)
	mustWrite(t, s, []byte{3}, 2)

	s.FailSyncAfter(0)
	if err := s.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("sync: %v", err)
	}
	if s.Synced(s.Len()) != 0 {
		t.Fatal("a failed sync made writes durable")
	}
	s.FailSyncAfter(-1)
	mustSync(t, s)

	s.FailReadsAfter(1)
	if _, err := s.ReadAt(make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrInjected) {
		t.Fatalf("read: %v", err)
	}
	s.Heal()
	if _, err := s.ReadAt(make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}

	s.SetLimit(4096)
	mustWrite(t, s, fill(4096, 7), 0)
	n, err := s.WriteAt(fill(200, 8), 4000)
	if n != 96 || !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write across the limit: %d, %v", n, err)
	}
	if got := s.Bytes(); got[3999] != 7 || got[4000] != 8 || got[4095] != 8 || got[4096] != 0 {
		t.Fatal("the part below the limit was not written")
	}
	s.Heal()
	mustWrite(t, s, fill(200, 9), 4000)
	if got := s.Faults(); got != 5 {
		t.Fatalf("Faults() = %d, want 5", got)
	}
	if got := len(s.Ops()); got != 6 {
		t.Fatalf("%d ops recorded: %v", got, s.Ops())
	}
}

func TestShortTransfers(t *testing.T) {
	s := New(8192)
	s.ShortWrites(2)
	mustWrite(t, s, fill(100, 1), 0)
	if n, err := s.WriteAt(fill(100, 2), 0); n != 50 || err != nil {
		t.Fatalf("short write: %d, %v", n, err)
	}
	if got := s.Bytes(); got[49] != 2 || got[50] != 1 {
		t.Fatal("short write wrote the wrong part")
	}
	if ops := s.Ops(); len(ops[1].Data) != 50 {
		t.Fatalf("recorded %d bytes", len(ops[1].Data))
	}
	s.ShortReads(1)
	p := make([]byte, 100)
	if n, err := s.ReadAt(p, 0); n != 50 || err != nil {
		t.Fatalf("short read: %d, %v", n, err)
	}
	s.Heal()
	if n, err := s.ReadAt(p, 0); n != 100 || err != nil {
		t.Fatalf("read after Heal: %d, %v", n, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	var c Clock
	s := New(1<<16, WithClock(&c))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 200 {
				off := int64(rng.IntN(1<<16 - 100))
				if _, err := s.WriteAt(fill(100, byte(g)), off); err != nil {
					panic(err)
				}
				if i%10 == 0 {
					s.Sync()
				}
				s.ReadAt(make([]byte, 100), off)
				_ = s.CrashImage(s.Len(), rng, CrashOptions{Tear: true})
			}
		})
	}
	wg.Wait()
	if s.Len() != 8*220 || c.Now() != 8*220 {
		t.Fatalf("Len %d, clock %d", s.Len(), c.Now())
	}
	if img := s.CrashImage(s.Len(), nil, CrashOptions{Unsynced: KeepAll}); !bytes.Equal(img, s.Bytes()) {
		t.Fatal("KeepAll at the end differs from the contents")
	}
	for i, op := range s.Ops() {
		if op.Time != uint64(i) {
			t.Fatalf("op %d stamped %d", i, op.Time)
		}
	}
	_ = fmt.Sprint(s.Ops()[0], OpKind(9))
}
