package btree

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/era-go/era/block"
	"github.com/google/go-cmp/cmp"
)

type entry struct {
	Key   uint64
	Value []byte
}

type model map[uint64][]byte

func (m model) entries(from uint64) []entry {
	var es []entry
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k >= from {
			es = append(es, entry{k, m[k]})
		}
	}
	return es
}

// sameEntries is a fast equality check; cmp.Diff (slow on long slices)
// only explains a difference.
func sameEntries(a, b []entry) bool {
	return slices.EqualFunc(a, b, func(x, y entry) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) })
}

// collect returns the entries of the tree with keys >= from, at most limit
// of them (limit < 0: all), stopping the iteration with Stop.
func collect(tb testing.TB, tr *Tree, root, from uint64, limit int) []entry {
	tb.Helper()
	var es []entry
	err := tr.Iterate(root, from, func(k uint64, v []byte) error {
		if limit >= 0 && len(es) == limit {
			return Stop
		}
		es = append(es, entry{k, bytes.Clone(v)})
		return nil
	})
	if err != nil {
		tb.Fatalf("iterate root %d from %d: %v", root, from, err)
	}
	return es
}

// verify checks that the tree at root holds exactly m: full and partial
// iteration, a lookup of every key and of absent ones, and Lowest.
func verify(tb testing.TB, tr *Tree, root uint64, m model, rng *rand.Rand, keyGen func(*rand.Rand) uint64) {
	tb.Helper()
	if want, got := m.entries(0), collect(tb, tr, root, 0, -1); !sameEntries(want, got) {
		tb.Fatalf("root %d: iteration differs from the model (-want +got):\n%s", root, cmp.Diff(want, got))
	}
	for range 3 {
		from := keyGen(rng)
		want := m.entries(from)
		if got := collect(tb, tr, root, from, -1); !sameEntries(want, got) {
			tb.Fatalf("root %d: iteration from %d differs (-want +got):\n%s", root, from, cmp.Diff(want, got))
		}
		if diff := cmp.Diff(want[:min(len(want), 3)], collect(tb, tr, root, from, 3)); diff != "" {
			tb.Fatalf("root %d: stopped iteration from %d differs (-want +got):\n%s", root, from, diff)
		}
	}
	for k, want := range m {
		got, found, err := tr.Lookup(root, k)
		if err != nil || !found || !bytes.Equal(got, want) {
			tb.Fatalf("root %d: lookup %d = %x, %v, %v; want %x", root, k, got, found, err, want)
		}
	}
	for range 20 {
		k := keyGen(rng)
		got, found, err := tr.Lookup(root, k)
		want, ok := m[k]
		if err != nil || found != ok || !bytes.Equal(got, want) {
			tb.Fatalf("root %d: lookup %d = %x, %v, %v; want %x, %v", root, k, got, found, err, want, ok)
		}
	}
	k, v, found, err := tr.Lowest(root)
	if err != nil {
		tb.Fatalf("root %d: lowest: %v", root, err)
	}
	if es := m.entries(0); len(es) == 0 {
		if found {
			tb.Fatalf("root %d: lowest of an empty tree found %d", root, k)
		}
	} else if !found || k != es[0].Key || !bytes.Equal(v, es[0].Value) {
		tb.Fatalf("root %d: lowest = %d %x %v, want %d %x", root, k, v, found, es[0].Key, es[0].Value)
	}
}

// keySet is the model's keys in a slice, to pick an existing key at random.
type keySet struct {
	keys []uint64
	pos  map[uint64]int
}

func (s *keySet) add(k uint64) {
	if _, ok := s.pos[k]; !ok {
		s.pos[k] = len(s.keys)
		s.keys = append(s.keys, k)
	}
}

func (s *keySet) remove(k uint64) {
	i, ok := s.pos[k]
	if !ok {
		return
	}
	last := s.keys[len(s.keys)-1]
	s.keys[i] = last
	s.pos[last] = i
	s.keys = s.keys[:len(s.keys)-1]
	delete(s.pos, k)
}

