package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/internal/tooltest"
)

// needClient returns the path of an NBD client program: under CI a missing
// one fails the test, otherwise the test skips.
func needClient(t testing.TB, name string) string {
	t.Helper()
	return tooltest.NeedFrom(t, name, "libnbd-bin or qemu-utils")
}

var eraBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "era-serve-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "era")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// served is a running era serve.
type served struct {
	cmd    *exec.Cmd
	uri    string
	stderr *bytes.Buffer
	done   chan error
}

// startServe runs the era binary's serve command with args and waits for
// the URI it prints.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	bin, err := eraBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := &served{stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
		s.done <- s.cmd.Wait()
	}()
	select {
	case s.uri = <-line:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatal("era serve printed no URI")
	}
	if s.uri == "" {
		err := <-s.done
		t.Fatalf("era serve: %v\n%s", err, s.stderr)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// stop sends sig and waits for a clean exit.
func (s *served) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("era serve after %v: %v\n%s", sig, err, s.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("era serve did not stop on %v", sig)
	}
}

func runClient(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(needClient(t, name), args...)
	var e bytes.Buffer
	cmd.Stderr = &e
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, e.Bytes())
	}
	return string(out)
}

// nbdMap returns the byte ranges nbdinfo --map reports with bit 0 set.
func nbdMap(t *testing.T, uri, context string) []era.Range {
	t.Helper()
	var entries []struct {
		Offset, Length uint64
		Type           uint32
	}
	out := runClient(t, "nbdinfo", "--map="+context, "--json", uri)
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("nbdinfo --map: %v\n%s", err, out)
	}
	var rs []era.Range
	for _, e := range entries {
		if e.Type&1 == 0 {
			continue
		}
		if k := len(rs); k > 0 && rs[k-1].End == e.Offset {
			rs[k-1].End += e.Length
		} else {
			rs = append(rs, era.Range{Begin: e.Offset, End: e.Offset + e.Length})
		}
	}
	return rs
}

