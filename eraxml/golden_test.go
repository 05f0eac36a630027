package eraxml

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The files in testdata named *.xml except compact.xml were produced by
// thin-provisioning-tools 0.9.0 from small.in.xml and quirk.in.xml:
//
//	truncate -s 4M m.bin && era_restore -i small.in.xml -o m.bin
//	era_dump m.bin > small.xml
//	era_dump --logical m.bin > small.logical.xml
//	era_invalidate --written-since N m.bin > small.invalidate-N.xml
//
// so these tests check byte compatibility even where the tools are absent.

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := readTestdata(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readMetadata(t *testing.T, name string) *Metadata {
	t.Helper()
	m, err := Read(bytes.NewReader(readFile(t, name)))
	if err != nil {
		t.Fatalf("Read %s: %v", name, err)
	}
	return m
}

func render(t *testing.T, f func(*bytes.Buffer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the tool's output\n--- got:\n%s\n--- want:\n%s", what, got, want)
	}
}

func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		eras []uint32
	}{
		{"small", []uint32{0, 1, 2, 3, 4, 5, 6}},
		{"quirk", []uint32{0, 4, 7, 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := readMetadata(t, c.name+".xml")
			checkSame(t, "WriteDump", render(t, func(b *bytes.Buffer) error { return WriteDump(b, m) }),
				readFile(t, c.name+".xml"))
			checkSame(t, "WriteLogicalDump(compat)", render(t, func(b *bytes.Buffer) error { return WriteLogicalDump(b, m, true) }),
				readFile(t, c.name+".logical.xml"))
			for _, era := range c.eras {
				got := render(t, func(b *bytes.Buffer) error { return WriteInvalidate(b, WrittenSince(m, era)) })
				checkSame(t, fmt.Sprintf("invalidate --written-since %d", era), got,
					readFile(t, fmt.Sprintf("%s.invalidate-%d.xml", c.name, era)))
			}
		})
	}
}

// TestLogicalQuirk pins down the difference between 0.9.0's logical dump and
// the corrected one on quirk.xml: array 3 4 3 5, writesets 3 (blocks 0-2),
// 4 (blocks 0-3) and 7 (blocks 2, 3, 70).
func TestLogicalQuirk(t *testing.T) {
	m := readMetadata(t, "quirk.xml")
	compat := m.LogicalEras(true)[:4]
	fixed := m.LogicalEras(false)[:4]
	if want := []uint32{3, 4, 3, 5}; !slices.Equal(compat, want) {
		t.Errorf("compat logical eras = %v, want %v", compat, want)
	}
	if want := []uint32{4, 4, 7, 7}; !slices.Equal(fixed, want) {
		t.Errorf("fixed logical eras = %v, want %v", fixed, want)
	}
}

func TestWriteInvalidateEmpty(t *testing.T) {
	got := render(t, func(b *bytes.Buffer) error { return WriteInvalidate(b, nil) })
	checkSame(t, "empty invalidate", got, readFile(t, "small.invalidate-6.xml"))
	if err := WriteInvalidate(&bytes.Buffer{}, []Range{{3, 3}}); err == nil {
		t.Error("WriteInvalidate accepted an empty range")
	}
}

func TestWriteCompact(t *testing.T) {
	m := readMetadata(t, "small.xml")
	got := render(t, func(b *bytes.Buffer) error { return WriteCompactDump(b, m) })
	checkSame(t, "WriteCompactDump", got, readFile(t, "compact.xml"))
}

func TestWriteRejectsInconsistent(t *testing.T) {
	bad := []*Metadata{
		{NrBlocks: 2, EraArray: []uint32{0}},
		{NrBlocks: 1, EraArray: []uint32{0}, Writesets: []Writeset{{Era: 2, NrBits: 1}, {Era: 2, NrBits: 1}}},
		{NrBlocks: 1, EraArray: []uint32{0}, Writesets: []Writeset{{Era: 3, NrBits: 1}, {Era: 2, NrBits: 1}}},
	}
	for i, m := range bad {
		if err := WriteDump(&bytes.Buffer{}, m); err == nil {
			t.Errorf("case %d: WriteDump accepted inconsistent metadata", i)
		}
		if err := WriteJSON(&bytes.Buffer{}, m); err == nil {
			t.Errorf("case %d: WriteJSON accepted inconsistent metadata", i)
		}
	}
}
