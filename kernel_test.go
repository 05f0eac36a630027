package era

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/block"
	"github.com/era-go/era/internal/kvm"
	"github.com/era-go/era/internal/tooltest"
	"github.com/era-go/era/spacemap"
)

// The kernel tests boot Linux 6.1 (a pinned Debian kernel) under qemu
// with internal/kvm and run its dm-era target on metadata and origins
// this package prepared, then read what the kernel left. They run by
// default; ERA_KERNEL_TESTS=0 skips them. When qemu or the Debian package
// tools are missing they skip, except under CI, where they fail.

// kernelMachine returns a guest built from cfg.
func kernelMachine(t *testing.T, cfg kvm.Config) *kvm.Machine {
	t.Helper()
	if os.Getenv("ERA_KERNEL_TESTS") == "0" {
		t.Skip("ERA_KERNEL_TESTS=0: not booting the kernel")
	}
	cfg.Log = t.Logf
	start := time.Now()
	m, err := kvm.Setup(context.Background(), cfg)
	if err != nil {
		if errors.Is(err, kvm.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("cannot run the kernel under qemu here: %v", err)
		}
		t.Fatalf("kernel harness setup: %v", err)
	}
	t.Logf("kernel %s ready in %v", m.Kernel, time.Since(start).Round(time.Millisecond))
	return m
}

// bootOK boots the guest and fails the test unless the scenario ends
// with status 0; the console is logged on failure.
func bootOK(t *testing.T, m *kvm.Machine, o kvm.Options) *kvm.Result {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 4 * time.Minute
	}
	res, err := m.Boot(context.Background(), o)
	if err != nil {
		out := ""
		if res != nil {
			out = res.Output
		}
		t.Fatalf("boot: %v\n%s", err, out)
	}
	t.Logf("boot: %v (%s)", res.Elapsed.Round(time.Millisecond), res.Accel)
	if res.Status != 0 {
		t.Fatalf("scenario failed with status %d:\n%s", res.Status, res.Output)
	}
	return res
}

