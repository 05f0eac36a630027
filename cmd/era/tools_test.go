package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/era-go/era"
	"github.com/era-go/era/eraxml"
	"github.com/era-go/era/internal/tooltest"
)

// tools holds the paths of the thin-provisioning-tools 0.9.0 programs.
type tools struct{ check, dump, restore, invalidate string }

// needTools finds the tools, skipping the test (failing it under CI) when
// they are missing. It must run on the test's goroutine.
func needTools(t *testing.T) tools {
	t.Helper()
	return tools{
		check:      tooltest.Need(t, "era_check"),
		dump:       tooltest.Need(t, "era_dump"),
		restore:    tooltest.Need(t, "era_restore"),
		invalidate: tooltest.Need(t, "era_invalidate"),
	}
}

// tool runs a program and returns what it did; safe from any goroutine.
func tool(path string, args ...string) result {
	var o, e bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 { // killed by a signal (0.9.0 aborts on some damage)
			code = 128 + 6
		}
	case err != nil:
		code = -1
		e.WriteString(err.Error())
	}
	return result{code, o.String(), e.String()}
}

// randomMetadata returns metadata that both era_restore 0.9.0 and era
// restore take: block sizes multiple of 8, 1..5000 blocks, up to 6
// writesets of distinct eras <= the current era with nr_bits below, equal
// to or above nr_blocks, and now and then 210 small writesets (an internal
// node in the writeset tree).
func randomMetadata(r *rand.Rand) *eraxml.Metadata {
	n := 1 + r.Uint32N([]uint32{70, 1100, 5000}[r.IntN(3)])
	m := &eraxml.Metadata{BlockSize: 8 * (1 + r.Uint32N(256)), NrBlocks: n, CurrentEra: r.Uint32N(30)}
	if r.IntN(8) == 0 {
		m.CurrentEra = ^uint32(0) - r.Uint32N(4)
	}
	nws := min(r.IntN(7), int(m.CurrentEra)+1)
	many := r.IntN(6) == 0
	if many {
		m.CurrentEra = max(m.CurrentEra, 300)
		nws = 210
	}
	eras := map[uint32]bool{}
	for len(eras) < nws {
		if many {
			eras[m.CurrentEra-uint32(len(eras))] = true
			continue
		}
		eras[m.CurrentEra-r.Uint32N(min(m.CurrentEra, 10)+1)] = true
	}
	sorted := make([]uint32, 0, len(eras))
	for e := range eras {
		sorted = append(sorted, e)
	}
	slices.Sort(sorted)
	for _, e := range sorted {
		ws := eraxml.Writeset{Era: e}
		switch {
		case many:
			ws.NrBits = 1 + r.Uint32N(min(n, 64))
		case r.IntN(3) == 0:
			ws.NrBits = 1 + r.Uint32N(n)
		case r.IntN(2) == 0:
			ws.NrBits = n + 1 + r.Uint32N(200)
		default:
			ws.NrBits = n
		}
		ws.Bits = make([]uint64, (ws.NrBits+63)/64)
		density := []float64{0, 0.01, 0.3, 0.9, 1}[r.IntN(5)]
		on := false
		for b := range ws.NrBits {
			if r.IntN(8) == 0 {
				on = r.Float64() < density
			}
			if on {
				ws.Set(b)
			}
		}
		m.Writesets = append(m.Writesets, ws)
	}
	m.EraArray = make([]uint32, n)
	e := uint32(0)
	for b := range m.EraArray {
		if r.IntN(12) == 0 {
			e = m.CurrentEra - r.Uint32N(min(m.CurrentEra, 6)+1)
			if r.IntN(3) == 0 {
				e = 0
			}
		}
		m.EraArray[b] = e
	}
	return m
}