func (s *keySet) pick(rng *rand.Rand) uint64 { return s.keys[rng.IntN(len(s.keys))] }

// Key generators.
func smallKeys(n uint64) func(*rand.Rand) uint64 {
	return func(rng *rand.Rand) uint64 { return rng.Uint64N(n) }
}

func wideKeys(rng *rand.Rand) uint64 {
	switch r := rng.IntN(10); {
	case r < 4:
		return rng.Uint64()
	case r < 6:
		return rng.Uint64N(500)
	case r < 8:
		return ^uint64(0) - rng.Uint64N(500)
	default:
		return 1<<63 - 250 + rng.Uint64N(500)
	}
}

type propConfig struct {
	tt                   testType
	leafMax, internalMax uint32 // 0: the format's
	keys                 func(*rand.Rand) uint64
	steps, batch         int
	snapshots            bool
	nrBlocks             uint64
}

func (c propConfig) name() string {
	return fmt.Sprintf("%v-max%d-%d", c.tt, c.leafMax, c.internalMax)
}

type snapshot struct {
	root uint64
	m    model
}

// runProperty drives random inserts, overwrites, removes and lookups
// against a map model, in a grow, a shrink and a mixed phase, then removes
// every key; it commits, flushes and reopens at random points and checks
// contents, node rules and every reference count after each batch. With
// snapshots it also keeps old roots alive (tm.Inc), checks that they keep
// reading their old contents, and deletes them.
func runProperty(t *testing.T, c propConfig, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	e := newEnv(t, c.nrBlocks)
	tr := e.tree(c.tt, c.leafMax, c.internalMax)
	root, err := tr.Empty()
	if err != nil {
		t.Fatal(err)
	}
	m := model{}
	ks := &keySet{pos: map[uint64]int{}}
	var snaps []snapshot
	stats := map[string]int{}

	check := func() {
		t.Helper()
		verify(t, tr, root, m, rng, c.keys)
		roots := []liveRoot{{tr, root, c.tt}}
		for _, s := range snaps {
			verify(t, tr, s.root, s.m, rng, c.keys)
			roots = append(roots, liveRoot{tr, s.root, c.tt})
		}
		e.checkRefs(roots...)
	}

	insert := func(k uint64, v []byte) {
		t.Helper()
		if root, err = tr.Insert(root, k, v); err != nil {
			t.Fatalf("insert %d: %v", k, err)
		}
		m[k] = v
		ks.add(k)
	}
	remove := func(k uint64) {
		t.Helper()
		_, want := m[k]
		dirty := e.tm.Dirty()
		newRoot, found, err := tr.Remove(root, k)
		if err != nil || found != want {
			t.Fatalf("remove %d: found %v, %v; want found %v", k, found, err, want)
		}
		if !found && (newRoot != root || e.tm.Dirty() != dirty) {
			t.Fatalf("remove of absent key %d changed the tree", k)
		}
		root = newRoot
		delete(m, k)
		ks.remove(k)
	}

	total := c.steps
	for step := 0; step < total || len(m) > 0; step++ {
		pInsert := 0.5
		switch {
		case step < total/3:
			pInsert = 0.8
		case step < 2*total/3:
			pInsert = 0.25
		case step >= total:
			pInsert = 0 // drain
		}
		switch r := rng.Float64(); {
		case r < pInsert:
			k := c.keys(rng)
			if old, ok := m[k]; ok && rng.IntN(3) == 0 {
				insert(k, old) // overwrite with an Equal value: no Dec
				stats["overwrite-equal"]++
			} else {
				if ok {
					stats["overwrite"]++
				} else {
					stats["insert"]++
				}
				insert(k, c.tt.newValue(e, rng.Uint64()))
			}
		case len(m) > 0 && r < pInsert+(1-pInsert)*0.85:
			remove(ks.pick(rng))
			stats["remove"]++
		default:
			remove(c.keys(rng))
			stats["remove-any"]++
		}

		switch r := rng.IntN(1000); {
		case r < 10:
			e.commit()
		case r < 13:
			e.reopen()
			tr = e.tree(c.tt, c.leafMax, c.internalMax)
		case r < 20:
			if err := e.tm.Flush(); err != nil {
				t.Fatal(err)
			}
		case c.snapshots && r < 24:
			if rng.IntN(2) == 0 {
				e.commit()
			}
			if err := e.tm.Inc(root); err != nil {
				t.Fatal(err)
			}
			snaps = append(snaps, snapshot{root, maps.Clone(m)})
			stats["snapshot"]++
		case c.snapshots && r < 27 && len(snaps) > 0:
			i := rng.IntN(len(snaps))
			if err := tr.Delete(snaps[i].root); err != nil {
				t.Fatalf("delete snapshot: %v", err)
			}
			snaps = slices.Delete(snaps, i, i+1)
			stats["snapshot-delete"]++
		}
		if step%c.batch == c.batch-1 {
			check()
		}
	}
	check()
	n, err := decodeRoot(e, root)
	if err != nil || !n.IsLeaf() || n.nr() != 0 {
		t.Fatalf("drained tree: root %d is not an empty leaf (%v)", root, err)
	}
	for _, s := range snaps {
		if err := tr.Delete(s.root); err != nil {
			t.Fatalf("delete snapshot: %v", err)
		}
	}
	snaps = nil
	e.checkRefs(liveRoot{tr, root, c.tt})
	if err := tr.Delete(root); err != nil {
		t.Fatal(err)
	}
	e.checkRefs()
	if diff := cmp.Diff(map[uint64]uint32{0: 1}, e.sm.counts); diff != "" {
		t.Fatalf("counts after deleting every tree (-want +got):\n%s", diff)
	}
	t.Logf("seed %d: %v", seed, stats)
}

