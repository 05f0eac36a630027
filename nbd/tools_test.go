package nbd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/era-go/era"
	"github.com/era-go/era/internal/tooltest"
)

// needTool returns the path of a client program. Under CI a missing one
// fails the test (the test script installs it); otherwise the test skips.
func needTool(t testing.TB, name string) string {
	t.Helper()
	return tooltest.NeedFrom(t, name, "libnbd-bin, python3-libnbd or qemu-utils")
}

// runTool runs a program and returns its standard output.
func runTool(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(needTool(t, name), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// subject is what the client tests serve and check against.
type subject struct {
	b            Backend
	checkpoint   func() uint32
	writtenSince func(n uint32) []era.Range // byte ranges, clipped to the size
	image        func() []byte              // the whole image as stored
}

func modelSubject(size int, blockBytes uint64) subject {
	m := newModel(size, blockBytes)
	return subject{
		b:            m,
		checkpoint:   m.Checkpoint,
		writtenSince: m.writtenSince,
		image: func() []byte {
			m.mu.Lock()
			defer m.mu.Unlock()
			return slices.Clone(m.data)
		},
	}
}

func uriOf(sock string) string { return "nbd+unix:///era?socket=" + sock }

// mapEntry is one entry of nbdinfo --map --json.
type mapEntry struct {
	Offset uint64 `json:"offset"`
	Length uint64 `json:"length"`
	Type   uint32 `json:"type"`
}

// nbdinfoMap returns the byte ranges whose type has bit 0 set in
// nbdinfo --map=CONTEXT --json, checking the entries tile the export.
func nbdinfoMap(t *testing.T, uri, context string, size uint64) []era.Range {
	t.Helper()
	var entries []mapEntry
	out := runTool(t, "nbdinfo", "--map="+context, "--json", uri)
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("nbdinfo --map=%s: %v\n%s", context, err, out)
	}
	return setRanges(t, entries, size, func(e mapEntry) bool {
		if e.Type > 1 {
			t.Errorf("%s: type %d, want 0 or 1", context, e.Type)
		}
		return e.Type&1 != 0
	})
}

// setRanges coalesces the entries for which set is true, checking that the
// entries cover [0, size) in order.
func setRanges[E any](t *testing.T, entries []E, size uint64, set func(E) bool) []era.Range {
	t.Helper()
	var out []era.Range
	var pos uint64
	for _, e := range entries {
		v := any(e)
		var off, n uint64
		switch e := v.(type) {
		case mapEntry:
			off, n = e.Offset, e.Length
		case qemuMapEntry:
			off, n = e.Start, e.Length
		}
		if off != pos || n == 0 {
			t.Fatalf("map entry at %d+%d, want offset %d", off, n, pos)
		}
		pos += n
		if !set(e) {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End == off {
			out[k-1].End = off + n
		} else {
			out = append(out, era.Range{Begin: off, End: off + n})
		}
	}
	if pos != size {
		t.Fatalf("map covers %d bytes of %d", pos, size)
	}
	return out
}

// qemuMapEntry is one entry of qemu-img map --output=json.
type qemuMapEntry struct {
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
	Data   bool   `json:"data"`
	Zero   bool   `json:"zero"`
}

// clientsAgree writes through qemu-io over several eras, then checks that
// nbdinfo's and qemu-img's maps of every era equal the tracker's answer,
// that nbdinfo lists the contexts, and that nbdcopy and qemu-img convert
// copy the image exactly.
func clientsAgree(t *testing.T, s subject, sock string) {
	uri := uriOf(sock)
	size := uint64(s.b.Size())
	needTool(t, "qemu-io")
	needTool(t, "nbdinfo")

	out := string(runTool(t, "nbdinfo", "--list", uri))
	for _, want := range []string{"base:allocation", "x-era:era", "x-era:written-since:1-", "qemu:dirty-bitmap:era-1-", "can_multi_conn: true"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo --list lacks %q:\n%s", want, out)
		}
	}

	rnd := rand.New(rand.NewPCG(uint64(size), 7))
	var eras []uint32
	for e := range 4 {
		var cmds []string
		for range 12 {
			off := rnd.Uint64N(size - 512)
			off -= off % 512
			n := min((rnd.Uint64N(32)+1)*512, size-off)
			cmds = append(cmds, "-c", fmt.Sprintf("write -P 0x%02x %d %d", rnd.IntN(255)+1, off, n))
		}
		runTool(t, "qemu-io", append([]string{"-f", "raw", uri}, cmds...)...)
		if e < 3 {
			eras = append(eras, s.checkpoint())
		}
	}
	for _, n := range append([]uint32{1}, eras...) {
		want := s.writtenSince(n)
		if len(want) == 0 {
			t.Fatalf("nothing written since era %d", n)
		}
		for _, ctx := range []string{fmt.Sprintf("x-era:written-since:%d", n), fmt.Sprintf("qemu:dirty-bitmap:era-%d", n)} {
			if got := nbdinfoMap(t, uri, ctx, size); !slices.Equal(got, want) {
				t.Errorf("nbdinfo --map=%s:\n got %v\nwant %v", ctx, got, want)
			}
		}
		// qemu reads the bitmap in place of allocation: a dirty extent
		// shows as "data": false.
		var qm []qemuMapEntry
		opts := fmt.Sprintf("driver=nbd,export=era,server.type=unix,server.path=%s,x-dirty-bitmap=qemu:dirty-bitmap:era-%d", sock, n)
		qout := runTool(t, "qemu-img", "map", "--output=json", "--image-opts", opts)
		if err := json.Unmarshal(qout, &qm); err != nil {
			t.Fatalf("qemu-img map: %v\n%s", err, qout)
		}
		if got := setRanges(t, qm, size, func(e qemuMapEntry) bool { return !e.Data }); !slices.Equal(got, want) {
			t.Errorf("qemu-img map of era-%d:\n got %v\nwant %v", n, got, want)
		}
	}

	image := s.image()
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "copy.img")
	runTool(t, "nbdcopy", uri, copyPath)
	if got, err := os.ReadFile(copyPath); err != nil || !bytes.Equal(got, image) {
		t.Errorf("nbdcopy: %d bytes, %v, differ from the image", len(got), err)
	}
	conv := filepath.Join(dir, "conv.img")
	runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, conv)
	ref := filepath.Join(dir, "ref.img")
	if err := os.WriteFile(ref, image, 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", conv, ref)
	runTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", uri, ref)
}

