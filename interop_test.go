package era

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/eraxml"
	"github.com/era-go/era/internal/tooltest"
)

// toolRanges converts ranges for the eraxml writer.
func toolRanges(rs []Range) []eraxml.Range {
	out := make([]eraxml.Range, len(rs))
	for i, r := range rs {
		out[i] = eraxml.Range{Begin: r.Begin, End: r.End}
	}
	return out
}

// invalidateXML renders ranges as era_invalidate prints them.
func invalidateXML(t *testing.T, rs []Range) string {
	var b bytes.Buffer
	if err := eraxml.WriteInvalidate(&b, toolRanges(rs)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// foldedEras reads era_dump's plain output and folds it the right way: a
// block's era is the greatest of its era-array value and the eras of the
// writesets that mark it (0.9.0's --logical takes the lowest writeset).
func foldedEras(t *testing.T, meta string) []uint32 {
	m, err := eraxml.Read(bytes.NewReader(tooltest.Run(t, "era_dump", meta)))
	if err != nil {
		t.Fatalf("parse era_dump: %v", err)
	}
	return m.LogicalEras(false)
}

func tempFile(t *testing.T, size int64) *os.File {
	t.Helper()
	return tempFileAt(t, filepath.Join(t.TempDir(), "meta"), size)
}

func copyFile(t *testing.T, src string) *os.File {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f := tempFile(t, 0)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// randomWorkload runs writes, checkpoints and snapshots on d, keeping m.
func randomWorkload(t *testing.T, d *Device, m *model, rng *rand.Rand, ops int) {
	t.Helper()
	held := d.Status().Held
	for range ops {
		switch r := rng.IntN(100); {
		case r < 85:
			n := 1 + rng.IntN(2*m.blockBytes)
			off := rng.IntN(len(m.data) - n + 1)
			p := bytes.Repeat([]byte{byte(r)}, n)
			if _, err := d.WriteAt(p, int64(off)); err != nil {
				t.Fatal(err)
			}
			m.write(p, off)
		case r < 94:
			if _, err := d.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			m.current++
		case r < 97:
			if held {
				if err := d.DropSnapshot(); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := d.TakeSnapshot(); err != nil {
					t.Fatal(err)
				}
				m.current++
			}
			held = !held
		default:
		}
	}
}

// TestInteropWorkloads runs random workloads, closes the device, and
// compares era_check, era_dump and era_invalidate 0.9.0 with the model.
func TestInteropWorkloads(t *testing.T) {
	tooltest.Need(t, "era_check")
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			sectors := uint32(8 * (1 + rng.IntN(4)))
			blockBytes := int(sectors) * 512
			nrBlocks := 1 + rng.IntN(4000)
			size := nrBlocks * blockBytes
			meta := tempFile(t, 4<<20)
			origin := newMem(size)
			m := &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, size), blockBytes: blockBytes}
			for round := range 3 {
				d := openT(t, meta, origin, sectors)
				if round > 0 {
					m.current++
				}
				randomWorkload(t, d, m, rng, 200)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				if out, stderr, err := tooltest.Try(t, "era_check", meta.Name()); err != nil {
					t.Fatalf("era_check: %v\n%s%s", err, out, stderr)
				}
				if err := Check(meta); err != nil {
					t.Fatalf("Check: %v", err)
				}
				if diff := cmp.Diff(m.era, foldedEras(t, meta.Name())); diff != "" {
					t.Fatalf("era_dump folded (-model +dump):\n%s", diff)
				}
				for _, n := range []uint32{0, 1, m.current / 2, m.current, m.current + 1} {
					got := string(tooltest.Run(t, "era_invalidate", "--written-since", fmt.Sprint(n), meta.Name()))
					if want := invalidateXML(t, m.writtenSince(n)); got != want {
						t.Fatalf("era_invalidate --written-since %d:\n%s\nwant:\n%s", n, got, want)
					}
				}
			}
		})
	}
}

// goldenDir holds images written by era_restore and by the kernel.
const goldenDir = "testdata/golden"

