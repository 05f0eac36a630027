package spacemap

// Extend makes the space map manage nrBlocks blocks, for a metadata store
// that has grown. nrBlocks is capped at MaxBlocks and at the size of the
// block manager's store; when the result is not larger than NrBlocks,
// Extend does nothing.
//
// The layout is the kernel's: the root's nr_blocks becomes the new size,
// every new bitmap gets an index entry, and the new bitmaps are allocated
// one after the other from the first new block on (the first of them lands
// in the tail of the last old bitmap when the old size is not a multiple
// of EntriesPerBitmap, in its own range when it is). Each is counted once,
// like any bitmap. The new range was never part of the committed state, so
// those blocks are free in both states and there is always room for the
// bitmaps: a range of n blocks never needs more than n new bitmaps.
//
// Like Alloc, Inc and Dec, Extend only changes counts in memory; the new
// bitmaps, the last old bitmap (whose free-entry hints grow with it) and the
// index are written by the next Commit, at new locations, and the caller
// stores Root in the superblock as after any commit. That Commit needs a
// free block for every bitmap it moves and one for the index, and fails
// with an error wrapping block.ErrNoSpace when even the grown store has
// none. The blocks of the new range may be allocated at once, in this
// transaction: no committed structure refers to them.
func (sm *SpaceMap) Extend(nrBlocks uint64) error {
	nrBlocks = min(nrBlocks, MaxBlocks, sm.tm.Blocks().NrBlocks())
	if nrBlocks <= sm.nrBlocks {
		return nil
	}
	oldBlocks, oldBitmaps := sm.nrBlocks, len(sm.cur)
	n := NrBitmaps(nrBlocks)
	for range n - oldBitmaps {
		sm.cur = append(sm.cur, make([]uint64, wordsPerBitmap))
		sm.old = append(sm.old, make([]uint64, wordsPerBitmap))
		sm.index = append(sm.index, IndexEntry{})
		sm.dirty = append(sm.dirty, true)
		sm.moved = append(sm.moved, true) // a new block: written, never copied
	}
	sm.nrBlocks = nrBlocks
	if oldBlocks%EntriesPerBitmap != 0 {
		// The last old bitmap now counts more blocks: its index entry's
		// hints change, so it is rewritten (copy-on-write) at the commit.
		sm.dirty[oldBitmaps-1] = true
	}
	for i := oldBitmaps; i < n; i++ {
		loc := oldBlocks + uint64(i-oldBitmaps)
		if err := sm.set(loc, 1); err != nil {
			return err
		}
		sm.index[i].Blocknr = loc
	}
	return nil
}
