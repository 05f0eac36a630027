package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/era-go/era/block"
)

// golden is the folder of golden images (testdata/golden/README.md).
const golden = "../../testdata/golden"

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %.2000s\nstderr: %.2000s", r.code, r.stdout, r.stderr)
}

// cli runs "era args..." in-process.
func cli(args ...string) result {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return result{code, o.String(), e.String()}
}

// eraOK runs era and fails the test unless it exits 0 with nothing on
// standard error.
func eraOK(t testing.TB, args ...string) string {
	t.Helper()
	r := cli(args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("era %q: %v", args, r)
	}
	return r.stdout
}

// goldenCopy copies testdata/golden/name into a temporary file.
func goldenCopy(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(golden, name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// parallel calls fn(0..n-1) from up to 16 goroutines: the tools the tests
// compare with spend their time starting up, not computing.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := cli(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Commands:") || r.stderr != "" {
			t.Errorf("era %q: %v", args, r)
		}
	}
	for _, args := range [][]string{{"--version"}, {"-V"}, {"version"}} {
		if r := cli(args...); r.code != 0 || !strings.HasPrefix(r.stdout, "era ") {
			t.Errorf("era %q: %v", args, r)
		}
	}
	for _, c := range commands {
		for _, flag := range []string{"--help", "-h", "-help"} {
			r := cli(c.name, flag)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: era "+c.name) || !strings.Contains(r.stdout, "Options:") || r.stderr != "" {
				t.Errorf("era %s %s: %v", c.name, flag, r)
			}
		}
		if r := cli("help", c.name); r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: era "+c.name) {
			t.Errorf("era help %s: %v", c.name, r)
		}
		for _, flag := range []string{"--version", "-V"} {
			if r := cli(c.name, flag); r.code != 0 || !strings.HasPrefix(r.stdout, "era ") {
				t.Errorf("era %s %s: %v", c.name, flag, r)
			}
		}
	}
	// Under a tool's name, the tool's command runs.
	var o, e bytes.Buffer
	if code := runProgram("era_dump", []string{"--help"}, nil, &o, &e); code != 0 || !strings.HasPrefix(o.String(), "Usage: era_dump [--logical") {
		t.Errorf("era_dump --help: exit %d\n%s%s", code, o.String(), e.String())
	}
	o.Reset()
	if code := runProgram("era_check", []string{filepath.Join(golden, "m.bin")}, nil, &o, &e); code != 0 {
		t.Errorf("era_check m.bin: exit %d %s", code, e.String())
	}
	// The help of dump says how --logical differs from 0.9.0.
	if h := cli("dump", "--help").stdout; !strings.Contains(h, "lowest era wins") || !strings.Contains(h, "current writeset") {
		t.Errorf("dump --help does not explain the --logical difference:\n%s", h)
	}
}

func TestUsageErrors(t *testing.T) {
	m := filepath.Join(golden, "m.bin")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, "unknown command"},
		{[]string{"check"}, "no metadata device or file given"},
		{[]string{"check", m, m}, "unexpected operand"},
		{[]string{"check", "--bogus", m}, "flag provided but not defined: -bogus"},
		{[]string{"dump"}, "no metadata device or file given"},
		{[]string{"dump", "--format", "yaml", m}, `format "yaml"`},
		{[]string{"dump", "--logical", "--compat", "--include-current", m}, "contradict"},
		{[]string{"dump", "-o"}, "flag needs an argument"},
		{[]string{"invalidate", m}, "--written-since N is required"},
		{[]string{"invalidate", "--written-since", "x", m}, `"x" is not an era`},
		{[]string{"invalidate", "--written-since", "-1", m}, "not an era"},
		{[]string{"invalidate", "--written-since", "4294967296", m}, "not an era"},
		{[]string{"restore", "-i", "x.xml"}, "no output device or file given"},
		{[]string{"restore", "-o", "x.bin"}, "no input file given"},
		{[]string{"restore", "-i", "x.xml", "-o", "x.bin", "extra"}, "unexpected operand"},
		{[]string{"status"}, "no metadata device or file given"},
	} {
		r := cli(c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
			t.Errorf("era %q: want exit 2 and %q on stderr; got %v", c.args, c.want, r)
		}
	}
}

// TestOperandsAnywhere: flags may follow the operand, as getopt allows;
// "--" ends the flags.
func TestOperandsAnywhere(t *testing.T) {
	m := filepath.Join(golden, "m.bin")
	want := eraOK(t, "invalidate", "--written-since", "3", m)
	if got := eraOK(t, "invalidate", m, "--written-since=3"); got != want {
		t.Errorf("flags after the operand: %q, want %q", got, want)
	}
	if got := eraOK(t, "invalidate", "-written-since", "3", "--", m); got != want {
		t.Errorf("with --: %q, want %q", got, want)
	}
}

// epipeWriter fails every write as a closed pipe does.
type epipeWriter struct{ n int }

func (w *epipeWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
}

func TestBrokenPipe(t *testing.T) {
	m := filepath.Join(golden, "wide.bin")
	for _, args := range [][]string{{"dump", m}, {"dump", "--logical", m}, {"invalidate", "--written-since", "0", m}, {"dump", "--format", "json", m}} {
		var e bytes.Buffer
		w := &epipeWriter{}
		code := run(args, w, &e)
		if code != exitPipe || e.Len() != 0 || w.n != 1 {
			t.Errorf("era %q on a closed pipe: exit %d after %d writes, stderr %q", args, code, w.n, e.String())
		}
	}
}

