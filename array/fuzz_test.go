package array

import (
	"encoding/binary"
	"testing"

	"github.com/era-go/era/block"
)

func FuzzDecodeBlock(f *testing.F) {
	valid := make([]byte, block.Size)
	initBlock(valid, 1018, 16, 4)
	binary.LittleEndian.PutUint32(valid[headerSize:], 2)
	f.Add(valid)
	full := make([]byte, block.Size)
	initBlock(full, 509, 509, 8)
	f.Add(full)
	f.Add(make([]byte, block.Size))
	f.Add([]byte{})
	f.Add(valid[:headerSize])
	over := make([]byte, block.Size)
	initBlock(over, 1019, 1019, 4)
	f.Add(over)
	huge := make([]byte, block.Size)
	initBlock(huge, 0xffffffff, 3, 0xffffffff)
	f.Add(huge)

	f.Fuzz(func(t *testing.T, data []byte) {
		// Short inputs are padded to a block so that the fuzzer explores
		// headers; the raw input must be handled too.
		_, _ = DecodeBlock(7, data)
		if len(data) < block.Size {
			data = append(data, make([]byte, block.Size-len(data))...)
		}
		data = data[:block.Size]
		b, err := DecodeBlock(7, data)
		if err != nil {
			return
		}
		if b.Loc != 7 || b.ValueSize == 0 || b.NrEntries > b.MaxEntries ||
			headerSize+uint64(b.MaxEntries)*uint64(b.ValueSize) > block.Size ||
			len(b.Values) != int(b.NrEntries)*int(b.ValueSize) {
			t.Fatalf("accepted an inconsistent block: %v", b)
		}
		for i := range b.NrEntries {
			if len(b.Value(i)) != int(b.ValueSize) {
				t.Fatalf("value %d has %d bytes", i, len(b.Value(i)))
			}
		}
		if b.MaxEntries == MaxEntries(int(b.ValueSize)) && b.checkShape(int(b.ValueSize)) != nil {
			t.Fatalf("shape check rejects its own max_entries: %v", b)
		}
	})
}
