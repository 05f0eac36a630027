package array

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// TestNewShared: an array whose full blocks are one shared block reads as
// length copies of the default, keeps exact reference counts, gives each
// changed block a private copy (the others keep the default), and is freed
// entirely by Delete.
func TestNewShared(t *testing.T) {
	for _, vs := range []int{4, 8} {
		max := uint64(MaxEntries(vs))
		for _, length := range []uint64{0, 1, max - 1, max, max + 1, 5 * max, 5*max + 3, 300 * max} {
			t.Run(fmt.Sprintf("vs%d/%d", vs, length), func(t *testing.T) {
				e := newEnv(t, 4096)
				a := New(e.tm, vs)
				def := make([]byte, vs)
				if vs == 4 {
					binary.LittleEndian.PutUint32(def, 7)
				}
				root, err := a.NewShared(length, def)
				if err != nil {
					t.Fatal(err)
				}
				if got := len(e.sm.counts); length > 0 && got > 3+int(length/max/250)+2 {
					t.Fatalf("%d blocks allocated for %d values", got, length)
				}
				e.checkRefs(arrayRoot{a, root})
				model := make([][]byte, length)
				for i := range model {
					model[i] = def
				}
				if d := diffModel(model, readAll(t, a, root, length)); d != "" {
					t.Fatal(d)
				}
				e.commit()
				for i := uint64(0); i < length; i += max/2 + 1 {
					v := make([]byte, vs)
					v[0] = byte(i + 1)
					if root, err = a.Set(root, i, v); err != nil {
						t.Fatal(err)
					}
					model[i] = v
				}
				e.checkRefs(arrayRoot{a, root})
				e.commit()
				fresh := New(e.fresh(), vs)
				got := readAll(t, fresh, root, length)
				for i := range model {
					if !bytes.Equal(got[i], model[i]) {
						t.Fatalf("value %d: %x, want %x", i, got[i], model[i])
					}
				}
				if err := a.Delete(root); err != nil {
					t.Fatal(err)
				}
				e.checkBaseline()
			})
		}
	}
}
