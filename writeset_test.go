package era

import (
	"math/rand/v2"
	"testing"
)

// TestWritesetChunks: the chunked in-core writeset answers test, allSet
// and unmarked as a flat bitmap would, across chunk boundaries and at the
// ends, and allocates only the chunks written.
func TestWritesetChunks(t *testing.T) {
	const n = 3*chunkBits + 100
	ws := newWriteset(n)
	model := make([]bool, n)
	rng := rand.New(rand.NewPCG(3, 4))
	set := func(b uint64) {
		ws.set(b)
		model[b] = true
	}
	for _, b := range []uint64{0, 63, 64, chunkBits - 1, chunkBits, n - 1} {
		set(b)
	}
	for range 500 {
		set(rng.Uint64N(chunkBits)) // chunks 0 and 1 only, but for the ones above
	}
	for lo := uint64(chunkBits - 200); lo < chunkBits+200; lo += 7 {
		for hi := lo; hi < lo+130 && hi <= n; hi += 13 {
			want := true
			var unmarked []uint64
			for b := lo; b < hi; b++ {
				if !model[b] {
					want = false
					unmarked = append(unmarked, b)
				}
			}
			if got := ws.allSet(lo, hi); got != want {
				t.Fatalf("allSet(%d, %d) = %v, want %v", lo, hi, got, want)
			}
			if got := ws.unmarked(lo, hi, nil); len(got) != len(unmarked) {
				t.Fatalf("unmarked(%d, %d): %d blocks, want %d", lo, hi, len(got), len(unmarked))
			}
		}
	}
	for b := range uint64(n) {
		if ws.test(b) != model[b] {
			t.Fatalf("test(%d) = %v", b, ws.test(b))
		}
	}
	var want uint64
	for _, m := range model {
		if m {
			want++
		}
	}
	if got := ws.count(); got != want {
		t.Fatalf("count %d, want %d", got, want)
	}
	if ws.chunks[2].Load() != nil {
		t.Fatal("chunk 2 allocated without a write in it")
	}
	ws.set(n - 2)
	for lo := uint64(n - 64); lo < n; lo++ {
		if ws.allSet(lo, n) != (lo >= n-2) {
			t.Fatalf("allSet(%d, %d) at the end", lo, n)
		}
	}
}