func TestServeEndToEnd(t *testing.T) {
	needClient(t, "nbdinfo")
	needClient(t, "qemu-io")
	dir := t.TempDir()
	meta, image := filepath.Join(dir, "meta"), filepath.Join(dir, "disk.img")
	sock, control := filepath.Join(dir, "nbd.sock"), filepath.Join(dir, "control.sock")
	const size = 16<<20 + 4096
	if err := os.WriteFile(meta, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, _ := eraBinary()
	if out, err := exec.Command(bin, "serve", "--meta", meta, "--image", image, "--socket", sock).CombinedOutput(); err == nil || !strings.Contains(string(out), "--format formats it") {
		t.Errorf("serve on blank metadata without --format: %v\n%s", err, out)
	}
	s := startServe(t, "--meta", meta, "--image", image, "--block-sectors", "16", "--format", "--socket", sock, "--control", control)
	if want := "nbd+unix:///era?socket=" + sock; s.uri != want {
		t.Errorf("URI %q, want %q", s.uri, want)
	}
	for _, p := range []string{sock, control} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	list := runClient(t, "nbdinfo", "--list", s.uri)
	for _, want := range []string{"base:allocation", "x-era:era", "x-era:written-since:", "qemu:dirty-bitmap:era-", "can_multi_conn: true"} {
		if !strings.Contains(list, want) {
			t.Errorf("nbdinfo --list lacks %q:\n%s", want, list)
		}
	}

	rnd := rand.New(rand.NewPCG(5, 6))
	began := []uint32{}
	maps := map[uint32][]era.Range{}
	for e := range 3 {
		var cmds []string
		for range 10 {
			off := rnd.Uint64N(size/512) * 512
			n := min((rnd.Uint64N(64)+1)*512, size-off)
			cmds = append(cmds, "-c", fmt.Sprintf("write -P 0x%02x %d %d", 1+rnd.IntN(254), off, n))
		}
		runClient(t, "qemu-io", append([]string{"-f", "raw", s.uri}, cmds...)...)
		if e < 2 {
			out := eraOK(t, "message", "--control", control, "--json", "checkpoint")
			var r controlReply
			if err := json.Unmarshal([]byte(out), &r); err != nil || r.Era == 0 {
				t.Fatalf("checkpoint: %q %v", out, err)
			}
			began = append(began, r.Era)
		}
	}
	if began[1] != began[0]+1 {
		t.Errorf("eras began %v", began)
	}
	for _, n := range began {
		maps[n] = nbdMap(t, s.uri, fmt.Sprintf("x-era:written-since:%d", n))
		if bm := nbdMap(t, s.uri, fmt.Sprintf("qemu:dirty-bitmap:era-%d", n)); !slices.Equal(bm, maps[n]) {
			t.Errorf("dirty bitmap era-%d %v differs from written-since %v", n, bm, maps[n])
		}
	}
	out := eraOK(t, "message", "--control", control, "take_metadata_snap")
	if !strings.Contains(out, fmt.Sprintf("era began  %d", began[1]+1)) {
		t.Errorf("take_metadata_snap: %q", out)
	}
	_, idText, _ := strings.Cut(out, "change ID  ")
	if id, err := era.ParseChangeID(strings.TrimSpace(idText)); err != nil || id.Era != began[1]+1 {
		t.Errorf("change ID in %q: %v %v", out, id, err)
	}
	st := eraOK(t, "status", "--control", control)
	for _, want := range []string{"serving            " + s.uri, fmt.Sprintf("current era        %d", began[1]+1), "metadata snapshot  held"} {
		if !strings.Contains(st, want) {
			t.Errorf("status --control lacks %q:\n%s", want, st)
		}
	}
	if r := cli("message", "--control", control, "take_metadata_snap"); r.code != exitFail || !strings.Contains(r.stderr, "already held") {
		t.Errorf("second take_metadata_snap: %v", r)
	}
	eraOK(t, "message", "--control", control, "drop_metadata_snap")
	if r := cli("message", "--control", control, "rollback"); r.code != exitUsage {
		t.Errorf("unknown message: %v", r)
	}
	if r := cli("message", "checkpoint"); r.code != exitUsage {
		t.Errorf("message without --control: %v", r)
	}

	// A second server of the same device is refused.
	if out, err := exec.Command(bin, "serve", "--meta", meta, "--image", image, "--socket", sock).CombinedOutput(); err == nil {
		t.Errorf("second era serve on a live socket: %s", out)
	}

	s.stop(t, syscall.SIGTERM)
	for _, p := range []string{sock, control} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	eraOK(t, "check", meta)
	// What the maps said equals what the closed metadata says.
	mf, err := os.Open(meta)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	v, err := era.OpenView(mf)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := era.ParseChangeID(strings.TrimSpace(idText)); v.ChangeID().UUID != id.UUID {
		t.Errorf("change ID %s is not of this metadata (%s)", idText, v.ChangeID())
	}
	bb := uint64(16 * 512)
	for n, got := range maps {
		blocks, err := v.WrittenSince(n)
		if err != nil {
			t.Fatal(err)
		}
		var want []era.Range
		for _, r := range blocks {
			want = append(want, era.Range{Begin: r.Begin * bb, End: min(r.End*bb, size)})
		}
		if !slices.Equal(got, want) {
			t.Errorf("written since %d: nbdinfo said %v, the metadata says %v", n, got, want)
		}
	}

	// Served again, read-only over TCP on the loopback, stopped by SIGINT.
	s = startServe(t, "--meta", meta, "--image", image, "--listen", "127.0.0.1:0", "--read-only", "--name", "disk")
	if !strings.HasPrefix(s.uri, "nbd://127.0.0.1:") || !strings.HasSuffix(s.uri, "/disk") {
		t.Errorf("URI %q", s.uri)
	}
	info := runClient(t, "nbdinfo", s.uri)
	if !strings.Contains(info, "is_read_only: true") || !strings.Contains(info, fmt.Sprint(size)) {
		t.Errorf("nbdinfo:\n%s", info)
	}
	if err := exec.Command("qemu-io", "-f", "raw", "-c", "write 0 512", s.uri).Run(); err == nil {
		t.Error("a write to a read-only export succeeded")
	}
	s.stop(t, os.Interrupt)
}

// TestServeRefusesAnOwnedDevice: a second era serve (another process) of
// the same metadata fails at once, naming the ways to back up through the
// first.
func TestServeRefusesAnOwnedDevice(t *testing.T) {
	dir := t.TempDir()
	meta, image := newFile(t, dir, "meta", 4<<20), newFile(t, dir, "image", 8<<20)
	s := startServe(t, "--meta", meta, "--image", image, "--format", "--socket", filepath.Join(dir, "sock"))
	bin, err := eraBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--meta", meta, "--image", image, "--socket", filepath.Join(dir, "sock2")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another era device") || !strings.Contains(string(out), "--external") {
		t.Fatalf("second era serve: %v\n%s", err, out)
	}
	s.stop(t, os.Interrupt)
}
