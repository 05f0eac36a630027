package era

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/eraxml"
	"github.com/era-go/era/internal/tooltest"
)

// restoreCases are the golden images era_restore wrote from NAME.xml, with
// the fewest metadata blocks era_restore needs for each (README.md).
var restoreCases = []struct {
	name string
	need uint64
}{{"m", 9}, {"multi", 14}, {"deep", 509}, {"wide", 266}, {"overflowbits", 11}}

func readGoldenXML(t *testing.T, name string) *eraxml.Metadata {
	t.Helper()
	m, err := eraxml.Read(bytes.NewReader(readGolden(t, name+".xml")))
	if err != nil {
		t.Fatalf("read %s.xml: %v", name, err)
	}
	return m
}

// restoreMem restores m into a zeroed in-memory store of nr blocks.
func restoreMem(t *testing.T, m *eraxml.Metadata, nr int) *exampleStore {
	t.Helper()
	s := &exampleStore{data: make([]byte, nr*block.Size)}
	if err := Restore(m, s, int64(len(s.data))); err != nil {
		t.Fatalf("Restore into %d blocks: %v", nr, err)
	}
	return s
}

// dumpOf dumps metadata as era_dump would.
func dumpOf(t *testing.T, data []byte) *eraxml.Metadata {
	t.Helper()
	v, err := OpenView(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("OpenView: %v", err)
	}
	m, err := v.Dump(DumpOptions{IncludeCurrent: true})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return m
}

// TestRestoreGolden: restoring each golden XML into a store of the golden
// image's size gives era_restore's image: the same blocks in the same
// places, byte for byte except the stale key slots era_restore leaves in
// internal nodes past nr_entries (we write zeros). It dumps as era_dump did
// and passes Check.
func TestRestoreGolden(t *testing.T) {
	for _, c := range restoreCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want := readGolden(t, c.name+".bin")
			m := readGoldenXML(t, c.name)
			got := restoreMem(t, m, len(want)/block.Size).data
			for loc := 0; loc < len(want)/block.Size; loc++ {
				g, w := got[loc*block.Size:(loc+1)*block.Size], want[loc*block.Size:(loc+1)*block.Size]
				if bytes.Equal(g, w) {
					continue
				}
				gn, err1 := btree.DecodeNode(uint64(loc), g)
				wn, err2 := btree.DecodeNode(uint64(loc), w)
				if err1 != nil || err2 != nil || block.Identify(w) != block.Node || block.Identify(g) != block.Node {
					t.Fatalf("block %d differs from era_restore's", loc)
				}
				gn.Keys, wn.Keys = gn.Keys[:gn.NrEntries], wn.Keys[:wn.NrEntries]
				vs := int(gn.ValueSize) * int(gn.NrEntries)
				gn.Values, wn.Values = gn.Values[:vs], wn.Values[:min(vs, len(wn.Values))]
				if d := cmp.Diff(wn, gn); d != "" {
					t.Fatalf("btree node %d differs from era_restore's beyond stale slots (-tools +ours):\n%s", loc, d)
				}
			}
			if err := Check(bytes.NewReader(got)); err != nil {
				t.Fatalf("Check: %v", err)
			}
			v, err := OpenView(bytes.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.Dump(DumpOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sameText(t, "dump of the restored image", renderDump(t, func(w io.Writer) error { return eraxml.WriteDump(w, d) }), readGolden(t, c.name+".dump"))
		})
	}
}

// TestRestoreTooSmall: Restore needs exactly the blocks era_restore needs;
// one block fewer is refused with ErrNoSpace, a message giving the size
// needed, and the store untouched.
func TestRestoreTooSmall(t *testing.T) {
	for _, c := range restoreCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := readGoldenXML(t, c.name)
			restoreMem(t, m, int(c.need))
			for _, nr := range []uint64{c.need - 1, c.need / 2, 3, 0} {
				s := &exampleStore{data: bytes.Repeat([]byte{0xa5}, int(nr)*block.Size+100)}
				before := slices.Clone(s.data)
				err := Restore(m, s, int64(len(s.data)))
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("Restore into %d blocks: %v, want ErrNoSpace", nr, err)
				}
				want := fmt.Sprintf("needs %d blocks", c.need)
				if nr != c.need-1 { // far too small: a lower bound
					want = "needs "
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
				if !bytes.Equal(s.data, before) {
					t.Errorf("Restore into %d blocks changed the store", nr)
				}
			}
		})
	}
}

