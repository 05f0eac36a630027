package era

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

// metadata is the era target's metadata: the superblock, the space map, the
// tree of archived writesets, the era array and the current writeset. It
// does what dm-era-target.c's metadata functions do (format.md §7): format,
// open, commit, resize, archive, new era, digest and metadata snapshots.
// Its methods are named after the kernel's metadata functions
// (metadata_commit: commit, metadata_era_rollover: eraRollover,
// metadata_take_snap and metadata_drop_snap: takeSnap and dropSnap); the
// Device methods that drive them are named for what the device does
// (commitAndPublish, changeEra, dropSnapshotOf). It is not safe for
// concurrent use; the Device serializes calls.
type metadata struct {
	bm *block.Manager
	tm *transaction.Manager
	sm *spacemap.SpaceMap
	sb superblock // in-core copy, written by commit
	// committed is the superblock of the last commit: what queries read,
	// with the space map pinned.
	committed superblock
	// backlog is the number of archived writesets (undigested).
	backlog int
	wsTree  *btree.Tree
	eras    *array.Array
	bits    *array.Bitset

	digest digestState
}

// digestState is the progress of folding the oldest archived writeset into
// the era array. It lives only in memory: a digest cut short by a crash is
// redone from the start, which gives the same result.
type digestState struct {
	active bool
	era    uint32
	info   writesetInfo
	next   uint64 // next bit to fold

	// words holds the words of the writeset's bitset block wordsBlock (an
	// archived writeset does not change), read once for the steps that
	// fold it.
	words      []uint64
	wordsBlock uint64
}

// eraValueSize is the size of an era-array value (u32 LE).
const eraValueSize = 4

// newMetadata wires the trees to a transaction manager.
func newMetadata(bm *block.Manager, tm *transaction.Manager) *metadata {
	md := &metadata{bm: bm, tm: tm}
	md.bits = array.NewBitset(tm)
	md.eras = array.New(tm, eraValueSize)
	md.wsTree = btree.New(tm, writesetValueType(tm, md.bits))
	return md
}

// writesetValueType is the value type of the writeset tree: a 12-byte
// writesetInfo that holds a reference to its bitset's root. Equality
// compares exactly the 12 packed bytes (a kernel bug compared 16, §8).
func writesetValueType(tm *transaction.Manager, bits *array.Bitset) btree.ValueType {
	return btree.ValueType{
		Size:  writesetInfoSize,
		Inc:   func(v []byte) error { return tm.Inc(decodeWritesetInfo(v).Root) },
		Dec:   func(v []byte) error { return bits.Delete(decodeWritesetInfo(v).Root) },
		Equal: func(a, b []byte) bool { return bytes.Equal(a[:writesetInfoSize], b[:writesetInfoSize]) },
	}
}

// formatMetadata creates fresh metadata as the kernel does (format.md §7.3):
// era 0, no writesets, an empty era array. Unlike the kernel it does not
// commit: Open resizes the era array and starts era 1 first, so no image a
// crash can leave holds nr_blocks 0, which era_check 0.9.0 rejects
// (format.md §9.1); a crash before that first commit leaves block 0 zero,
// and the next Open formats again.
func formatMetadata(bm *block.Manager, blockSectors uint32) (*metadata, error) {
	tm := transaction.New(bm, nil)
	sm, err := spacemap.Create(tm, bm.NrBlocks())
	if err != nil {
		return nil, err
	}
	md := newMetadata(bm, tm)
	md.sm = sm
	md.sb = superblock{
		Magic:             superblockMagic,
		Version:           superblockVersion,
		DataBlockSize:     blockSectors,
		MetadataBlockSize: metadataBlockSize,
	}
	if md.sb.WritesetTreeRoot, err = md.wsTree.Empty(); err != nil {
		return nil, err
	}
	if md.sb.EraArrayRoot, err = md.eras.Empty(); err != nil {
		return nil, err
	}
	return md, nil
}

