package era

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/era-go/era/internal/kvm"
	"github.com/era-go/era/internal/tooltest"
)

// kernelTool returns the path of a host program the kernel tests need,
// skipping the test when it is missing, or failing it under CI.
func kernelTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return tooltest.NeedFrom(t, name, pkg)
}

// serveNBD exports a raw image with qemu-nbd on a unix socket and returns
// the NBD URI and a function that stops the server (also run at cleanup).
func serveNBD(t *testing.T, image string) (uri string, stop func()) {
	t.Helper()
	qemuNBD := kernelTool(t, "qemu-nbd", "qemu-utils")
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	cmd := exec.Command(qemuNBD, "--format=raw", "--persistent", "--export-name=disk", "--socket="+sock, image)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu-nbd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(10 * time.Second); !socketExists(sock); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("qemu-nbd ended: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-nbd made no socket in 10s\n%s", stderr.String())
		}
	}
	return "nbd+unix:///disk?socket=" + sock, stop
}

func socketExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// nbdFile is the content the guest writes into file i of the ext4 test:
// the line "file i" repeated, i*5000+1 bytes.
func nbdFile(i int) []byte {
	line := []byte(fmt.Sprintf("file %d\n", i))
	return bytes.Repeat(line, (i*5000+1)/len(line)+1)[:i*5000+1]
}

// TestKernelNBDExt4 boots a guest whose only disk is an NBD export
// (qemu-nbd serving an image file on a unix socket), makes an ext4 file
// system on it with the guest's mkfs.ext4, writes files and unmounts, and
// then checks the image on the host with fsck.ext4 -n and reads the files
// back with debugfs. It is the path a guest on an `era serve` export
// takes.
func TestKernelNBDExt4(t *testing.T) {
	m := kernelMachine(t, kvm.Config{Extras: []kvm.Extra{kvm.E2fsprogs}, Modules: kvm.ExtModules})
	fsck := kernelTool(t, "fsck.ext4", "e2fsprogs")
	debugfs := kernelTool(t, "debugfs", "e2fsprogs")
	image := filepath.Join(t.TempDir(), "disk.img")
	tempFileAt(t, image, 64<<20)
	uri, stop := serveNBD(t, image)

	const files = 12
	res := bootOK(t, m, kvm.Options{
		Disks: []kvm.Disk{{NBD: uri}},
		Env:   map[string]string{"FILES": fmt.Sprint(files)},
		Scenario: `mkfs.ext4 -q -F -b 4096 -L nbdtest /dev/vda
mount -t ext4 /dev/vda /mnt
i=0
while [ "$i" -lt "$FILES" ]; do
	yes "file $i" | head -c $((i * 5000 + 1)) > /mnt/f$i
	i=$((i + 1))
done
mkdir /mnt/sub
echo nested > /mnt/sub/n
sync
echo "@@DF $(df -k /mnt | tail -n 1)"
umount /mnt
fsck.ext4 -n -f /dev/vda
echo "@@GUEST-FSCK ok"
`,
	})
	if !strings.Contains(res.Output, "@@GUEST-FSCK ok") {
		t.Fatalf("no guest fsck:\n%s", res.Output)
	}
	stop()

	out, err := exec.Command(fsck, "-n", "-f", image).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.ext4 -n on the host: %v\n%s", err, out)
	}
	t.Logf("host fsck.ext4 -n: %s", strings.TrimSpace(string(out)))
	for i := range files {
		got, err := exec.Command(debugfs, "-R", fmt.Sprintf("cat /f%d", i), image).Output()
		if err != nil {
			t.Fatalf("debugfs cat /f%d: %v", i, err)
		}
		if !bytes.Equal(got, nbdFile(i)) {
			t.Fatalf("/f%d on the host: %d bytes, want %d", i, len(got), len(nbdFile(i)))
		}
	}
	got, err := exec.Command(debugfs, "-R", "cat /sub/n", image).Output()
	if err != nil || string(got) != "nested\n" {
		t.Fatalf("/sub/n on the host: %q, %v", got, err)
	}
}