func decodeRoot(e *env, root uint64) (*Node, error) {
	data, err := e.tm.Read(root, block.Node)
	if err != nil {
		return nil, err
	}
	return DecodeNode(root, data)
}

var propConfigs = []propConfig{
	// Deep trees from few keys: every split, merge, 3-way rebalance and
	// root collapse happens many times.
	{tt: testType{8, true}, leafMax: 6, internalMax: 6, keys: smallKeys(1500), steps: 6000, batch: 300, nrBlocks: 8192},
	{tt: testType{12, true}, leafMax: 9, internalMax: 6, keys: wideKeys, steps: 6000, batch: 300, nrBlocks: 8192},
	{tt: testType{4, false}, leafMax: 3, internalMax: 3, keys: smallKeys(600), steps: 5000, batch: 250, nrBlocks: 8192},
	{tt: testType{8, true}, leafMax: 12, internalMax: 9, keys: smallKeys(3000), steps: 6000, batch: 500, nrBlocks: 8192},
	// The format's node sizes (internal 252; leaves 252, 201, 336).
	{tt: testType{8, true}, keys: smallKeys(8000), steps: 12000, batch: 2000, nrBlocks: 16384},
	{tt: testType{12, true}, keys: wideKeys, steps: 10000, batch: 2000, nrBlocks: 16384},
	{tt: testType{4, false}, keys: smallKeys(5000), steps: 10000, batch: 2000, nrBlocks: 16384},
}

func TestPropertyModel(t *testing.T) {
	for i, c := range propConfigs {
		t.Run(c.name(), func(t *testing.T) {
			t.Parallel()
			runProperty(t, c, uint64(i)+1)
		})
	}
}

func TestPropertySnapshots(t *testing.T) {
	for i, c := range propConfigs {
		c.snapshots = true
		t.Run(c.name(), func(t *testing.T) {
			t.Parallel()
			runProperty(t, c, uint64(i)+100)
		})
	}
}
