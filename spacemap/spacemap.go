// Package spacemap implements the persistent-data metadata space map: the
// reference count of every metadata block, stored as 2-bit counts in bitmap
// blocks listed by one index block, with an overflow btree for counts of 3
// and more (format.md §3).
//
// # How the cycle with the btree is broken
//
// The overflow counts live in a btree, and the btree allocates its nodes from
// this space map. The kernel breaks that cycle with a recursion guard that
// queues space-map updates made while the space map is itself updating.
// This package breaks it by keeping every count in memory (two copies of
// the bitmap words — the committed state and the current one — plus maps of
// the overflow counts: two bits per metadata block, at most 1 MiB each) and
// touching no block while counting. Alloc, Inc and Dec never do I/O.
// Only Commit writes: it brings the overflow btree in line with the in-core
// overflow counts, moves every changed bitmap and the index to new blocks
// (copy-on-write, so the committed ones survive a crash), and repeats, since
// each of those steps changes counts, until nothing more changes.
package spacemap

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"slices"

	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/transaction"
)

// SpaceMap is the metadata space map. It implements transaction.SpaceMap.
// It is not safe for concurrent use.
type SpaceMap struct {
	tm       *transaction.Manager
	overflow *btree.Tree
	nrBlocks uint64

	cur, old  [][]uint64        // per bitmap: wordsPerBitmap words of 2-bit counts
	over      map[uint64]uint32 // current counts >= 3
	oldOver   map[uint64]uint32 // committed counts >= 3
	treeOver  map[uint64]uint32 // what the overflow btree holds now
	allocated uint64            // current number of blocks with count > 0
	cursor    uint64            // where the next allocation search starts

	index    []IndexEntry // one per bitmap
	indexLoc uint64
	refRoot  uint64

	dirty      []bool // bitmap counts changed in this transaction
	moved      []bool // bitmap given a new location in this transaction
	indexMoved bool

	// held are the committed states readers hold (Pin), oldest first, and
	// pinned their union: blocks a reader of an older commit may still
	// read, which Alloc does not hand out. A state is dropped when its last
	// pin is released, so readers that overlap one another without end
	// keep only the states they hold, not every state since the first.
	held   []*pinnedState
	pinned [][]uint64
	// commits counts Committed calls: pins taken between two commits
	// share one state.
	commits uint64
}

// pinnedState is one committed state held by pins.
type pinnedState struct {
	counts  [][]uint64 // the committed counts, as old held them
	commit  uint64     // the commit it is the state of
	holders int
}

// A Pin is one reader's hold on a committed state (SpaceMap.Pin).
type Pin struct{ state *pinnedState }

var _ transaction.SpaceMap = (*SpaceMap)(nil)

// overflowType is the value type of the overflow btree: a u32 count.
var overflowType = btree.ValueType{Size: 4}

// NrBitmaps returns the number of bitmaps a space map of nrBlocks blocks has.
func NrBitmaps(nrBlocks uint64) int {
	return int((nrBlocks + EntriesPerBitmap - 1) / EntriesPerBitmap)
}

func newSpaceMap(tm *transaction.Manager, nrBlocks uint64) *SpaceMap {
	n := NrBitmaps(nrBlocks)
	sm := &SpaceMap{
		tm:       tm,
		overflow: btree.New(tm, overflowType),
		nrBlocks: nrBlocks,
		cur:      make([][]uint64, n),
		old:      make([][]uint64, n),
		over:     map[uint64]uint32{},
		oldOver:  map[uint64]uint32{},
		treeOver: map[uint64]uint32{},
		index:    make([]IndexEntry, n),
		dirty:    make([]bool, n),
		moved:    make([]bool, n),
	}
	for i := range n {
		sm.cur[i] = make([]uint64, wordsPerBitmap)
		sm.old[i] = make([]uint64, wordsPerBitmap)
	}
	return sm
}

