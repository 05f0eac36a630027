package array

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/era-go/era/block"
)

// model is the reference a property test compares the on-disk array with.
type model [][]byte

func (m model) clone() model {
	c := make(model, len(m))
	for i, v := range m {
		c[i] = slices.Clone(v)
	}
	return c
}

// arrayRun drives random operations against an Array and a slice model.
type arrayRun struct {
	t    *testing.T
	rng  *rand.Rand
	e    *env
	a    *Array
	vs   int
	max  uint64
	lim  uint64 // largest length the run grows to
	root uint64
	m    model

	// The last committed state, which must stay readable from the bytes
	// however many uncommitted blocks are flushed after it.
	committedRoot uint64
	committed     model

	// A second reference to an older root, as a metadata snapshot holds.
	holding  bool
	heldRoot uint64
	held     model
}

func (r *arrayRun) value() []byte {
	v := make([]byte, r.vs)
	for i := range v {
		v[i] = byte(r.rng.IntN(256))
	}
	return v
}

// length picks a new length, favouring block boundaries and 0.
func (r *arrayRun) length() uint64 {
	switch r.rng.IntN(5) {
	case 0:
		return 0
	case 1, 2:
		k := uint64(r.rng.IntN(int(r.lim/r.max) + 1))
		n := k*r.max + uint64(r.rng.IntN(3)) - 1 // k*max-1, k*max, k*max+1
		if k == 0 && n > r.max {
			n = 0
		}
		return min(n, r.lim)
	default:
		return uint64(r.rng.IntN(int(r.lim) + 1))
	}
}

func (r *arrayRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format, args...)
}

func (r *arrayRun) resize() {
	n := r.length()
	def := r.value()
	if r.rng.IntN(2) == 0 {
		def = make([]byte, r.vs)
	}
	root, err := r.a.Resize(r.root, uint64(len(r.m)), n, def)
	if err != nil {
		r.fail("Resize(%d -> %d): %v", len(r.m), n, err)
	}
	r.root = root
	if n < uint64(len(r.m)) {
		r.m = r.m[:n]
	}
	for uint64(len(r.m)) < n {
		r.m = append(r.m, slices.Clone(def))
	}
}

func (r *arrayRun) get() {
	n := uint64(len(r.m))
	i := uint64(r.rng.IntN(int(n + r.max + 1)))
	v, err := r.a.Get(r.root, i)
	if i >= n {
		if !errors.Is(err, ErrOutOfRange) || errors.Is(err, block.ErrCorrupt) {
			r.fail("Get(%d) of %d values: err %v, want ErrOutOfRange", i, n, err)
		}
		return
	}
	if err != nil {
		r.fail("Get(%d) of %d values: %v", i, n, err)
	}
	if !bytes.Equal(v, r.m[i]) {
		r.fail("Get(%d) = %x, want %x", i, v, r.m[i])
	}
}

func (r *arrayRun) set() {
	n := uint64(len(r.m))
	if n == 0 || r.rng.IntN(20) == 0 {
		i := n + uint64(r.rng.IntN(int(r.max)+1))
		if _, err := r.a.Set(r.root, i, r.value()); !errors.Is(err, ErrOutOfRange) {
			r.fail("Set(%d) of %d values: err %v, want ErrOutOfRange", i, n, err)
		}
		return
	}
	i := uint64(r.rng.IntN(int(n)))
	v := r.value()
	root, err := r.a.Set(r.root, i, v)
	if err != nil {
		r.fail("Set(%d): %v", i, err)
	}
	r.root = root
	r.m[i] = v
}

func (r *arrayRun) update() {
	n := uint64(len(r.m))
	if n == 0 || r.rng.IntN(20) == 0 {
		// Past the end: nothing may be called or changed.
		begin := uint64(r.rng.IntN(int(n) + 1))
		end := n + 1 + uint64(r.rng.IntN(int(r.max)))
		_, err := r.a.Update(r.root, begin, end, func(i uint64, v []byte) bool {
			r.fail("Update past the end called fn(%d)", i)
			return false
		})
		if !errors.Is(err, ErrOutOfRange) {
			r.fail("Update(%d, %d) of %d values: err %v, want ErrOutOfRange", begin, end, n, err)
		}
		return
	}
	begin := uint64(r.rng.IntN(int(n)))
	end := begin + 1 + uint64(r.rng.IntN(int(min(n-begin, 3*r.max))))
	p := r.rng.Float64() * r.rng.Float64() // often sparse changes
	next := begin
	changes := map[uint64][]byte{}
	root, err := r.a.Update(r.root, begin, end, func(i uint64, v []byte) bool {
		if i != next {
			r.fail("Update(%d, %d) called fn(%d), want %d", begin, end, i, next)
		}
		next++
		if !bytes.Equal(v, r.m[i]) {
			r.fail("Update fn(%d) got %x, want %x", i, v, r.m[i])
		}
		if r.rng.Float64() >= p {
			if r.rng.IntN(10) == 0 {
				// Changing v but reporting no change: the value
				// must stay as it was.
				v[0] ^= 0xff
			}
			return false
		}
		nv := r.value()
		copy(v, nv)
		changes[i] = nv
		return true
	})
	if err != nil {
		r.fail("Update(%d, %d): %v", begin, end, err)
	}
	if next != end {
		r.fail("Update(%d, %d) stopped at %d", begin, end, next)
	}
	r.root = root
	for i, v := range changes {
		r.m[i] = v
	}
}

