package array

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
)

// Offsets of the fields of an array block (format.md §5.1). The checksum and
// the self-location are filled in by block.Array when the block is written.
const (
	offCsum       = 0
	offMaxEntries = 4
	offNrEntries  = 8
	offValueSize  = 12
	offBlocknr    = 16
	headerSize    = 24
)

// MaxEntries returns how many values of valueSize bytes an array block holds:
// floor((4096-24)/valueSize), 1018 for 4-byte and 509 for 8-byte values. It
// returns 0 for a value size that is not positive or does not fit a block.
func MaxEntries(valueSize int) uint32 {
	if valueSize <= 0 || valueSize > block.Size-headerSize {
		return 0
	}
	return uint32((block.Size - headerSize) / valueSize)
}

// Block is a decoded array block. Values holds the NrEntries values, packed,
// and aliases the buffer the block was decoded from.
type Block struct {
	Loc        uint64 // where the block was read from
	MaxEntries uint32
	NrEntries  uint32
	ValueSize  uint32
	Values     []byte // NrEntries * ValueSize bytes
}

// DecodeBlock decodes the array block read from loc. It checks that the
// header is self-consistent: a non-zero value size, max_entries values that
// fit in the block, and nr_entries <= max_entries. It does not check the
// checksum or the stored location (block.Array does that when the block is
// read from the store, and a block changed in the current transaction carries
// them only once it is written), nor that the header matches a particular
// array (the Array methods do). Values aliases data.
func DecodeBlock(loc uint64, data []byte) (*Block, error) {
	name := block.Array.Name
	if len(data) != block.Size {
		return nil, block.Corruptf(loc, name, "size %d, want %d", len(data), block.Size)
	}
	b := &Block{
		Loc:        loc,
		MaxEntries: binary.LittleEndian.Uint32(data[offMaxEntries:]),
		NrEntries:  binary.LittleEndian.Uint32(data[offNrEntries:]),
		ValueSize:  binary.LittleEndian.Uint32(data[offValueSize:]),
	}
	if b.ValueSize == 0 {
		return nil, block.Corruptf(loc, name, "value size 0")
	}
	// Computed in 64 bits: both fields come from disk.
	if uint64(headerSize)+uint64(b.MaxEntries)*uint64(b.ValueSize) > block.Size {
		return nil, block.Corruptf(loc, name, "%d values of %d bytes do not fit in a block", b.MaxEntries, b.ValueSize)
	}
	if b.NrEntries > b.MaxEntries {
		return nil, block.Corruptf(loc, name, "nr_entries %d > max_entries %d", b.NrEntries, b.MaxEntries)
	}
	b.Values = data[headerSize : headerSize+int(b.NrEntries)*int(b.ValueSize)]
	return b, nil
}

// Value returns value i of the block (aliasing the block's buffer).
func (b *Block) Value(i uint32) []byte {
	vs := int(b.ValueSize)
	return b.Values[int(i)*vs : int(i+1)*vs]
}

// initBlock writes the header of a freshly allocated (zeroed) array block:
// max_entries, nr_entries and value_size. The checksum and the location are
// filled in when the block is written.
func initBlock(data []byte, maxEntries, nrEntries uint32, valueSize int) {
	binary.LittleEndian.PutUint32(data[offMaxEntries:], maxEntries)
	binary.LittleEndian.PutUint32(data[offNrEntries:], nrEntries)
	binary.LittleEndian.PutUint32(data[offValueSize:], uint32(valueSize))
}

// setNrEntries changes the nr_entries field of a block buffer.
func setNrEntries(data []byte, nr uint32) {
	binary.LittleEndian.PutUint32(data[offNrEntries:], nr)
}

// slot returns the bytes of value slot i in a block buffer, whether or not
// i < nr_entries (the caller has checked against max_entries).
func slot(data []byte, valueSize int, i uint32) []byte {
	off := headerSize + int(i)*valueSize
	return data[off : off+valueSize]
}

// checkShape reports a block whose header does not belong to an array of
// values of valueSize bytes.
func (b *Block) checkShape(valueSize int) error {
	if b.ValueSize != uint32(valueSize) {
		return block.Corruptf(b.Loc, block.Array.Name, "value size %d, want %d", b.ValueSize, valueSize)
	}
	if want := MaxEntries(valueSize); b.MaxEntries != want {
		return block.Corruptf(b.Loc, block.Array.Name, "max_entries %d, want %d", b.MaxEntries, want)
	}
	return nil
}

// String describes the block header, for debugging.
func (b *Block) String() string {
	return fmt.Sprintf("array block %d: max %d, nr %d, value size %d", b.Loc, b.MaxEntries, b.NrEntries, b.ValueSize)
}
