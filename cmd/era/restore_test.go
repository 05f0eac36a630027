package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/era-go/era"
	"github.com/era-go/era/eraxml"
)

const smallXML = `<superblock uuid="" block_size="128" nr_blocks="4" current_era="5">
  <writeset era="4" nr_bits="4">
    <bit block="0" value="true"/>
  </writeset>
  <writeset era="5" nr_bits="6">
    <marked block_begin="1" len="5"/>
  </writeset>
  <era_array>
    <era block="0" era="2"/>
    <era block="3" era="5"/>
  </era_array>
</superblock>
`

func TestRestoreCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.xml")
	if err := os.WriteFile(in, []byte(smallXML), 0o644); err != nil {
		t.Fatal(err)
	}
	out := newFile(t, dir, "out.bin", 64<<10)
	r := cli("restore", "-i", in, "-o", out)
	if r.code != 0 || !strings.Contains(r.stdout, "restored 4 blocks") || r.stderr != "" {
		t.Fatalf("restore: %v", r)
	}
	m, err := eraxml.Read(strings.NewReader(smallXML))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eraOK(t, "dump", out), render(t, func(b *bytes.Buffer) error { return eraxml.WriteDump(b, m) }); got != want {
		t.Errorf("dump after restore: %s", firstDiff(got, want))
	}
	eraOK(t, "check", out)

	// Long options, and standard input.
	out2 := newFile(t, dir, "out2.bin", 64<<10)
	var o, e bytes.Buffer
	if code := runProgram("era_restore", []string{"--quiet", "--input", "-", "--output", out2}, strings.NewReader(smallXML), &o, &e); code != 0 || o.Len() != 0 || e.Len() != 0 {
		t.Fatalf("era_restore from stdin: exit %d %s %s", code, o.String(), e.String())
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Errorf("restore from standard input wrote other metadata")
	}
}

func TestRestoreCommandErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.xml", smallXML)
	for _, c := range []struct {
		name, xml, want string
	}{
		{"era.xml", strings.Replace(smallXML, `era="5"/>`, `era="6"/>`, 1), "line 10: era_array: block 3: era 6 beyond the current era 5"},
		{"ws.xml", strings.Replace(smallXML, `<writeset era="4"`, `<writeset era="9"`, 1), "line 2: writeset era 9: era beyond the current era 5"},
		{"bits0.xml", strings.Replace(strings.Replace(smallXML, `nr_bits="6"`, `nr_bits="0"`, 1), `<marked block_begin="1" len="5"/>`, "", 1), "line 5: writeset era 5: nr_bits 0"},
		{"bs.xml", strings.Replace(smallXML, `block_size="128"`, `block_size="100"`, 1), "line 1: block_size 100"},
		{"nr0.xml", "<superblock uuid=\"\" block_size=\"8\" nr_blocks=\"0\" current_era=\"0\">\n<era_array/>\n</superblock>\n", "line 1: nr_blocks 0"},
		{"syntax.xml", strings.Replace(smallXML, `<bit block="0" value="true"/>`, `<bit block="7" value="true"/>`, 1), "line 3: writeset era 4: bit 7 >= nr_bits 4"},
		{"tag.xml", strings.Replace(smallXML, "<era_array>", "<eras>", 1), "line 8: unexpected <eras>"},
		{"empty.xml", "", "missing <superblock>"},
	} {
		in := write(c.name, c.xml)
		out := newFile(t, dir, c.name+".bin", 64<<10)
		r := cli("restore", "-i", in, "-o", out)
		if r.code != 1 || !strings.Contains(r.stderr, in+": ") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("restore %s: want exit 1 and %q; got %v", c.name, c.want, r)
		}
		if data, _ := os.ReadFile(out); bytes.ContainsFunc(data, func(r rune) bool { return r != 0 }) {
			t.Errorf("restore %s wrote the output", c.name)
		}
	}

	if r := cli("restore", "-i", good, "-o", filepath.Join(dir, "nodir", "missing.bin")); r.code != 1 || !strings.Contains(r.stderr, "missing.bin: no such file") {
		t.Errorf("restore into a missing directory: %v", r)
	}
	if r := cli("restore", "-i", filepath.Join(dir, "none.xml"), "-o", newFile(t, dir, "x.bin", 1<<16)); r.code != 1 || !strings.Contains(r.stderr, "none.xml: no such file") {
		t.Errorf("restore from a missing file: %v", r)
	}

	// Too small: refused untouched, with the size needed (era_restore
	// needs 9 blocks for m.xml, README.md).
	small := filepath.Join(dir, "small.bin")
	junk := bytes.Repeat([]byte{0x5a}, 8*4096)
	if err := os.WriteFile(small, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	r := cli("restore", "-i", filepath.Join(golden, "m.xml"), "-o", small)
	if r.code != 1 || !strings.Contains(r.stderr, small+": ") || !strings.Contains(r.stderr, "too small") || !strings.Contains(r.stderr, "needs 9 blocks (36864 bytes)") {
		t.Errorf("restore into 8 blocks: %v", r)
	}
	if data, _ := os.ReadFile(small); !bytes.Equal(data, junk) {
		t.Errorf("a refused restore changed the output")
	}
	if err := os.Truncate(small, 9*4096); err != nil {
		t.Fatal(err)
	}
	if r := cli("restore", "-q", "-i", filepath.Join(golden, "m.xml"), "-o", small); r.code != 0 {
		t.Errorf("restore into 9 blocks: %v", r)
	}
}