// compare reads the whole array through the live transaction.
func (r *arrayRun) compare(what string) {
	r.t.Helper()
	got := readAll(r.t, r.a, r.root, uint64(len(r.m)))
	if diff := diffModel(r.m, model(got)); diff != "" {
		r.fail("%s: array differs from the model (-want +got):\n%s", what, diff)
	}
	if r.holding {
		got := readAll(r.t, r.a, r.heldRoot, uint64(len(r.held)))
		if diff := diffModel(r.held, model(got)); diff != "" {
			r.fail("%s: held array differs from its model (-want +got):\n%s", what, diff)
		}
	}
}

// compareFresh reads a root from the bytes on the store, through a fresh
// block manager and a read-only transaction.
func (r *arrayRun) compareFresh(what string, root uint64, m model) {
	r.t.Helper()
	a := New(r.e.fresh(), r.vs)
	got := readAll(r.t, a, root, uint64(len(m)))
	if diff := diffModel(m, model(got)); diff != "" {
		r.fail("%s: array read from the bytes differs (-want +got):\n%s", what, diff)
	}
}

func (r *arrayRun) commit() {
	r.e.commit()
	r.committedRoot, r.committed = r.root, r.m.clone()
	r.compareFresh("after commit", r.root, r.m)
	if r.holding {
		r.compareFresh("held, after commit", r.heldRoot, r.held)
	}
}

// flush writes the dirty blocks without committing: the committed array
// must still read the same from the bytes.
func (r *arrayRun) flush() {
	if err := r.e.tm.Flush(); err != nil {
		r.fail("Flush: %v", err)
	}
	r.compareFresh("committed state after a flush", r.committedRoot, r.committed)
}

func (r *arrayRun) roots() []arrayRoot {
	roots := []arrayRoot{{r.a, r.root}}
	if r.holding {
		roots = append(roots, arrayRoot{r.a, r.heldRoot})
	}
	return roots
}

// hold takes a second reference to the current root, as a metadata
// snapshot does.
func (r *arrayRun) hold() {
	r.commit()
	if err := r.e.tm.Inc(r.root); err != nil {
		r.fail("Inc: %v", err)
	}
	r.holding, r.heldRoot, r.held = true, r.root, r.m.clone()
}

func (r *arrayRun) release() {
	if err := r.a.Delete(r.heldRoot); err != nil {
		r.fail("Delete(held %d): %v", r.heldRoot, err)
	}
	r.holding = false
	r.e.checkRefs(r.roots()...)
	r.compare("after releasing the held root")
}

func runArrayModel(t *testing.T, vs int, lim uint64, ops int, seed uint64, withHeld bool) {
	e := newEnv(t, 4096)
	a := New(e.tm, vs)
	root, err := a.Empty()
	if err != nil {
		t.Fatal(err)
	}
	r := &arrayRun{
		t: t, rng: rand.New(rand.NewPCG(seed, uint64(vs))), e: e, a: a, vs: vs,
		max: uint64(MaxEntries(vs)), lim: lim, root: root,
	}
	r.commit()
	for op := range ops {
		switch k := r.rng.IntN(100); {
		case k < 12:
			r.resize()
		case k < 32:
			r.get()
		case k < 57:
			r.set()
		case k < 80:
			r.update()
		case k < 86:
			r.compare(fmt.Sprintf("op %d", op))
		case k < 90:
			r.commit()
		case k < 93:
			r.flush()
		case k < 96:
			r.e.checkRefs(r.roots()...)
		default:
			if !withHeld {
				continue
			}
			if r.holding {
				r.release()
			} else {
				r.hold()
			}
		}
	}
	r.compare("end")
	r.e.checkRefs(r.roots()...)
	if r.holding {
		r.release()
	}
	r.commit()
	if err := a.Delete(r.root); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.checkRefs()
	e.checkBaseline()
}

func TestArrayModel(t *testing.T) {
	for _, tc := range []struct {
		vs  int
		lim uint64
		ops int
	}{
		{4, 5 * 1018, 2500},
		{8, 5 * 509, 2500},
		// 4 values per block: hundreds of array blocks, so the btree
		// splits into internal nodes and rebalances on shrink.
		{1000, 1400, 2500},
	} {
		t.Run(fmt.Sprintf("vs%d", tc.vs), func(t *testing.T) {
			runArrayModel(t, tc.vs, tc.lim, tc.ops, 1, false)
		})
	}
}

