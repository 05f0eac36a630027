package era

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
	"github.com/era-go/era/spacemap"
)

// superblock field values (format.md §2).
const (
	superblockMagic   = 2126579579 // 0x7EC1077B
	superblockVersion = 1
	metadataBlockSize = 8 // sectors
	superblockBytes   = 224
)

// superblock is the decoded era superblock (block 0), or a metadata-snapshot
// clone of it. encode and decodeSuperblock are the one place that knows its
// byte layout.
type superblock struct {
	Flags             uint32
	Blocknr           uint64
	UUID              [16]byte
	Magic             uint64
	Version           uint32
	SpaceMapRoot      [spacemap.RootSize]byte
	DataBlockSize     uint32 // origin block size in sectors
	MetadataBlockSize uint32 // always 8
	NrBlocks          uint32 // origin blocks tracked = era array length
	CurrentEra        uint32
	CurrentWriteset   writesetInfo // Root 0: none
	WritesetTreeRoot  uint64
	EraArrayRoot      uint64
	MetadataSnap      uint64 // location of the snapshot clone, 0: none
}

// writesetInfo is a writeset's 12-byte on-disk record: its bit count and the
// root of its bitset.
type writesetInfo struct {
	NrBits uint32
	Root   uint64
}

const writesetInfoSize = 12

func decodeWritesetInfo(b []byte) writesetInfo {
	return writesetInfo{NrBits: binary.LittleEndian.Uint32(b), Root: binary.LittleEndian.Uint64(b[4:])}
}

func (w writesetInfo) encode(b []byte) {
	binary.LittleEndian.PutUint32(b, w.NrBits)
	binary.LittleEndian.PutUint64(b[4:], w.Root)
}

func (w writesetInfo) bytes() []byte {
	b := make([]byte, writesetInfoSize)
	w.encode(b)
	return b
}

// decodeSuperblock decodes and checks a superblock read from loc (the block
// layer has checked its checksum and location). It checks what the kernel
// and era_check 0.9.0 check: magic, version, metadata block size, and two
// distinct tree roots that do not point back at the superblock.
func decodeSuperblock(loc uint64, data []byte) (*superblock, error) {
	if len(data) < superblockBytes {
		return nil, block.Corruptf(loc, block.Superblock.Name, "only %d bytes", len(data))
	}
	le := binary.LittleEndian
	sb := &superblock{
		Flags:             le.Uint32(data[4:]),
		Blocknr:           le.Uint64(data[8:]),
		Magic:             le.Uint64(data[32:]),
		Version:           le.Uint32(data[40:]),
		DataBlockSize:     le.Uint32(data[172:]),
		MetadataBlockSize: le.Uint32(data[176:]),
		NrBlocks:          le.Uint32(data[180:]),
		CurrentEra:        le.Uint32(data[184:]),
		CurrentWriteset:   decodeWritesetInfo(data[188:]),
		WritesetTreeRoot:  le.Uint64(data[200:]),
		EraArrayRoot:      le.Uint64(data[208:]),
		MetadataSnap:      le.Uint64(data[216:]),
	}
	copy(sb.UUID[:], data[16:32])
	if sb.UUID == ([16]byte{}) {
		sb.UUID = identityOf(data) // the kernel zeroed the field
	}
	copy(sb.SpaceMapRoot[:], data[44:44+spacemap.RootSize])
	bad := func(format string, args ...any) error {
		return block.Corruptf(loc, block.Superblock.Name, format, args...)
	}
	switch {
	case sb.Magic != superblockMagic:
		return nil, bad("magic %#x, want %#x", sb.Magic, superblockMagic)
	case sb.Version != superblockVersion:
		return nil, bad("version %d, want %d", sb.Version, superblockVersion)
	case sb.MetadataBlockSize != metadataBlockSize:
		return nil, bad("metadata block size %d sectors, want %d", sb.MetadataBlockSize, metadataBlockSize)
	case sb.WritesetTreeRoot == 0 || sb.EraArrayRoot == 0:
		return nil, bad("a tree root points back at the superblock (writeset tree %d, era array %d)", sb.WritesetTreeRoot, sb.EraArrayRoot)
	case sb.WritesetTreeRoot == sb.EraArrayRoot:
		return nil, bad("writeset tree and era array share root %d", sb.EraArrayRoot)
	}
	return sb, nil
}

// encode writes sb into a zeroed 4096-byte block; the block layer fills in
// the checksum and the location.
func (sb *superblock) encode(data []byte) {
	clear(data)
	le := binary.LittleEndian
	le.PutUint32(data[4:], sb.Flags)
	le.PutUint64(data[8:], sb.Blocknr)
	copy(data[16:32], sb.UUID[:])
	le.PutUint64(data[32:], sb.Magic)
	le.PutUint32(data[40:], sb.Version)
	copy(data[44:44+spacemap.RootSize], sb.SpaceMapRoot[:])
	le.PutUint32(data[172:], sb.DataBlockSize)
	le.PutUint32(data[176:], sb.MetadataBlockSize)
	le.PutUint32(data[180:], sb.NrBlocks)
	le.PutUint32(data[184:], sb.CurrentEra)
	sb.CurrentWriteset.encode(data[188:])
	le.PutUint64(data[200:], sb.WritesetTreeRoot)
	le.PutUint64(data[208:], sb.EraArrayRoot)
	le.PutUint64(data[216:], sb.MetadataSnap)
	putIdentity(data, sb.UUID)
}

// blockReader reads a checked metadata block: a block.Manager, or a
// transaction.Manager, which also sees its open transaction's blocks.
type blockReader interface {
	Read(loc uint64, k *block.Kind) ([]byte, error)
}

// readTopSuperblock reads the superblock of a store: block 0, which must
// say it is block 0.
func readTopSuperblock(r blockReader) (*superblock, error) {
	sb, err := readSuperblock(r, 0)
	if err != nil {
		return nil, err
	}
	if sb.Blocknr != 0 {
		return nil, block.Corruptf(0, block.Superblock.Name, "stored location %d", sb.Blocknr)
	}
	return sb, nil
}

// rootsWithin rejects the roots of the trees of sb that lie at or beyond
// n metadata blocks, which the trees would otherwise find only on first
// use. A current writeset is checked when its root is given (a snapshot
// view has none), a metadata snapshot when sb holds one.
func (sb *superblock) rootsWithin(n uint64, current writesetInfo) error {
	for _, r := range []struct {
		name string
		loc  uint64
	}{
		{"writeset tree root", sb.WritesetTreeRoot},
		{"era array root", sb.EraArrayRoot},
		{"current writeset root", current.Root},
		{"metadata snapshot", sb.MetadataSnap},
	} {
		if r.loc >= n {
			return block.Corruptf(sb.Blocknr, block.Superblock.Name, "%s %d beyond the %d metadata blocks", r.name, r.loc, n)
		}
	}
	return nil
}

// readSuperblock reads and decodes the superblock (or a clone) at loc.
func readSuperblock(r blockReader, loc uint64) (*superblock, error) {
	data, err := r.Read(loc, block.Superblock)
	if err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	return decodeSuperblock(loc, data)
}
