package era

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/erasim"
)

// TestOpenWriteCloseCyclesStayBounded runs 3,000 open / one write / close
// cycles on a 4 MiB store, the way a batch job or a crash loop uses the
// device. Each Close leaves at most MaxBacklog writesets undigested and
// each Open makes progress, so the store never fills (it used to after
// about 600 cycles) and the answers stay right.
func TestOpenWriteCloseCyclesStayBounded(t *testing.T) {
	const nrBlocks = 4096
	meta, origin := newMem(4<<20), newMem(nrBlocks*4096)
	rng := rand.New(rand.NewPCG(1, 2))
	m := &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, nrBlocks*4096), blockBytes: 4096}
	bound := uint64(MetadataSize(nrBlocks, 0) / block.Size)
	var maxUsed uint64
	maxBacklog := 0
	for i := range 3000 {
		d, err := Open(meta, origin, Config{Format: true, BlockSectors: 8})
		if err != nil {
			t.Fatalf("cycle %d: Open: %v", i, err)
		}
		if i > 0 {
			m.current++
		}
		b := rng.IntN(nrBlocks)
		p := []byte{byte(i), byte(i >> 8)}
		if _, err := d.WriteAt(p, int64(b*4096)); err != nil {
			t.Fatalf("cycle %d: WriteAt: %v", i, err)
		}
		m.write(p, b*4096)
		st := d.Stats()
		maxUsed = max(maxUsed, st.MetadataUsed)
		maxBacklog = max(maxBacklog, st.Backlog)
		if i%500 == 499 {
			checkAgainst(t, d, m, rng)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("cycle %d: Close: %v", i, err)
		}
	}
	v, err := OpenView(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("3000 cycles: at most %d metadata blocks used (sizing rule: %d), backlog at most %d (bound %d); era %d",
		maxUsed, bound, maxBacklog, DefaultMaxBacklog, v.CurrentEra())
	if maxUsed > bound || maxBacklog > DefaultMaxBacklog {
		t.Fatalf("metadata used %d blocks (rule %d), backlog %d (bound %d)", maxUsed, bound, maxBacklog, DefaultMaxBacklog)
	}
}