// Create formats a space map for nrBlocks metadata blocks (at most MaxBlocks,
// at most the device) in the kernel's layout (format.md §3.6): block 0 is
// reserved for the superblock, then the index block, the empty overflow
// btree and the bitmaps. Nothing is written until Commit. The space map is
// installed in tm.
func Create(tm *transaction.Manager, nrBlocks uint64) (*SpaceMap, error) {
	if nrBlocks > MaxBlocks {
		nrBlocks = MaxBlocks
	}
	if dev := tm.Blocks().NrBlocks(); nrBlocks > dev {
		nrBlocks = dev
	}
	n := NrBitmaps(nrBlocks)
	if nrBlocks < uint64(3+n) {
		return nil, fmt.Errorf("metadata device of %d blocks is too small for a space map: %w", nrBlocks, block.ErrNoSpace)
	}
	sm := newSpaceMap(tm, nrBlocks)
	tm.SetSpaceMap(sm)
	if err := sm.set(0, 1); err != nil { // the superblock
		return nil, err
	}
	sm.cursor = 1
	var err error
	if sm.indexLoc, err = sm.Alloc(); err != nil {
		return nil, err
	}
	sm.indexMoved = true
	if sm.refRoot, err = sm.overflow.Empty(); err != nil {
		return nil, err
	}
	for i := range n {
		if sm.index[i].Blocknr, err = sm.Alloc(); err != nil {
			return nil, err
		}
		sm.moved[i] = true
		sm.dirty[i] = true
	}
	return sm, nil
}