// scenario returns testdata/kernel-scenarios/name.
func scenario(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kernel-scenarios", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// guestDisk is the guest's name of the i-th disk.
func guestDisk(i int) string { return "/dev/vd" + string(rune('a'+i)) }

// kernelStatus matches an era_status line of the guest helpers:
// "@@STATUS name 0 <sectors> era 8 <used>/<total> <era> <snapshot|->".
var kernelStatus = regexp.MustCompile(`@@STATUS (\S+) 0 \d+ era (8 \d+/\d+ (\d+) (\S+))`)

// statusLines returns the status lines of target name: the status text,
// its era and its metadata snapshot field.
func statusLines(out, name string) (lines []string, eras []uint32, snaps []string) {
	for _, m := range kernelStatus.FindAllStringSubmatch(out, -1) {
		if m[1] != name {
			continue
		}
		var e uint32
		fmt.Sscan(m[3], &e)
		lines, eras, snaps = append(lines, m[2]), append(eras, e), append(snaps, m[4])
	}
	return lines, eras, snaps
}

// kernelOpen opens a device for the kernel tests; format lets it format
// a fresh metadata store.
func kernelOpen(t *testing.T, meta, origin *os.File, sectors uint32, format bool) *Device {
	t.Helper()
	d, err := Open(meta, origin, Config{BlockSectors: sectors, Format: format})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// TestKernelLoadsOurMetadata boots the kernel's dm-era on metadata this
// library wrote (after Close, after a crash, with a metadata snapshot
// held, and on a device large enough for multi-block writesets and an
// internal era-array node) and checks the kernel accepts it, extends it,
// drops our snapshot with our reference counts, and leaves metadata that
// era_check, Check and our views agree with; also on a metadata store that
// was grown (the space map extended across a bitmap boundary) and on one
// whose digest backlog was kept at its bound by many checkpoints. The
// cases share one boot, each on its own pair of disks.
func TestKernelLoadsOurMetadata(t *testing.T) {
	m := kernelMachine(t, kvm.Config{})
	type kcase struct {
		kind           string
		sectors        int
		meta, origin   string
		model          *model
		drop           bool
		dev            *Device
		metaF, originF *os.File
		uuid           [16]byte
	}
	var cases []*kcase
	var disks []kvm.Disk
	script := scenario(t, "go-written.sh")
	dir := t.TempDir()
	// "large" has 131072 blocks, so its writesets span several array
	// blocks and its era array has an internal btree node.
	grownBlocks := int64(spacemap.EntriesPerBitmap + 100)
	for i, kind := range []string{"closed", "crashed", "snapshot", "large", "grown", "bounded"} {
		sectors, nrBlocks, metaBytes := 128, 1024, int64(4<<20)
		switch kind {
		case "large":
			sectors, nrBlocks, metaBytes = 8, 131072, 8<<20
		case "grown":
			metaBytes = 200 * block.Size
		}
		every := 60 // writes per era
		if kind == "bounded" {
			every = 4
		}
		blockBytes := sectors * 512
		c := &kcase{kind: kind, sectors: sectors,
			meta: filepath.Join(dir, kind+".meta"), origin: filepath.Join(dir, kind+".origin")}
		c.metaF = tempFileAt(t, c.meta, metaBytes)
		c.originF = tempFileAt(t, c.origin, int64(nrBlocks*blockBytes))
		d := kernelOpen(t, c.metaF, c.originF, uint32(sectors), true)
		c.dev, c.uuid = d, d.UUID()
		c.model = &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, nrBlocks*blockBytes), blockBytes: blockBytes}
		rng := rand.New(rand.NewPCG(uint64(len(kind)), 3))
		for i := range 300 {
			if i%every == every-1 {
				e, err := d.Checkpoint()
				if err != nil {
					t.Fatal(err)
				}
				c.model.current++
				if e != c.model.current {
					t.Fatalf("Checkpoint began era %d, model %d", e, c.model.current)
				}
			}
			b := rng.IntN(590)
			if kind == "large" {
				b = 602 + rng.IntN(nrBlocks-602)
			}
			p := []byte(fmt.Sprintf("go%d\n", i))
			if _, err := d.WriteAt(p, int64(b*blockBytes)); err != nil {
				t.Fatal(err)
			}
			c.model.write(p, b*blockBytes)
		}
		switch kind {
		case "closed", "large":
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
		case "bounded":
			if st := d.Stats(); st.Backlog > DefaultMaxBacklog {
				t.Fatalf("backlog %d above its bound", st.Backlog)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
		case "grown":
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.metaF.Truncate(grownBlocks * block.Size); err != nil {
				t.Fatal(err)
			}
			d = kernelOpen(t, c.metaF, c.originF, uint32(sectors), false)
			c.model.current++
			if st := d.Status(); st.TotalMetadataBlocks != uint64(grownBlocks) {
				t.Fatalf("grown store: the space map manages %d blocks, want %d", st.TotalMetadataBlocks, grownBlocks)
			}
			for i := range 50 {
				p := []byte(fmt.Sprintf("grown%d\n", i))
				b := 7 * i
				if _, err := d.WriteAt(p, int64(b*blockBytes)); err != nil {
					t.Fatal(err)
				}
				c.model.write(p, b*blockBytes)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
		case "crashed": // the device is abandoned without Close
		case "snapshot":
			if _, err := d.TakeSnapshot(); err != nil {
				t.Fatal(err)
			}
			c.model.current++
			if _, err := d.WriteAt([]byte("after"), 5*int64(blockBytes)); err != nil {
				t.Fatal(err)
			}
			c.model.write([]byte("after"), 5*blockBytes)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			c.drop = true
		}
		if err := c.metaF.Sync(); err != nil {
			t.Fatal(err)
		}
		drop := 0
		if c.drop {
			drop = 1
		}
		script += fmt.Sprintf("go_written %s %s %s %d %d\n", kind, guestDisk(2*i), guestDisk(2*i+1), sectors, drop)
		disks = append(disks, kvm.Disk{Path: c.meta}, kvm.Disk{Path: c.origin})
		cases = append(cases, c)
	}
	res := bootOK(t, m, kvm.Options{Scenario: script, Disks: disks})

	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			lines, eras, snaps := statusLines(res.Output, c.kind)
			if len(lines) != 2 {
				t.Fatalf("want 2 status lines of %s:\n%s", c.kind, res.Output)
			}
			t.Logf("kernel status: %q then %q", lines[0], lines[1])
			if c.kind == "grown" && !strings.Contains(lines[0], fmt.Sprintf("/%d ", grownBlocks)) {
				t.Fatalf("the kernel does not use the grown store (%d blocks): %s", grownBlocks, lines[0])
			}
			kernelEra := eras[0]
			if kernelEra != c.model.current+1 {
				t.Fatalf("kernel started era %d, want %d", kernelEra, c.model.current+1)
			}
			if snaps[1] != "-" {
				t.Fatalf("snapshot still held after the kernel: %s", lines[1])
			}
			bb := c.model.blockBytes
			c.model.era[600], c.model.era[601] = kernelEra, kernelEra+1
			for b, tag := range map[int]string{600: "k600\n", 601: "k601\n"} {
				got := make([]byte, len(tag))
				if _, err := c.originF.ReadAt(got, int64(b*bb)); err != nil || string(got) != tag {
					t.Fatalf("origin block %d holds %q (%v), want the kernel's %q", b, got, err, tag)
				}
			}
			kernelCheckMetadata(t, c.meta, c.model.writtenSince, kernelEra+1)
			// The kernel zeroes the superblock's uuid but keeps the copy:
			// the identity, and so every change ID, survives it.
			v, err := OpenView(c.metaF)
			if err != nil {
				t.Fatal(err)
			}
			if v.UUID() != c.uuid {
				t.Fatalf("identity after the kernel: %x, want %x", v.UUID(), c.uuid)
			}
			raw := make([]byte, 32)
			c.metaF.ReadAt(raw, 0)
			if !bytes.Equal(raw[16:32], make([]byte, 16)) {
				t.Logf("the kernel kept the uuid field: %x", raw[16:32])
			}
		})
	}
}

