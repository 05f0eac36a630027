package eraxml

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestReadCompact(t *testing.T) {
	full := readMetadata(t, "small.xml")
	compact := readMetadata(t, "compact.xml")
	if d := cmp.Diff(full, compact); d != "" {
		t.Fatalf("compact.xml and small.xml differ (-full +compact):\n%s", d)
	}
	if len(full.Writesets) != 2 || !full.Writesets[0].Test(18) || full.Writesets[0].Test(19) {
		t.Fatalf("unexpected writesets %+v", full.Writesets)
	}
}

func TestReadMixedAndOverrides(t *testing.T) {
	// Writesets out of order, <bit> and <marked> mixed, later lines
	// overriding earlier ones (as era_restore 0.9.0 does), missing era
	// entries defaulting to 0, comments and a prolog ignored.
	in := `<?xml version="1.0"?>
<!-- comment -->
<superblock uuid="ignored" block_size="8" nr_blocks="4" current_era="9" extra="x">
  <writeset era="7" nr_bits="200">
    <marked block_begin="60" len="130"/>
    <bit block="100" value="false"/>
    <bit block="1" value="true"/>
  </writeset>
  <writeset era="2" nr_bits="3"></writeset>
  <era_array>
    <era block="2" era="5"/>
    <era block="2" era="6"></era>
  </era_array>
</superblock>
`
	m, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	ws := Writeset{Era: 7, NrBits: 200}
	ws.Set(1)
	for i := uint32(60); i < 190; i++ {
		if i != 100 {
			ws.Set(i)
		}
	}
	want := &Metadata{
		UUID: "ignored", BlockSize: 8, NrBlocks: 4, CurrentEra: 9, // Read keeps it; Restore checks it
		Writesets: []Writeset{{Era: 2, NrBits: 3, Bits: []uint64{0}}, ws},
		EraArray:  []uint32{0, 0, 6, 0},
	}
	if d := cmp.Diff(want, m); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

const header = `<superblock uuid="" block_size="128" nr_blocks="16" current_era="5">` + "\n"

func TestReadErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{header + `  <writeset era="4" nr_bits="16">
    <bit block="0" value="true"/>
    <bit block="99" value="true"/>
  </writeset>`, "line 4: writeset era 4: bit 99 >= nr_bits 16"},
		{header + `  <era_array>
    <era block="16" era="1"/>`, "line 3: era_array: block 16 >= nr_blocks 16"},
		{header + `  <writeset era="4" nr_bits="16">
  </writeset>
  <writeset era="4" nr_bits="8">`, "line 4: duplicate writeset era 4"},
		{header + `  <writeset era="4" nr_bits="4000000000">`,
			"line 2: writeset era 4: nr_bits 4000000000 too large (max 2147483647)"},
		{`<superblock uuid="" block_size="128" nr_blocks="2147483648" current_era="5">`,
			"line 1: nr_blocks 2147483648 too large (max 2147483647)"},
		{`<superblock block_size="128" current_era="5">`, "line 1: <superblock>: missing attribute nr_blocks"},
		{`<superblock block_size="128" nr_blocks="-1" current_era="5">`, `line 1: <superblock>: bad nr_blocks "-1"`},
		{`<superblock block_size="128" nr_blocks="0x10" current_era="5">`, `line 1: <superblock>: bad nr_blocks "0x10"`},
		{`<superblock block_size="128" nr_blocks="1" nr_blocks="2" current_era="5">`, `line 1: <superblock>: duplicate attribute nr_blocks`},
		{header + `  <writeset era="4" nr_bits="16">
    <bit block="3" value="yes"/>`, `line 3: writeset era 4: bit 3: bad value "yes"`},
		{header + `  <writeset era="4" nr_bits="16">
    <marked block_begin="10" len="7"/>`, `line 3: writeset era 4: marked blocks [10, 17) exceed nr_bits 16`},
		{header + `  <writeset era="4" nr_bits="16">
    <marked block_begin="10" len="0"/>`, `line 3: writeset era 4: <marked>: len 0`},
		{header + `  <writeset era="4" nr_bits="16">
    <era block="1" era="1"/>`, `line 3: unexpected <era> in <writeset>`},
		{header + `  <era_array>
    <era block="1" era="1"><era block="1" era="1"/></era>`, `line 3: unexpected <era> in an empty element`},
		{header + `  <era_array/>
  <era_array/>`, `line 3: second <era_array>`},
		{header + `  hello`, `line 2: unexpected text "hello"`},
		{header + `</superblock>
<superblock/>`, `line 3: unexpected <superblock> after </superblock>`},
		{`<blocks></blocks>`, `line 1: unexpected <blocks> at top level`},
		{header + `  <era_array>
  </era_array>
`, `line 4: unexpected EOF`},
		{header + `  <era_array>
  </writeset>`, `line 3: element <era_array> closed by </writeset>`},
		{"", `line 1: missing <superblock> element`},
		{"\n\n<!-- nothing -->\n", `line 4: missing <superblock> element`},
	} {
		_, err := Read(strings.NewReader(c.in))
		if err == nil {
			t.Errorf("Read accepted %q", c.in)
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("error %q does not wrap ErrSyntax", err)
		}
		if err.Error() != c.want {
			t.Errorf("error %q, want %q", err, c.want)
		}
	}
}