// TestRestoredImages opens what era_restore wrote: the views answer as
// era_invalidate does, and a device carries on and still passes era_check.
func TestRestoredImages(t *testing.T) {
	for _, name := range []string{"m", "multi", "deep", "overflowbits", "wide"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(goldenDir, name+".bin")
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v, err := OpenView(f)
			if err != nil {
				t.Fatalf("OpenView: %v", err)
			}
			if err := Check(f); err != nil {
				t.Fatalf("Check: %v", err)
			}
			invs, _ := filepath.Glob(filepath.Join(goldenDir, name+".inv.*"))
			if len(invs) == 0 {
				t.Fatal("no golden era_invalidate outputs")
			}
			for _, inv := range invs {
				n, _ := strconv.Atoi(inv[strings.LastIndexByte(inv, '.')+1:])
				want, _ := os.ReadFile(inv)
				rs, err := v.WrittenSince(uint32(n))
				if uint32(n) > v.CurrentEra() { // era_invalidate prints nothing; we refuse
					if !errors.Is(err, ErrOutOfRange) {
						t.Fatalf("WrittenSince(%d) past era %d: %v, want ErrOutOfRange", n, v.CurrentEra(), err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := invalidateXML(t, rs); got != string(want) {
					t.Fatalf("WrittenSince(%d) as XML:\n%.500s\nera_invalidate printed:\n%.500s", n, got, want)
				}
			}

			// The committed images are as small as era_restore allows;
			// restore the same XML into a roomier file to carry on.
			meta := tempFile(t, 8<<20)
			tooltest.Run(t, "era_restore", "-i", filepath.Join(goldenDir, name+".xml"), "-o", meta.Name())
			sectors := v.BlockSectors()
			origin := newMem(int(v.NrBlocks()) * int(sectors) * 512)
			d := openT(t, meta, origin, sectors)
			if d.Status().CurrentEra != v.CurrentEra()+1 {
				t.Fatalf("era after open %d, want %d", d.Status().CurrentEra, v.CurrentEra()+1)
			}
			for b := range min(v.NrBlocks(), 40) {
				if _, err := d.WriteAt([]byte{1}, int64(b*3%v.NrBlocks())*int64(sectors)*512); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			want, err := d.WrittenSince(v.CurrentEra())
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if out, stderr, err := tooltest.Try(t, "era_check", meta.Name()); err != nil {
				t.Fatalf("era_check after carrying on: %v\n%s%s", err, out, stderr)
			}
			got := string(tooltest.Run(t, "era_invalidate", "--written-since", fmt.Sprint(v.CurrentEra()), meta.Name()))
			if got != invalidateXML(t, want) {
				t.Fatalf("era_invalidate after carrying on:\n%.500s\nwant:\n%.500s", got, invalidateXML(t, want))
			}
		})
	}
}

// TestKernelImages reads metadata the Linux 6.1 kernel wrote (a normal run,
// a crash without suspend, a held metadata snapshot) and compares every
// answer with what the scenario wrote.
func TestKernelImages(t *testing.T) {
	for _, name := range []string{"kernel-a1", "kernel-crash", "kernel-snap"} {
		t.Run(name, func(t *testing.T) {
			truth := goldenTruth(t, name)
			nr, _ := strconv.Atoi(truth["nr_blocks"])
			bs, _ := strconv.Atoi(truth["block_size"])
			f, err := os.Open(filepath.Join(goldenDir, name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := Check(f); err != nil {
				t.Fatalf("Check: %v", err)
			}
			v, err := OpenView(f)
			if err != nil {
				t.Fatal(err)
			}
			if int(v.NrBlocks()) != nr || int(v.BlockSectors()) != bs {
				t.Fatalf("view: %d blocks of %d sectors, want %d of %d", v.NrBlocks(), v.BlockSectors(), nr, bs)
			}
			m := &model{era: truthEras(t, truth["logical"], uint32(nr))}
			if _, err := v.WrittenSince(v.CurrentEra() + 1); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("WrittenSince past the current era: %v, want ErrOutOfRange", err)
			}
			for n := range v.CurrentEra() + 1 {
				got, err := v.WrittenSince(n)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(m.writtenSince(n), got); diff != "" {
					t.Fatalf("WrittenSince(%d) (-kernel truth +view):\n%s", n, diff)
				}
			}
			if s, ok := truth["snapshot_logical"]; ok {
				sv, err := OpenSnapshot(f)
				if err != nil {
					t.Fatalf("OpenSnapshot: %v", err)
				}
				sm := &model{era: truthEras(t, s, uint32(nr))}
				for n := range sv.CurrentEra() + 1 {
					got, err := sv.WrittenSince(n)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(sm.writtenSince(n), got); diff != "" {
						t.Fatalf("snapshot WrittenSince(%d) (-kernel truth +view):\n%s", n, diff)
					}
				}
			} else if _, err := OpenSnapshot(f); err != ErrNoSnapshot {
				t.Fatalf("OpenSnapshot without one: %v", err)
			}

			// Carry on where the kernel stopped.
			meta := copyFile(t, f.Name())
			origin := newMem(nr * bs * 512)
			d := openT(t, meta, origin, uint32(bs))
			era := d.Status().CurrentEra
			if _, err := d.WriteAt([]byte{7}, int64(bs*512*(nr-1))); err != nil {
				t.Fatal(err)
			}
			m.era[nr-1] = era
			if d.Status().Held {
				if err := d.DropSnapshot(); err != nil {
					t.Fatal(err)
				}
			}
			for n := range era + 1 {
				got, err := d.WrittenSince(n)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(m.writtenSince(n), got); diff != "" {
					t.Fatalf("device WrittenSince(%d) (-truth +device):\n%s", n, diff)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := Check(meta); err != nil {
				t.Fatalf("Check after carrying on: %v", err)
			}
			if out, stderr, err := tooltest.Try(t, "era_check", meta.Name()); err != nil {
				t.Fatalf("era_check after carrying on: %v\n%s%s", err, out, stderr)
			}
		})
	}
}
