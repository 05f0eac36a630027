package btree

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/block"
)

// Node flags (format.md §4.1). Exactly one of them is set in a valid node.
const (
	FlagInternal = 1 // the node's values are child block numbers
	FlagLeaf     = 2 // the node's values are the tree's values
)

// On-disk layout of a btree node (format.md §4.1). The checksum (offset 0)
// and the self-location (offset 8) are also filled in by the block layer
// when the block is written.
const (
	offFlags     = 4
	offBlocknr   = 8
	offNrEntries = 16
	offMax       = 20
	offValueSize = 24
	headerSize   = 32 // the u32 at 28 is padding, written as 0, ignored on read
	keySize      = 8
	childSize    = 8 // value size of internal nodes
)

// MaxEntries returns the max_entries the kernel gives a node whose values
// are valueSize bytes: the largest multiple of 3 entries (key and value)
// that fits after the 32-byte header, 3*floor(floor((4096-32)/(8+valueSize))/3).
// It returns 0 for a negative or too large valueSize.
func MaxEntries(valueSize int) int {
	if valueSize < 0 || valueSize > block.Size {
		return 0
	}
	return 3 * ((block.Size - headerSize) / (keySize + valueSize) / 3)
}

// Node is a decoded btree node. DecodeNode fills it from a block and Encode
// writes it back; nothing else in the module interprets node bytes.
//
// Keys and Values hold only the NrEntries live entries: Values is
// NrEntries*ValueSize bytes, value i at Values[i*ValueSize:]. Stale bytes
// after the live entries on disk are not decoded.
type Node struct {
	Flags      uint32   // FlagInternal or FlagLeaf (other bits are kept as read)
	Loc        uint64   // the block's own location (blocknr field)
	NrEntries  uint32   // live entries; Encode sets it to len(Keys)
	MaxEntries uint32   // capacity, which also places the values area
	ValueSize  uint32   // bytes per value: 8 in internal nodes
	Keys       []uint64 // the live keys, strictly ascending
	Values     []byte   // the live values, packed
}

// IsLeaf reports whether the node is a leaf (its values are the tree's
// values rather than child pointers).
func (n *Node) IsLeaf() bool { return n.Flags&FlagLeaf != 0 }

// Value returns value i; the slice aliases n.Values.
func (n *Node) Value(i int) []byte {
	vs := int(n.ValueSize)
	return n.Values[i*vs : (i+1)*vs : (i+1)*vs]
}

// Child returns the block number held in value i of an internal node.
func (n *Node) Child(i int) uint64 {
	return binary.LittleEndian.Uint64(n.Values[i*childSize:])
}

func (n *Node) setChild(i int, loc uint64) {
	binary.LittleEndian.PutUint64(n.Values[i*childSize:], loc)
}

// nr returns the number of live entries (len(Keys) is authoritative while a
// node is being changed; Encode copies it into NrEntries).
func (n *Node) nr() int { return len(n.Keys) }

// insertAt inserts key and value at index i. It refuses to overfill the
// node or to insert out of range (the kernel's defensive bound check).
func (n *Node) insertAt(i int, key uint64, value []byte) error {
	nr := n.nr()
	if i < 0 || i > nr || nr >= int(n.MaxEntries) || len(value) != int(n.ValueSize) {
		return block.Corruptf(n.Loc, block.Node.Name, "refusing to insert at %d into a node with %d of %d entries", i, nr, n.MaxEntries)
	}
	vs := int(n.ValueSize)
	n.Keys = append(n.Keys, 0)
	copy(n.Keys[i+1:], n.Keys[i:nr])
	n.Keys[i] = key
	n.Values = append(n.Values, value...)
	copy(n.Values[(i+1)*vs:], n.Values[i*vs:nr*vs])
	copy(n.Values[i*vs:], value)
	return nil
}

// deleteRange removes the entries [i, j).
func (n *Node) deleteRange(i, j int) {
	vs := int(n.ValueSize)
	n.Keys = append(n.Keys[:i], n.Keys[j:]...)
	n.Values = append(n.Values[:i*vs], n.Values[j*vs:]...)
}

