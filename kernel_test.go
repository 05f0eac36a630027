package era

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/internal/tooltest"
)

// TestKernelLoadsOurMetadata boots the Linux 6.1 dm-era target under qemu
// (../shared/tools/kernel-era, 6–8 s a boot) on metadata this library
// wrote — after Close, after a crash, and with a metadata snapshot held —
// and checks the kernel accepts it, extends it, drops our snapshot with
// our reference counts, and leaves metadata that era_check, Check and our
// views agree with. It needs qemu and a download of the kernel packages,
// so it runs only when ERA_KERNEL_TESTS is set to a value other than 0
// (scripts/test.sh sets it when the harness is there).
func TestKernelLoadsOurMetadata(t *testing.T) {
	if v := os.Getenv("ERA_KERNEL_TESTS"); v == "" || v == "0" {
		t.Skip("set ERA_KERNEL_TESTS=1 to boot the kernel's dm-era under qemu")
	}
	runSh, err := filepath.Abs("../shared/tools/kernel-era/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(runSh); err != nil {
		t.Fatalf("kernel harness missing: %v", err)
	}
	scenario, _ := filepath.Abs("testdata/kernel-scenarios/go-written.sh")
	status := regexp.MustCompile(`KERA-STATUS era0: 0 \d+ era (8 \d+/\d+ (\d+) (\S+))`)

	// "large" has 131072 blocks, so its writesets span several array
	// blocks and its era array has an internal btree node.
	for _, kind := range []string{"closed", "crashed", "snapshot", "large"} {
		t.Run(kind, func(t *testing.T) {
			sectors, nrBlocks, metaBytes := 128, 1024, int64(4<<20)
			if kind == "large" {
				sectors, nrBlocks, metaBytes = 8, 131072, 8<<20
			}
			blockBytes := sectors * 512
			dir := t.TempDir()
			metaPath, originPath := filepath.Join(dir, "meta.img"), filepath.Join(dir, "origin.img")
			meta := tempFileAt(t, metaPath, metaBytes)
			origin := tempFileAt(t, originPath, int64(nrBlocks*blockBytes))
			d := openT(t, meta, origin, uint32(sectors))
			m := &model{era: make([]uint32, nrBlocks), current: 1, data: make([]byte, nrBlocks*blockBytes), blockBytes: blockBytes}
			rng := rand.New(rand.NewPCG(uint64(len(kind)), 3))
			for i := range 300 {
				if i%60 == 59 {
					if _, err := d.Checkpoint(); err != nil {
						t.Fatal(err)
					}
					m.current++
				}
				b := rng.IntN(590)
				if kind == "large" {
					b = 602 + rng.IntN(nrBlocks-602)
				}
				p := []byte(fmt.Sprintf("go%d\n", i))
				if _, err := d.WriteAt(p, int64(b*blockBytes)); err != nil {
					t.Fatal(err)
				}
				m.write(p, b*blockBytes)
			}
			args := []string{scenario, metaPath, originPath, fmt.Sprint("BS=", sectors)}
			switch kind {
			case "closed", "large":
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
			case "crashed": // the device is abandoned without Close
			case "snapshot":
				if _, err := d.TakeSnapshot(); err != nil {
					t.Fatal(err)
				}
				m.current++
				if _, err := d.WriteAt([]byte("after"), 5*int64(blockBytes)); err != nil {
					t.Fatal(err)
				}
				m.write([]byte("after"), 5*blockBytes)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				args = append(args, "DROP=1")
			}
			meta.Sync()
			out, err := exec.Command(runSh, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("kernel refused our metadata: %v\n%s", err, out)
			}
			lines := status.FindAllStringSubmatch(string(out), -1)
			if len(lines) != 2 {
				t.Fatalf("want 2 status lines:\n%s", out)
			}
			t.Logf("kernel status: %q then %q", lines[0][1], lines[1][1])
			var kernelEra uint32
			fmt.Sscan(lines[0][2], &kernelEra)
			if kernelEra != m.current+1 {
				t.Fatalf("kernel started era %d, want %d", kernelEra, m.current+1)
			}
			m.era[600], m.era[601] = kernelEra, kernelEra+1
			if lines[1][3] != "-" {
				t.Fatalf("snapshot still held after the kernel: %s", lines[1][1])
			}

			f, err := os.Open(metaPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if out, stderr, err := tooltest.Try(t, "era_check", metaPath); err != nil {
				t.Fatalf("era_check after the kernel: %v\n%s%s", err, out, stderr)
			}
			if err := Check(f); err != nil {
				t.Fatalf("Check after the kernel: %v", err)
			}
			v, err := OpenView(f)
			if err != nil {
				t.Fatal(err)
			}
			for n := uint32(0); n <= kernelEra+2; n++ {
				got, err := v.WrittenSince(n)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(m.writtenSince(n), got); diff != "" {
					t.Fatalf("WrittenSince(%d) after the kernel (-model +view):\n%s", n, diff)
				}
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