// TestReadReaderError checks that I/O errors are passed through, not
// reported as syntax errors.
func TestReadReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(header), &errReader{boom})
	_, err := Read(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrSyntax) {
		t.Fatalf("err = %v, want boom and not ErrSyntax", err)
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// allocated returns the bytes allocated while running f.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestReadBoundedMemory(t *testing.T) {
	// A hostile count is rejected before anything is allocated for it.
	n := allocated(func() {
		if _, err := Read(strings.NewReader(header + `<writeset era="1" nr_bits="4000000000">`)); err == nil {
			t.Error("nr_bits 4000000000 accepted")
		}
	})
	if n > 1<<20 {
		t.Errorf("Read allocated %d bytes for a rejected nr_bits", n)
	}
	// Allowed but large counts are only allocated once data needs them:
	// a truncated document declaring 2^31-1 bits and blocks costs little.
	in := `<superblock uuid="" block_size="8" nr_blocks="2147483647" current_era="5">
  <writeset era="1" nr_bits="2147483647">
    <bit block="5" value="true"/>
`
	n = allocated(func() {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Error("truncated input accepted")
		}
	})
	if n > 1<<20 {
		t.Errorf("Read allocated %d bytes before seeing data", n)
	}
	// ReadLimit refuses declared sizes beyond its budget.
	_, err := ReadLimit(strings.NewReader(in), 1<<20)
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "line 1: nr_blocks 2147483647 exceeds the memory limit") {
		t.Errorf("ReadLimit: err = %v", err)
	}
	two := header + `  <writeset era="1" nr_bits="4096"></writeset>
  <writeset era="2" nr_bits="4096"></writeset>
</superblock>`
	// 16 blocks = 64 bytes, each writeset 64 words = 512 bytes.
	if _, err := ReadLimit(strings.NewReader(two), 64+2*512); err != nil {
		t.Errorf("ReadLimit with exact budget: %v", err)
	}
	_, err = ReadLimit(strings.NewReader(two), 64+2*512-1)
	if err == nil || err.Error() != "line 3: writeset era 2: nr_bits 4096 exceeds the memory limit of 1087 bytes" {
		t.Errorf("ReadLimit one byte short: err = %v", err)
	}
}

// FuzzRead checks that Read never panics, that it only fails with
// ErrSyntax on in-memory input, and that whatever it accepts survives a
// round trip through WriteDump and WriteCompactDump.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"small.xml", "quirk.xml", "compact.xml", "small.in.xml"} {
		b, err := readTestdata(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(header + `<writeset era="1" nr_bits="4000000000">`))
	f.Add([]byte(header + "<era_array><era block=\"15\" era=\"3\"/></era_array></superblock>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadLimit(bytes.NewReader(data), 64<<10)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		entries := uint64(m.NrBlocks)
		for _, ws := range m.Writesets {
			entries += uint64(ws.NrBits)
		}
		writers := []func(io.Writer, *Metadata) error{WriteCompactDump}
		if entries <= 1<<16 {
			writers = append(writers, WriteDump)
		}
		for _, write := range writers {
			var buf bytes.Buffer
			if err := write(&buf, m); err != nil {
				t.Fatalf("writing accepted metadata: %v", err)
			}
			got, err := Read(&buf)
			if err != nil {
				t.Fatalf("reading our own output: %v", err)
			}
			if !sameMetadata(m, got) {
				t.Fatalf("round trip (-first +second):\n%s", cmp.Diff(m, got, cmpopts.EquateEmpty()))
			}
		}
		_ = WrittenSince(m, 1)
		if err := WriteJSON(io.Discard, m); err != nil {
			t.Fatal(err)
		}
		if err := WriteLogicalDump(io.Discard, m, true); err != nil {
			t.Fatal(err)
		}
	})
}

// sameMetadata is a fast equality test (nil and empty slices are equal).
func sameMetadata(a, b *Metadata) bool {
	if a.BlockSize != b.BlockSize || a.NrBlocks != b.NrBlocks || a.CurrentEra != b.CurrentEra ||
		!slices.Equal(a.EraArray, b.EraArray) || len(a.Writesets) != len(b.Writesets) {
		return false
	}
	for i := range a.Writesets {
		x, y := &a.Writesets[i], &b.Writesets[i]
		if x.Era != y.Era || x.NrBits != y.NrBits || !slices.Equal(x.Bits, y.Bits) {
			return false
		}
	}
	return true
}
