package kvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors of Boot, wrapped.
var (
	// ErrTimeout: the guest did not finish within Options.Timeout; qemu
	// was killed.
	ErrTimeout = errors.New("kvm: guest timed out")
	// ErrNoResult: qemu ended without the guest reporting the scenario's
	// exit status (a kernel panic, a crash of qemu).
	ErrNoResult = errors.New("kvm: guest ended without a result")
	// ErrBadOptions: Options that cannot describe a guest.
	ErrBadOptions = errors.New("kvm: bad boot options")
)

// Disk is a virtio disk of the guest. The guest sees the disks of
// Options.Disks as /dev/vda, /dev/vdb, ... in order.
type Disk struct {
	// Path is a raw image file on the host.
	Path string
	// NBD is an NBD URI qemu connects to instead of a file, e.g.
	// "nbd+unix:///export?socket=/run/x.sock" or "nbd://host:10809/export".
	NBD string
	// ReadOnly attaches the disk read-only.
	ReadOnly bool
}

// Options describe one boot.
type Options struct {
	// Scenario is a busybox sh script the guest sources under set -e
	// after its modules are loaded and its disks are present. The
	// helpers era_create, era_status, era_message, era_remove and
	// write_block are defined.
	Scenario string
	// Disks are attached in order as /dev/vda, /dev/vdb, ...
	Disks []Disk
	// Env is exported to the scenario.
	Env map[string]string
	// Timeout bounds the whole boot; 0: 3 minutes.
	Timeout time.Duration
	// Memory is the guest's memory in MiB; 0: 512.
	Memory int
	// Console, when set, receives the console output as it comes.
	Console io.Writer
}

// Result is what a guest reported.
type Result struct {
	// Output is the serial console: kernel messages, the scenario's
	// output and the harness's "@@" lines.
	Output string
	// Status is the scenario's exit status (98: the guest could not
	// load its modules or find its disks).
	Status int
	// Elapsed is the wall time from starting qemu to its exit.
	Elapsed time.Duration
	// Accel is the qemu accelerator used: "kvm" or "tcg".
	Accel string
}

var endMarker = regexp.MustCompile(`@@END rc=(\d+)`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Boot starts a guest, runs the scenario and returns its result. The
// error is non-nil when the guest gave no result (ErrTimeout,
// ErrNoResult) or qemu could not start; the Result then still holds
// the console output. A scenario that fails is not an error: see
// Result.Status. qemu is killed when ctx ends, on timeout, and if the
// calling process dies.
func (m *Machine) Boot(ctx context.Context, o Options) (*Result, error) {
	if len(o.Disks) > 20 {
		return nil, fmt.Errorf("%d disks, at most 20: %w", len(o.Disks), ErrBadOptions)
	}
	env := map[string]string{"GUEST_DISKS": strconv.Itoa(len(o.Disks))}
	for k, v := range o.Env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("environment name %q: %w", k, ErrBadOptions)
		}
		env[k] = v
	}
	args, err := m.qemuArgs(o)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "era-kvm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd")
	if err := writeInitrd(initrd, m.initramfs, o.Scenario, env); err != nil {
		return nil, err
	}
	args = append(args, "-initrd", initrd)

	timeout := o.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var console lockedBuffer
	var out io.Writer = &console
	if o.Console != nil {
		out = io.MultiWriter(&console, o.Console)
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res := &Result{Output: strings.ReplaceAll(console.String(), "\r\n", "\n"), Elapsed: time.Since(start), Accel: accel()}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, fmt.Errorf("after %v: %w", timeout, ErrTimeout)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	ends := endMarker.FindAllStringSubmatch(res.Output, -1)
	if len(ends) == 0 {
		return res, fmt.Errorf("qemu: %v: %w", runErr, ErrNoResult)
	}
	res.Status, _ = strconv.Atoi(ends[len(ends)-1][1])
	return res, nil
}

// accel returns "kvm" when /dev/kvm can be opened for use, else "tcg".
func accel() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
}

// qemuArgs returns qemu's command line, without the initrd.
func (m *Machine) qemuArgs(o Options) ([]string, error) {
	mem := o.Memory
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-machine", "pc", "-m", strconv.Itoa(mem), "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-kernel", m.vmlinuz,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4",
	}
	if accel() == "kvm" {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg", "-cpu", "max")
	}
	for i, d := range o.Disks {
		drive, err := driveSpec(d)
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		args = append(args, "-drive", drive)
	}
	return args, nil
}

// driveSpec returns the -drive option of a disk. Commas in a value are
// doubled, as qemu's option syntax wants.
func driveSpec(d Disk) (string, error) {
	esc := func(s string) string { return strings.ReplaceAll(s, ",", ",,") }
	var spec string
	switch {
	case d.Path != "" && d.NBD != "":
		return "", fmt.Errorf("both a path and an NBD URI: %w", ErrBadOptions)
	case d.Path != "":
		if _, err := os.Stat(d.Path); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadOptions, err)
		}
		spec = "file=" + esc(d.Path) + ",format=raw,cache=writeback"
	case d.NBD != "":
		if !strings.HasPrefix(d.NBD, "nbd:") && !strings.HasPrefix(d.NBD, "nbd+unix:") {
			return "", fmt.Errorf("NBD URI %q: %w", d.NBD, ErrBadOptions)
		}
		spec = "file=" + esc(d.NBD) + ",format=raw,cache=writeback"
	default:
		return "", fmt.Errorf("neither a path nor an NBD URI: %w", ErrBadOptions)
	}
	spec += ",if=virtio"
	if d.ReadOnly {
		spec += ",readonly=on"
	}
	return spec, nil
}

// writeInitrd writes the base initramfs followed by a second archive with
// /scenario.sh and /scenario.env; the kernel unpacks both in order.
func writeInitrd(path, base, scenario string, env map[string]string) error {
	b, err := os.ReadFile(base)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	var sh strings.Builder
	for _, k := range names {
		fmt.Fprintf(&sh, "export %s='%s'\n", k, strings.ReplaceAll(env[k], "'", `'\''`))
	}
	a := newArchive()
	a.file("scenario.sh", 0o644, []byte(scenario))
	a.file("scenario.env", 0o644, []byte(sh.String()))
	var buf bytes.Buffer
	buf.Write(b)
	if err := a.writeTo(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}

// lockedBuffer is a bytes.Buffer safe for the two writers exec gives it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
