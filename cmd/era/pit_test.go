package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/era-go/era/nbd"
)

// TestServeSnapshotStore: with --snapshot-store, take_metadata_snap
// offers NAME@snapshot, which nbdcopy reads as the image was at the
// snapshot (SHA-256) while a writer keeps writing through the main export,
// with the snapshot's meta contexts; drop_metadata_snap withdraws it.
func TestServeSnapshotStore(t *testing.T) {
	needClient(t, "nbdcopy")
	needClient(t, "nbdinfo")
	dir := t.TempDir()
	meta, image, store := filepath.Join(dir, "meta"), filepath.Join(dir, "disk.img"), filepath.Join(dir, "diff")
	sock, control := filepath.Join(dir, "nbd.sock"), filepath.Join(dir, "control.sock")
	const size = 8 << 20
	if err := os.WriteFile(meta, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cli("serve", "--meta", meta, "--image", image, "--snapshot-store", store); r.code != exitUsage {
		t.Errorf("--snapshot-store without --control: %v", r)
	}
	s := startServe(t, "--meta", meta, "--image", image, "--block-sectors", "8", "--format", "--socket", sock, "--control", control, "--snapshot-store", store)
	defer s.stop(t, syscall.SIGTERM)
	snapURI := "nbd+unix:///era@snapshot?socket=" + sock

	ctx := context.Background()
	c, err := nbd.DialURI(ctx, s.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The writer writes random 4 KiB pieces; paused, it has none in flight.
	var pause sync.RWMutex
	var stop atomic.Bool
	var writes atomic.Int64
	done := make(chan error, 1)
	go func() {
		rnd := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 4096)
		for !stop.Load() {
			for i := range buf {
				buf[i] = byte(rnd.Uint32())
			}
			pause.RLock()
			_, err := c.WriteAt(buf, int64(rnd.IntN(size/4096))*4096)
			pause.RUnlock()
			if err != nil {
				done <- err
				return
			}
			writes.Add(1)
		}
		done <- nil
	}()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()

	for round := range 2 {
		for writes.Load() < int64(200*(round+1)) {
			time.Sleep(time.Millisecond)
		}
		pause.Lock()
		before := nbdMap(t, s.uri, "x-era:written-since:1")
		out := eraOK(t, "message", "--control", control, "take_metadata_snap")
		data, err := os.ReadFile(image)
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(data)
		atSnap := writes.Load()
		pause.Unlock()
		if !strings.Contains(out, "era began") {
			t.Fatalf("take_metadata_snap: %q", out)
		}
		if list := runClient(t, "nbdinfo", "--list", s.uri); !strings.Contains(list, "era@snapshot") {
			t.Fatalf("nbdinfo --list lacks the snapshot export:\n%s", list)
		}
		copied := filepath.Join(dir, fmt.Sprintf("copy%d.img", round))
		runClient(t, "nbdcopy", snapURI, copied)
		got, err := os.ReadFile(copied)
		if err != nil {
			t.Fatal(err)
		}
		if writes.Load() == atSnap {
			t.Fatalf("round %d: no write during the copy", round)
		}
		if sha256.Sum256(got) != want {
			t.Fatalf("round %d: nbdcopy of the snapshot export differs from the image at the snapshot", round)
		}
		if after := nbdMap(t, snapURI, "x-era:written-since:1"); !slices.Equal(after, before) {
			t.Fatalf("round %d: the snapshot export's written-since:1 %v, the image's at the snapshot %v", round, after, before)
		}
		st := eraOK(t, "status", "--control", control)
		if !strings.Contains(st, "point-in-time snapshot  export era@snapshot") || !strings.Contains(st, "; good") {
			t.Errorf("status --control:\n%s", st)
		}
		if info, err := exec.Command("nbdinfo", snapURI).CombinedOutput(); err != nil || !strings.Contains(string(info), "is_read_only: true") {
			t.Errorf("nbdinfo of the snapshot export: %v\n%s", err, info)
		}
		eraOK(t, "message", "--control", control, "drop_metadata_snap")
		if out, err := exec.Command("nbdinfo", snapURI).CombinedOutput(); err == nil {
			t.Fatalf("the snapshot export is still offered after drop_metadata_snap:\n%s", out)
		}
	}
	if writes.Load() == 0 {
		t.Fatal("the writer wrote nothing")
	}
}