// render returns what write writes.
func render(t testing.TB, write func(*bytes.Buffer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// newFile creates a file of size bytes in dir and returns its path.
func newFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameOutput compares our run with the tool's: both exit 0, same stdout.
func sameOutput(t *testing.T, what string, ours, theirs result) {
	t.Helper()
	if ours.code != 0 || theirs.code != 0 {
		t.Errorf("%s: ours %v\ntheirs %v", what, ours, theirs)
		return
	}
	if ours.stdout != theirs.stdout {
		t.Errorf("%s: output differs from 0.9.0's: %s", what, firstDiff(ours.stdout, theirs.stdout))
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			return fmt.Sprintf("line %d is %q, 0.9.0 has %q", i+1, g, w)
		}
	}
	return "?"
}

// TestRestoredImagesAgainstTools: on images era_restore 0.9.0 wrote from
// random XML, era dump, dump --logical --compat and invalidate print what
// era_dump, era_dump --logical and era_invalidate print, and check agrees
// with era_check. era restore of the same XML (in dump form and in compact
// form) gives metadata that passes era_check and that era_dump prints as
// the XML.
func TestRestoredImagesAgainstTools(t *testing.T) {
	tl := needTools(t)
	seeds := 24
	if testing.Short() {
		seeds = 6
	}
	type job struct {
		name string
		fn   func() // runs on a worker goroutine; reports with t.Errorf
	}
	var jobs []job
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 0x1e5))
		m := randomMetadata(r)
		dir := t.TempDir()
		xmlText := render(t, func(b *bytes.Buffer) error { return eraxml.WriteDump(b, m) })
		xmlPath := filepath.Join(dir, "in.xml")
		compact := filepath.Join(dir, "compact.xml")
		if err := os.WriteFile(xmlPath, []byte(xmlText), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(compact, []byte(render(t, func(b *bytes.Buffer) error { return eraxml.WriteCompactDump(b, m) })), 0o644); err != nil {
			t.Fatal(err)
		}
		theirs := newFile(t, dir, "theirs.bin", 2<<20)
		if res := tool(tl.restore, "-q", "-i", xmlPath, "-o", theirs); res.code != 0 {
			t.Fatalf("seed %d: era_restore: %v", seed, res)
		}
		add := func(what string, fn func(string)) {
			name := fmt.Sprintf("seed %d: %s", seed, what)
			jobs = append(jobs, job{name, func() { fn(name) }})
		}
		add("dump", func(name string) { sameOutput(t, name, cli("dump", theirs), tool(tl.dump, theirs)) })
		add("dump --logical --compat", func(name string) {
			sameOutput(t, name, cli("dump", "--logical", "--compat", theirs), tool(tl.dump, "--logical", theirs))
		})
		add("dump -o", func(name string) {
			out := filepath.Join(dir, "dump-o.xml")
			if res := cli("dump", "-o", out, theirs); res.code != 0 {
				t.Errorf("%s: %v", name, res)
				return
			}
			if data, _ := os.ReadFile(out); string(data) != xmlText {
				t.Errorf("%s: the -o file is not the dump", name)
			}
		})
		add("check", func(name string) {
			if ours, th := cli("check", theirs), tool(tl.check, theirs); ours.code != 0 || th.code != 0 {
				t.Errorf("%s: ours %v\nera_check %v", name, ours, th)
			}
		})
		for _, n := range []uint32{0, 1, m.CurrentEra / 2, m.CurrentEra, m.CurrentEra + 1, uint32(r.Uint64N(uint64(m.CurrentEra) + 1))} {
			add(fmt.Sprintf("invalidate --written-since %d", n), func(name string) {
				if n > m.CurrentEra { // 0.9.0 prints an empty list; we refuse
					if r := cli("invalidate", "--written-since", fmt.Sprint(n), theirs); r.code != 1 || !strings.Contains(r.stderr, "current era") {
						t.Errorf("%s: era from the future: %v", name, r)
					}
					return
				}
				sameOutput(t, name, cli("invalidate", "--written-since", fmt.Sprint(n), theirs), tool(tl.invalidate, "--written-since", fmt.Sprint(n), theirs))
			})
		}
		for _, in := range []string{xmlPath, compact} {
			ours := newFile(t, dir, "ours-"+filepath.Base(in)+".bin", 2<<20)
			add("restore -i "+filepath.Base(in), func(name string) {
				if res := cli("restore", "-q", "-i", in, "-o", ours); res.code != 0 || res.stdout != "" {
					t.Errorf("%s: %v", name, res)
					return
				}
				if res := tool(tl.check, ours); res.code != 0 {
					t.Errorf("%s: era_check fails on our restore: %v", name, res)
				}
				if res := tool(tl.dump, ours); res.code != 0 || res.stdout != xmlText {
					t.Errorf("%s: era_dump of our restore differs from the input: %s", name, firstDiff(res.stdout, xmlText))
				}
				if res := cli("check", ours); res.code != 0 {
					t.Errorf("%s: era check of our restore: %v", name, res)
				}
			})
		}
	}
	parallel(len(jobs), func(i int) { jobs[i].fn() })
}

