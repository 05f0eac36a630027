package era

// One test per kernel dm-era / persistent-data fix (format.md §8) that
// applies to this code, named after the fix. Fixes with no counterpart
// here: 904e6b266619 "Fix bitset memory leaks" (Go frees the in-core
// writesets) and "fix use after free in rebalance_children()" (no manual
// block locking).

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
)

// crashCopy returns the metadata bytes as a crash would leave them now:
// whatever the device wrote, without Close.
func crashCopy(m *memStore) *memStore { return &memStore{Data: m.Bytes()} }

// de89afc1e40f "dm era: Recover committed writeset after crash".
func TestFix_RecoverCommittedWritesetAfterCrash(t *testing.T) {
	meta, origin := newMem(1<<20), newMem(256<<10)
	d := openT(t, meta, origin, 8)
	if _, err := d.WriteAt([]byte("x"), 5*4096); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(meta) // no Close: the current writeset is only in the superblock
	v, err := OpenView(crashed)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := v.WrittenSince(1); err != nil || len(rs) != 1 || rs[0] != (Range{5, 6}) {
		t.Fatalf("view of the crash image: %v %v", rs, err)
	}
	// Reopen with a larger origin: the resize must not wipe the loaded
	// writeset, and the rollover must archive it.
	d2, err := Open(crashed, newMem(512<<10), Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if era, err := d2.BlockEra(5); err != nil || era != 1 {
		t.Fatalf("block 5 era after crash and resize: %d %v", era, err)
	}
	if s := d2.Status(); s.CurrentEra != 2 {
		t.Fatalf("era after reopen %d, want 2", s.CurrentEra)
	}
	d.Close()
}

// failingSync fails every Sync after the first n.
type failingSync struct {
	*memStore
	n atomic.Int32
}

func (f *failingSync) Sync() error {
	if f.n.Add(-1) < 0 {
		return errors.New("injected sync failure")
	}
	return nil
}

// 2099b145d77c "dm era: Update in-core bitset after committing the metadata".
func TestFix_UpdateInCoreBitsetAfterCommit(t *testing.T) {
	meta := &failingSync{memStore: newMem(1 << 20)}
	meta.n.Store(1 << 30)
	origin := newMem(64 << 10)
	d := openT(t, meta, origin, 8)
	defer d.Close()
	meta.n.Store(0)
	if _, err := d.WriteAt([]byte("data"), 3*4096); err == nil {
		t.Fatal("write succeeded although its commit failed")
	}
	if d.cur.Load().test(3) {
		t.Fatal("in-core bit set although the commit failed")
	}
	if !bytes.Equal(origin.Bytes(), make([]byte, 64<<10)) {
		t.Fatal("origin written although the commit failed")
	}
	if _, err := d.WriteAt([]byte("data"), 3*4096); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("second write after a failed commit: %v, want ErrReadOnly", err)
	}
}

