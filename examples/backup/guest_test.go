package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guestScenario runs inside the VM: it writes the export (/dev/vdb) with
// O_DIRECT, so each write reaches the NBD server before the VM powers off.
const guestScenario = `
for i in 1 2 3 4 5 6; do
  yes "guest write $i" | head -c 65536 > /tmp/pattern
  dd if=/tmp/pattern of=/dev/vdb bs=65536 count=1 seek=$((i * 37)) oflag=direct 2>/dev/null
done
yes "unaligned" | head -c 4096 > /tmp/pattern
dd if=/tmp/pattern of=/dev/vdb bs=4096 count=1 seek=1001 oflag=direct 2>/dev/null
sync
echo "GUEST-WROTE"
`

// A QEMU guest whose disk is the export writes to it; an incremental
// backup over NBD then restores byte-identical to the image. It boots the
// Linux guest of the kernel test harness (../shared/tools/kernel-era) under
// qemu, so it runs only when ERA_KERNEL_TESTS is set, as the kernel tests.
func TestGuestOnExport(t *testing.T) {
	if v := os.Getenv("ERA_KERNEL_TESTS"); v == "" || v == "0" {
		t.Skip("set ERA_KERNEL_TESTS=1 to boot a qemu guest on the export")
	}
	harness, err := filepath.Abs("../../../shared/tools/kernel-era")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(harness, "setup.sh")).CombinedOutput(); err != nil {
		t.Fatalf("kernel harness setup: %v\n%s", err, out)
	}
	cache := os.Getenv("KERA_CACHE")
	if cache == "" {
		cache = "/tmp/kernel-era-cache"
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64: %v", err)
	}
	dir := t.TempDir()
	const size = 96 << 20
	uri, control := serveExport(t, dir, size)
	repo := filepath.Join(dir, "repo")
	ctx := context.Background()
	backup := func(kind string) {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(ctx, []string{kind, "--repo", repo, "--nbd", uri, "--control", control}, &out, &errOut); code != 0 {
			t.Fatalf("backup %s: exit %d\n%s%s", kind, code, out.String(), errOut.String())
		}
	}
	backup("full")

	// The initramfs of the harness plus our scenario.
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "scenario.sh"), []byte(guestScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	script := fmt.Sprintf("cd %q && (cat %q; find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) > %q",
		root, filepath.Join(cache, "initramfs.cpio.gz"), initrd)
	if out, err := exec.Command("bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("initrd: %v\n%s", err, out)
	}
	spare := filepath.Join(dir, "vda.img")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(qctx, qemu,
		"-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", "512M",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", filepath.Join(cache, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4",
		"-drive", "file="+spare+",format=raw,if=virtio",
		"-drive", "file="+uri+",format=raw,if=virtio,cache=writeback")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("GUEST-WROTE")) || !bytes.Contains(out, []byte("===KERA-SCENARIO-END rc=0===")) {
		t.Fatalf("guest: %v\n%s", err, out)
	}

	backup("incr")
	r, err := OpenRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	// Six 64 KiB writes and one 4 KiB write on 8 KiB blocks: 6*8 + 1
	// blocks; the guest's kernel only reads the disk otherwise.
	if b := m.Backups[1]; b.Blocks != 49 {
		t.Errorf("incremental copied %d blocks, the guest wrote 49", b.Blocks)
	}
	out2 := filepath.Join(dir, "restored.img")
	if _, err := r.Restore(ctx, RestoreOptions{To: 2, Out: out2, Force: true, Verify: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out2)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the restored image differs from the image the guest wrote")
	}
	if !bytes.Contains(want[37*65536:38*65536], []byte("guest write 1")) || !bytes.Contains(want[1001*4096:1002*4096], []byte("unaligned")) {
		t.Fatal("the guest's writes are not in the image")
	}
}
