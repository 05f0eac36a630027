package spacemap

import (
	"math/rand/v2"
	"testing"
)

// naiveFreeHints is freeHints an entry at a time, as the tools define it.
func naiveFreeHints(sm *SpaceMap, i int) (nrFree, first uint32) {
	n := min(sm.nrBlocks-uint64(i)*EntriesPerBitmap, EntriesPerBitmap)
	first = uint32(n)
	for j := range n {
		if entry(sm.cur[i][j/32], uint(j%32)) == 0 {
			if nrFree == 0 {
				first = uint32(j)
			}
			nrFree++
		}
	}
	return nrFree, first
}

// TestFreeHintsWordwise: the word-at-a-time hints match the per-entry
// definition, on full and partial bitmaps, empty, full and random.
func TestFreeHintsWordwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, nrBlocks := range []uint64{1, 31, 32, 33, 100, EntriesPerBitmap - 1, EntriesPerBitmap, EntriesPerBitmap + 17, 3*EntriesPerBitmap + 1000} {
		sm := newSpaceMap(nil, nrBlocks)
		for fill := range 4 {
			for i := range sm.cur {
				for w := range sm.cur[i] {
					switch fill {
					case 0:
						sm.cur[i][w] = 0
					case 1:
						sm.cur[i][w] = ^uint64(0)
					default:
						v := rng.Uint64()
						if fill == 3 {
							v &= rng.Uint64() & rng.Uint64() // sparse
						}
						sm.cur[i][w] = v
					}
				}
				// Nothing counts past the device, as Open checks.
				for j := max(nrBlocks, uint64(i)*EntriesPerBitmap) - uint64(i)*EntriesPerBitmap; j < EntriesPerBitmap; j++ {
					sm.cur[i][j/32] = withEntry(sm.cur[i][j/32], uint(j%32), 0)
				}
				gn, gf := sm.freeHints(i)
				wn, wf := naiveFreeHints(sm, i)
				if gn != wn || gf != wf {
					t.Fatalf("%d blocks, fill %d, bitmap %d: hints (%d, %d), want (%d, %d)", nrBlocks, fill, i, gn, gf, wn, wf)
				}
			}
		}
	}
}