func TestClientsModel(t *testing.T) {
	s := modelSubject(8<<20+3*512, 64<<10)
	_, sock := startServer(t, s.b, Options{})
	clientsAgree(t, s, sock)
}

// pythonNoStructured drives the export from Python libnbd with structured
// replies turned off, as the kernel client behaves.
const pythonNoStructured = `
import nbd, sys
h = nbd.NBD()
h.set_request_structured_replies(False)
h.connect_uri(sys.argv[1])
assert not h.get_structured_replies_negotiated()
size = h.get_size()
h.pwrite(b"\x5a" * 8192, 4096)
h.pwrite(b"\x33" * 512, size - 512, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(8192, 4096) == b"\x5a" * 8192
assert h.pread(512, size - 512) == b"\x33" * 512
h.zero(4096, 8192)  # count, offset
assert h.pread(4096, 8192) == bytes(4096)
assert h.pread(4096, 4096) == b"\x5a" * 4096
try:
    h.pread(2, size - 1)
    sys.exit("read past the end succeeded")
except nbd.Error as e:
    assert e.errnum == 22, e
h.shutdown()
print("ok", size)
`

func TestPythonLibnbdSimpleReplies(t *testing.T) {
	pythonSimpleReplies(t, modelSubject(1<<20, 4096))
}

func pythonSimpleReplies(t *testing.T, s subject) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import nbd").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-libnbd is missing: %v", err)
		}
		t.Skip("python3-libnbd is not installed")
	}
	_, sock := startServer(t, s.b, Options{})
	out, err := exec.Command(py, "-c", pythonNoStructured, uriOf(sock)).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok 1048576") {
		t.Fatalf("python: %v\n%s", err, out)
	}
	img := s.image()
	if !bytes.Equal(img[8192:12288], make([]byte, 4096)) || img[8191] != 0x5a || img[1<<20-1] != 0x33 || img[1<<20-513] != 0 {
		t.Errorf("image does not hold the python writes: %x %x %x", img[8190:8194], img[1<<20-513:1<<20-510], img[1<<20-3:])
	}
	if got := s.writtenSince(1); !slices.Equal(got, []era.Range{{Begin: 4096, End: 3 * 4096}, {Begin: 1<<20 - 4096, End: 1 << 20}}) {
		t.Errorf("written: %v", got)
	}
}
