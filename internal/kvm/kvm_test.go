package kvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// machine sets the guest up, failing under CI and skipping elsewhere when
// qemu cannot run here at all.
func machine(t *testing.T, cfg Config) *Machine {
	t.Helper()
	if os.Getenv("ERA_KERNEL_TESTS") == "0" {
		t.Skip("ERA_KERNEL_TESTS=0")
	}
	cfg.Log = t.Logf
	start := time.Now()
	m, err := Setup(context.Background(), cfg)
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
		t.Skipf("no qemu guest here: %v", err)
	}
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Logf("Setup: kernel %s in %v", m.Kernel, time.Since(start).Round(time.Millisecond))
	return m
}

// readArchive parses a newc archive back into its entries.
func readArchive(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	off := 0
	field := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", off, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		mode, size, major, minor, nameLen := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+nameLen-1])
		dataOff := align(off + 110 + nameLen)
		data := b[dataOff : dataOff+size]
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			if len(b)%512 != 0 || len(bytes.Trim(b[off:], "\x00")) != 0 {
				t.Fatalf("archive of %d bytes: not padded with zeros to 512", len(b))
			}
			return out
		}
		out[name] = entry{mode: uint32(mode), data: data, major: uint32(major), minor: uint32(minor)}
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	a := newArchive()
	a.file("etc/x/hello", 0o644, []byte("hello\n"))
	a.symlink("bin/sh", "busybox")
	a.char("dev/console", 0o600, 5, 1)
	a.file("odd", 0o755, []byte("12345"))
	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	got := readArchive(t, buf.Bytes())
	want := map[string]entry{
		"etc":         {mode: modeDir | 0o755},
		"etc/x":       {mode: modeDir | 0o755},
		"etc/x/hello": {mode: modeFile | 0o644, data: []byte("hello\n")},
		"bin":         {mode: modeDir | 0o755},
		"bin/sh":      {mode: modeSymlink | 0o777, data: []byte("busybox")},
		"dev":         {mode: modeDir | 0o755},
		"dev/console": {mode: modeChar | 0o600, major: 5, minor: 1},
		"odd":         {mode: modeFile | 0o755, data: []byte("12345")},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %v", len(got), len(want), got)
	}
	for n, w := range want {
		g, ok := got[n]
		if !ok || g.mode != w.mode || !bytes.Equal(g.data, w.data) || g.major != w.major || g.minor != w.minor {
			t.Errorf("%s: got %+v, want %+v", n, g, w)
		}
	}
}

func TestDriveSpec(t *testing.T) {
	img := filepath.Join(t.TempDir(), "a,b.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d    Disk
		want string
		err  bool
	}{
		{Disk{Path: img}, "file=" + strings.ReplaceAll(img, ",", ",,") + ",format=raw,cache=writeback,if=virtio", false},
		{Disk{Path: "/nonexistent/x.img"}, "", true},
		{Disk{NBD: "nbd+unix:///e?socket=/run/s", ReadOnly: true}, "file=nbd+unix:///e?socket=/run/s,format=raw,cache=writeback,if=virtio,readonly=on", false},
		{Disk{NBD: "http://x"}, "", true},
		{Disk{}, "", true},
		{Disk{Path: "/a", NBD: "nbd://h/e"}, "", true},
	} {
		got, err := driveSpec(c.d)
		if c.err {
			if !errors.Is(err, ErrBadOptions) {
				t.Errorf("%+v: err %v, want ErrBadOptions", c.d, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: %q, %v; want %q", c.d, got, err, c.want)
		}
	}
}

// TestKernelBoot boots a guest that reads one disk, writes another and exits
// with a status of its choosing, and one that never ends.
func TestKernelBoot(t *testing.T) {
	m := machine(t, Config{})
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.img"), filepath.Join(dir, "out.img")
	content := bytes.Repeat([]byte("from the host\n"), 512)[:4096]
	if err := os.WriteFile(in, append(content, make([]byte, 1<<20-4096)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := m.Boot(context.Background(), Options{
		Scenario: `echo "@@READ $(head -c 13 /dev/vda)"
echo "$WORD" | dd of=/dev/vdb bs=4096 conv=sync oflag=direct 2>/dev/null
dmsetup targets | grep -q '^era ' && echo "@@HAS-ERA"
exit 7
`,
		Disks: []Disk{{Path: in, ReadOnly: true}, {Path: out}},
		Env:   map[string]string{"WORD": "it's the guest"},
	})
	if err != nil {
		t.Fatalf("Boot: %v\n%s", err, res.Output)
	}
	t.Logf("boot took %v (%s)", res.Elapsed.Round(time.Millisecond), res.Accel)
	if res.Status != 7 {
		t.Fatalf("status %d, want 7\n%s", res.Status, res.Output)
	}
	for _, want := range []string{"@@READ from the host", "@@HAS-ERA"} {
		if !strings.Contains(res.Output, want) {
			t.Fatalf("no %q in the output:\n%s", want, res.Output)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("it's the guest\n\x00")) {
		t.Fatalf("the guest's write: %q", got[:32])
	}

	// Boot's files go under TMPDIR, so this boot's qemu can be told
	// from others by its command line.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	start := time.Now()
	res, err = m.Boot(context.Background(), Options{Scenario: "echo @@LOOPING; while :; do sleep 1; done", Timeout: 3 * time.Second})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("endless scenario: %v, want ErrTimeout", err)
	}
	if res == nil || strings.Contains(res.Output, "@@END") {
		t.Fatalf("endless scenario: result %+v", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("timeout of 3s took %v", d)
	}
	if exec.Command("pgrep", "-f", "qemu-system.*"+tmp).Run() == nil {
		t.Fatalf("a qemu of this test is still running")
	}
}

// TestKernelFallback asks for a kernel package the archive does not have:
// Setup's resolver must fall back to the kernel linux-image-amd64 depends
// on, log it, and remember the choice. When that kernel is the pinned
// one, its .deb is linked in from the default cache, so nothing large is
// downloaded.
func TestKernelFallback(t *testing.T) {
	machine(t, Config{}) // the cache, with the pinned kernel's .deb
	out, err := exec.Command("apt-cache", "depends", KernelMetaPackage).Output()
	if err != nil {
		t.Fatalf("apt-cache depends %s: %v", KernelMetaPackage, err)
	}
	var want string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "linux-image-") && f != KernelMetaPackage {
			want = f
			break
		}
	}
	if want == "" {
		t.Fatalf("%s depends on no kernel:\n%s", KernelMetaPackage, out)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.Glob(filepath.Join(DefaultCacheDir(), "debs", want+"_*.deb"))
	for _, p := range src {
		if err := os.Symlink(p, filepath.Join(dir, "debs", filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	var logged []string
	c := &cache{dir: dir, ctx: context.Background(), updated: true,
		log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	const gone = "linux-image-6.1.0-0-amd64"
	for range 2 {
		logged = nil
		got, err := c.kernelPackage(gone)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("fell back to %q, want %q", got, want)
		}
		if !strings.Contains(strings.Join(logged, "\n"), "pinned "+gone+" is not served") {
			t.Fatalf("the fallback was not logged: %q", logged)
		}
	}
	if !strings.Contains(logged[0], "as recorded") {
		t.Fatalf("second resolution did not use the recorded choice: %q", logged)
	}
}