// FuzzRestoreXML fuzzes what era restore does with its input: read the
// XML, then restore it. Nothing panics; every error about the input gives
// its line; what is restored dumps as the input read.
func FuzzRestoreXML(f *testing.F) {
	f.Add([]byte(smallXML))
	for _, name := range []string{"m.xml", "overflowbits.xml", "multi.xml"} {
		if data, err := os.ReadFile(filepath.Join(golden, name)); err == nil {
			f.Add(data)
		}
	}
	compact := render(f, func(b *bytes.Buffer) error {
		return eraxml.WriteCompactDump(b, randomMetadata(rand.New(rand.NewPCG(1, 2))))
	})
	f.Add([]byte(compact))
	f.Add([]byte(`<superblock uuid="" block_size="8" nr_blocks="2" current_era="1"><era_array><era block="1" era="2"/></era_array></superblock>`))
	f.Add([]byte(`<superblock block_size="8" nr_blocks="1" current_era="0"><writeset era="0" nr_bits="0"></writeset></superblock>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := eraxml.ReadLimit(bytes.NewReader(data), 1<<20)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("read error without a line: %v", err)
			}
			return
		}
		store := &memStore{data: make([]byte, 512<<10)}
		err = era.Restore(m, store, int64(len(store.data)))
		var ie *era.RestoreInputError
		switch {
		case errors.As(err, &ie):
			if lerr := locate(bytes.NewReader(data), ie); !strings.HasPrefix(lerr.Error(), "line ") {
				t.Fatalf("restore refused the input without a line: %v", lerr)
			}
			return
		case errors.Is(err, era.ErrNoSpace):
			return
		case err != nil:
			t.Fatalf("Restore: %v", err)
		}
		v, err := era.OpenView(store)
		if err != nil {
			t.Fatalf("OpenView of restored metadata: %v", err)
		}
		got, err := v.Dump(era.DumpOptions{})
		if err != nil {
			t.Fatalf("Dump of restored metadata: %v", err)
		}
		var want, have bytes.Buffer
		if err := eraxml.WriteDump(&want, m); err != nil {
			t.Fatal(err)
		}
		if err := eraxml.WriteDump(&have, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.Bytes(), have.Bytes()) {
			t.Fatalf("restored metadata dumps differently: %s", firstDiff(have.String(), want.String()))
		}
		if err := era.Check(store); err != nil {
			t.Fatalf("Check of restored metadata: %v", err)
		}
	})
}

// TestRestoreKeepsTheIdentity: dump prints the metadata's uuid and restore
// writes it back, into a file it creates when it is missing, so change IDs
// survive a dump and restore; invalidate refuses an era from the future.
func TestRestoreKeepsTheIdentity(t *testing.T) {
	dir := t.TempDir()
	metaPath := filepath.Join(dir, "meta")
	meta, err := os.Create(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	meta.Truncate(1 << 20)
	d, err := era.Open(meta, &memOrigin{make([]byte, 64*4096)}, era.Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	d.WriteAt([]byte{1}, 3*4096)
	id := d.ChangeID()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	meta.Close()
	xmlPath := filepath.Join(dir, "dump.xml")
	if r := cli("dump", "-o", xmlPath, metaPath); r.code != 0 {
		t.Fatalf("dump: %v", r)
	}
	text, _ := os.ReadFile(xmlPath)
	if want := `uuid="` + id.String()[:36] + `"`; !strings.Contains(string(text), want) {
		t.Fatalf("dump does not print %s:\n%.200s", want, text)
	}
	out := filepath.Join(dir, "new", "restored")
	os.Mkdir(filepath.Dir(out), 0o755)
	if r := cli("restore", "-q", "-i", xmlPath, "-o", out); r.code != 0 {
		t.Fatalf("restore into a missing file: %v", r)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := era.OpenView(f)
	if err != nil {
		t.Fatal(err)
	}
	if v.UUID() != id.UUID {
		t.Fatalf("restored uuid %x, dumped %x", v.UUID(), id.UUID)
	}
	if fi, _ := f.Stat(); fi.Size() < era.MetadataSize(64, 0) {
		t.Fatalf("created a %d-byte store, the sizing rule says %d", fi.Size(), era.MetadataSize(64, 0))
	}
	if r := cli("invalidate", "--written-since", "99999", out); r.code != 1 || !strings.Contains(r.stderr, "current era") {
		t.Fatalf("invalidate from the future: %v", r)
	}
	bad := strings.Replace(string(text), id.String()[:36], "not-a-uuid", 1)
	os.WriteFile(xmlPath, []byte(bad), 0o644)
	if r := cli("restore", "-i", xmlPath, "-o", filepath.Join(dir, "bad")); r.code != 1 || !strings.Contains(r.stderr, "uuid") {
		t.Fatalf("restore of a bad uuid: %v", r)
	}
}

// memOrigin is an in-memory origin.
type memOrigin struct{ b []byte }

func (m *memOrigin) Size() int64 { return int64(len(m.b)) }
func (m *memOrigin) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, m.b[off:]), nil
}
func (m *memOrigin) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.b[off:], p), nil
}
