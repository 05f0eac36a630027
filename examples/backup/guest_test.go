package main

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

	"github.com/era-go/era/internal/kvm"
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
// guest of internal/kvm, as the kernel tests do (ERA_KERNEL_TESTS=0 skips
// it; without qemu it skips, or fails under CI).
func TestGuestOnExport(t *testing.T) {
	if os.Getenv("ERA_KERNEL_TESTS") == "0" {
		t.Skip("ERA_KERNEL_TESTS=0: not booting a guest")
	}
	machine, err := kvm.Setup(context.Background(), kvm.Config{Log: t.Logf})
	if err != nil {
		if errors.Is(err, kvm.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("cannot run a qemu guest here: %v", err)
		}
		t.Fatalf("guest setup: %v", err)
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

	spare := filepath.Join(dir, "vda.img")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := machine.Boot(ctx, kvm.Options{
		Scenario: guestScenario,
		Disks:    []kvm.Disk{{Path: spare}, {NBD: uri}},
		Timeout:  10 * time.Minute,
	})
	if err != nil || res.Status != 0 || !strings.Contains(res.Output, "GUEST-WROTE") {
		out := ""
		if res != nil {
			out = res.Output
		}
		t.Fatalf("guest: %v\n%s", err, out)
	}

	backup("incr")
	r, m := mustOpenRepo(t, repo)
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

// ext4Round is the guest's part of one round of TestGuestExt4Rounds: the
// first makes an ext4 filesystem on the export, every round writes files
// (rewriting some of the last round's) and unmounts, so the image is a
// clean filesystem when the guest powers off.
const ext4Round = `
if [ "$ROUND" = 1 ]; then mkfs.ext4 -q -F -b 4096 -L eraguest /dev/vdb; fi
mount -t ext4 /dev/vdb /mnt
i=0
while [ "$i" -lt 8 ]; do
	yes "round $ROUND file $i" | head -c $(( (i + 1) * 9000 + ROUND * 333 )) > /mnt/r${ROUND}f$i
	i=$((i + 1))
done
if [ "$ROUND" -gt 1 ]; then yes "rewritten in $ROUND" | head -c 20000 > /mnt/r1f3; rm -f /mnt/r1f5; fi
sync
umount /mnt
echo "GUEST-ROUND-DONE"
`

// TestGuestExt4Rounds: a guest under qemu makes ext4 on the era serve
// export and writes files in three rounds (one boot each); between rounds
// the host takes a full, then incremental backups through the export. Each
// restore equals the image, and fsck.ext4 -n passes on it.
func TestGuestExt4Rounds(t *testing.T) {
	if os.Getenv("ERA_KERNEL_TESTS") == "0" {
		t.Skip("ERA_KERNEL_TESTS=0: not booting a guest")
	}
	machine, err := kvm.Setup(context.Background(), kvm.Config{Log: t.Logf, Extras: []kvm.Extra{kvm.E2fsprogs}, Modules: kvm.ExtModules})
	if err != nil {
		if errors.Is(err, kvm.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("cannot run a qemu guest here: %v", err)
		}
		t.Fatalf("guest setup: %v", err)
	}
	fsck, err := exec.LookPath("fsck.ext4")
	if err != nil {
		fsck = "/sbin/fsck.ext4"
		if _, serr := os.Stat(fsck); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("fsck.ext4 not found (e2fsprogs): %v", err)
			}
			t.Skipf("fsck.ext4 not found (e2fsprogs): %v", err)
		}
	}
	dir := t.TempDir()
	uri, control := serveExport(t, dir, 64<<20)
	repo := filepath.Join(dir, "repo")
	ctx := context.Background()
	spare := filepath.Join(dir, "vda.img")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		res, err := machine.Boot(ctx, kvm.Options{
			Scenario: ext4Round,
			Disks:    []kvm.Disk{{Path: spare}, {NBD: uri}},
			Env:      map[string]string{"ROUND": strconv.Itoa(round)},
			Timeout:  10 * time.Minute,
		})
		if err != nil || res.Status != 0 || !strings.Contains(res.Output, "GUEST-ROUND-DONE") {
			out := ""
			if res != nil {
				out = res.Output
			}
			t.Fatalf("round %d: guest: %v\n%s", round, err, out)
		}
		kind := "incr"
		if round == 1 {
			kind = "full"
		}
		var out, errOut strings.Builder
		if code := run(ctx, []string{kind, "--repo", repo, "--nbd", uri, "--control", control}, &out, &errOut); code != 0 {
			t.Fatalf("round %d: backup %s: exit %d\n%s%s", round, kind, code, out.String(), errOut.String())
		}
		r, m := mustOpenRepo(t, repo)
		restored := filepath.Join(dir, fmt.Sprintf("restored%d.img", round))
		if _, err := r.Restore(ctx, RestoreOptions{To: round, Out: restored, Verify: true}); err != nil {
			t.Fatalf("round %d: restore: %v", round, err)
		}
		got, _ := os.ReadFile(restored)
		want, _ := os.ReadFile(filepath.Join(dir, "disk.img"))
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: the restored image differs from the export's image", round)
		}
		if out, err := exec.Command(fsck, "-n", "-f", restored).CombinedOutput(); err != nil {
			t.Fatalf("round %d: fsck.ext4 -n on the restore: %v\n%s", round, err, out)
		}
		b := m.Backups[round-1]
		t.Logf("round %d: %s backup of %d blocks (%.1f%% of the image), restore equals the image, fsck.ext4 -n passes",
			round, b.Kind, b.Blocks, 100*float64(b.Blocks)/float64(64<<20/b.BlockBytes))
	}
}
