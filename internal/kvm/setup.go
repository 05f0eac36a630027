package kvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable is returned (wrapped) by Setup when a guest cannot be
// built or run on this machine at all: qemu-system-x86_64 or the Debian
// package tools are missing, or the packages cannot be fetched. A test
// may skip on it outside CI.
var ErrUnavailable = errors.New("kvm: qemu guest unavailable")

// CacheEnv names the environment variable that overrides the cache folder.
const CacheEnv = "ERA_KVM_CACHE"

// Extra names a Debian package whose programs are put into the guest's
// /usr/sbin, with the shared libraries they load.
type Extra struct {
	Package  string
	Programs []string
}

// Config says what a guest is built from.
type Config struct {
	// CacheDir holds the downloaded packages, the extracted kernel and
	// the built initramfs files; "": DefaultCacheDir().
	CacheDir string
	// Extras are more packages' programs for the guest.
	Extras []Extra
	// Modules are more kernel modules to load at boot (their
	// dependencies are found and loaded first).
	Modules []string
	// Log receives progress lines; nil: none.
	Log func(format string, args ...any)
}

// Machine is a built guest: a kernel and an initramfs, ready to Boot.
type Machine struct {
	// Kernel is the kernel package's version, e.g. "6.1.0-57-amd64".
	Kernel    string
	vmlinuz   string
	initramfs string
}

// DefaultCacheDir returns $ERA_KVM_CACHE when set, otherwise era-kvm in
// the user's cache folder, otherwise /var/tmp/era-kvm.
func DefaultCacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "era-kvm")
	}
	return filepath.Join("/var/tmp", "era-kvm")
}

