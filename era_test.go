package era

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/era-go/era/internal/memstore"
	"github.com/google/go-cmp/cmp"
)

// memStore is the tests' in-memory store.
type memStore = memstore.Store

// newMem returns a zeroed in-memory store of size bytes.
func newMem(size int) *memStore { return memstore.New(size) }

// model is what the device must answer: the era each block was last
// written in, and the origin's bytes.
type model struct {
	era        []uint32
	current    uint32
	data       []byte
	blockBytes int
}

func (m *model) write(p []byte, off int) {
	copy(m.data[off:], p)
	for b := off / m.blockBytes; b <= (off+len(p)-1)/m.blockBytes; b++ {
		m.era[b] = m.current
	}
}

func (m *model) writtenSince(n uint32) []Range {
	var out []Range
	for b, e := range m.era {
		if e < n {
			continue
		}
		if len(out) > 0 && out[len(out)-1].End == uint64(b) {
			out[len(out)-1].End++
		} else {
			out = append(out, Range{uint64(b), uint64(b) + 1})
		}
	}
	return out
}

func openT(t testing.TB, meta, origin Store, sectors uint32) *Device {
	t.Helper()
	d, err := Open(meta, origin, Config{Format: true, BlockSectors: sectors})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// checkAgainst compares every query of the device with the model.
func checkAgainst(t *testing.T, d *Device, m *model, rng *rand.Rand) {
	t.Helper()
	if got := d.Status().CurrentEra; got != m.current {
		t.Fatalf("era %d, model %d", got, m.current)
	}
	for range 3 {
		n := uint32(rng.IntN(int(m.current) + 2))
		got, err := d.WrittenSince(n)
		if n > m.current {
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("WrittenSince(%d) past the current era %d: %v, want ErrOutOfRange", n, m.current, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("WrittenSince(%d): %v", n, err)
		}
		if diff := cmp.Diff(m.writtenSince(n), got); diff != "" {
			t.Fatalf("WrittenSince(%d) at era %d (-model +device):\n%s", n, m.current, diff)
		}
	}
	for range 5 {
		b := rng.IntN(len(m.era))
		got, err := d.BlockEra(uint64(b))
		if err != nil {
			t.Fatalf("BlockEra(%d): %v", b, err)
		}
		if got != m.era[b] {
			t.Fatalf("BlockEra(%d) = %d, model %d", b, got, m.era[b])
		}
	}
}

func TestDeviceAgainstModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			const sectors = 8
			blockBytes := sectors * 512
			nrBlocks := 50 + rng.IntN(3000)
			size := nrBlocks*blockBytes - rng.IntN(blockBytes) // a partial tail block
			meta, origin := newMem(4<<20), newMem(size)
			m := &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, size), blockBytes: blockBytes}
			d := openT(t, meta, origin, sectors)
			snapEra, snapModel := uint32(0), []uint32(nil)
			for op := range 600 {
				switch r := rng.IntN(100); {
				case r < 70:
					n := 1 + rng.IntN(3*blockBytes)
					if rng.IntN(4) == 0 {
						n = 1 + rng.IntN(20)
					}
					off := rng.IntN(size - n + 1)
					p := make([]byte, n)
					for i := range p {
						p[i] = byte(rng.Uint32())
					}
					if _, err := d.WriteAt(p, int64(off)); err != nil {
						t.Fatalf("op %d: WriteAt(%d, %d): %v", op, n, off, err)
					}
					m.write(p, off)
				case r < 80:
					if _, err := d.Checkpoint(); err != nil {
						t.Fatal(err)
					}
					m.current++
				case r < 85:
					_, err := d.TakeSnapshot()
					if snapModel != nil {
						if !errors.Is(err, ErrSnapshotExists) {
							t.Fatalf("second TakeSnapshot: %v", err)
						}
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					m.current++
					snapEra, snapModel = m.current, append([]uint32(nil), m.era...)
				case r < 90:
					err := d.DropSnapshot()
					if snapModel == nil {
						if !errors.Is(err, ErrNoSnapshot) {
							t.Fatalf("DropSnapshot without one: %v", err)
						}
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					snapModel = nil
				case r < 95:
					if err := d.Close(); err != nil {
						t.Fatal(err)
					}
					if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, ErrClosed) {
						t.Fatalf("WriteAt after Close: %v", err)
					}
					d = openT(t, meta, origin, sectors)
					m.current++
				default:
					checkAgainst(t, d, m, rng)
				}
				if snapModel != nil && rng.IntN(20) == 0 {
					v, err := OpenSnapshot(meta)
					if rng.IntN(2) == 0 {
						v, err = d.SnapshotView()
					}
					if err != nil {
						t.Fatalf("OpenSnapshot: %v", err)
					}
					sm := &model{era: snapModel, current: snapEra}
					if v.CurrentEra() != snapEra {
						t.Fatalf("snapshot era %d, want %d", v.CurrentEra(), snapEra)
					}
					n := uint32(rng.IntN(int(snapEra) + 1))
					got, err := v.WrittenSince(n)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(sm.writtenSince(n), got); diff != "" {
						t.Fatalf("snapshot WrittenSince(%d) (-model +view):\n%s", n, diff)
					}
				}
			}
			checkAgainst(t, d, m, rng)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(origin.Bytes(), m.data) {
				t.Fatal("origin bytes differ from the model")
			}
			v, err := OpenView(meta)
			if err != nil {
				t.Fatal(err)
			}
			for n := range m.current + 1 {
				got, err := v.WrittenSince(n)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(m.writtenSince(n), got); diff != "" {
					t.Fatalf("view WrittenSince(%d) (-model +view):\n%s", n, diff)
				}
			}
			if err := Check(meta); err != nil {
				t.Fatalf("Check after close: %v", err)
			}
		})
	}
}

func TestFreshDeviceStartsAtEra1(t *testing.T) {
	d := openT(t, newMem(1<<20), newMem(64<<10), 8)
	defer d.Close()
	if s := d.Status(); s.CurrentEra != 1 || s.Held || s.String() != fmt.Sprintf("8 %d/256 1 -", s.UsedMetadataBlocks) {
		t.Fatalf("status %+v %q", s, s)
	}
}

func TestBlockSizeMismatch(t *testing.T) {
	meta, origin := newMem(1<<20), newMem(64<<10)
	d := openT(t, meta, origin, 8)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(meta, origin, Config{Format: true, BlockSectors: 16}); !errors.Is(err, ErrBlockSizeMismatch) {
		t.Fatalf("Open with another block size: %v", err)
	}
}

func TestInvalidConfigAndRange(t *testing.T) {
	for _, bs := range []uint32{0, 4, 12} {
		if _, err := Open(newMem(1<<20), newMem(64<<10), Config{Format: true, BlockSectors: bs}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("block size %d: %v", bs, err)
		}
	}
	d := openT(t, newMem(1<<20), newMem(64<<10), 8)
	defer d.Close()
	if _, err := d.WriteAt(make([]byte, 10), 64<<10-5); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past end: %v", err)
	}
	if _, err := d.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("read at -1: %v", err)
	}
	if _, err := d.BlockEra(16); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("BlockEra past end: %v", err)
	}
	if err := d.Message("bogus"); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("bad message: %v", err)
	}
	if err := d.Message("CHECKPOINT"); err != nil {
		t.Errorf("checkpoint message: %v", err)
	}
}