// DecodeNode decodes and checks the btree node read from block loc. It
// performs the kernel's checks on reading a node (format.md §4.6) except
// the checksum, which the block layer verifies when it reads the block:
// the stored location equals loc; 32 + (8+value_size)*max_entries fits in
// the block; nr_entries <= max_entries; exactly one of the INTERNAL and LEAF
// flags is set; and the live keys are strictly ascending. Errors wrap
// block.ErrCorrupt and name the block and the failed check.
func DecodeNode(loc uint64, data []byte) (*Node, error) {
	name := block.Node.Name
	if len(data) != block.Size {
		return nil, block.Corruptf(loc, name, "block of %d bytes, want %d", len(data), block.Size)
	}
	le := binary.LittleEndian
	n := &Node{
		Flags:      le.Uint32(data[offFlags:]),
		Loc:        le.Uint64(data[offBlocknr:]),
		NrEntries:  le.Uint32(data[offNrEntries:]),
		MaxEntries: le.Uint32(data[offMax:]),
		ValueSize:  le.Uint32(data[offValueSize:]),
	}
	if n.Loc != loc {
		return nil, block.Corruptf(loc, name, "stored location %d does not match", n.Loc)
	}
	switch n.Flags & (FlagInternal | FlagLeaf) {
	case FlagInternal | FlagLeaf:
		return nil, block.Corruptf(loc, name, "both internal and leaf (flags %#x)", n.Flags)
	case 0:
		return nil, block.Corruptf(loc, name, "unknown node type (flags %#x)", n.Flags)
	}
	if !fits(n.MaxEntries, n.ValueSize) {
		return nil, block.Corruptf(loc, name, "max_entries %d with value_size %d do not fit in a block", n.MaxEntries, n.ValueSize)
	}
	if n.NrEntries > n.MaxEntries {
		return nil, block.Corruptf(loc, name, "nr_entries %d > max_entries %d", n.NrEntries, n.MaxEntries)
	}
	nr, vs := int(n.NrEntries), int(n.ValueSize)
	n.Keys = make([]uint64, nr)
	for i := range n.Keys {
		n.Keys[i] = le.Uint64(data[headerSize+i*keySize:])
		if i > 0 && n.Keys[i] <= n.Keys[i-1] {
			return nil, block.Corruptf(loc, name, "keys not strictly ascending at entry %d (%d after %d)", i, n.Keys[i], n.Keys[i-1])
		}
	}
	vo := valuesOffset(n.MaxEntries)
	n.Values = make([]byte, nr*vs)
	copy(n.Values, data[vo:vo+nr*vs])
	return n, nil
}

// fits reports whether max entries of valueSize bytes fit in a block.
func fits(max, valueSize uint32) bool {
	return headerSize+(keySize+uint64(valueSize))*uint64(max) <= block.Size
}

func valuesOffset(max uint32) int { return headerSize + keySize*int(max) }

// Encode writes the node into data, a block.Size buffer: header (flags,
// Loc, nr_entries = len(Keys), max_entries, value_size, zero padding), the
// keys, and the values at 32 + 8*max_entries. Every other byte, including
// the stale slots after the live entries, is zeroed. The checksum is left
// to the block layer, which computes it when the block is written.
func (n *Node) Encode(data []byte) error {
	if len(data) != block.Size {
		return fmt.Errorf("btree: encode node %d into a buffer of %d bytes", n.Loc, len(data))
	}
	nr := len(n.Keys)
	switch {
	case n.Flags&(FlagInternal|FlagLeaf) == 0 || n.Flags&(FlagInternal|FlagLeaf) == FlagInternal|FlagLeaf:
		return fmt.Errorf("btree: encode node %d: flags %#x", n.Loc, n.Flags)
	case !fits(n.MaxEntries, n.ValueSize):
		return fmt.Errorf("btree: encode node %d: max_entries %d with value_size %d do not fit", n.Loc, n.MaxEntries, n.ValueSize)
	case nr > int(n.MaxEntries):
		return fmt.Errorf("btree: encode node %d: %d entries > max_entries %d", n.Loc, nr, n.MaxEntries)
	case len(n.Values) != nr*int(n.ValueSize):
		return fmt.Errorf("btree: encode node %d: %d value bytes for %d entries of %d", n.Loc, len(n.Values), nr, n.ValueSize)
	}
	clear(data)
	n.NrEntries = uint32(nr)
	le := binary.LittleEndian
	le.PutUint32(data[offFlags:], n.Flags)
	le.PutUint64(data[offBlocknr:], n.Loc)
	le.PutUint32(data[offNrEntries:], n.NrEntries)
	le.PutUint32(data[offMax:], n.MaxEntries)
	le.PutUint32(data[offValueSize:], n.ValueSize)
	for i, k := range n.Keys {
		le.PutUint64(data[headerSize+i*keySize:], k)
	}
	copy(data[valuesOffset(n.MaxEntries):], n.Values)
	return nil
}

// lowerBound returns the greatest i with keys[i] <= key, or -1.
func lowerBound(keys []uint64, key uint64) int {
	lo, hi := 0, len(keys) // first index with keys[i] > key is in [lo, hi]
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if keys[mid] <= key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1
}
