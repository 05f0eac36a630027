package era

import (
	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/spacemap"
)

// MetadataSize returns a metadata store size, in bytes, that holds a device
// of nrBlocks tracked blocks in every state it can reach with a digest
// backlog bound of maxBacklog (0: DefaultMaxBacklog), so that no first write
// ever fails with ErrNoSpace. The rule, in 4 KiB metadata blocks:
//
//   - the era array: a block per 1018 tracked blocks, and its btree nodes;
//   - each writeset, written everywhere: a block per 32576 tracked blocks
//     (509 words of 64 bits), and its btree nodes; there are at most
//     maxBacklog archived ones and the current one;
//   - a held metadata snapshot may keep an old copy of all of that: twice
//     the above;
//   - the space map's bitmaps (one per 16320 metadata blocks), its index
//     and overflow tree, and the reserve kept for the operations that free
//     space (a sixteenth of the store, 4 to 256 blocks).
//
// Sparse writes need far less: a writeset holds a block only for the
// regions written in its era. A store smaller than this works as long as
// the writes fit, and a full store recovers once the digest or a dropped
// snapshot frees space (see ErrNoSpace). Era status prints the figure.
func MetadataSize(nrBlocks uint64, maxBacklog int) int64 {
	if maxBacklog <= 0 {
		maxBacklog = DefaultMaxBacklog
	}
	eraArray := withNodes(ceilDiv(nrBlocks, uint64(array.MaxEntries(eraValueSize))))
	writeset := withNodes(ceilDiv(ceilDiv(nrBlocks, 64), uint64(array.MaxEntries(8))))
	trees := eraArray + uint64(maxBacklog+1)*writeset + withNodes(uint64(maxBacklog+1))
	base := 2*trees + 1 /* superblock */ + 1                            /* snapshot clone */
	base += uint64(spacemap.NrBitmaps(base+base/8)) + 1 /* index */ + 4 /* overflow tree */
	total := base + min(max(base/15+1, 4), 256) + 8                     // the reserve, and one mark
	return int64(total) * block.Size
}

// withNodes returns n array blocks plus the btree nodes that index them.
func withNodes(n uint64) uint64 {
	total := n
	for level := n; level > 1; {
		level = ceilDiv(level, btreeFanout)
		total += level
	}
	if n <= 1 {
		total++ // a leaf even for one block
	}
	return total
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }
