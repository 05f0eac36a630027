package main

import (
	"context"
	"strings"
	"testing"
)

// TestDemo runs the demo on a 16 MiB image: every restored point must
// equal the image at its backup, the in-process ones read from
// point-in-time snapshots while a writer kept writing.
func TestDemo(t *testing.T) {
	var out strings.Builder
	cfg := DemoConfig{SizeMiB: 16, BlockSectors: 16, Rounds: 3, Writes: 90, Seed: 3, Dir: t.TempDir(), Out: &out}
	res, err := RunDemo(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res.Points) != 4 {
		t.Fatalf("%d points, want 4", len(res.Points))
	}
	modes := map[string]int{}
	var during int64
	for _, p := range res.Points {
		if p.Backup.Mode == "device" && !p.Backup.Consistent {
			t.Errorf("backup %d: in-process, not from a point-in-time snapshot", p.Backup.ID)
		}
		during += p.During
		if p.Want == "" || p.Got != p.Want {
			t.Errorf("backup %d: restored %q, image had %q", p.Backup.ID, p.Got, p.Want)
		}
		modes[p.Backup.Mode]++
		if p.Backup.Kind == Incremental && (p.Backup.Blocks == 0 || p.Backup.Blocks == p.Backup.NrBlocks()) {
			t.Errorf("incremental %d copied %d blocks", p.Backup.ID, p.Backup.Blocks)
		}
	}
	if modes["external"] != 1 || modes["device"] != 3 {
		t.Errorf("modes %v", modes)
	}
	if during == 0 {
		t.Error("no write was made during the copies")
	}
	for _, w := range []string{"throughput", "restored image SHA-256", "OK: all 4 restored images equal"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// TestDemoCommand runs "backup demo" as the command line does.
func TestDemoCommand(t *testing.T) {
	var out, errOut strings.Builder
	code := run(context.Background(), []string{"demo", "--size", "4", "--rounds", "2", "--writes", "30"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "OK: all 3 restored images") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