// discardOrigin is an origin that keeps nothing: the tests follow eras,
// not data.
type discardOrigin struct{ size int64 }

func (o discardOrigin) Size() int64 { return o.size }

func (o discardOrigin) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }

func (o discardOrigin) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// memStore is an in-memory metadata store. Its writes are atomic with
// respect to snapshot, so any snapshot is a state a crash could leave.
type memStore struct {
	mu   sync.Mutex
	data []byte
}

func (s *memStore) Size() int64 { return int64(len(s.data)) }

func (s *memStore) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(s.data)) {
		return 0, errors.New("read past the end")
	}
	return copy(p, s.data[off:]), nil
}

func (s *memStore) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(s.data)) {
		return 0, errors.New("write past the end")
	}
	return copy(s.data[off:], p), nil
}

func (s *memStore) snapshot() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.data)
}

// eraModel is the era each block was last written in.
type eraModel []uint32

func (m eraModel) since(n uint32) []eraxml.Range {
	var out []eraxml.Range
	for b, e := range m {
		if e < n {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End == uint64(b) {
			out[k-1].End++
		} else {
			out = append(out, eraxml.Range{Begin: uint64(b), End: uint64(b) + 1})
		}
	}
	return out
}

// deviceImage is metadata a device left, with what it must say.
type deviceImage struct {
	name     string
	data     []byte
	eras     eraModel // the truth
	snapEras eraModel // the truth of the held snapshot, if any
	current  uint32
	closed   bool // no current writeset
}

// deviceImages runs a random workload on an era.Device and returns the
// metadata at a few points while it is open (as a crash would leave it,
// with a current writeset) and after each Close.
func deviceImages(t *testing.T, seed uint64) []deviceImage {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0xde5))
	sectors := uint32(8 * (1 + r.IntN(16)))
	bs := int64(sectors) * 512
	nr := int64(1 + r.IntN(3000))
	meta := &memStore{data: make([]byte, 4<<20)}
	eras := make(eraModel, nr)
	var snap eraModel
	current := uint32(0)
	var out []deviceImage
	keep := func(closed bool) {
		out = append(out, deviceImage{
			name: fmt.Sprintf("device %d image %d", seed, len(out)), data: meta.snapshot(),
			eras: slices.Clone(eras), snapEras: slices.Clone(snap), current: current, closed: closed,
		})
	}
	for round := range 3 {
		if round > 0 && r.IntN(2) == 0 { // the origin grows or shrinks (a held snapshot keeps its size)
			nr = 1 + r.Int64N(3000)
			if int64(len(eras)) > nr {
				eras = eras[:nr]
			} else {
				eras = append(eras, make(eraModel, nr-int64(len(eras)))...)
			}
		}
		origin := discardOrigin{nr * bs}
		d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: sectors})
		if err != nil {
			t.Fatalf("seed %d round %d: Open: %v", seed, round, err)
		}
		current++
		for op := range 150 {
			switch x := r.IntN(100); {
			case x < 80:
				off := r.Int64N(origin.size)
				n := 1 + r.Int64N(min(3*bs, origin.size-off))
				if _, err := d.WriteAt(make([]byte, n), off); err != nil {
					t.Fatal(err)
				}
				for b := off / bs; b <= (off+n-1)/bs; b++ {
					eras[b] = current
				}
			case x < 92:
				if _, err := d.Checkpoint(); err != nil {
					t.Fatal(err)
				}
				current++
			case x < 97:
				if snap == nil {
					if _, err := d.TakeSnapshot(); err != nil {
						t.Fatal(err)
					}
					current++
					snap = slices.Clone(eras)
				} else {
					if err := d.DropSnapshot(); err != nil {
						t.Fatal(err)
					}
					snap = nil
				}
			default:
				if err := d.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			if op%50 == 49 {
				keep(false)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		keep(true)
	}
	return out
}

// TestDeviceImagesAgainstTools: on metadata era.Device wrote, era dump and
// dump --logical --compat print what era_dump prints, check agrees with
// era_check, and invalidate prints the truth: what era_invalidate prints
// once the device is closed, more while the current writeset holds writes
// that 0.9.0 misses. --logical and --metadata-snapshot give the truth.
func TestDeviceImagesAgainstTools(t *testing.T) {
	tl := needTools(t)
	devices := 4
	if testing.Short() {
		devices = 2
	}
	var images []deviceImage
	for seed := range uint64(devices) {
		images = append(images, deviceImages(t, seed)...)
	}
	dir := t.TempDir()
	var jobs []func()
	for i, img := range images {
		path := filepath.Join(dir, fmt.Sprintf("img%d.bin", i))
		if err := os.WriteFile(path, img.data, 0o644); err != nil {
			t.Fatal(err)
		}
		name := img.name
		jobs = append(jobs,
			func() { sameOutput(t, name+": dump --compat", cli("dump", "--compat", path), tool(tl.dump, path)) },
			func() {
				sameOutput(t, name+": dump --logical --compat", cli("dump", "--logical", "--compat", path), tool(tl.dump, "--logical", path))
			},
			func() {
				if ours, th := cli("check", path), tool(tl.check, path); ours.code != 0 || th.code != 0 {
					t.Errorf("%s: check: ours %v\nera_check %v", name, ours, th)
				}
			},
			func() {
				res := cli("dump", "--logical", path)
				m, err := eraxml.Read(strings.NewReader(res.stdout))
				if res.code != 0 || err != nil || !slices.Equal(m.EraArray, []uint32(img.eras)) {
					t.Errorf("%s: dump --logical is not the truth (%v, %v)", name, res.code, err)
				}
			},
		)
		for _, n := range []uint32{0, 1, img.current / 2, img.current, img.current + 1} {
			jobs = append(jobs, func() {
				// Blocks past the end of the origin (marked before it
				// shrank) are listed, as 0.9.0 does; the truth stops at
				// the end.
				arg := fmt.Sprint(n)
				if n > img.current {
					if r := cli("invalidate", "--written-since", arg, path); r.code != 1 || !strings.Contains(r.stderr, "current era") {
						t.Errorf("%s: invalidate from the future: %v", name, r)
					}
					return
				}
				if got, err := jsonRanges(cli("invalidate", "--written-since", arg, "--format", "json", path), len(img.eras)); err != nil || !slices.Equal(got, img.eras.since(n)) {
					t.Errorf("%s: invalidate --written-since %d: %v (%v), want %v", name, n, got, err, img.eras.since(n))
				}
				if img.closed {
					sameOutput(t, fmt.Sprintf("%s: invalidate --written-since %d", name, n), cli("invalidate", "--written-since", arg, path), tool(tl.invalidate, "--written-since", arg, path))
				}
				if img.snapEras != nil {
					res := cli("invalidate", "--metadata-snapshot", "--written-since", arg, "--format", "json", path)
					if res.code == 1 && strings.Contains(res.stderr, "current era") && len(img.snapEras.since(n)) == 0 {
						return // an era past the snapshot's
					}
					got, err := jsonRanges(res, len(img.snapEras))
					if err != nil || !slices.Equal(got, img.snapEras.since(n)) {
						t.Errorf("%s: invalidate --metadata-snapshot --written-since %d: %v (%v), want %v", name, n, got, err, img.snapEras.since(n))
					}
				}
			})
		}
	}
	parallel(len(jobs), func(i int) { jobs[i]() })
}

// jsonRanges decodes the ranges of invalidate --format json, clipped to
// blocks below n.
func jsonRanges(res result, n int) ([]eraxml.Range, error) {
	if res.code != 0 {
		return nil, fmt.Errorf("%v", res)
	}
	var doc struct {
		Ranges []struct{ Begin, End uint64 }
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		return nil, err
	}
	var out []eraxml.Range
	for _, r := range doc.Ranges {
		if r.Begin < uint64(n) {
			out = append(out, eraxml.Range{Begin: r.Begin, End: min(r.End, uint64(n))})
		}
	}
	return out, nil
}