// TestSecondOpenIsLocked: one owner at a time. A second Open of the same
// metadata file, through the same *os.File, another *os.File, or in a
// child process, fails at once with ErrLocked; read-only views work; after
// Close, Open succeeds.
func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	metaPath := filepath.Join(dir, "meta")
	meta := tempFileAt(t, metaPath, 1<<20)
	origin := newMem(1 << 20)
	d := openT(t, meta, origin, 8)
	if _, err := d.WriteAt([]byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(meta, origin, Config{BlockSectors: 8}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open through the same file: %v, want ErrLocked", err)
	}
	other, err := os.OpenFile(metaPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := Open(other, origin, Config{BlockSectors: 8}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open through another file: %v, want ErrLocked", err)
	}
	if out, err := childOpen(t, metaPath); err == nil || !strings.Contains(out, "ErrLocked") {
		t.Fatalf("Open in a child process: %v\n%s", err, out)
	}
	if _, err := OpenView(other); err != nil {
		t.Fatalf("OpenView while owned: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(other, origin, Config{BlockSectors: 8})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if out, err := childOpen(t, metaPath); err == nil {
		t.Fatalf("Open in a child process while reopened: succeeded\n%s", out)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := childOpen(t, metaPath); err != nil {
		t.Fatalf("Open in a child process after Close: %v\n%s", err, out)
	}
}

// childOpen runs TestHelperOpen in a child process on metaPath.
func childOpen(t *testing.T, metaPath string) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOpen$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ERA_HELPER_META="+metaPath)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestHelperOpen is run by childOpen in a child process: it opens the
// metadata given and fails, saying ErrLocked, if it is locked.
func TestHelperOpen(t *testing.T) {
	path := os.Getenv("ERA_HELPER_META")
	if path == "" {
		t.Skip("run by TestSecondOpenIsLocked in a child process")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Open(f, newMem(1<<20), Config{BlockSectors: 8})
	if errors.Is(err, ErrLocked) {
		t.Fatalf("ErrLocked: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestNoSilentFormat: Open formats an all-zero store only when asked, and
// never a store that holds something else, which it names.
func TestNoSilentFormat(t *testing.T) {
	origin := newMem(1 << 20)
	zero := newMem(1 << 20)
	if _, err := Open(zero, origin, Config{BlockSectors: 8}); !errors.Is(err, ErrNoMetadata) || !strings.Contains(err.Error(), "Format") {
		t.Fatalf("Open of a zero store without Format: %v", err)
	}
	if !bytes.Equal(zero.Data, make([]byte, len(zero.Data))) {
		t.Fatal("the zero store was written")
	}
	ext4 := newMem(1 << 20)
	ext4.Data[1080], ext4.Data[1081] = 0x53, 0xef
	thin := newMem(1 << 20)
	copy(thin.Data[32:], []byte{0xba, 0x52, 0x9c, 0x01, 0, 0, 0, 0}) // 27022010
	for _, c := range []struct {
		name  string
		store *memStore
		want  string
	}{
		{"ext4", ext4, "ext2/3/4 filesystem"},
		{"thin", thin, "dm-thin pool metadata"},
	} {
		before := bytes.Clone(c.store.Data)
		_, err := Open(c.store, origin, Config{Format: true, BlockSectors: 8})
		if !errors.Is(err, ErrNoMetadata) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open: %v, want ErrNoMetadata naming %q", c.name, err, c.want)
		}
		if !bytes.Equal(before, c.store.Data) {
			t.Errorf("%s: the store was written", c.name)
		}
		if _, err := OpenView(c.store); !errors.Is(err, ErrNoMetadata) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: OpenView: %v", c.name, err)
		}
	}
	d, err := Open(zero, origin, Config{Format: true, BlockSectors: 8})
	if err != nil {
		t.Fatalf("Open with Format: %v", err)
	}
	d.Close()
	if d, err = Open(zero, origin, Config{BlockSectors: 8}); err != nil {
		t.Fatalf("reopen of formatted metadata without Format: %v", err)
	}
	d.Close()
}

// TestResizeAnswersDoNotDependOnTheDigest shrinks then regrows the origin
// with and without a digest in between: the answers are the same, and the
// blocks the regrow added are reported as written in the era that began
// with it.
func TestResizeAnswersDoNotDependOnTheDigest(t *testing.T) {
	type answer struct {
		Since1, SinceGrow []Range
		Eras              []uint32
	}
	run := func(digest bool) answer {
		meta := newMem(1 << 20)
		d, err := Open(meta, newMem(300*4096), Config{Format: true, BlockSectors: 8})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []int64{10, 200, 250, 299} {
			if _, err := d.WriteAt([]byte{1}, b*4096); err != nil {
				t.Fatal(err)
			}
		}
		d.Close()
		d, err = Open(meta, newMem(200*4096), Config{BlockSectors: 8}) // shrink
		if err != nil {
			t.Fatal(err)
		}
		if digest {
			waitDigest(t, d)
		}
		d.Close()
		d, err = Open(meta, newMem(300*4096), Config{BlockSectors: 8}) // regrow
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		grow := d.CurrentEra()
		var a answer
		if a.Since1, err = d.WrittenSince(1); err != nil {
			t.Fatal(err)
		}
		if a.SinceGrow, err = d.WrittenSince(grow); err != nil {
			t.Fatal(err)
		}
		if a.Eras, err = d.BlockEras(context.Background(), 0, 300); err != nil {
			t.Fatal(err)
		}
		for b := uint64(200); b < 300; b++ {
			if a.Eras[b] != grow {
				t.Fatalf("digest %v: added block %d in era %d, want %d", digest, b, a.Eras[b], grow)
			}
		}
		return a
	}
	with, without := run(true), run(false)
	if diff := cmp.Diff(without, with); diff != "" {
		t.Fatalf("answers differ with a digest between shrink and regrow (-without +with):\n%s", diff)
	}
	want := []Range{{10, 11}, {200, 300}}
	if diff := cmp.Diff(want, with.Since1); diff != "" {
		t.Fatalf("WrittenSince(1) (-want +got):\n%s", diff)
	}
}

// TestFreshDeviceHasNoHistory: a new device reports nothing written.
func TestFreshDeviceHasNoHistory(t *testing.T) {
	d := openT(t, newMem(1<<20), newMem(100*4096), 8)
	defer d.Close()
	if rs, err := d.WrittenSince(1); err != nil || len(rs) != 0 {
		t.Fatalf("WrittenSince(1) on a new device: %v, %v", rs, err)
	}
}

// TestClosedMeansClosed: after Close, every method fails with ErrClosed or
// returns its zero value, and no answer is read from the store.
func TestClosedMeansClosed(t *testing.T) {
	meta := erasim.New(1 << 20)
	d := openT(t, meta, newMem(100*4096), 8)
	if _, err := d.WriteAt([]byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	v, err := d.View()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	reads := meta.Len()
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["WrittenSince"] = d.WrittenSince(1)
	_, checks["WrittenSinceContext"] = d.WrittenSinceContext(ctx, 1)
	_, checks["WrittenSinceChange"] = d.WrittenSinceChange(ctx, ChangeID{})
	_, checks["BlockEra"] = d.BlockEra(0)
	_, checks["BlockEras"] = d.BlockEras(ctx, 0, 1)
	_, checks["ReadAt"] = d.ReadAt(make([]byte, 1), 0)
	_, checks["WriteAt"] = d.WriteAt([]byte{1}, 0)
	checks["WriteZeroes"] = d.WriteZeroes(0, 1)
	_, checks["Checkpoint"] = d.Checkpoint()
	_, checks["TakeSnapshot"] = d.TakeSnapshot()
	_, checks["HoldSnapshot"] = d.HoldSnapshot()
	checks["DropSnapshot"] = d.DropSnapshot()
	checks["Message"] = d.Message("checkpoint")
	checks["Sync"] = d.Sync()
	checks["Close"] = d.Close()
	_, checks["View"] = d.View()
	_, checks["SnapshotView"] = d.SnapshotView()
	_, checks["View.WrittenSince"] = v.WrittenSince(1)
	_, checks["View.BlockEra"] = v.BlockEra(0)
	for _, err := range d.WrittenSinceSeq(ctx, 1, 0) {
		checks["WrittenSinceSeq"] = err
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if st := d.Status(); st != (Status{}) {
		t.Errorf("Status after Close: %+v, want the zero Status", st)
	}
	if d.CurrentEra() != 0 || d.ChangeID() != (ChangeID{}) {
		t.Errorf("CurrentEra/ChangeID after Close: %d, %v", d.CurrentEra(), d.ChangeID())
	}
	if meta.Len() != reads {
		t.Errorf("the store was used after Close: %d operations, then %d", reads, meta.Len())
	}
}
