package array

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/era-go/era/block"
)

// An era-array block of 16 values [2, 3, 0, ...] as era_restore 0.9.0
// writes it (format.md §5.1); every byte after those shown is zero.
const mBinBlock6 = `
00006000: e784 6546 fa03 0000 1000 0000 0400 0000
00006010: 0600 0000 0000 0000 0200 0000 0300 0000
00006020: 0000 0000
`

func parseHexdump(t *testing.T, dump string, base int) []byte {
	t.Helper()
	out := make([]byte, block.Size)
	for _, line := range strings.Split(strings.TrimSpace(dump), "\n") {
		addr, rest, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad hexdump line %q", line)
		}
		off, err := hex.DecodeString(strings.TrimSpace(addr))
		if err != nil {
			t.Fatal(err)
		}
		o := 0
		for _, b := range off {
			o = o<<8 | int(b)
		}
		data, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(rest), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		copy(out[o-base:], data)
	}
	return out
}

func TestGoldenArrayBlock(t *testing.T) {
	want := parseHexdump(t, mBinBlock6, 0x6000)

	e := newEnv(t, 64)
	a := New(e.tm, 4)
	root, err := a.Empty()
	if err != nil {
		t.Fatal(err)
	}
	if root, err = a.Resize(root, 0, 16, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if root, err = a.Set(root, 0, []byte{2, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if root, err = a.Set(root, 1, []byte{3, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	e.commit()

	var locs []uint64
	if err := a.Walk(root, func(uint64, *btreeNode, int) (bool, error) { return true, nil }, func(loc uint64, _ *Block) error {
		locs = append(locs, loc)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(locs) != 1 {
		t.Fatalf("%d array blocks, want 1", len(locs))
	}
	data, err := e.fresh().Read(locs[0], block.Array)
	if err != nil {
		t.Fatal(err)
	}
	got := bytes.Clone(data)
	block.Array.Prepare(got, 6)
	if !bytes.Equal(got, want) {
		t.Errorf("array block differs from m.bin block 6:\ngot  %x\nwant %x", got[:40], want[:40])
	}

	// And the decoder reads the doc's bytes back.
	b, err := DecodeBlock(6, want)
	if err != nil {
		t.Fatal(err)
	}
	if b.MaxEntries != 1018 || b.NrEntries != 16 || b.ValueSize != 4 || b.Value(0)[0] != 2 || b.Value(1)[0] != 3 {
		t.Errorf("decoded %v, values %x", b, b.Values)
	}
	if err := block.Array.Validate(want, 6); err != nil {
		t.Errorf("doc bytes do not validate: %v", err)
	}
}

func TestMaxEntries(t *testing.T) {
	for vs, want := range map[int]uint32{4: 1018, 8: 509, 12: 339, 1000: 4, 4072: 1, 4073: 0, 0: 0, -1: 0} {
		if got := MaxEntries(vs); got != want {
			t.Errorf("MaxEntries(%d) = %d, want %d", vs, got, want)
		}
	}
	if offBlocknr != block.Array.LocOffset || offCsum != 0 {
		t.Errorf("array block location at %d, block.Array says %d", offBlocknr, block.Array.LocOffset)
	}
}