// failingStore fails every write after the first ok ones.
type failingStore struct {
	exampleStore
	ok, writes int
	checked    bool // a block other than 0 was written
	sawZero    bool // block 0 was all zero when the first other block was written
}

func (s *failingStore) WriteAt(p []byte, off int64) (int, error) {
	s.writes++
	if s.writes > s.ok {
		return 0, errors.New("injected write error")
	}
	if off != 0 && !s.checked {
		s.checked = true
		s.sawZero = !slices.ContainsFunc(s.data[:block.Size], func(b byte) bool { return b != 0 })
	}
	return s.exampleStore.WriteAt(p, off)
}

func (s *failingStore) Sync() error { return nil }

// TestRestoreInterrupted: wherever the writes stop, the store either holds
// what it held before (nothing was written) or does not look valid; block
// 0 is zeroed before any other block is written.
func TestRestoreInterrupted(t *testing.T) {
	m := readGoldenXML(t, "multi")
	old := restoreMem(t, readGoldenXML(t, "overflowbits"), 32).data
	for ok := 0; ; ok++ {
		s := &failingStore{exampleStore: exampleStore{data: slices.Clone(old)}, ok: ok}
		err := Restore(m, s, int64(len(s.data)))
		if err == nil {
			if !s.sawZero {
				t.Errorf("blocks were written before block 0 was zeroed")
			}
			if ok < 3 {
				t.Fatalf("Restore succeeded with %d writes", ok)
			}
			break
		}
		if bytes.Equal(s.data, old) {
			continue
		}
		if _, verr := OpenView(bytes.NewReader(s.data)); verr == nil {
			t.Fatalf("after %d writes and %v, the store looks valid", ok, err)
		}
	}
}

func TestRestoreRejects(t *testing.T) {
	good := func() *eraxml.Metadata {
		m := &eraxml.Metadata{BlockSize: 8, NrBlocks: 4, CurrentEra: 3, EraArray: []uint32{0, 1, 2, 3}}
		m.Writesets = []eraxml.Writeset{{Era: 2, NrBits: 4, Bits: []uint64{5}}, {Era: 3, NrBits: 70, Bits: []uint64{0, 1 << 5}}}
		return m
	}
	if err := Restore(good(), &exampleStore{data: make([]byte, 64*block.Size)}, 64*block.Size); err != nil {
		t.Fatalf("good metadata: %v", err)
	}
	for _, c := range []struct {
		want   string
		change func(m *eraxml.Metadata)
	}{
		{"block_size 0", func(m *eraxml.Metadata) { m.BlockSize = 0 }},
		{"block_size 12", func(m *eraxml.Metadata) { m.BlockSize = 12 }},
		{"nr_blocks 0", func(m *eraxml.Metadata) { m.NrBlocks, m.EraArray = 0, nil }},
		{"era array has 3 entries", func(m *eraxml.Metadata) { m.EraArray = m.EraArray[:3] }},
		{"era_array: block 2: era 4 beyond the current era 3", func(m *eraxml.Metadata) { m.EraArray[2] = 4 }},
		{"writeset era 4: era beyond", func(m *eraxml.Metadata) { m.Writesets[1].Era = 4 }},
		{"writeset era 2: a second writeset", func(m *eraxml.Metadata) { m.Writesets[1].Era = 2 }},
		{"writeset era 2: nr_bits 0", func(m *eraxml.Metadata) { m.Writesets[0].NrBits, m.Writesets[0].Bits = 0, nil }},
		{"writeset era 2: bit 4 set", func(m *eraxml.Metadata) { m.Writesets[0].Bits[0] = 1 << 4 }},
		{"writeset era 3: bit 70 set", func(m *eraxml.Metadata) { m.Writesets[1].Bits[1] |= 1 << 6 }},
		{"writeset era 2: 2 words", func(m *eraxml.Metadata) { m.Writesets[0].Bits = []uint64{1, 0} }},
	} {
		m := good()
		c.change(m)
		s := &exampleStore{data: make([]byte, 64*block.Size)}
		err := Restore(m, s, int64(len(s.data)))
		var ie *RestoreInputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Restore returned %v", c.want, err)
		}
		if slices.ContainsFunc(s.data, func(b byte) bool { return b != 0 }) {
			t.Errorf("%s: the store was written", c.want)
		}
	}
}

// restoreRandomMetadata returns metadata Restore accepts: 1..3000 blocks,
// up to 5 writesets of distinct eras <= the current era with 1 or more
// bits (fewer, as many or more than blocks), values in runs.
func restoreRandomMetadata(r *rand.Rand) *eraxml.Metadata {
	n := 1 + r.Uint32N(3000)
	m := &eraxml.Metadata{BlockSize: 8 * (1 + r.Uint32N(64)), NrBlocks: n, CurrentEra: r.Uint32N(20)}
	if r.IntN(6) == 0 {
		m.CurrentEra = ^uint32(0) - r.Uint32N(3)
	}
	eras := map[uint32]bool{}
	for range min(r.IntN(6), int(m.CurrentEra)+1) {
		eras[m.CurrentEra-r.Uint32N(min(m.CurrentEra, 8)+1)] = true
	}
	for _, e := range slices.Sorted(func(yield func(uint32) bool) {
		for e := range eras {
			if !yield(e) {
				return
			}
		}
	}) {
		ws := eraxml.Writeset{Era: e, NrBits: []uint32{n, 1 + r.Uint32N(n), n + 1 + r.Uint32N(200)}[r.IntN(3)]}
		ws.Bits = make([]uint64, (ws.NrBits+63)/64)
		density := []float64{0, 0.05, 0.5, 1}[r.IntN(4)]
		for b := range ws.NrBits {
			if r.Float64() < density {
				ws.Set(b)
			}
		}
		m.Writesets = append(m.Writesets, ws)
	}
	m.EraArray = make([]uint32, n)
	e := uint32(0)
	for b := range m.EraArray {
		if r.IntN(10) == 0 {
			e = r.Uint32N(m.CurrentEra/2 + 1)
		}
		m.EraArray[b] = e
	}
	return m
}

// TestRestoreRandom: restore, dump, compare; the space map is exact (Check)
// and the size Restore says it needs is enough.
func TestRestoreRandom(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 4))
		m := restoreRandomMetadata(r)
		need := uint64(256)
		if seed%4 == 0 {
			var err error
			if need, err = restoreNeed(m); err != nil {
				t.Fatal(err)
			}
		}
		s := restoreMem(t, m, int(need))
		if err := Check(bytes.NewReader(s.data)); err != nil {
			t.Fatalf("seed %d: Check: %v", seed, err)
		}
		if d := cmp.Diff(m, dumpOf(t, s.data)); d != "" {
			t.Fatalf("seed %d: dump differs from the restored metadata (-restored +dump):\n%s", seed, d)
		}
	}
}

// TestRestoreTools: what Restore writes passes era_check 0.9.0 and dumps
// with era_dump 0.9.0 as it was given.
func TestRestoreTools(t *testing.T) {
	tooltest.Need(t, "era_check")
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			m := restoreRandomMetadata(rand.New(rand.NewPCG(seed, 5)))
			path := filepath.Join(t.TempDir(), "meta")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(1 << 20); err != nil {
				t.Fatal(err)
			}
			if err := Restore(m, f, 1<<20); err != nil {
				t.Fatal(err)
			}
			if out, stderr, err := tooltest.Try(t, "era_check", path); err != nil {
				t.Fatalf("era_check: %v\n%s%s", err, out, stderr)
			}
			want := renderDump(t, func(w io.Writer) error { return eraxml.WriteDump(w, m) })
			sameText(t, "era_dump of the restored image", tooltest.Run(t, "era_dump", path), want)
		})
	}
}
