package spacemap

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
)

// Layout constants of the metadata space map (format.md §3).
const (
	// EntriesPerBitmap is the number of 2-bit counts one bitmap block holds.
	EntriesPerBitmap = 16320
	// MaxBitmaps is the number of entries in the index block.
	MaxBitmaps = 255
	// MaxBlocks is the most metadata blocks one space map manages (≈15.87 GiB).
	MaxBlocks = EntriesPerBitmap * MaxBitmaps
	// RootSize is the space the superblock reserves for the root; 32 bytes are used.
	RootSize = 128

	wordsPerBitmap = EntriesPerBitmap / 32 // 510
	bitmapHeader   = 16
	indexHeader    = 16
	indexEntrySize = 16
)

// Root is the space-map root stored in the superblock (format.md §3.1).
type Root struct {
	NrBlocks     uint64 // metadata blocks managed
	NrAllocated  uint64 // blocks with a count > 0
	IndexRoot    uint64 // location of the index block
	RefCountRoot uint64 // root of the overflow ref-count btree
}

// DecodeRoot decodes a space-map root from the first 32 bytes of b.
func DecodeRoot(b []byte) (Root, error) {
	if len(b) < 32 {
		return Root{}, fmt.Errorf("space-map root: %d bytes, want 32: %w", len(b), block.ErrCorrupt)
	}
	le := binary.LittleEndian
	return Root{
		NrBlocks:     le.Uint64(b[0:]),
		NrAllocated:  le.Uint64(b[8:]),
		IndexRoot:    le.Uint64(b[16:]),
		RefCountRoot: le.Uint64(b[24:]),
	}, nil
}

// Encode writes r into b (at least RootSize bytes), zeroing the unused tail.
func (r Root) Encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], r.NrBlocks)
	le.PutUint64(b[8:], r.NrAllocated)
	le.PutUint64(b[16:], r.IndexRoot)
	le.PutUint64(b[24:], r.RefCountRoot)
	clear(b[32:RootSize])
}

// IndexEntry describes one bitmap block (format.md §3.2).
type IndexEntry struct {
	Blocknr        uint64 // location of the bitmap block
	NrFree         uint32 // free entries in the bitmap (a hint)
	NoneFreeBefore uint32 // every entry below this one is in use (a hint)
}

// DecodeIndex decodes the MaxBitmaps entries of an index block. The
// checksum and location are the block layer's job; the entries' values are
// hints or are checked where they are used.
func DecodeIndex(data []byte) ([]IndexEntry, error) {
	if len(data) != block.Size {
		return nil, fmt.Errorf("space-map index: %d bytes, want %d: %w", len(data), block.Size, block.ErrCorrupt)
	}
	le := binary.LittleEndian
	entries := make([]IndexEntry, MaxBitmaps)
	for i := range entries {
		off := indexHeader + i*indexEntrySize
		entries[i] = IndexEntry{
			Blocknr:        le.Uint64(data[off:]),
			NrFree:         le.Uint32(data[off+8:]),
			NoneFreeBefore: le.Uint32(data[off+12:]),
		}
	}
	return entries, nil
}

// encodeIndex writes entries into an index block buffer (header zeroed;
// the block layer fills in checksum and location).
func encodeIndex(entries []IndexEntry, data []byte) {
	clear(data)
	le := binary.LittleEndian
	for i, e := range entries {
		off := indexHeader + i*indexEntrySize
		le.PutUint64(data[off:], e.Blocknr)
		le.PutUint32(data[off+8:], e.NrFree)
		le.PutUint32(data[off+12:], e.NoneFreeBefore)
	}
}

// decodeBitmap copies the count words of a bitmap block.
func decodeBitmap(data []byte, words []uint64) {
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(data[bitmapHeader+8*i:])
	}
}

// encodeBitmap writes count words into a bitmap block buffer.
func encodeBitmap(words []uint64, data []byte) {
	clear(data)
	for i, w := range words {
		binary.LittleEndian.PutUint64(data[bitmapHeader+8*i:], w)
	}
}

// entry returns the 2-bit count of slot j (0..31) in word w. Of the two bits
// of a slot, the lower-numbered has weight 2 and the higher weight 1.
func entry(w uint64, j uint) uint32 {
	k := 2 * j
	return uint32((w>>k)&1)<<1 | uint32((w>>(k+1))&1)
}

// withEntry returns w with slot j set to v (0..3).
func withEntry(w uint64, j uint, v uint32) uint64 {
	k := 2 * j
	w &^= 3 << k
	w |= uint64(v>>1&1) << k
	w |= uint64(v&1) << (k + 1)
	return w
}