// 2524933307fd "dm era: Reinitialize bitset cache before digesting a new
// writeset": two writesets whose marks share a word are digested one after
// the other; each must be read afresh.
func TestFix_FreshBitsetForEachDigestedWriteset(t *testing.T) {
	meta, origin := newMem(1<<20), newMem(256<<10)
	d := openT(t, meta, origin, 8)
	write := func(b int) {
		if _, err := d.WriteAt([]byte{1}, int64(b)*4096); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	write(2)
	d.Checkpoint() // era 1 archived: blocks 1, 2
	write(3)
	d.Checkpoint() // era 2 archived: block 3
	write(60)
	if err := d.Close(); err != nil { // era 3 archived: block 60
		t.Fatal(err)
	}
	d = openT(t, meta, origin, 8)
	waitDigest(t, d)
	want := map[uint64]uint32{1: 1, 2: 1, 3: 2, 60: 3, 4: 0, 0: 0}
	for b, e := range want {
		if got, err := d.BlockEra(b); err != nil || got != e {
			t.Fatalf("block %d: era %d %v, want %d", b, got, err, e)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Check(meta); err != nil {
		t.Fatal(err)
	}
}

// 64f2d15afe7b "dm era: Use correct value size in equality function of
// writeset tree": equality looks at exactly the 12 packed bytes.
func TestFix_WritesetEqualityUses12Bytes(t *testing.T) {
	vt := writesetValueType(nil, nil)
	a := writesetInfo{NrBits: 10, Root: 7}.bytes()
	b := append(writesetInfo{NrBits: 10, Root: 7}.bytes(), 0xff, 0xff, 0xff, 0xff)
	if !vt.Equal(append(a, 0, 0, 0, 0), b) {
		t.Fatal("bytes past the 12-byte value changed equality")
	}
	if vt.Equal(a, writesetInfo{NrBits: 10, Root: 8}.bytes()) {
		t.Fatal("different roots compared equal")
	}
	if vt.Size != 12 {
		t.Fatalf("value size %d", vt.Size)
	}
}

// c8e846ff93d5 "dm era: Verify the data block size hasn't changed".
func TestFix_VerifyDataBlockSizeUnchanged(t *testing.T) {
	TestBlockSizeMismatch(t)
}

// cca2c6aebe86 "dm era: only resize metadata in preresume": a failed Open
// (here: a block size mismatch) must not have changed the metadata.
func TestFix_OnlyResizeWhenOpening(t *testing.T) {
	meta, origin := newMem(1<<20), newMem(64<<10)
	d := openT(t, meta, origin, 8)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	before := meta.Bytes()
	if _, err := Open(meta, newMem(128<<10), Config{Format: true, BlockSectors: 16}); err == nil {
		t.Fatal("Open with another block size succeeded")
	}
	if !bytes.Equal(before, meta.Bytes()) {
		t.Fatal("a refused Open changed the metadata")
	}
}

// countingStore counts writes.
type countingStore struct {
	*memStore
	writes atomic.Int64
}

func (c *countingStore) WriteAt(p []byte, off int64) (int, error) {
	c.writes.Add(1)
	return c.memStore.WriteAt(p, off)
}

// 9ae6e8b1c9bb "dm era: commit metadata in postsuspend after worker
// stops": Close stops the digest, then commits; nothing is written after.
func TestFix_NoMetadataWritesAfterFinalCommit(t *testing.T) {
	meta := &countingStore{memStore: newMem(4 << 20)}
	origin := newMem(4 << 20)
	d := openT(t, meta, origin, 8)
	for e := range 20 { // leave plenty of digest work pending
		for b := range 50 {
			if _, err := d.WriteAt([]byte{byte(e)}, int64((b*7+e)%1024)*4096); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := d.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	n := meta.writes.Load()
	for range 50 {
		sleepBriefly()
	}
	if got := meta.writes.Load(); got != n {
		t.Fatalf("%d metadata writes after Close returned", got-n)
	}
	if err := Check(meta); err != nil {
		t.Fatal(err)
	}
}

// 117aceb03030 "dm era: save spacemap metadata root after the pre-commit":
// the superblock must point at the index block the commit just wrote.
func TestFix_SpaceMapRootSavedAfterPreCommit(t *testing.T) {
	meta, origin := newMem(1<<20), newMem(64<<10)
	d := openT(t, meta, origin, 8)
	for b := range 16 {
		if _, err := d.WriteAt([]byte{1}, int64(b)*4096); err != nil {
			t.Fatal(err)
		}
		sb, err := readSuperblock(blockManagerOf(meta), 0)
		if err != nil {
			t.Fatal(err)
		}
		root, _ := spacemap.DecodeRoot(sb.SpaceMapRoot[:])
		d.mu.Lock()
		live := d.md.sm.Root()
		d.mu.Unlock()
		if root != live {
			t.Fatalf("after write %d: superblock holds %+v, space map committed %+v", b, root, live)
		}
		if _, err := spacemap.Open(transaction.NewReadOnly(blockManagerOf(meta)), sb.SpaceMapRoot[:]); err != nil {
			t.Fatalf("after write %d: %v", b, err)
		}
	}
	d.Close()
}

// 09a65adc7d8b "dm-thin: fix metadata refcount underflow": removing from a
// btree whose collapsing root has a shared child must increment the
// grandchildren. The writeset tree grows internal nodes (more than 201
// writesets), a snapshot shares them, and the digest then empties the tree.
func TestFix_RefcountUnderflowOnSharedRootCollapse(t *testing.T) {
	meta, origin := newMem(8<<20), newMem(64<<10)
	d := openT(t, meta, origin, 8)
	d.mu.Lock() // keep the digest from folding while writesets pile up
	for e := range 260 {
		if err := d.md.mark([]uint64{uint64(e % 16)}); err != nil {
			t.Fatal(err)
		}
		if err := d.md.eraRollover(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.md.eraRollover(); err != nil {
		t.Fatal(err)
	}
	if err := d.md.takeSnap(false); err != nil {
		t.Fatal(err)
	}
	if err := d.commitAndPublish(); err != nil {
		t.Fatal(err)
	}
	d.mu.Unlock()
	waitDigest(t, d)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := Check(meta); err != nil {
		t.Fatalf("after digesting under a snapshot: %v", err)
	}
	v, err := OpenSnapshot(meta)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := v.WrittenSince(250); err != nil || fmt.Sprint(rs) != "[{0 4} {9 16}]" {
		// Block b was last marked in era 257+b (b < 4) or 241+b.
		t.Fatalf("snapshot after digest: %v %v", rs, err)
	}
	if err := d.DropSnapshot(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Check(meta); err != nil {
		t.Fatalf("after dropping the snapshot: %v", err)
	}
}

// "dm space map common: fix division bug in sm_ll_find_free_block()": with
// exactly 16320 blocks the last bitmap must still be searched.
func TestFix_FindFreeBlockInLastFullBitmap(t *testing.T) {
	meta, origin := newMem(spacemap.EntriesPerBitmap*4096), newMem(64<<10)
	d := openT(t, meta, origin, 8)
	defer d.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	var last uint64
	for {
		b, err := d.md.sm.Alloc()
		if err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatal(err)
			}
			break
		}
		last = max(last, b)
	}
	if last != spacemap.EntriesPerBitmap-1 {
		t.Fatalf("highest block allocated %d, want %d", last, spacemap.EntriesPerBitmap-1)
	}
	d.md.tm.Abort()
}

func FuzzDecodeSuperblock(f *testing.F) {
	meta := newMem(1 << 20)
	d := openT(f, meta, newMem(64<<10), 8)
	d.Close()
	f.Add(meta.Bytes()[:4096])
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		sb, err := decodeSuperblock(0, data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		buf := make([]byte, 4096)
		sb.encode(buf)
		sb2, err := decodeSuperblock(0, buf)
		if err != nil || *sb2 != *sb {
			t.Fatalf("round trip: %v", err)
		}
	})
}