// openMetadata opens formatted metadata for change.
func openMetadata(bm *block.Manager) (*metadata, error) {
	sb, err := readTopSuperblock(bm)
	if err != nil {
		return nil, err
	}
	tm := transaction.New(bm, nil)
	sm, err := spacemap.Open(tm, sb.SpaceMapRoot[:])
	if err != nil {
		return nil, fmt.Errorf("open space map: %w", err)
	}
	md := newMetadata(bm, tm)
	md.sm = sm
	md.sb = *sb
	md.committed = *sb
	if err := sb.rootsWithin(sm.NrBlocks(), sb.CurrentWriteset); err != nil {
		return nil, err
	}
	n, err := md.trees().writesets(0)
	if err != nil {
		return nil, err
	}
	md.backlog = len(n)
	if md.sb.CurrentWriteset.Root != 0 {
		md.backlog-- // writesets() lists the current one too
	}
	return md, nil
}

// commit makes every change durable: the space map writes its blocks, every
// dirty block is written and synced, then the superblock — carrying the
// space-map root taken after the space map's own commit (a kernel bug saved
// it before, §8) — is written and synced.
func (md *metadata) commit() error {
	if err := md.sm.Commit(); err != nil {
		return fmt.Errorf("commit space map: %w", err)
	}
	if err := md.tm.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	md.sm.Root().Encode(md.sb.SpaceMapRoot[:])
	md.sb.Flags = 0
	md.sb.Blocknr = 0
	data := make([]byte, block.Size)
	md.sb.encode(data)
	if err := md.tm.WriteSuperblock(data); err != nil {
		return fmt.Errorf("commit superblock: %w", err)
	}
	md.sm.Committed()
	md.committed = md.sb
	return nil
}

// changed reports whether anything changed since the last commit.
func (md *metadata) changed() bool {
	return md.sb != md.committed || md.tm.Dirty() > 0 || md.sm.Changed()
}

// free returns the number of metadata blocks the next allocations can
// use: in use neither now, nor in the last commit, nor by a pinned reader.
func (md *metadata) free() uint64 {
	return md.sm.NrFree()
}

// reserve returns the number of metadata blocks kept for the operations
// that free space: a sixteenth of the store, at least 4 and at most 256
// blocks. First writes that would eat into it are refused (ErrNoSpace).
func (md *metadata) reserve() uint64 {
	return min(max(md.sm.NrBlocks()/16, 4), 256)
}

// markCost bounds the metadata blocks that marking blocks (sorted) and
// committing can allocate: per bitset block touched, its shadow and a path
// of btree nodes; the space map's index, the bitmaps the new blocks fall
// in, and a path of the overflow tree (the shared zero block's count).
func (md *metadata) markCost(blocks []uint64) uint64 {
	arr := md.bits.Array()
	per := uint64(arr.MaxEntries()) * 64 // bits per bitset block
	touched := uint64(0)
	for i, b := range blocks {
		if i == 0 || b/per != blocks[i-1]/per {
			touched++
		}
	}
	// Levels of the bitset's btree: a leaf holds up to btreeFanout array
	// blocks.
	levels := uint64(1)
	for n := (uint64(md.sb.CurrentWriteset.NrBits) + per - 1) / per; n > btreeFanout; n /= btreeFanout {
		levels++
	}
	bitmaps := min(uint64(spacemap.NrBitmaps(md.sm.NrBlocks())), touched*(1+levels))
	return touched*(1+levels) + 1 + bitmaps + 2
}

// btreeFanout is a lower bound on the entries of a btree node of 8-byte
// values (the kernel's 4 KiB nodes hold 126 to 252).
const btreeFanout = 126

