package era

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/internal/tooltest"
	"github.com/era-go/era/spacemap"
)

// growWorkload writes n random blocks of d in the current era, keeping m.
func growWorkload(t *testing.T, d *Device, m *model, rng *rand.Rand, n int) {
	t.Helper()
	for i := range n {
		b := rng.IntN(len(m.era))
		p := []byte(fmt.Sprintf("grow%d", i))
		if _, err := d.WriteAt(p, int64(b*m.blockBytes)); err != nil {
			t.Fatal(err)
		}
		m.write(p, b*m.blockBytes)
	}
}

// smallestMetadata returns the fewest metadata blocks on which a device of
// nrBlocks blocks of 8 sectors opens and closes.
func smallestMetadata(t *testing.T, nrBlocks int) int64 {
	t.Helper()
	for n := int64(8); n < 4096; n++ {
		meta := tempFile(t, n*block.Size)
		d, err := Open(meta, newMem(nrBlocks*4096), Config{Format: true, BlockSectors: 8})
		if err == nil {
			err = d.Close()
		}
		meta.Close()
		if err == nil {
			return n
		}
	}
	t.Fatal("no metadata size up to 4096 blocks works")
	return 0
}

// TestOpenExtendsGrownMetadata grows the metadata file of a closed device
// (by one block, from a bitmap boundary, across two boundaries, and from a
// nearly full store) and reopens it: the space map manages the whole store,
// and the result passes era_check 0.9.0 and Check, and era_dump agrees with
// the model, before and after more writes and another reopen.
func TestOpenExtendsGrownMetadata(t *testing.T) {
	tooltest.Need(t, "era_check")
	const nrBlocks = 1024
	full := smallestMetadata(t, nrBlocks)
	t.Logf("smallest metadata: %d blocks", full)
	for _, c := range []struct {
		name     string
		from, to int64
	}{
		{"by one block", 200, 201},
		{"from a bitmap boundary", spacemap.EntriesPerBitmap, spacemap.EntriesPerBitmap + 1},
		{"across two boundaries", 200, 2*spacemap.EntriesPerBitmap + 100},
		{"from a nearly full store", full, full + 50},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(c.from), uint64(c.to)))
			meta := tempFile(t, c.from*block.Size)
			origin := newMem(nrBlocks * 4096)
			m := &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, nrBlocks*4096), blockBytes: 4096}
			d := openT(t, meta, origin, 8)
			if c.from != full {
				growWorkload(t, d, m, rng, 100)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := meta.Truncate(c.to * block.Size); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				d := openT(t, meta, origin, 8)
				m.current++
				if got := d.Status().TotalMetadataBlocks; got != uint64(c.to) {
					t.Fatalf("round %d: space map manages %d blocks of the %d-block store", round, got, c.to)
				}
				growWorkload(t, d, m, rng, 100)
				if _, err := d.Checkpoint(); err != nil {
					t.Fatal(err)
				}
				m.current++
				growWorkload(t, d, m, rng, 50)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				if out, stderr, err := tooltest.Try(t, "era_check", meta.Name()); err != nil {
					t.Fatalf("round %d: era_check: %v\n%s%s", round, err, out, stderr)
				}
				if err := Check(meta); err != nil {
					t.Fatalf("round %d: Check: %v", round, err)
				}
				if diff := cmp.Diff(m.era, foldedEras(t, meta.Name())); diff != "" {
					t.Fatalf("round %d: era_dump folded (-model +dump):\n%s", round, diff)
				}
			}
		})
	}
}

// TestKernelLoadsGrownMetadata: the kernel's dm-era loads metadata whose
// space map this library extended to a grown store, reports the grown size
// as its metadata total, allocates from it, and leaves metadata that
// era_check and Check accept.
