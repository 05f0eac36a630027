package btree

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/era-go/era/block"
	"github.com/google/go-cmp/cmp"
)

func TestMaxEntries(t *testing.T) {
	// format.md §4.2.
	for vs, want := range map[int]int{4: 336, 8: 252, 12: 201, 16: 168, 0: 507, -1: 0, 5000: 0} {
		if got := MaxEntries(vs); got != want {
			t.Errorf("MaxEntries(%d) = %d, want %d", vs, got, want)
		}
	}
}

// TestEncodeGolden rebuilds the writeset-tree leaf at block 4 of m.bin
// (format.md §4.4), written by era_restore 0.9.0, and checks the header
// bytes, the value offset and the checksum the real block carries.
func TestEncodeGolden(t *testing.T) {
	n := &Node{Flags: FlagLeaf, Loc: 4, MaxEntries: 201, ValueSize: 12, Keys: []uint64{4}, Values: make([]byte, 12)}
	binary.LittleEndian.PutUint32(n.Values, 16)    // nr_bits
	binary.LittleEndian.PutUint64(n.Values[4:], 7) // bitset root
	data := make([]byte, block.Size)
	if err := n.Encode(data); err != nil {
		t.Fatal(err)
	}
	block.Node.Prepare(data, 4)
	want := []byte{
		0x10, 0x86, 0xd5, 0xdb, 0x02, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0,
		0x01, 0, 0, 0, 0xc9, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0,
		0x04, 0, 0, 0, 0, 0, 0, 0,
	}
	if diff := cmp.Diff(want, data[:len(want)]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]byte{0x10, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0}, data[1640:1652]); diff != "" {
		t.Errorf("value at 1640 (-want +got):\n%s", diff)
	}
	got, err := DecodeNode(4, data)
	if err != nil {
		t.Fatal(err)
	}
	n.NrEntries = 1
	if diff := cmp.Diff(n, got); diff != "" {
		t.Errorf("decode (-want +got):\n%s", diff)
	}
}