// Open reads the space map whose root is encoded in root and installs it in
// tm. The bitmaps are authoritative: the index's hints and the root's
// nr_allocated may disagree with them (the kernel leaves such states), and
// the counts are taken from the bitmaps and the overflow tree.
func Open(tm *transaction.Manager, root []byte) (*SpaceMap, error) {
	r, err := DecodeRoot(root)
	if err != nil {
		return nil, err
	}
	dev := tm.Blocks().NrBlocks()
	switch {
	case r.NrBlocks == 0:
		return nil, fmt.Errorf("space-map root: nr_blocks is 0: %w", block.ErrCorrupt)
	case r.NrBlocks > MaxBlocks:
		return nil, fmt.Errorf("space-map root: nr_blocks %d exceeds the maximum %d: %w", r.NrBlocks, MaxBlocks, block.ErrCorrupt)
	case r.NrBlocks > dev:
		return nil, fmt.Errorf("space-map root: nr_blocks %d exceeds the metadata device (%d blocks): %w", r.NrBlocks, dev, block.ErrCorrupt)
	case r.IndexRoot == 0 || r.IndexRoot >= r.NrBlocks:
		return nil, fmt.Errorf("space-map root: index block %d out of range: %w", r.IndexRoot, block.ErrCorrupt)
	case r.RefCountRoot == 0 || r.RefCountRoot >= r.NrBlocks:
		return nil, fmt.Errorf("space-map root: overflow btree root %d out of range: %w", r.RefCountRoot, block.ErrCorrupt)
	}
	sm := newSpaceMap(tm, r.NrBlocks)
	sm.indexLoc, sm.refRoot = r.IndexRoot, r.RefCountRoot
	data, err := tm.Read(r.IndexRoot, block.Index)
	if err != nil {
		return nil, err
	}
	entries, err := DecodeIndex(data)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	for i := range sm.cur {
		e := entries[i]
		if e.Blocknr == 0 || e.Blocknr >= r.NrBlocks || seen[e.Blocknr] {
			return nil, block.Corruptf(r.IndexRoot, block.Index.Name, "entry %d: bitmap location %d invalid", i, e.Blocknr)
		}
		seen[e.Blocknr] = true
		sm.index[i] = e
		bm, err := tm.Read(e.Blocknr, block.Bitmap)
		if err != nil {
			return nil, err
		}
		decodeBitmap(bm, sm.cur[i])
		if err := sm.checkTail(i, e.Blocknr); err != nil {
			return nil, err
		}
		copy(sm.old[i], sm.cur[i])
	}
	for i := len(sm.cur); i < MaxBitmaps; i++ {
		if entries[i] != (IndexEntry{}) {
			return nil, block.Corruptf(r.IndexRoot, block.Index.Name, "entry %d set beyond the %d bitmaps of %d blocks", i, len(sm.cur), r.NrBlocks)
		}
	}
	err = sm.overflow.Iterate(r.RefCountRoot, 0, func(key uint64, v []byte) error {
		c := binary.LittleEndian.Uint32(v)
		if key >= sm.nrBlocks || c < 3 || sm.bitmapEntry(key) != 3 {
			return block.Corruptf(r.RefCountRoot, "overflow btree", "entry for block %d (count %d) does not match the bitmap", key, c)
		}
		sm.over[key] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	for b := range sm.nrBlocks {
		c := sm.bitmapEntry(b)
		if c == 3 {
			if _, ok := sm.over[b]; !ok {
				return nil, block.Corruptf(sm.index[b/EntriesPerBitmap].Blocknr, block.Bitmap.Name, "block %d has count 3+ but no overflow entry", b)
			}
		}
		if c != 0 {
			sm.allocated++
		}
	}
	// Block 0 is the superblock: counted free, Alloc would hand it to a
	// tree node that the next commit's superblock overwrites.
	if sm.bitmapEntry(0) == 0 {
		return nil, block.Corruptf(sm.index[0].Blocknr, block.Bitmap.Name, "block 0, the superblock, has count 0")
	}
	for k, v := range sm.over {
		sm.oldOver[k] = v
		sm.treeOver[k] = v
	}
	tm.SetSpaceMap(sm)
	return sm, nil
}

// checkTail rejects bitmap i if it counts blocks past the end of the device.
func (sm *SpaceMap) checkTail(i int, loc uint64) error {
	first := uint64(i) * EntriesPerBitmap
	if first+EntriesPerBitmap <= sm.nrBlocks {
		return nil
	}
	for j := sm.nrBlocks - first; j < EntriesPerBitmap; j++ {
		if entry(sm.cur[i][j/32], uint(j%32)) != 0 {
			return block.Corruptf(loc, block.Bitmap.Name, "counts block %d beyond the %d managed blocks", first+j, sm.nrBlocks)
		}
	}
	return nil
}

func (sm *SpaceMap) bitmapEntry(b uint64) uint32 {
	i, j := b/EntriesPerBitmap, b%EntriesPerBitmap
	return entry(sm.cur[i][j/32], uint(j%32))
}

// NrBlocks returns the number of metadata blocks managed.
func (sm *SpaceMap) NrBlocks() uint64 { return sm.nrBlocks }

// NrAllocated returns the number of blocks with a count above zero now.
func (sm *SpaceMap) NrAllocated() uint64 { return sm.allocated }

// Root returns the root to store in the superblock. It is final only after
// Commit.
func (sm *SpaceMap) Root() Root {
	return Root{NrBlocks: sm.nrBlocks, NrAllocated: sm.allocated, IndexRoot: sm.indexLoc, RefCountRoot: sm.refRoot}
}

// Count returns the reference count of block b.
func (sm *SpaceMap) Count(b uint64) (uint32, error) {
	if b >= sm.nrBlocks {
		return 0, fmt.Errorf("space map: block %d beyond the %d managed blocks: %w", b, sm.nrBlocks, block.ErrCorrupt)
	}
	c := sm.bitmapEntry(b)
	if c == 3 {
		return sm.over[b], nil
	}
	return c, nil
}

// set stores count c for block b.
func (sm *SpaceMap) set(b uint64, c uint32) error {
	old, err := sm.Count(b)
	if err != nil {
		return err
	}
	i, j := b/EntriesPerBitmap, b%EntriesPerBitmap
	e := min(c, 3)
	sm.cur[i][j/32] = withEntry(sm.cur[i][j/32], uint(j%32), e)
	if c >= 3 {
		sm.over[b] = c
	} else {
		delete(sm.over, b)
	}
	switch {
	case old == 0 && c != 0:
		sm.allocated++
	case old != 0 && c == 0:
		sm.allocated--
	}
	sm.dirty[i] = true
	return nil
}

// Inc increments the count of block b. A count of 0 may be incremented, as
// the kernel allows: copy-on-write code re-references a block that a shadow
// has just released (it cannot be reallocated before the commit anyway).
func (sm *SpaceMap) Inc(b uint64) error {
	c, err := sm.Count(b)
	if err != nil {
		return err
	}
	if c == ^uint32(0) {
		return fmt.Errorf("space map: count of block %d overflows: %w", b, block.ErrCorrupt)
	}
	return sm.set(b, c+1)
}

// Dec decrements the count of block b; at zero the block is free (from the
// next transaction on).
func (sm *SpaceMap) Dec(b uint64) error {
	c, err := sm.Count(b)
	if err != nil {
		return err
	}
	if c == 0 {
		return fmt.Errorf("space map: decrement of free block %d: %w", b, block.ErrCorrupt)
	}
	return sm.set(b, c-1)
}

// ringSlack is how far past the count of allocated blocks Alloc's ring
// reaches (see Alloc).
const ringSlack = 512

// Alloc returns a block free in both the committed and the current state,
// with its count set to 1.
//
// The search goes round a ring, [0, allocated+ringSlack), from where the
// last one ended: a transaction's new blocks are mostly consecutive, so its
// commit writes a few runs rather than scattered blocks (on a virtual disk a
// sync of scattered blocks costs up to a third more), and the metadata in
// use stays within a bounded region of the store (on a sparse file, every
// block the ring reaches is allocated once, not at every commit). Only when
// the ring has no free block does it search the rest of the store.
func (sm *SpaceMap) Alloc() (uint64, error) {
	ring := min(sm.nrBlocks, sm.allocated+ringSlack)
	var b uint64
	ok := false
	if sm.cursor < ring {
		b, ok = sm.findFree(sm.cursor, ring)
	}
	if !ok {
		b, ok = sm.findFree(0, min(sm.cursor, ring))
	}
	if !ok {
		b, ok = sm.findFree(ring, sm.nrBlocks)
	}
	if !ok {
		return 0, fmt.Errorf("space map: all %d metadata blocks in use: %w", sm.nrBlocks, block.ErrNoSpace)
	}
	if err := sm.set(b, 1); err != nil {
		return 0, err
	}
	sm.cursor = b + 1
	return b, nil
}

// NrFree returns the number of blocks Alloc can hand out now: those free
// in the current state, in the committed one (a block freed in this
// transaction waits for the commit) and in every pinned one.
func (sm *SpaceMap) NrFree() uint64 {
	var used uint64
	for i := range sm.cur {
		for j := range sm.cur[i] {
			w := sm.cur[i][j] | sm.old[i][j]
			if i < len(sm.pinned) {
				w |= sm.pinned[i][j]
			}
			used += uint64(bits.OnesCount64((w | w>>1) & evenBits))
		}
	}
	return sm.nrBlocks - used // the slots past nrBlocks are always 0
}

// evenBits selects the first bit of every 2-bit slot.
const evenBits = 0x5555555555555555

// findFree returns the first block in [begin, end) free in both states.
func (sm *SpaceMap) findFree(begin, end uint64) (uint64, bool) {
	for b := begin; b < end; {
		i, j := b/EntriesPerBitmap, b%EntriesPerBitmap
		w := sm.cur[i][j/32] | sm.old[i][j/32]
		if i < uint64(len(sm.pinned)) {
			w |= sm.pinned[i][j/32]
		}
		used := (w | w>>1) & evenBits
		free := ^used & evenBits
		free &= ^uint64(0) << (2 * (j % 32)) // slots before b
		if free != 0 {
			got := b - j%32 + uint64(bits.TrailingZeros64(free)/2)
			if got < end {
				return got, true
			}
			return 0, false
		}
		b += 32 - j%32
	}
	return 0, false
}

// Commit writes the space map's own blocks: it updates the overflow btree,
// moves every changed bitmap and the index to new blocks and writes them.
// The caller then commits the transaction, stores Root in the superblock,
// writes the superblock, and calls Committed.
func (sm *SpaceMap) Commit() error {
	for {
		progress, err := sm.syncOverflow()
		if err != nil {
			return err
		}
		for i := range sm.cur {
			if sm.dirty[i] && !sm.moved[i] {
				loc, err := sm.Alloc()
				if err != nil {
					return err
				}
				if err := sm.Dec(sm.index[i].Blocknr); err != nil {
					return err
				}
				sm.index[i].Blocknr = loc
				sm.moved[i] = true
				progress = true
			}
		}
		if !sm.indexMoved && slices.Contains(sm.dirty, true) {
			loc, err := sm.Alloc()
			if err != nil {
				return err
			}
			if err := sm.Dec(sm.indexLoc); err != nil {
				return err
			}
			sm.indexLoc = loc
			sm.indexMoved = true
			progress = true
		}
		if !progress {
			break
		}
	}
	bm := sm.tm.Blocks()
	for i := range sm.cur {
		if !sm.moved[i] {
			continue
		}
		sm.index[i].NrFree, sm.index[i].NoneFreeBefore = sm.freeHints(i)
		data := make([]byte, block.Size)
		encodeBitmap(sm.cur[i], data)
		if err := bm.Write(sm.index[i].Blocknr, block.Bitmap, data); err != nil {
			return err
		}
	}
	if sm.indexMoved {
		data := make([]byte, block.Size)
		encodeIndex(sm.index, data)
		if err := bm.Write(sm.indexLoc, block.Index, data); err != nil {
			return err
		}
	}
	return nil
}

// syncOverflow makes the overflow btree hold exactly the current counts >= 3.
func (sm *SpaceMap) syncOverflow() (bool, error) {
	type change struct {
		b   uint64
		c   uint32
		del bool
	}
	var changes []change
	for b, c := range sm.over {
		if sm.treeOver[b] != c {
			changes = append(changes, change{b: b, c: c})
		}
	}
	for b := range sm.treeOver {
		if _, ok := sm.over[b]; !ok {
			changes = append(changes, change{b: b, del: true})
		}
	}
	slices.SortFunc(changes, func(x, y change) int { return cmp.Compare(x.b, y.b) })
	for _, ch := range changes {
		var err error
		if ch.del {
			sm.refRoot, _, err = sm.overflow.Remove(sm.refRoot, ch.b)
			delete(sm.treeOver, ch.b)
		} else {
			v := binary.LittleEndian.AppendUint32(nil, ch.c)
			sm.refRoot, err = sm.overflow.Insert(sm.refRoot, ch.b, v)
			sm.treeOver[ch.b] = ch.c
		}
		if err != nil {
			return false, fmt.Errorf("overflow btree: %w", err)
		}
	}
	return len(changes) > 0, nil
}

// freeHints returns nr_free (counting only real blocks) and the first free
// entry of bitmap i, as the tools write them. It works a word (32 entries)
// at a time: this runs for every moved bitmap at every commit.
func (sm *SpaceMap) freeHints(i int) (nrFree, noneFreeBefore uint32) {
	n := min(sm.nrBlocks-uint64(i)*EntriesPerBitmap, EntriesPerBitmap)
	first := uint32(n)
	for wi, w := range sm.cur[i] {
		base := uint64(wi) * 32
		if base >= n {
			break
		}
		free := ^(w | w>>1) & evenBits // the first bit of every slot holding 0
		if rem := n - base; rem < 32 {
			free &= 1<<(2*rem) - 1
		}
		if free == 0 {
			continue
		}
		if nrFree == 0 {
			first = uint32(base) + uint32(bits.TrailingZeros64(free)/2)
		}
		nrFree += uint32(bits.OnesCount64(free))
	}
	return nrFree, first
}

// Changed reports whether any count changed since the last Committed.
func (sm *SpaceMap) Changed() bool {
	return sm.indexMoved || slices.Contains(sm.dirty, true) || slices.Contains(sm.moved, true) || !maps.Equal(sm.over, sm.oldOver)
}

// Committed records that the superblock holding Root is durable: the
// current state becomes the committed one, and blocks freed in the
// transaction may be reused.
func (sm *SpaceMap) Committed() {
	sm.commits++
	for i := range sm.cur {
		if sm.dirty[i] || sm.moved[i] {
			copy(sm.old[i], sm.cur[i])
		}
		sm.dirty[i], sm.moved[i] = false, false
	}
	sm.indexMoved = false
	clear(sm.oldOver)
	for k, v := range sm.over {
		sm.oldOver[k] = v
	}
}

// Pin keeps every block in use in the committed state from reuse until
// the pin is released (Unpin), so that a reader of that commit (its
// superblock's roots) may read it without holding the owner's lock while
// later transactions commit. Pins taken between two commits share one copy
// of the committed counts (two bits per block); a copy is dropped with its
// last pin.
func (sm *SpaceMap) Pin() *Pin {
	if n := len(sm.held); n > 0 && sm.held[n-1].commit == sm.commits {
		sm.held[n-1].holders++
		return &Pin{sm.held[n-1]}
	}
	st := &pinnedState{counts: make([][]uint64, len(sm.old)), commit: sm.commits, holders: 1}
	for i := range sm.old {
		st.counts[i] = slices.Clone(sm.old[i])
	}
	sm.held = append(sm.held, st)
	sm.pinned = union(sm.pinned, st.counts)
	return &Pin{st}
}

// Unpin releases a pin; releasing it again does nothing. The blocks only
// its state kept become free for reuse once no other pin holds them.
func (sm *SpaceMap) Unpin(p *Pin) {
	st := p.state
	if st == nil {
		return
	}
	p.state = nil
	if st.holders--; st.holders > 0 {
		return
	}
	sm.held = slices.DeleteFunc(sm.held, func(h *pinnedState) bool { return h == st })
	sm.pinned = nil
	for _, h := range sm.held {
		sm.pinned = union(sm.pinned, h.counts)
	}
}

// union ORs the counts of src into dst (grown to src's length) and
// returns it: a slot is non-zero in the result if it is in either.
func union(dst, src [][]uint64) [][]uint64 {
	for i, words := range src {
		if i >= len(dst) {
			dst = append(dst, slices.Clone(words))
			continue
		}
		for j, w := range words {
			dst[i][j] |= w
		}
	}
	return dst
}

// Pinned returns the number of distinct committed states pins hold.
func (sm *SpaceMap) Pinned() int { return len(sm.held) }

// TakePins moves the pins of from, a space map of the same store that this
// one replaces (reopened from the last commit), to this one.
func (sm *SpaceMap) TakePins(from *SpaceMap) {
	sm.held, sm.pinned, sm.commits = from.held, from.pinned, from.commits
	from.held, from.pinned = nil, nil
}

// CountMismatch is one difference between the space map and the references
// a checker found.
type CountMismatch struct {
	Block    uint64
	Stored   uint32 // count in the space map
	Expected uint32 // references found
}

// Compare returns every block whose count differs from expected (a missing
// key means 0), in block order. A leak is Stored > Expected.
func (sm *SpaceMap) Compare(expected map[uint64]uint32) []CountMismatch {
	var out []CountMismatch
	for b := range sm.nrBlocks {
		c, _ := sm.Count(b)
		if e := expected[b]; c != e {
			out = append(out, CountMismatch{Block: b, Stored: c, Expected: e})
		}
	}
	for b, e := range expected {
		if b >= sm.nrBlocks {
			out = append(out, CountMismatch{Block: b, Expected: e})
		}
	}
	slices.SortFunc(out, func(x, y CountMismatch) int { return cmp.Compare(x.Block, y.Block) })
	return out
}

// Walk reports the space map's own blocks (the index, the bitmaps) and the
// overflow btree's nodes through visit, for a reference checker: each is
// referenced once (the index from the superblock root, each bitmap from the
// index, the overflow tree's nodes from the root or their parents).
func (sm *SpaceMap) Walk(visit func(loc uint64, kind string) error) error {
	if err := visit(sm.indexLoc, block.Index.Name); err != nil {
		return err
	}
	for i := range sm.index {
		if err := visit(sm.index[i].Blocknr, block.Bitmap.Name); err != nil {
			return err
		}
	}
	return sm.overflow.Walk(sm.refRoot, func(loc uint64, n *btree.Node, depth int) (bool, error) {
		return true, visit(loc, "overflow btree node")
	})
}
