package eraxml

import (
	"slices"
	"testing"
)

func TestWritesetSetTest(t *testing.T) {
	w := Writeset{Era: 1, NrBits: 130}
	if w.Test(0) {
		t.Fatal("bit 0 set in an empty writeset")
	}
	for _, i := range []uint32{0, 63, 64, 129} {
		w.Set(i)
	}
	if len(w.Bits) != 3 {
		t.Fatalf("len(Bits) = %d, want 3", len(w.Bits))
	}
	want := []uint64{1 | 1<<63, 1, 2}
	if !slices.Equal(w.Bits, want) {
		t.Fatalf("Bits = %#x, want %#x", w.Bits, want)
	}
	for i := uint32(0); i < 200; i++ {
		got := w.Test(i)
		exp := i == 0 || i == 63 || i == 64 || i == 129
		if got != exp {
			t.Errorf("Test(%d) = %v, want %v", i, got, exp)
		}
	}
	// Bits beyond NrBits are never reported even if set in the word.
	w.Bits[2] |= 1 << 5 // bit 133
	if w.Test(133) {
		t.Error("Test(133) true beyond NrBits")
	}
	defer func() {
		if recover() == nil {
			t.Error("Set(130) did not panic")
		}
	}()
	w.Set(130)
}

func TestRuns(t *testing.T) {
	words := []uint64{0xffff_ffff_ffff_ffe1, ^uint64(0), 1 | 1<<63}
	got := runs(words, 192)
	want := []Range{{0, 1}, {5, 129}, {191, 192}}
	if !slices.Equal(got, want) {
		t.Fatalf("runs = %v, want %v", got, want)
	}
	if got := runs(words, 100); !slices.Equal(got, []Range{{0, 1}, {5, 100}}) {
		t.Fatalf("runs with limit 100 = %v", got)
	}
	if got := runs(nil, 100); got != nil {
		t.Fatalf("runs(nil) = %v", got)
	}
}