// Setup makes sure the cache holds everything a guest needs and returns
// the machine. The first call downloads the packages with apt-get download
// (running apt-get update first when the package lists do not know them,
// which needs root), extracts them and builds the initramfs; later calls
// with the same Config find all of it in the cache and only check it.
// Concurrent Setups on one cache folder take turns.
func Setup(ctx context.Context, cfg Config) (*Machine, error) {
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, fmt.Errorf("%w: qemu-system-x86_64 not found (install qemu-system-x86)", ErrUnavailable)
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found (a Debian host is needed to fetch the guest's packages)", ErrUnavailable, tool)
		}
	}
	dir := cfg.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	if err := os.MkdirAll(filepath.Join(dir, "debs"), 0o755); err != nil {
		return nil, fmt.Errorf("kvm cache: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c := &cache{dir: dir, ctx: ctx, log: logf}

	kpkg, err := c.kernelPackage(KernelPackage)
	if err != nil {
		return nil, err
	}
	kver := strings.TrimPrefix(kpkg, "linux-image-")
	kroot, err := c.extract(kpkg, filepath.Join("kernel", kver))
	if err != nil {
		return nil, err
	}

	wantPkgs := []string{BusyboxPackage, DmsetupPackage}
	programs := []string{"dmsetup"}
	for _, x := range cfg.Extras {
		wantPkgs = append(wantPkgs, x.Package)
		programs = append(programs, x.Programs...)
	}
	var pkgs []string
	seen := map[string]bool{}
	for _, p := range wantPkgs {
		closure, err := c.dependencies(p)
		if err != nil {
			return nil, err
		}
		for _, q := range closure {
			if !seen[q] {
				seen[q] = true
				pkgs = append(pkgs, q)
			}
		}
	}
	debs, err := c.debs(pkgs)
	if err != nil {
		return nil, err
	}
	sort.Strings(debs)
	sysroot := filepath.Join(dir, "sysroot")
	for _, deb := range debs {
		if err := c.extractInto(deb, sysroot); err != nil {
			return nil, err
		}
	}

	modules := append(append([]string(nil), baseModules...), cfg.Modules...)
	h := sha256.New()
	fmt.Fprintf(h, "layout 1\n%s\n%s\n%s\n%q\n%q\n", initScript, guestLib, kpkg, programs, modules)
	for _, deb := range debs {
		fmt.Fprintln(h, filepath.Base(deb))
	}
	image := filepath.Join(dir, "initramfs-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(image); err != nil {
		start := time.Now()
		if err := buildInitramfs(image, kroot, kver, sysroot, programs, modules); err != nil {
			return nil, err
		}
		logf("kvm: built %s in %v", filepath.Base(image), time.Since(start).Round(time.Millisecond))
	}
	kernel := filepath.Join(kroot, "boot", "vmlinuz-"+kver)
	xzStart := time.Now()
	if elfKernel, err := uncompressedKernel(kernel, filepath.Join(kroot, "vmlinux-pvh")); err != nil {
		logf("kvm: booting the compressed kernel (slower under TCG): %v", err)
	} else {
		kernel = elfKernel
		if d := time.Since(xzStart); d > time.Second {
			logf("kvm: uncompressed the kernel for a PVH boot (%v)", d.Round(time.Millisecond))
		}
	}
	return &Machine{
		Kernel:    kver,
		vmlinuz:   kernel,
		initramfs: image,
	}, nil
}

// lockDir takes an exclusive lock on the cache folder, waiting for it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kvm cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("kvm cache lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// cache does the package work of Setup in one cache folder.
type cache struct {
	dir     string
	ctx     context.Context
	log     func(string, ...any)
	updated bool // apt-get update ran in this Setup, or must not run
}

// run runs a command and returns its standard output; the error carries
// its standard error.
func (c *cache) run(dir string, name string, args ...string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(c.ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// update runs apt-get update once per Setup, as root only.
func (c *cache) update() bool {
	if c.updated || os.Geteuid() != 0 {
		return false
	}
	c.updated = true
	c.log("kvm: apt-get update")
	if _, err := c.run("", "apt-get", "update", "-qq"); err != nil {
		c.log("kvm: %v", err)
	}
	return true
}

// debPath returns the cached .deb of a package, or "".
func (c *cache) debPath(pkg string) string {
	m, _ := filepath.Glob(filepath.Join(c.dir, "debs", pkg+"_*.deb"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// deb returns the cached .deb of a package, downloading it first if
// needed.
func (c *cache) deb(pkg string) (string, error) {
	debs, err := c.debs([]string{pkg})
	if err != nil {
		return "", err
	}
	return debs[0], nil
}

// debs returns the cached .deb files of packages, downloading the missing
// ones with one apt-get download.
func (c *cache) debs(pkgs []string) ([]string, error) {
	for {
		var missing []string
		for _, p := range pkgs {
			if c.debPath(p) == "" {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			break
		}
		start := time.Now()
		_, err := c.run(filepath.Join(c.dir, "debs"), "apt-get", append([]string{"download", "-qq"}, missing...)...)
		if err == nil {
			c.log("kvm: apt-get download %s (%v)", strings.Join(missing, " "), time.Since(start).Round(time.Millisecond))
			continue
		}
		if !c.update() {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = c.debPath(p)
	}
	return out, nil
}

// kernelPackage returns the pinned kernel package, or when the archive
// no longer serves it, the kernel KernelMetaPackage depends on. The
// substitution is logged and remembered in the cache, so that later
// Setups use the same kernel without asking apt again.
func (c *cache) kernelPackage(pinned string) (string, error) {
	if c.debPath(pinned) != "" {
		return pinned, nil
	}
	record := filepath.Join(c.dir, "debs", pinned+".fallback")
	if b, err := os.ReadFile(record); err == nil {
		if alt := strings.TrimSpace(string(b)); c.debPath(alt) != "" {
			c.log("kvm: pinned %s is not served; using %s as recorded in %s", pinned, alt, record)
			return alt, nil
		}
	}
	_, err := c.deb(pinned)
	if err == nil {
		return pinned, nil
	}
	c.log("kvm: %v", err)
	out, err := c.run("", "apt-cache", "depends", KernelMetaPackage)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			c.log("kvm: pinned %s is not served; falling back to %s, which %s depends on", pinned, f[1], KernelMetaPackage)
			if _, err := c.deb(f[1]); err != nil {
				return "", err
			}
			if err := os.WriteFile(record, []byte(f[1]+"\n"), 0o644); err != nil {
				return "", fmt.Errorf("kvm cache: %w", err)
			}
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%w: %s depends on no kernel image", ErrUnavailable, KernelMetaPackage)
}

// dependencies returns pkg and every package it depends on, directly or
// not (Depends and Pre-Depends only), as apt resolves them today. The
// list is kept in the cache.
func (c *cache) dependencies(pkg string) ([]string, error) {
	saved := filepath.Join(c.dir, "debs", pkg+".closure")
	if b, err := os.ReadFile(saved); err == nil {
		return strings.Fields(string(b)), nil
	}
	start := time.Now()
	defer func() {
		c.log("kvm: resolved the dependencies of %s (%v)", pkg, time.Since(start).Round(time.Millisecond))
	}()
	var out []byte
	for {
		var err error
		out, err = c.run("", "apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
			"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", pkg)
		if err == nil {
			break
		}
		if !c.update() {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	var list []string
	for _, line := range strings.Split(string(out), "\n") {
		// Package names start a line; dependency lines are indented;
		// virtual packages are shown as <name>; other architectures
		// carry a :arch suffix.
		if line == "" || line[0] == ' ' || line[0] == '<' || strings.Contains(line, ":") {
			continue
		}
		list = append(list, strings.TrimSpace(line))
	}
	sort.Strings(list)
	if err := os.WriteFile(saved, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kvm cache: %w", err)
	}
	return list, nil
}

// extract unpacks a package's .deb into its own folder of the cache,
// once, and returns that folder.
func (c *cache) extract(pkg, sub string) (string, error) {
	deb, err := c.deb(pkg)
	if err != nil {
		return "", err
	}
	root := filepath.Join(c.dir, sub)
	if err := c.extractInto(deb, root); err != nil {
		return "", err
	}
	return root, nil
}

// extractInto unpacks a .deb into root unless a stamp says it was.
func (c *cache) extractInto(deb, root string) error {
	stamp := filepath.Join(root, ".unpacked", filepath.Base(deb))
	if _, err := os.Stat(stamp); err == nil {
		return nil
	}
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
		return fmt.Errorf("kvm cache: %w", err)
	}
	if _, err := c.run("", "dpkg-deb", "-x", deb, root); err != nil {
		return err
	}
	if d := time.Since(start); d > time.Second {
		c.log("kvm: unpacked %s (%v)", filepath.Base(deb), d.Round(time.Millisecond))
	}
	return os.WriteFile(stamp, nil, 0o644)
}

// buildInitramfs writes the guest's root file system: busybox as /bin/sh,
// the programs with their shared libraries, the module chain and the
// boot scripts.
func buildInitramfs(image, kroot, kver, sysroot string, programs, modules []string) error {
	a := newArchive()
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "mnt", "etc", "usr/bin", "usr/sbin", "sbin"} {
		a.dir(d)
	}
	a.char("dev/console", 0o600, 5, 1)
	a.char("dev/null", 0o666, 1, 3)

	busybox, err := findProgram(sysroot, "busybox")
	if err != nil {
		return err
	}
	if err := addFile(a, "bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	a.symlink("bin/sh", "busybox")

	libs := map[string]string{}
	interps := map[string]bool{}
	for _, name := range programs {
		p, err := findProgram(sysroot, name)
		if err != nil {
			return err
		}
		interp, err := sharedObjects(sysroot, p, libs)
		if err != nil {
			return err
		}
		if interp != "" {
			interps[interp] = true
		}
		if err := addFile(a, "usr/sbin/"+name, p, 0o755); err != nil {
			return err
		}
	}
	for so, p := range libs {
		if err := addFile(a, "lib/x86_64-linux-gnu/"+so, p, 0o755); err != nil {
			return err
		}
	}
	for interp := range interps {
		p, err := inRoot(sysroot, interp)
		if err != nil {
			return fmt.Errorf("ELF interpreter %s: %w", interp, err)
		}
		if err := addFile(a, strings.TrimPrefix(interp, "/"), p, 0o755); err != nil {
			return err
		}
	}

	idx, err := moduleIndex(filepath.Join(kroot, "lib", "modules", kver))
	if err != nil {
		return err
	}
	chain, err := moduleChain(idx, modules)
	if err != nil {
		return err
	}
	var load strings.Builder
	for _, p := range chain {
		if err := addFile(a, "lib/modules/"+filepath.Base(p), p, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(&load, filepath.Base(p))
	}
	a.file("etc/modules.load", 0o644, []byte(load.String()))
	a.file("etc/guest-lib.sh", 0o644, []byte(guestLib))
	a.file("init", 0o755, []byte(initScript))

	tmp := image + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := a.writeTo(f); err != nil {
		f.Close()
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return os.Rename(tmp, image)
}

func addFile(a *archive, name, hostPath string, perm uint32) error {
	b, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	a.file(name, perm, b)
	return nil
}
