package btree

import (
	"bytes"
	"fmt"
	"testing"
)

// TestBuild: a tree built bottom up holds exactly its entries, passes the
// node rules and the reference check, and takes inserts and removes like
// any other; empty, single-leaf, two-level and deep trees.
func TestBuild(t *testing.T) {
	for _, tt := range []testType{{size: 8}, {size: 12, ref: true}} {
		for _, c := range []struct{ n, leafMax, internalMax int }{
			{0, 0, 0}, {1, 0, 0}, {252, 0, 0}, {253, 0, 0}, {1000, 0, 0},
			{7, 6, 6}, {37, 6, 6}, {500, 6, 6}, {216, 6, 6},
		} {
			t.Run(fmt.Sprintf("%v/%d/%d", tt, c.n, c.leafMax), func(t *testing.T) {
				e := newEnv(t, 4096)
				tr := e.tree(tt, uint32(c.leafMax), uint32(c.internalMax))
				keys := make([]uint64, c.n)
				var values []byte
				want := map[uint64][]byte{}
				for i := range keys {
					keys[i] = uint64(3*i + 1)
					v := tt.newValue(e, keys[i])
					values = append(values, v...)
					want[keys[i]] = v
				}
				root, err := tr.Build(keys, values)
				if err != nil {
					t.Fatal(err)
				}
				check := func(root uint64) {
					t.Helper()
					got := 0
					err := tr.Iterate(root, 0, func(k uint64, v []byte) error {
						if w, ok := want[k]; !ok || !bytes.Equal(v, w) {
							return fmt.Errorf("key %d: value %x, want %x (present %v)", k, v, w, ok)
						}
						got++
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if got != len(want) {
						t.Fatalf("%d entries, want %d", got, len(want))
					}
					e.checkRefs(liveRoot{tree: tr, root: root, tt: tt})
				}
				check(root)
				e.reopen()
				tr = e.tree(tt, uint32(c.leafMax), uint32(c.internalMax))
				check(root)
				for i := range 20 {
					k := uint64(7*i + 2)
					v := tt.newValue(e, k)
					if root, err = tr.Insert(root, k, v); err != nil {
						t.Fatal(err)
					}
					want[k] = v
				}
				for i := 0; i < c.n; i += 2 {
					var found bool
					if root, found, err = tr.Remove(root, keys[i]); err != nil || !found {
						t.Fatalf("remove %d: found %v, %v", keys[i], found, err)
					}
					delete(want, keys[i])
				}
				check(root)
			})
		}
	}
	e := newEnv(t, 64)
	tr := e.tree(testType{size: 8}, 0, 0)
	if _, err := tr.Build([]uint64{2, 1}, make([]byte, 16)); err == nil {
		t.Fatal("Build took keys out of order")
	}
	if _, err := tr.Build([]uint64{1, 2}, make([]byte, 8)); err == nil {
		t.Fatal("Build took too few value bytes")
	}
}