// kernelCheckMetadata runs era_check and Check on a metadata image the
// kernel left and, when want is not nil, compares WrittenSince of a view,
// for every era up to the current one, with want.
func kernelCheckMetadata(t *testing.T, metaPath string, want func(uint32) []Range, current uint32) {
	t.Helper()
	if out, stderr, err := tooltest.Try(t, "era_check", metaPath); err != nil {
		t.Fatalf("era_check after the kernel: %v\n%s%s", err, out, stderr)
	}
	f, err := os.Open(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Check(f); err != nil {
		t.Fatalf("Check after the kernel: %v", err)
	}
	if want == nil {
		return
	}
	v, err := OpenView(f)
	if err != nil {
		t.Fatal(err)
	}
	if v.CurrentEra() != current {
		t.Fatalf("view at era %d, want %d", v.CurrentEra(), current)
	}
	for n := uint32(0); n <= current; n++ {
		got, err := v.WrittenSince(n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want(n), got); diff != "" {
			t.Fatalf("WrittenSince(%d) after the kernel (-model +view):\n%s", n, diff)
		}
	}
}

// TestKernelGolden reruns the scenarios that made the committed kernel
// images of testdata/golden (kernel-a1, kernel-snap, and kernel-crash,
// whose target is still active at power-off) on the same geometry, in one
// boot, and compares the metadata the kernel writes with them byte for
// byte. dm-era's output is deterministic, so a difference means the
// images, and every reader test built on them, no longer match what the
// kernel does. With ERA_UPDATE_GOLDEN=1 it writes the kernel's images
// over the committed ones instead (testdata/golden/gen.sh --no-kernel
// then rebuilds the files derived from them).
func TestKernelGolden(t *testing.T) {
	m := kernelMachine(t, kvm.Config{})
	cases := []struct {
		name, fn    string
		originBytes int64
	}{
		{"kernel-a1", "kernel_a1", 1024 * 128 * 512},
		{"kernel-snap", "kernel_snap", 3000 * 8 * 512},
		{"kernel-crash", "kernel_crash", 1024 * 8 * 512}, // last: it leaves its target active
	}
	dir := t.TempDir()
	var script strings.Builder
	var disks []kvm.Disk
	want := make([][]byte, len(cases))
	for i, c := range cases {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", c.name+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = b
		meta, origin := filepath.Join(dir, c.name+".meta"), filepath.Join(dir, c.name+".origin")
		tempFileAt(t, meta, int64(len(b)))
		tempFileAt(t, origin, c.originBytes)
		disks = append(disks, kvm.Disk{Path: meta}, kvm.Disk{Path: origin})
		script.WriteString(scenario(t, c.name+".sh"))
		fmt.Fprintf(&script, "%s %s %s %s\n", c.fn, strings.ReplaceAll(c.fn, "kernel_", "g"), guestDisk(2*i), guestDisk(2*i+1))
	}
	res := bootOK(t, m, kvm.Options{Scenario: script.String(), Disks: disks})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines, _, _ := statusLines(res.Output, strings.ReplaceAll(c.fn, "kernel_", "g"))
			t.Logf("kernel status: %q", lines)
			got, err := os.ReadFile(disks[2*i].Path)
			if err != nil {
				t.Fatal(err)
			}
			if os.Getenv("ERA_UPDATE_GOLDEN") == "1" {
				path := filepath.Join("testdata", "golden", c.name+".bin")
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s", path)
				return
			}
			if !bytes.Equal(got, want[i]) {
				var diff []string
				for b := 0; b < len(got)/4096; b++ {
					if !bytes.Equal(got[b*4096:(b+1)*4096], want[i][b*4096:(b+1)*4096]) {
						diff = append(diff, fmt.Sprint(b))
					}
				}
				t.Fatalf("the kernel's metadata differs from %s.bin in blocks %s", c.name, strings.Join(diff, " "))
			}
		})
	}
}

func tempFileAt(t *testing.T, path string, size int64) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
