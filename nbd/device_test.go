package nbd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/era-go/era"
)

// Interfaces an *era.Device must satisfy for every meta context.
var (
	_ Backend           = (*era.Device)(nil)
	_ WrittenSinceSeqer = (*era.Device)(nil)
	_ BlockEraser       = (*era.Device)(nil)
	_ BlockByteser      = (*era.Device)(nil)
	_ CurrentEraer      = (*era.Device)(nil)
	_ Zeroer            = (*era.Device)(nil)
	_ FastZeroer        = (*era.Device)(nil)
)

// openDevice opens an era device over files in a temporary directory.
func openDevice(t testing.TB, size int64, sectors uint32) (*era.Device, string) {
	t.Helper()
	dir := t.TempDir()
	meta, err := os.OpenFile(filepath.Join(dir, "meta"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := meta.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	imagePath := filepath.Join(dir, "disk.img")
	image, err := os.OpenFile(imagePath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.Truncate(size); err != nil {
		t.Fatal(err)
	}
	d, err := era.Open(meta, image, era.Config{BlockSectors: sectors, Format: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
		meta.Close()
		image.Close()
	})
	return d, imagePath
}

func deviceSubject(t testing.TB, d *era.Device, imagePath string) subject {
	bb := d.BlockBytes()
	size := uint64(d.Size())
	return subject{
		b: d,
		checkpoint: func() uint32 {
			e, err := d.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			return e
		},
		writtenSince: func(n uint32) []era.Range {
			rs, err := d.WrittenSince(n)
			if err != nil {
				t.Fatal(err)
			}
			var out []era.Range
			for _, r := range rs {
				out = append(out, era.Range{Begin: r.Begin * bb, End: min(r.End*bb, size)})
			}
			return out
		},
		image: func() []byte {
			b, err := os.ReadFile(imagePath)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

// The real clients against a real era device.
func TestClientsDevice(t *testing.T) {
	d, img := openDevice(t, 8<<20+3*512, 128)
	s := deviceSubject(t, d, img)
	_, sock := startServer(t, d, Options{})
	clientsAgree(t, s, sock)
}

// Writes on several connections while eras change: every write's reply is
// followed by a BLOCK_STATUS that must already show its blocks, with an
// era no older than the one current when the write was sent.
func TestDeviceNeverBelowTruth(t *testing.T) {
	const bb = 4096
	d, _ := openDevice(t, 4<<20, bb/512)
	_, sock := startServer(t, d, Options{})
	stop := make(chan struct{})
	var eras sync.WaitGroup
	eras.Add(1)
	go func() {
		defer eras.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := d.Checkpoint(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, sock, true, "x-era:written-since:1", "x-era:era")
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 150 {
				off := rnd.Uint64N(4<<20 - 2*bb)
				n := rnd.Uint64N(2*bb) + 1
				before := d.CurrentEra()
				if r := c.do(request{typ: cmdWrite, cookie: uint64(i), offset: off, length: uint32(n)}, make([]byte, n)); r.err != 0 {
					t.Errorf("write: %d", r.err)
					return
				}
				r := c.do(request{typ: cmdBlockStatus, cookie: uint64(i), offset: off, length: uint32(n)}, nil)
				if r.err != 0 {
					t.Errorf("block status: %d %s", r.err, r.msg)
					return
				}
				if ext := r.statuses[c.contextID("x-era:written-since:1")]; len(ext) != 1 || ext[0].flags != 1 || uint64(ext[0].length) != n {
					t.Errorf("written-since:1 after a write of %d at %d: %v", n, off, ext)
				}
				for _, e := range r.statuses[c.contextID("x-era:era")] {
					if e.flags < before {
						t.Errorf("era %d after a write sent in era %d", e.flags, before)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	eras.Wait()
}

// Zeroing and trimming through the device mark their blocks; FAST_ZERO is
// honoured when the image file can punch holes.
func TestDeviceZeroes(t *testing.T) {
	d, img := openDevice(t, 1<<20, 8)
	_, sock := startServer(t, d, Options{})
	c := connect(t, sock, true, "x-era:written-since:2")
	if r := c.do(request{typ: cmdWrite, cookie: 1, offset: 0, length: 1 << 16}, make([]byte, 1<<16)); r.err != 0 {
		t.Fatal(r.err)
	}
	e, err := d.Checkpoint()
	if err != nil || e != 2 {
		t.Fatalf("checkpoint: %d %v", e, err)
	}
	fast := d.ZeroesFast()
	if got := c.tflags&tflagSendTrim != 0; got != fast {
		t.Errorf("trim offered %v, zeroes fast %v", got, fast)
	}
	var flags uint16
	if fast {
		flags = cflagFastZero
	}
	if r := c.do(request{typ: cmdWriteZeroes, flags: flags, cookie: 2, offset: 8192, length: 4096}, nil); r.err != 0 {
		t.Fatalf("write zeroes: %d %s", r.err, r.msg)
	}
	want := []era.Range{{Begin: 2, End: 3}}
	if fast {
		if r := c.do(request{typ: cmdTrim, cookie: 3, offset: 40960, length: 8192}, nil); r.err != 0 {
			t.Fatalf("trim: %d %s", r.err, r.msg)
		}
		want = append(want, era.Range{Begin: 10, End: 12})
	}
	got, err := d.WrittenSince(2)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("written since 2: %v %v, want %v", got, err, want)
	}
	b := deviceSubject(t, d, img).image()
	for i := 8192; i < 12288; i++ {
		if b[i] != 0 {
			t.Fatalf("byte %d is %d after zeroing", i, b[i])
		}
	}
}

func TestPythonLibnbdDevice(t *testing.T) {
	d, img := openDevice(t, 1<<20, 8)
	s := deviceSubject(t, d, img)
	pythonSimpleReplies(t, s)
}
