package eraxml

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// needTool returns the path of the thin-provisioning-tools program name.
// If it is not installed the test is skipped, or fails when the CI
// environment variable is set (CI must exercise the comparison tests).
func needTool(t *testing.T, name string) string {
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
		t.Fatalf("%s not found (install thin-provisioning-tools); CI is set, so not skipping", name)
	}
	t.Skipf("%s not found (install thin-provisioning-tools)", name)
	return ""
}

// runTool runs path with args and returns its standard output, failing the
// test if it exits non-zero or writes to standard error.
func runTool(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %q: %v\nstderr: %s", filepath.Base(path), args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}