// status returns the dm status of the last commit.
func (md *metadata) status() Status {
	sb := &md.committed
	return Status{
		MetadataBlockSize:   metadataBlockSize,
		UsedMetadataBlocks:  md.sm.NrAllocated(),
		TotalMetadataBlocks: md.sm.NrBlocks(),
		CurrentEra:          sb.CurrentEra,
		HeldRoot:            sb.MetadataSnap,
		Held:                sb.MetadataSnap != 0,
		Backlog:             md.backlog,
		uuid:                sb.UUID,
		reserve:             md.reserve(),
	}
}

// resize sets the era array to n blocks (new ones at era 0). The writesets
// keep their own bit counts (the kernel's fix de89afc1e40f: resizing must not
// touch a loaded current writeset).
func (md *metadata) resize(n uint32) error {
	// Grow in steps, writing the new blocks out between them, so the dirty
	// set stays bounded (they are unreachable until the commit).
	for md.sb.NrBlocks != n {
		next := n
		if n > md.sb.NrBlocks {
			next = uint32(min(uint64(n), uint64(md.sb.NrBlocks)+resizeStep))
		}
		root, err := md.eras.Resize(md.sb.EraArrayRoot, uint64(md.sb.NrBlocks), uint64(next), make([]byte, eraValueSize))
		if err != nil {
			return fmt.Errorf("resize era array from %d to %d blocks: %w", md.sb.NrBlocks, n, err)
		}
		md.sb.EraArrayRoot = root
		md.sb.NrBlocks = next
		if err := md.tm.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// resizeStep is how many era-array values one resize step adds: 256 array
// blocks (1 MiB of dirty metadata).
const resizeStep = 256 * 1018

// archive moves the current writeset, if any, into the writeset tree under
// the current era. The current writeset's reference passes to the tree.
func (md *metadata) archive() error {
	cur := md.sb.CurrentWriteset
	if cur.Root == 0 {
		return nil
	}
	root, err := md.wsTree.Insert(md.sb.WritesetTreeRoot, uint64(md.sb.CurrentEra), cur.bytes())
	if err != nil {
		return fmt.Errorf("archive writeset of era %d: %w", md.sb.CurrentEra, err)
	}
	md.sb.WritesetTreeRoot = root
	md.sb.CurrentWriteset.Root = 0
	md.backlog++
	return nil
}

// newEra starts the next era with an empty current writeset of nr_blocks bits.
func (md *metadata) newEra() error {
	if md.sb.CurrentWriteset.Root != 0 {
		return errors.New("new era while a current writeset exists")
	}
	if md.sb.CurrentEra == ^uint32(0) {
		return ErrEraOverflow
	}
	// The clear words share one array block (most of them): a new era
	// costs O(1) array blocks whatever nr_blocks.
	root, err := md.bits.CreateShared(uint64(md.sb.NrBlocks))
	if err != nil {
		return fmt.Errorf("create writeset: %w", err)
	}
	md.sb.CurrentWriteset = writesetInfo{NrBits: md.sb.NrBlocks, Root: root}
	md.sb.CurrentEra++
	return nil
}

// eraRollover archives the current writeset (one recovered after a crash too)
// and starts a new era.
func (md *metadata) eraRollover() error {
	if err := md.archive(); err != nil {
		return err
	}
	return md.newEra()
}

// mark sets blocks in the on-disk current writeset; commit makes it durable.
func (md *metadata) mark(blocks []uint64) error {
	cur := md.sb.CurrentWriteset
	if cur.Root == 0 {
		return errors.New("mark without a current writeset")
	}
	root, err := md.bits.SetBits(cur.Root, uint64(cur.NrBits), blocks)
	if err != nil {
		return fmt.Errorf("mark writeset of era %d: %w", md.sb.CurrentEra, err)
	}
	md.sb.CurrentWriteset.Root = root
	return nil
}

// markRange sets blocks [lo, hi) in the on-disk current writeset.
func (md *metadata) markRange(lo, hi uint64) error {
	cur := md.sb.CurrentWriteset
	if cur.Root == 0 {
		return errors.New("mark without a current writeset")
	}
	root, err := md.bits.SetRange(cur.Root, uint64(cur.NrBits), lo, hi)
	if err != nil {
		return fmt.Errorf("mark blocks [%d, %d) in the writeset of era %d: %w", lo, hi, md.sb.CurrentEra, err)
	}
	md.sb.CurrentWriteset.Root = root
	return nil
}

// takeSnap clones the in-core superblock and takes a reference on its
// two trees (format.md §7.9). The caller rolls over first and commits
// after, in one commit (the kernel commits between the two). pit marks the
// clone as a point-in-time snapshot's (see pitMark).
func (md *metadata) takeSnap(pit bool) error {
	if md.sb.MetadataSnap != 0 {
		return ErrSnapshotExists
	}
	loc, data, err := md.tm.New(block.Superblock)
	if err != nil {
		return err
	}
	clone := md.sb
	clone.Blocknr = loc
	clone.MetadataSnap = 0
	clone.encode(data)
	if pit {
		copy(data[pitMarkOff:], pitMark)
	}
	if err := md.tm.Inc(md.sb.WritesetTreeRoot); err != nil {
		return err
	}
	if err := md.tm.Inc(md.sb.EraArrayRoot); err != nil {
		return err
	}
	md.sb.MetadataSnap = loc
	return nil
}

// pitSnapshot reports whether the held metadata snapshot is a
// point-in-time snapshot's, and the era that began with it.
func (md *metadata) pitSnapshot() (bool, uint32, error) {
	loc := md.sb.MetadataSnap
	if loc == 0 {
		return false, 0, nil
	}
	data, err := md.tm.Read(loc, block.Superblock)
	if err != nil {
		return false, 0, fmt.Errorf("read metadata snapshot: %w", err)
	}
	clone, err := decodeSuperblock(loc, data)
	if err != nil {
		return false, 0, err
	}
	return bytes.Equal(data[pitMarkOff:pitMarkOff+len(pitMark)], pitMark), clone.CurrentEra, nil
}

// dropSnap releases the clone's trees and the clone itself.
func (md *metadata) dropSnap() error {
	loc := md.sb.MetadataSnap
	if loc == 0 {
		return ErrNoSnapshot
	}
	clone, err := readSuperblock(md.tm, loc)
	if err != nil {
		return fmt.Errorf("metadata snapshot: %w", err)
	}
	if err := md.wsTree.Delete(clone.WritesetTreeRoot); err != nil {
		return fmt.Errorf("drop snapshot's writeset tree: %w", err)
	}
	if err := md.eras.Delete(clone.EraArrayRoot); err != nil {
		return fmt.Errorf("drop snapshot's era array: %w", err)
	}
	if err := md.tm.Dec(loc); err != nil {
		return err
	}
	md.sb.MetadataSnap = 0
	return nil
}

// digestScanBlocks bounds how many bitset blocks one digest step reads
// while it skips clear words.
const digestScanBlocks = 4

// digestStep folds part of the oldest archived writeset into the era array
// (format.md §7.8) and reports whether more work remains. When a writeset is
// fully folded it is removed from the tree, which deletes its bitset. Its
// changes ride on the next commit.
//
// A step changes at most one era-array block: it skips the clear words of
// the writeset (reading at most digestScanBlocks bitset blocks), and folds
// the set bits that fall in the next era-array block holding any. A sparse
// writeset, the usual case, thus costs a read of its bitset and of the
// era-array blocks it touches, not of the whole era array; and each step
// holds the device's lock for one block's worth of work.
func (md *metadata) digestStep() (bool, error) {
	d := &md.digest
	if !d.active {
		key, v, ok, err := md.wsTree.Lowest(md.sb.WritesetTreeRoot)
		if err != nil {
			return false, fmt.Errorf("digest: %w", err)
		}
		if !ok {
			return false, nil
		}
		if key > uint64(md.sb.CurrentEra) {
			return false, block.Corruptf(md.sb.WritesetTreeRoot, "writeset tree", "writeset era %d beyond current era %d", key, md.sb.CurrentEra)
		}
		// A fresh state for every writeset: no word cached from the last
		// one (kernel fix 2524933307fd).
		*d = digestState{active: true, era: uint32(key), info: decodeWritesetInfo(v)}
	}
	limit := min(uint64(d.info.NrBits), uint64(md.sb.NrBlocks))
	perWords := uint64(md.bits.Array().MaxEntries()) // words per bitset block
	perBits := perWords * 64
	perEras := uint64(md.eras.MaxEntries()) // values per era-array block
	for scanned := 0; d.next < limit; {
		wb := d.next / perBits
		if d.words == nil || d.wordsBlock != wb {
			if scanned == digestScanBlocks {
				return true, nil
			}
			scanned++
			nrWords := (uint64(d.info.NrBits) + 63) / 64
			words, err := md.bits.ReadWords(d.info.Root, uint64(d.info.NrBits), wb*perWords, min(nrWords, (wb+1)*perWords))
			if err != nil {
				return false, fmt.Errorf("digest writeset of era %d: %w", d.era, err)
			}
			d.words, d.wordsBlock = words, wb
		}
		base := wb * perBits // bit of d.words[0]
		stop := min(limit, (wb+1)*perBits)
		first, ok := nextSetBit(d.words, base, d.next, stop)
		if !ok {
			d.next = stop
			continue
		}
		end := min(stop, (first/perEras+1)*perEras)
		words, era := d.words, d.era
		root, err := md.eras.Update(md.sb.EraArrayRoot, first, end, func(i uint64, v []byte) bool {
			b := i - base
			if words[b/64]>>(b%64)&1 == 0 || binary.LittleEndian.Uint32(v) == era {
				return false
			}
			binary.LittleEndian.PutUint32(v, era)
			return true
		})
		if err != nil {
			return false, fmt.Errorf("digest writeset of era %d into the era array: %w", d.era, err)
		}
		md.sb.EraArrayRoot = root
		d.next = end
		return true, nil
	}
	root, found, err := md.wsTree.Remove(md.sb.WritesetTreeRoot, uint64(d.era))
	if err != nil {
		return false, fmt.Errorf("digest: remove writeset of era %d: %w", d.era, err)
	}
	if !found {
		return false, block.Corruptf(md.sb.WritesetTreeRoot, "writeset tree", "writeset of era %d vanished during digest", d.era)
	}
	md.sb.WritesetTreeRoot = root
	md.backlog--
	*d = digestState{}
	return true, nil
}

// digestDown digests archived writesets until at most n are left,
// committing whenever the changes reach half the reserve, so that the
// blocks the digest frees are reused and it never runs out of space
// because of its own copies.
func (md *metadata) digestDown(n int) error {
	limit := int(md.reserve() / 2)
	for md.backlog > max(n, 0) {
		more, err := md.digestStep()
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
		if md.tm.Dirty() >= limit {
			if err := md.commit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextSetBit returns the first set bit in [from, to) of the bits words
// holds, word 0 holding bits base to base+63.
func nextSetBit(words []uint64, base, from, to uint64) (uint64, bool) {
	for i := from; i < to; {
		w := words[(i-base)/64] >> ((i - base) % 64)
		if w != 0 {
			if b := i + uint64(bits.TrailingZeros64(w)); b < to {
				return b, true
			}
			return 0, false
		}
		i += 64 - (i-base)%64
	}
	return 0, false
}

// trees returns the live trees, changes not yet committed included.
func (md *metadata) trees() eraTrees {
	return treesOf(md.tm, &md.sb)
}

// committedTrees returns the trees of the last commit, read without the
// transaction (the caller pins them).
func (md *metadata) committedTrees() eraTrees {
	return treesOf(transaction.NewReadOnly(md.bm), &md.committed)
}
