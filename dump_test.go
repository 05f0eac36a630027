package era

import (
	"github.com/bits-and-blooms/bitset"

	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/era-go/era/block"
	"github.com/era-go/era/eraxml"
)

// dumpGoldenDir holds images written by era_restore and by the kernel, with
// what the 0.9.0 tools print for them (testdata/golden/README.md).
const dumpGoldenDir = "testdata/golden"

// readGolden returns testdata/golden/name, or name.gz uncompressed.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	path := filepath.Join(dumpGoldenDir, name)
	if data, err := os.ReadFile(path); err == nil {
		return data
	}
	f, err := os.Open(path + ".gz")
	if err != nil {
		t.Fatalf("neither %s nor %s.gz: %v", path, path, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// goldenImages returns the names of the golden images.
func goldenImages(t *testing.T) []string {
	t.Helper()
	bins, err := filepath.Glob(filepath.Join(dumpGoldenDir, "*.bin"))
	if err != nil || len(bins) == 0 {
		t.Fatalf("no golden images in %s (%v)", dumpGoldenDir, err)
	}
	var names []string
	for _, b := range bins {
		names = append(names, strings.TrimSuffix(filepath.Base(b), ".bin"))
	}
	return names
}

func openGoldenView(t *testing.T, name string) (*View, *os.File) {
	t.Helper()
	f, err := os.Open(filepath.Join(dumpGoldenDir, name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	v, err := OpenView(f)
	if err != nil {
		t.Fatalf("OpenView %s: %v", name, err)
	}
	return v, f
}

func renderDump(t *testing.T, write func(io.Writer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sameText fails the test with the first differing line when got != want.
func sameText(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range max(len(gl), len(wl)) {
		var g, w []byte
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: line %d is %q, want %q (%d vs %d bytes in all)", what, i+1, g, w, len(got), len(want))
			return
		}
	}
}

// TestDumpGolden: OpenView + Dump rendered by eraxml is byte for byte what
// era_dump, era_dump --logical and era_invalidate 0.9.0 printed for every
// golden image, kernel-written ones included.
func TestDumpGolden(t *testing.T) {
	for _, name := range goldenImages(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v, _ := openGoldenView(t, name)
			m, err := v.Dump(DumpOptions{})
			if err != nil {
				t.Fatalf("Dump: %v", err)
			}
			sameText(t, "WriteDump", renderDump(t, func(w io.Writer) error { return eraxml.WriteDump(w, m) }), readGolden(t, name+".dump"))
			sameText(t, "WriteLogicalDump(compat)", renderDump(t, func(w io.Writer) error { return eraxml.WriteLogicalDump(w, m, true) }), readGolden(t, name+".logical"))

			invs, _ := filepath.Glob(filepath.Join(dumpGoldenDir, name+".inv.*"))
			if len(invs) == 0 {
				t.Fatal("no era_invalidate outputs")
			}
			for _, inv := range invs {
				n, err := strconv.ParseUint(inv[strings.LastIndexByte(inv, '.')+1:], 10, 32)
				if err != nil {
					t.Fatalf("%s: %v", inv, err)
				}
				want := readGolden(t, filepath.Base(inv))
				rs, err := v.Invalidate(uint32(n), false)
				if uint32(n) > v.CurrentEra() { // 0.9.0 prints nothing; we refuse
					if !errors.Is(err, ErrOutOfRange) {
						t.Fatalf("Invalidate(%d) past era %d: %v, want ErrOutOfRange", n, v.CurrentEra(), err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Invalidate(%d): %v", n, err)
				}
				sameText(t, fmt.Sprintf("Invalidate(%d)", n), renderDump(t, func(w io.Writer) error { return eraxml.WriteInvalidate(w, eraRanges(rs)) }), want)
				sameText(t, fmt.Sprintf("eraxml.WrittenSince(Dump, %d)", n), renderDump(t, func(w io.Writer) error {
					return eraxml.WriteInvalidate(w, eraxml.WrittenSince(m, uint32(n)))
				}), want)
			}
		})
	}
}

func eraRanges(rs []Range) []eraxml.Range {
	out := make([]eraxml.Range, len(rs))
	for i, r := range rs {
		out[i] = eraxml.Range{Begin: r.Begin, End: r.End}
	}
	return out
}

// goldenTruth reads key=value lines of a kernel image's NAME.meta.
func goldenTruth(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(string(readGolden(t, name+".meta")), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// truthEras parses "block:era ..." into a slice of n eras.
func truthEras(t *testing.T, s string, n uint32) []uint32 {
	t.Helper()
	out := make([]uint32, n)
	for _, f := range strings.Fields(s) {
		b, e, _ := strings.Cut(f, ":")
		bi, err1 := strconv.ParseUint(b, 10, 32)
		ei, err2 := strconv.ParseUint(e, 10, 32)
		if err1 != nil || err2 != nil || bi >= uint64(n) {
			t.Fatalf("bad pair %q", f)
		}
		out[bi] = uint32(ei)
	}
	return out
}

// TestDumpKernelTruth: with IncludeCurrent, the folded dump of each kernel
// image is what the kernel scenario wrote (kernel-crash's writes of era 2
// live only in the current writeset), and the snapshot view dumps the
// snapshot's trees.
func TestDumpKernelTruth(t *testing.T) {
	for _, name := range []string{"kernel-a1", "kernel-crash", "kernel-snap"} {
		t.Run(name, func(t *testing.T) {
			truth := goldenTruth(t, name)
			v, f := openGoldenView(t, name)
			m, err := v.Dump(DumpOptions{IncludeCurrent: true})
			if err != nil {
				t.Fatal(err)
			}
			if want := truthEras(t, truth["logical"], m.NrBlocks); !slices.Equal(m.LogicalEras(false), want) {
				t.Errorf("folded dump with the current writeset differs from the kernel's truth")
			}
			plain, err := v.Dump(DumpOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := truth["logical_ignoring_current_writeset"]; ok {
				if !slices.Equal(plain.LogicalEras(false), truthEras(t, s, m.NrBlocks)) {
					t.Errorf("folded dump without the current writeset differs from the truth ignoring it")
				}
				if len(m.Writesets) != len(plain.Writesets)+1 || m.Writesets[len(m.Writesets)-1].Era != m.CurrentEra {
					t.Errorf("IncludeCurrent did not add a writeset of era %d", m.CurrentEra)
				}
			}
			// Invalidate with the current writeset is the truth.
			for n := range m.CurrentEra + 1 {
				rs, err := v.Invalidate(n, true)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := rangesToEras(rs, n, m.NrBlocks), erasSince(truthEras(t, truth["logical"], m.NrBlocks), n); !slices.Equal(got, want) {
					t.Errorf("Invalidate(%d, current) = %v, want blocks %v", n, rs, want)
				}
			}

			s, ok := truth["snapshot_logical"]
			sv, err := OpenSnapshot(f)
			if !ok {
				if !errors.Is(err, ErrNoSnapshot) {
					t.Fatalf("OpenSnapshot without a snapshot: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sm, err := sv.Dump(DumpOptions{IncludeCurrent: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sm.LogicalEras(false), truthEras(t, s, sm.NrBlocks)) {
				t.Errorf("snapshot's folded dump differs from the truth")
			}
			var eras []string
			for _, ws := range sm.Writesets {
				eras = append(eras, fmt.Sprint(ws.Era))
			}
			if want, _, _ := strings.Cut(truth["snapshot_writeset_tree"], ":"); strings.Join(eras, ",") != want {
				t.Errorf("snapshot writesets of eras %v, want %s", eras, want)
			}
		})
	}
}

// rangesToEras lists the blocks of rs below n blocks.
func rangesToEras(rs []Range, _ uint32, n uint32) []uint64 {
	var out []uint64
	for _, r := range rs {
		for b := r.Begin; b < r.End && b < uint64(n); b++ {
			out = append(out, b)
		}
	}
	return out
}

// erasSince lists the blocks whose era is >= n.
func erasSince(eras []uint32, n uint32) []uint64 {
	var out []uint64
	for b, e := range eras {
		if e >= n {
			out = append(out, uint64(b))
		}
	}
	return out
}

// TestDumpRepair: a damaged writeset bitset and a damaged era-array block
// fail Dump, but with OnDamage the dump goes on without them.
func TestDumpRepair(t *testing.T) {
	data := readGolden(t, "multi.bin")
	v0, err := OpenView(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	whole, err := v0.Dump(DumpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Break the checksum of the first array block of each kind: the era
	// array's second block (values 1018..1099) and the first bitset block
	// of the era-4 writeset.
	broken := slices.Clone(data)
	var eraBlock, wsBlock int = -1, -1
	for loc := 0; loc*block.Size < len(data); loc++ {
		b := broken[loc*block.Size : (loc+1)*block.Size]
		if block.Identify(b) != block.Array {
			continue
		}
		vs := b[12]
		nr := int(b[8]) | int(b[9])<<8
		switch {
		case vs == 4 && nr == 82 && eraBlock < 0:
			eraBlock = loc
		case vs == 8 && wsBlock < 0:
			wsBlock = loc
		}
	}
	if eraBlock < 0 || wsBlock < 0 {
		t.Fatalf("array blocks not found (%d, %d)", eraBlock, wsBlock)
	}
	broken[eraBlock*block.Size+100] ^= 1
	broken[wsBlock*block.Size+100] ^= 1
	v, err := OpenView(bytes.NewReader(broken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Dump(DumpOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Dump of damaged metadata: %v, want ErrCorrupt", err)
	}
	var problems []error
	m, err := v.Dump(DumpOptions{OnDamage: func(err error) { problems = append(problems, err) }})
	if err != nil {
		t.Fatalf("Dump with OnDamage: %v", err)
	}
	if len(problems) < 2 {
		t.Errorf("OnDamage called for %v, want the bitset and the era array", problems)
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), "block ") {
			t.Errorf("problem %q does not name the block", p)
		}
	}
	if len(m.Writesets) != len(whole.Writesets)-1 {
		t.Errorf("%d writesets dumped, want %d", len(m.Writesets), len(whole.Writesets)-1)
	}
	if !slices.Equal(m.EraArray[:1018], whole.EraArray[:1018]) || slices.ContainsFunc(m.EraArray[1018:], func(e uint32) bool { return e != 0 }) {
		t.Errorf("era array not salvaged as the first block's values then zeros")
	}
}

// TestRangesOf checks the run finder against a bit-by-bit one.
func TestRangesOf(t *testing.T) {
	for _, words := range [][]uint64{
		nil, {0}, {1}, {^uint64(0)}, {^uint64(0), ^uint64(0)}, {1 << 63, 1}, {0xf0f0, 0, 1 << 63},
		{0x8000_0000_0000_0001, 0x8000_0000_0000_0001}, {0xffff_ffff_ffff_fffe, 1},
	} {
		var want []Range
		for b := uint64(0); b < uint64(len(words))*64; b++ {
			if words[b/64]>>(b%64)&1 == 0 {
				continue
			}
			if n := len(want); n > 0 && want[n-1].End == b {
				want[n-1].End++
			} else {
				want = append(want, Range{b, b + 1})
			}
		}
		if got := rangesOf(bitset.From(words)); !slices.Equal(got, want) {
			t.Errorf("rangesOf(%#x) = %v, want %v", words, got, want)
		}
	}
}

// ExampleView_Dump dumps the committed metadata of a device: as era_dump
// --logical does, but with the greatest era winning, and the blocks written
// since era 2 as era_invalidate prints them.
func ExampleView_Dump() {
	meta := &exampleStore{data: make([]byte, 1<<20)}
	origin := &exampleStore{data: make([]byte, 4*4096)}
	d, err := Open(meta, origin, Config{Format: true, BlockSectors: 8}) // 4 blocks, era 1
	if err != nil {
		fmt.Println(err)
		return
	}
	d.WriteAt([]byte("a"), 0)      // block 0 in era 1
	d.Checkpoint()                 // era 2
	d.WriteAt([]byte("b"), 2*4096) // block 2 in era 2
	if err := d.Close(); err != nil {
		fmt.Println(err)
		return
	}

	v, err := OpenView(meta)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := v.Dump(DumpOptions{IncludeCurrent: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	m.UUID = "" // a new device's is random; era_dump prints uuid="" always
	eraxml.WriteLogicalDump(os.Stdout, m, false)
	eraxml.WriteInvalidate(os.Stdout, eraxml.WrittenSince(m, 2))
	// Output:
	// <superblock uuid="" block_size="8" nr_blocks="4" current_era="2">
	//   <era_array>
	//     <era block="0" era="1"/>
	//     <era block="1" era="0"/>
	//     <era block="2" era="2"/>
	//     <era block="3" era="0"/>
	//   </era_array>
	// </superblock>
	// <blocks>
	//   <block block="2"/>
	// </blocks>
}

// exampleStore is a fixed-size in-memory Store.
type exampleStore struct{ data []byte }

func (s *exampleStore) Size() int64 { return int64(len(s.data)) }

func (s *exampleStore) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.data)) {
		return 0, io.EOF
	}
	return copy(p, s.data[off:]), nil
}

func (s *exampleStore) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.data)) {
		return 0, errors.New("write past the end")
	}
	return copy(s.data[off:], p), nil
}