func TestArrayModelHeldRoot(t *testing.T) {
	for _, tc := range []struct {
		vs  int
		lim uint64
		ops int
	}{
		{4, 4 * 1018, 2500},
		{1000, 1400, 2500},
	} {
		t.Run(fmt.Sprintf("vs%d", tc.vs), func(t *testing.T) {
			runArrayModel(t, tc.vs, tc.lim, tc.ops, 2, true)
		})
	}
}

// TestUpdateShadowsOnce checks that Update shadows an array block only if
// fn changed one of its values, and then only once.
func TestUpdateShadowsOnce(t *testing.T) {
	e := newEnv(t, 1024)
	a := New(e.tm, 4)
	root, err := a.Empty()
	if err != nil {
		t.Fatal(err)
	}
	const n = 5 * 1018
	if root, err = a.Resize(root, 0, n, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	e.commit()
	locs := func(root uint64) []uint64 {
		var l []uint64
		if err := a.Walk(root, func(uint64, *btreeNode, int) (bool, error) { return true, nil }, func(loc uint64, _ *Block) error {
			l = append(l, loc)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := locs(root)

	// No change: nothing is shadowed, nothing allocated.
	allocs := e.sm.allocs
	root2, err := a.Update(root, 0, n, func(i uint64, v []byte) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if root2 != root || e.sm.allocs != allocs || e.tm.Dirty() != 0 {
		t.Fatalf("Update without changes: root %d -> %d, %d allocations, %d dirty blocks", root, root2, e.sm.allocs-allocs, e.tm.Dirty())
	}

	// Change many values of blocks 1 and 3 only: each is shadowed once,
	// and the btree leaf once.
	root2, err = a.Update(root, 1018, 4*1018, func(i uint64, v []byte) bool {
		if (i/1018 == 1 || i/1018 == 3) && i%3 == 0 {
			v[0] = 7
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.sm.allocs - allocs; got != 3 {
		t.Errorf("Update changing two blocks allocated %d blocks, want 3 (2 array blocks, 1 leaf)", got)
	}
	after := locs(root2)
	for bi := range before {
		moved := before[bi] != after[bi]
		if moved != (bi == 1 || bi == 3) {
			t.Errorf("array block %d: location %d -> %d", bi, before[bi], after[bi])
		}
	}
	e.checkRefs(arrayRoot{a, root2})
	for i := uint64(0); i < n; i += 509 {
		v, err := a.Get(root2, i)
		if err != nil {
			t.Fatal(err)
		}
		want := byte(0)
		if (i/1018 == 1 || i/1018 == 3) && i%3 == 0 {
			want = 7
		}
		if v[0] != want {
			t.Errorf("value %d = %d, want %d", i, v[0], want)
		}
	}

	// Within the same transaction the shadows are changed in place.
	allocs = e.sm.allocs
	root3, err := a.Update(root2, 1018, 1019, func(i uint64, v []byte) bool { v[1] = 1; return true })
	if err != nil {
		t.Fatal(err)
	}
	if root3 != root2 || e.sm.allocs != allocs {
		t.Errorf("second Update in the transaction: root %d -> %d, %d allocations", root2, root3, e.sm.allocs-allocs)
	}
}

// TestResizeZeroesTrimmedSlots checks that a shrink zeroes the slots it
// trims, so that no stale value is left in the block.
func TestResizeZeroesTrimmedSlots(t *testing.T) {
	e := newEnv(t, 256)
	a := New(e.tm, 4)
	root, _ := a.Empty()
	root, err := a.Resize(root, 0, 1500, []byte{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if root, err = a.Resize(root, 1500, 1100, nil4()); err != nil {
		t.Fatal(err)
	}
	var tail *Block
	if err := a.Walk(root, func(uint64, *btreeNode, int) (bool, error) { return true, nil }, func(loc uint64, b *Block) error {
		tail = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if tail.NrEntries != 82 {
		t.Fatalf("tail block holds %d entries, want 82", tail.NrEntries)
	}
	data, err := e.tm.Read(tail.Loc, block.Array)
	if err != nil {
		t.Fatal(err)
	}
	if !isZero(data[headerSize+82*4:]) {
		t.Errorf("trimmed slots not zeroed")
	}
	// Growing again fills with the new default, not stale values.
	if root, err = a.Resize(root, 1100, 1200, nil4()); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1100); i < 1200; i++ {
		if v, err := a.Get(root, i); err != nil || !isZero(v) {
			t.Fatalf("Get(%d) = %x, %v after regrow", i, v, err)
		}
	}
}

func nil4() []byte { return make([]byte, 4) }
