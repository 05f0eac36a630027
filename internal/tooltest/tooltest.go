// Package tooltest finds and runs the programs the tests compare with: the
// thin-provisioning-tools era programs (era_check, era_dump,
// era_invalidate, era_restore), NBD clients, e2fsprogs.
//
// When a program is missing a test is skipped, but fails when the
// environment variable CI is set: CI must exercise every comparison.
package tooltest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Need returns the path of program name of thin-provisioning-tools,
// skipping the test (failing it under CI) when it is not installed.
func Need(t testing.TB, name string) string {
	t.Helper()
	return NeedFrom(t, name, "thin-provisioning-tools")
}

// NeedFrom returns the path of program name, which the Debian packages pkg
// install (named in the message), skipping the test (failing it under CI)
// when it is not installed.
func NeedFrom(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (install %s); CI is set, so not skipping", name, pkg)
	}
	t.Skipf("%s not found (install %s)", name, pkg)
	return ""
}

// Run runs program name with args and returns its standard output, failing
// the test if it exits non-zero.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, stderr, err := Try(t, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\nstderr: %s", name, args, err, stderr)
	}
	return out
}

// Try runs program name with args and returns its standard output, its
// standard error and its exit error.
func Try(t testing.TB, name string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(Need(t, name), args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}
