package eraxml

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// jsonDoc mirrors the schema documented on WriteJSON.
type jsonDoc struct {
	BlockSize  uint32 `json:"block_size"`
	NrBlocks   uint32 `json:"nr_blocks"`
	CurrentEra uint32 `json:"current_era"`
	Writesets  []struct {
		Era    uint32  `json:"era"`
		NrBits uint32  `json:"nr_bits"`
		Marked []Range `json:"marked"`
	} `json:"writesets"`
	EraArray []struct {
		Begin, End uint64
		Era        uint32
	} `json:"era_array"`
}

// fromJSON rebuilds Metadata from WriteJSON output, checking the schema
// strictly (unknown fields, gaps and overlaps are errors).
func fromJSON(t *testing.T, b []byte) *Metadata {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var doc jsonDoc
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("WriteJSON output does not decode: %v\n%s", err, b)
	}
	m := &Metadata{BlockSize: doc.BlockSize, NrBlocks: doc.NrBlocks, CurrentEra: doc.CurrentEra,
		EraArray: []uint32{}}
	if doc.Writesets == nil || doc.EraArray == nil {
		t.Fatalf("null list in\n%s", b)
	}
	for _, w := range doc.Writesets {
		if w.Marked == nil {
			t.Fatalf("null marked list in\n%s", b)
		}
		ws := Writeset{Era: w.Era, NrBits: w.NrBits, Bits: make([]uint64, nrWords(w.NrBits))}
		for _, r := range w.Marked {
			for i := r.Begin; i < r.End; i++ {
				ws.Set(uint32(i))
			}
		}
		m.Writesets = append(m.Writesets, ws)
	}
	for _, r := range doc.EraArray {
		if r.Begin != uint64(len(m.EraArray)) || r.End <= r.Begin {
			t.Fatalf("era_array run %+v does not continue at %d", r, len(m.EraArray))
		}
		for i := r.Begin; i < r.End; i++ {
			m.EraArray = append(m.EraArray, r.Era)
		}
	}
	return m
}

func TestWriteJSON(t *testing.T) {
	for seed := range 20 {
		m := randomMetadata(rand.New(rand.NewPCG(uint64(seed), 99)))
		out := render(t, func(b *bytes.Buffer) error { return WriteJSON(b, m) })
		if d := cmp.Diff(m, fromJSON(t, out)); d != "" {
			t.Fatalf("seed %d: JSON round trip (-want +got):\n%s", seed, d)
		}
	}
	// The layout itself is part of the documented format.
	m := readMetadata(t, "small.xml")
	m.Writesets = append(m.Writesets, Writeset{Era: 6, NrBits: 1, Bits: []uint64{0}})
	got := string(render(t, func(b *bytes.Buffer) error { return WriteJSON(b, m) }))
	want := `{
  "block_size": 128,
  "nr_blocks": 16,
  "current_era": 5,
  "writesets": [
    {"era": 3, "nr_bits": 20, "marked": [
      {"begin": 0, "end": 1},
      {"begin": 17, "end": 19}
    ]},
    {"era": 4, "nr_bits": 16, "marked": [
      {"begin": 0, "end": 2},
      {"begin": 5, "end": 6}
    ]},
    {"era": 6, "nr_bits": 1, "marked": []}
  ],
  "era_array": [
    {"begin": 0, "end": 1, "era": 1},
    {"begin": 1, "end": 3, "era": 0},
    {"begin": 3, "end": 4, "era": 2},
    {"begin": 4, "end": 5, "era": 5},
    {"begin": 5, "end": 16, "era": 0}
  ]
}
`
	if got != want {
		t.Errorf("WriteJSON:\n%s\nwant:\n%s", got, want)
	}
	empty := &Metadata{BlockSize: 8}
	got = string(render(t, func(b *bytes.Buffer) error { return WriteJSON(b, empty) }))
	want = "{\n  \"block_size\": 8,\n  \"nr_blocks\": 0,\n  \"current_era\": 0,\n  \"writesets\": [],\n  \"era_array\": []\n}\n"
	if got != want {
		t.Errorf("WriteJSON(empty):\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteRangesJSON(t *testing.T) {
	rs := []Range{{0, 2}, {3, 4}}
	for _, c := range []struct {
		bytes uint64
		want  string
	}{
		{0, "{\n  \"ranges\": [\n    {\"begin\": 0, \"end\": 2},\n    {\"begin\": 3, \"end\": 4}\n  ]\n}\n"},
		{65536, "{\n  \"block_bytes\": 65536,\n  \"ranges\": [\n" +
			"    {\"begin\": 0, \"end\": 2, \"byte_begin\": 0, \"byte_end\": 131072},\n" +
			"    {\"begin\": 3, \"end\": 4, \"byte_begin\": 196608, \"byte_end\": 262144}\n  ]\n}\n"},
	} {
		got := string(render(t, func(b *bytes.Buffer) error { return WriteRangesJSON(b, rs, c.bytes) }))
		if got != c.want {
			t.Errorf("blockBytes %d:\n%s\nwant:\n%s", c.bytes, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON:\n%s", got)
		}
	}
	got := string(render(t, func(b *bytes.Buffer) error { return WriteRangesJSON(b, nil, 0) }))
	if want := "{\n  \"ranges\": []\n}\n"; got != want {
		t.Errorf("empty: %q, want %q", got, want)
	}
	if err := WriteRangesJSON(&bytes.Buffer{}, []Range{{1 << 40, 1<<40 + 1}}, 1<<30); err == nil {
		t.Error("byte offset overflow not reported")
	}
	if err := WriteRangesJSON(&bytes.Buffer{}, []Range{{2, 1}}, 0); err == nil {
		t.Error("empty range not reported")
	}
}
