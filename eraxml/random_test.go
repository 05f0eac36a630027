package eraxml

import (
	"github.com/era-go/era/internal/tooltest"

	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randomMetadata returns metadata the 0.9.0 tools handle: 1..3000 blocks,
// 0..5 writesets with distinct eras <= current_era and nr_bits >= 1 (below,
// equal to or above nr_blocks), era values <= current_era, bits in runs of
// varying density.
func randomMetadata(r *rand.Rand) *Metadata {
	n := 1 + r.Uint32N(3000)
	m := &Metadata{
		BlockSize:  []uint32{8, 128, 1024, 1 + r.Uint32N(1<<20)}[r.IntN(4)],
		NrBlocks:   n,
		CurrentEra: r.Uint32N(12),
	}
	if r.IntN(5) == 0 {
		m.CurrentEra = r.Uint32() // large eras too
	}
	nws := min(r.IntN(6), int(m.CurrentEra)+1)
	var eras []uint32
	for len(eras) < nws {
		e := r.Uint32N(m.CurrentEra + 1)
		if m.CurrentEra == ^uint32(0) {
			e = r.Uint32()
		}
		if !slices.Contains(eras, e) {
			eras = append(eras, e)
		}
	}
	slices.Sort(eras)
	for _, e := range eras {
		ws := Writeset{Era: e}
		switch r.IntN(3) {
		case 0:
			ws.NrBits = n
		case 1:
			ws.NrBits = 1 + r.Uint32N(n)
		default:
			ws.NrBits = n + 1 + r.Uint32N(300)
		}
		ws.Bits = make([]uint64, nrWords(ws.NrBits))
		fillRuns(r, ws.NrBits, func(i uint32) { ws.Set(i) })
		m.Writesets = append(m.Writesets, ws)
	}
	m.EraArray = make([]uint32, n)
	era := uint32(0)
	for b := range m.EraArray {
		if r.IntN(8) == 0 {
			era = r.Uint32N(m.CurrentEra/2 + 1)
			if r.IntN(2) == 0 {
				era = m.CurrentEra - r.Uint32N(min(m.CurrentEra, 3)+1)
			}
		}
		m.EraArray[b] = era
	}
	return m
}

// fillRuns calls set for a random selection of i < n, in runs, with a
// density chosen per call (sometimes empty, sometimes full).
func fillRuns(r *rand.Rand, n uint32, set func(i uint32)) {
	density := []float64{0, 0.02, 0.3, 0.8, 1}[r.IntN(5)]
	on := false
	for i := uint32(0); i < n; i++ {
		if r.IntN(10) == 0 {
			on = r.Float64() < density
		}
		if on || density == 1 {
			set(i)
		}
	}
}

func TestRandomAgainstTools(t *testing.T) {
	tooltest.Need(t, "era_restore")
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(seed), 0xe7a))
			m := randomMetadata(r)
			ours := render(t, func(b *bytes.Buffer) error { return WriteDump(b, m) })

			dir := t.TempDir()
			xmlPath, meta := filepath.Join(dir, "x.xml"), filepath.Join(dir, "meta.bin")
			if err := os.WriteFile(xmlPath, ours, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(meta, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(meta, 4<<20); err != nil {
				t.Fatal(err)
			}
			tooltest.Run(t, "era_restore", "-i", xmlPath, "-o", meta)

			theirs := tooltest.Run(t, "era_dump", meta)
			checkSame(t, "WriteDump", ours, theirs)
			logical := render(t, func(b *bytes.Buffer) error { return WriteLogicalDump(b, m, true) })
			checkSame(t, "WriteLogicalDump(compat)", logical, tooltest.Run(t, "era_dump", "--logical", meta))

			for _, era := range []uint32{0, 1, m.CurrentEra / 2, m.CurrentEra, m.CurrentEra + 1, r.Uint32N(m.CurrentEra + 1)} {
				got := render(t, func(b *bytes.Buffer) error { return WriteInvalidate(b, WrittenSince(m, era)) })
				want := tooltest.Run(t, "era_invalidate", "--written-since", fmt.Sprint(era), meta)
				checkSame(t, fmt.Sprintf("invalidate --written-since %d", era), got, want)
			}

			for name, text := range map[string][]byte{"our dump": ours, "era_dump output": theirs} {
				got, err := Read(bytes.NewReader(text))
				if err != nil {
					t.Fatalf("Read(%s): %v", name, err)
				}
				if d := cmp.Diff(m, got); d != "" {
					t.Errorf("Read(%s) mismatch (-want +got):\n%s", name, d)
				}
			}
		})
	}
}

// TestRandomModel checks the pure functions against naive definitions.
func TestRandomModel(t *testing.T) {
	for seed := range 200 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		m := randomMetadata(r)

		// Logical eras: greatest marking writeset, or (compat) lowest.
		for _, compat := range []bool{false, true} {
			got := m.LogicalEras(compat)
			for b := range m.NrBlocks {
				want := m.EraArray[b]
				for i := range m.Writesets {
					ws := &m.Writesets[i]
					if !ws.Test(b) {
						continue
					}
					want = max(want, ws.Era)
					if compat {
						break
					}
				}
				if got[b] != want {
					t.Fatalf("seed %d compat=%v: block %d: logical era %d, want %d", seed, compat, b, got[b], want)
				}
			}
		}

		// WrittenSince against a per-block membership test.
		era := r.Uint32N(m.CurrentEra + 2)
		in := func(b uint64) bool {
			if b < uint64(m.NrBlocks) && m.EraArray[b] >= era {
				return true
			}
			for i := range m.Writesets {
				if ws := &m.Writesets[i]; ws.Era >= era && b < 1<<32 && ws.Test(uint32(b)) {
					return true
				}
			}
			return false
		}
		var want []Range
		for b := uint64(0); b < 4000; b++ {
			if !in(b) {
				continue
			}
			if k := len(want); k > 0 && want[k-1].End == b {
				want[k-1].End++
			} else {
				want = append(want, Range{b, b + 1})
			}
		}
		if got := WrittenSince(m, era); !slices.Equal(got, want) {
			t.Fatalf("seed %d: WrittenSince(%d) = %v, want %v", seed, era, got, want)
		}

		// Compact dump reads back to the same metadata.
		compact := render(t, func(b *bytes.Buffer) error { return WriteCompactDump(b, m) })
		got, err := Read(bytes.NewReader(compact))
		if err != nil {
			t.Fatalf("seed %d: Read(compact): %v", seed, err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Fatalf("seed %d: compact round trip (-want +got):\n%s", seed, d)
		}
	}
}
