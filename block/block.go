// Package block reads and writes the 4096-byte blocks of a persistent-data
// metadata device.
//
// Every block kind (superblock, btree node, array block, space-map bitmap and
// index) carries a CRC-32C checksum in its first four bytes and its own
// location at a fixed offset. A [Kind] describes both, and every read and
// write goes through one, so no other package computes a checksum by hand.
//
// A [Manager] keeps a bounded cache of clean blocks over any store that is an
// io.ReaderAt and an io.WriterAt, and calls the store's Sync method, when it
// has one, to make writes durable.
package block

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Size is the size of every metadata block in bytes (8 sectors).
const Size = 4096

// ErrCorrupt is wrapped by every error that reports metadata failing a check:
// a bad checksum, a wrong self-location, or a structure that breaks the rules
// of the on-disk format.
var ErrCorrupt = errors.New("corrupt metadata")

// ErrNoSpace is returned when the metadata device has no free block left.
var ErrNoSpace = errors.New("metadata device is full")

// Corruptf returns an error wrapping ErrCorrupt that names the block, its
// kind and the check that failed: "metadata block 6 (array block): ...".
func Corruptf(loc uint64, kind string, format string, args ...any) error {
	return fmt.Errorf("metadata block %d (%s): %s: %w", loc, kind, fmt.Sprintf(format, args...), ErrCorrupt)
}

// Kind describes one type of metadata block: the constant its checksum is
// XORed with and the offset of the u64 that holds the block's own location.
type Kind struct {
	Name      string
	Xor       uint32
	LocOffset int
}

// The block kinds of dm-era metadata (format.md §1.2).
var (
	Superblock = &Kind{Name: "superblock", Xor: 146538381, LocOffset: 8}
	Node       = &Kind{Name: "btree node", Xor: 121107, LocOffset: 8}
	Array      = &Kind{Name: "array block", Xor: 595846735, LocOffset: 16}
	Bitmap     = &Kind{Name: "space-map bitmap", Xor: 240779, LocOffset: 8}
	Index      = &Kind{Name: "space-map index", Xor: 160478, LocOffset: 8}
)

// Kinds lists every block kind, for tools that identify a block by its checksum.
var Kinds = []*Kind{Superblock, Node, Array, Bitmap, Index}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the checksum a block of kind k must store at offset 0: the
// CRC-32C of bytes 4..4095 without the final inversion, XORed with k.Xor.
func (k *Kind) Checksum(data []byte) uint32 {
	return crc32.Checksum(data[4:Size], castagnoli) ^ 0xFFFFFFFF ^ k.Xor
}

// Prepare fills in the self-location and the checksum of a block about to be
// written at loc.
func (k *Kind) Prepare(data []byte, loc uint64) {
	binary.LittleEndian.PutUint64(data[k.LocOffset:], loc)
	binary.LittleEndian.PutUint32(data[0:], k.Checksum(data))
}

// Validate checks the self-location and the checksum of a block read from loc.
func (k *Kind) Validate(data []byte, loc uint64) error {
	if len(data) != Size {
		return Corruptf(loc, k.Name, "size %d, want %d", len(data), Size)
	}
	if got := binary.LittleEndian.Uint64(data[k.LocOffset:]); got != loc {
		return Corruptf(loc, k.Name, "stored location %d does not match", got)
	}
	if got, want := binary.LittleEndian.Uint32(data[0:]), k.Checksum(data); got != want {
		return Corruptf(loc, k.Name, "checksum %#08x, want %#08x", got, want)
	}
	return nil
}

// Identify returns the kind whose checksum matches data, or nil.
func Identify(data []byte) *Kind {
	if len(data) != Size {
		return nil
	}
	stored := binary.LittleEndian.Uint32(data)
	for _, k := range Kinds {
		if k.Checksum(data) == stored {
			return k
		}
	}
	return nil
}