// TestDecodeStale decodes the internal node at the era-array root of a
// 1,000,000-block era_restore image (format.md §4.4), whose slots after
// nr_entries hold stale bytes that must be ignored.
func TestDecodeStale(t *testing.T) {
	data := make([]byte, block.Size)
	le := binary.LittleEndian
	le.PutUint32(data[4:], FlagInternal)
	le.PutUint64(data[8:], 7)
	le.PutUint32(data[16:], 7)
	le.PutUint32(data[20:], 252)
	le.PutUint32(data[24:], 8)
	keys := []uint64{0, 126, 252, 378, 504, 630, 756, 7 /* stale */}
	vals := []uint64{261, 262, 389, 516, 643, 770, 897, 0x0f /* stale */}
	for i := range keys {
		le.PutUint64(data[32+8*i:], keys[i])
		le.PutUint64(data[2048+8*i:], vals[i])
	}
	n, err := DecodeNode(7, data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keys[:7], n.Keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	var children []uint64
	for i := range n.nr() {
		children = append(children, n.Child(i))
	}
	if diff := cmp.Diff(vals[:7], children); diff != "" {
		t.Errorf("children (-want +got):\n%s", diff)
	}
	if n.IsLeaf() {
		t.Error("internal node decoded as a leaf")
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := func() []byte {
		n := &Node{Flags: FlagLeaf, Loc: 9, MaxEntries: 252, ValueSize: 8, Keys: []uint64{1, 2, 3}, Values: make([]byte, 24)}
		data := make([]byte, block.Size)
		if err := n.Encode(data); err != nil {
			t.Fatal(err)
		}
		return data
	}
	le := binary.LittleEndian
	for _, c := range []struct {
		name, want string
		mutate     func([]byte) []byte
	}{
		{"short", "block of 100 bytes", func(d []byte) []byte { return d[:100] }},
		{"location", "stored location 10", func(d []byte) []byte { le.PutUint64(d[8:], 10); return d }},
		{"both flags", "both internal and leaf", func(d []byte) []byte { le.PutUint32(d[4:], 3); return d }},
		{"no flag", "unknown node type", func(d []byte) []byte { le.PutUint32(d[4:], 4); return d }},
		{"max too large", "do not fit", func(d []byte) []byte { le.PutUint32(d[20:], 255); return d }},
		{"value size too large", "do not fit", func(d []byte) []byte { le.PutUint32(d[24:], 1<<31); return d }},
		{"nr > max", "nr_entries 253 > max_entries 252", func(d []byte) []byte { le.PutUint32(d[16:], 253); return d }},
		{"keys equal", "not strictly ascending at entry 2", func(d []byte) []byte { le.PutUint64(d[48:], 2); return d }},
		{"keys descending", "not strictly ascending at entry 1", func(d []byte) []byte { le.PutUint64(d[40:], 0); return d }},
	} {
		_, err := DecodeNode(9, c.mutate(valid()))
		if !isCorrupt(err) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "block 9") {
			t.Errorf("%s: error %v, want ErrCorrupt naming block 9 and %q", c.name, err, c.want)
		}
	}
	if _, err := DecodeNode(9, valid()); err != nil {
		t.Errorf("valid node: %v", err)
	}
}

func TestInsertAtBound(t *testing.T) {
	n := &Node{Flags: FlagLeaf, MaxEntries: 3, ValueSize: 4, Keys: []uint64{1, 2, 3}, Values: make([]byte, 12)}
	if err := n.insertAt(3, 4, make([]byte, 4)); !isCorrupt(err) {
		t.Errorf("insert into a full node: %v, want ErrCorrupt", err)
	}
	n.deleteRange(2, 3)
	if err := n.insertAt(3, 4, make([]byte, 4)); !isCorrupt(err) {
		t.Errorf("insert out of range: %v, want ErrCorrupt", err)
	}
	if err := n.insertAt(2, 4, make([]byte, 4)); err != nil {
		t.Errorf("insert at the end: %v", err)
	}
}

// FuzzDecodeNode checks that DecodeNode never panics and that whatever it
// accepts encodes back to a node that decodes identically.
func FuzzDecodeNode(f *testing.F) {
	for _, n := range []*Node{
		{Flags: FlagLeaf, Loc: 1, MaxEntries: 201, ValueSize: 12, Keys: []uint64{4, 9}, Values: make([]byte, 24)},
		{Flags: FlagInternal, Loc: 1, MaxEntries: 252, ValueSize: 8, Keys: []uint64{0, 126}, Values: []byte{5: 1, 15: 2}},
		{Flags: FlagLeaf, Loc: 1, MaxEntries: 336, ValueSize: 4, Keys: []uint64{}, Values: []byte{}},
	} {
		data := make([]byte, block.Size)
		if err := n.Encode(data); err != nil {
			f.Fatal(err)
		}
		f.Add(data[:64+int(n.MaxEntries)*8+len(n.Values)])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		data := make([]byte, block.Size)
		copy(data, in)
		loc := uint64(1)
		if len(in) >= 16 && in[15]&0x80 != 0 {
			loc = binary.LittleEndian.Uint64(data[8:]) // let the fuzzer pass the location check too
		} else {
			binary.LittleEndian.PutUint64(data[8:], loc)
		}
		n, err := DecodeNode(loc, data)
		if err != nil {
			if !isCorrupt(err) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if int(n.NrEntries) != len(n.Keys) || len(n.Values) != len(n.Keys)*int(n.ValueSize) || n.NrEntries > n.MaxEntries {
			t.Fatalf("inconsistent node %+v", n)
		}
		out := make([]byte, block.Size)
		if err := n.Encode(out); err != nil {
			t.Fatalf("encode of a decoded node: %v", err)
		}
		again, err := DecodeNode(loc, out)
		if err != nil {
			t.Fatalf("decode of the re-encoded node: %v", err)
		}
		if diff := cmp.Diff(n, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