func TestOutputFile(t *testing.T) {
	m := filepath.Join(golden, "m.bin")
	dir := t.TempDir()
	out := filepath.Join(dir, "dump.xml")
	want := eraOK(t, "dump", m)
	if got := eraOK(t, "dump", "-o", out, m); got != "" {
		t.Errorf("stdout with -o: %q", got)
	}
	if data, _ := os.ReadFile(out); string(data) != want {
		t.Errorf("-o file holds %q", data)
	}
	// Replacing keeps the mode; a failure leaves the old file.
	if err := os.Chmod(out, 0o600); err != nil {
		t.Fatal(err)
	}
	eraOK(t, "invalidate", "--written-since", "0", "--output", out, m)
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after replacing: %v %v", fi.Mode(), err)
	}
	before, _ := os.ReadFile(out)
	if r := cli("dump", "-o", out, filepath.Join(golden, "no-such.bin")); r.code != 1 {
		t.Errorf("dump of a missing file: %v", r)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Errorf("a failed dump changed the -o file")
	}
	if r := cli("dump", "-o", filepath.Join(dir, "no-dir", "x"), m); r.code != 1 || !strings.Contains(r.stderr, "no-dir") {
		t.Errorf("-o into a missing directory: %v", r)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// corruptBlock returns a copy of the golden image name with block loc's
// byte at off flipped, its checksum recomputed when rechecksum is set.
func corruptBlock(t *testing.T, name string, loc int, off int, rechecksum bool) string {
	t.Helper()
	path := goldenCopy(t, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b := data[loc*block.Size : (loc+1)*block.Size]
	kind := block.Identify(b)
	b[off] ^= 0x40
	if rechecksum {
		putChecksum(b, kind)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestErrorsNameFileAndBlock: every command names the file and the block
// of damage it meets.
func TestErrorsNameFileAndBlock(t *testing.T) {
	// m.bin: block 6 is the era array's only array block, block 8 the
	// era-4 writeset's.
	bad := corruptBlock(t, "m.bin", 6, 200, false)
	for _, args := range [][]string{
		{"check", bad}, {"dump", bad}, {"dump", "--logical", bad}, {"invalidate", "--written-since", "1", bad},
	} {
		r := cli(args...)
		if r.code != 1 || !strings.Contains(r.stderr, bad+": ") || !strings.Contains(r.stderr, "metadata block 6 (array block)") {
			t.Errorf("era %q: %v", args, r)
		}
	}
	// --repair dumps the rest, with a warning.
	r := cli("dump", "--repair", bad)
	if r.code != 0 || !strings.Contains(r.stderr, "metadata block 6 (array block)") || !strings.Contains(r.stdout, `<writeset era="4" nr_bits="16">`) {
		t.Errorf("dump --repair: %v", r)
	}
	if r := cli("status", corruptBlock(t, "m.bin", 0, 100, false)); r.code != 1 || !strings.Contains(r.stderr, "metadata block 0 (superblock)") {
		t.Errorf("status of a bad superblock: %v", r)
	}
	if r := cli("check", filepath.Join(t.TempDir(), "none")); r.code != 1 || !strings.Contains(r.stderr, "none: no such file") {
		t.Errorf("check of a missing file: %v", r)
	}
	if r := cli("check", "-q", bad); r.code != 1 || r.stderr != "" {
		t.Errorf("check -q: %v", r)
	}
}

func TestStatus(t *testing.T) {
	for name, want := range map[string][]string{
		"m.bin":            {"current era           5", "128 sectors (64 KiB)", "9 used of 16", "metadata snapshot     none", "1 (era 4)", "dm status             8 9/16 5 -"},
		"kernel-snap.bin":  {"held at block 59", "dm status             8 18/64 4 59"},
		"kernel-crash.bin": {"era 2: 3 of 1024 blocks marked", "8 10/64 2 -"},
		"deep.bin":         {"250 (eras 1-250)"},
	} {
		out := eraOK(t, "status", filepath.Join(golden, name))
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("status %s lacks %q:\n%s", name, w, out)
			}
		}
	}
}

// TestJSON: the JSON forms decode and agree with the XML ones.
func TestJSON(t *testing.T) {
	m := filepath.Join(golden, "kernel-crash.bin")
	var dump struct {
		BlockSize  uint32 `json:"block_size"`
		CurrentEra uint32 `json:"current_era"`
		Writesets  []struct {
			Era    uint32
			Marked []struct{ Begin, End uint64 }
		}
		EraArray []struct {
			Begin, End uint64
			Era        uint32
		} `json:"era_array"`
	}
	if err := json.Unmarshal([]byte(eraOK(t, "dump", "--format", "json", "--include-current", m)), &dump); err != nil {
		t.Fatal(err)
	}
	if len(dump.Writesets) != 1 || dump.Writesets[0].Era != 2 || len(dump.Writesets[0].Marked) != 2 {
		t.Errorf("JSON dump with the current writeset: %+v", dump)
	}
	if err := json.Unmarshal([]byte(eraOK(t, "dump", "--format", "json", "--logical", m)), &dump); err != nil {
		t.Fatal(err)
	}
	// kernel-crash truth: 1:1 2:1 3:2 4:2 9:2.
	if got := fmt.Sprint(dump.EraArray); got != "[{0 1 0} {1 3 1} {3 5 2} {5 9 0} {9 10 2} {10 1024 0}]" {
		t.Errorf("JSON logical dump: %s", got)
	}
	var inv struct {
		BlockBytes uint64 `json:"block_bytes"`
		Ranges     []struct {
			Begin     uint64 `json:"begin"`
			End       uint64 `json:"end"`
			ByteBegin uint64 `json:"byte_begin"`
			ByteEnd   uint64 `json:"byte_end"`
		}
	}
	if err := json.Unmarshal([]byte(eraOK(t, "invalidate", "--written-since", "2", "--format", "json", "--bytes", m)), &inv); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(inv); got != "{4096 [{3 5 12288 20480} {9 10 36864 40960}]}" {
		t.Errorf("JSON invalidate --bytes: %s", got)
	}
	if got := eraOK(t, "invalidate", "--written-since", "2", "--bytes", m); got != "<blocks>\n  <range begin=\"12288\" end = \"20480\"/>\n  <range begin=\"36864\" end = \"40960\"/>\n</blocks>\n" {
		t.Errorf("XML invalidate --bytes: %q", got)
	}
}

// TestSnapshot: --metadata-snapshot reads the snapshot's trees; without a
// snapshot it fails.
func TestSnapshot(t *testing.T) {
	m := filepath.Join(golden, "kernel-snap.bin")
	// Truth (kernel-snap.meta): snapshot logical 0:1 1:1 2:2 3:2 1500:1
	// 2500:2; live 4:3 5:4 1000:3 on top.
	if got := eraOK(t, "invalidate", "--written-since", "2", "--metadata-snapshot", m); got != "<blocks>\n  <range begin=\"2\" end = \"4\"/>\n  <block block=\"2500\"/>\n</blocks>\n" {
		t.Errorf("snapshot invalidate: %q", got)
	}
	if got := eraOK(t, "invalidate", "--written-since", "3", m); got != "<blocks>\n  <range begin=\"4\" end = \"6\"/>\n  <block block=\"1000\"/>\n</blocks>\n" {
		t.Errorf("live invalidate: %q", got)
	}
	if r := cli("invalidate", "--written-since", "0", "--metadata-snapshot", filepath.Join(golden, "m.bin")); r.code != 1 || !strings.Contains(r.stderr, "no metadata snapshot") {
		t.Errorf("snapshot invalidate without a snapshot: %v", r)
	}
}

func TestMain(m *testing.M) {
	if _, err := os.Stat(golden); err != nil {
		fmt.Fprintln(os.Stderr, "golden images missing:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
