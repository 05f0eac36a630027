package nbd

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestAddExport: a second export, read-only, with its own data and meta
// contexts, selected by name, withdrawn by RemoveExport.
func TestAddExport(t *testing.T) {
	ctx := context.Background()
	main := newModel(1<<20, 64<<10)
	second := newModel(512<<10, 64<<10)
	for i := range second.data {
		second.data[i] = 0x5a
	}
	second.WriteAt([]byte{1}, 3<<16) // block 3 written in era 1
	s, sock := startServer(t, main, Options{})
	if err := s.AddExport("era", second, ExportOptions{}); !errors.Is(err, ErrExportExists) {
		t.Fatalf("AddExport of the first export's name: %v", err)
	}
	if err := s.AddExport("era@snapshot", second, ExportOptions{ReadOnly: true, Description: "snap"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Exports(); len(got) != 2 || got[1] != "era@snapshot" {
		t.Fatalf("Exports: %q", got)
	}
	uri := "nbd+unix:///era@snapshot?socket=" + sock
	c, err := DialURI(ctx, uri, "x-era:written-since:1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != 512<<10 {
		t.Fatalf("size %d", c.Size())
	}
	p := make([]byte, 4096)
	if _, err := c.ReadAt(p, 0); err != nil || !bytes.Equal(p, second.data[:4096]) {
		t.Fatalf("read: %v", err)
	}
	if _, err := c.WriteAt(p, 0); !errors.Is(err, ErrRemote) {
		t.Fatalf("write to the read-only export: %v", err)
	}
	ext, err := c.BlockStatus("x-era:written-since:1", 0, 512<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) == 0 || ext[0].Flags != 0 || ext[0].Length != 3<<16 {
		t.Fatalf("extents %v: want block 3 the first written", ext)
	}
	// The first export is unaffected.
	c0, err := DialURI(ctx, uriOf(sock))
	if err != nil {
		t.Fatal(err)
	}
	if c0.Size() != 1<<20 {
		t.Fatalf("first export's size %d", c0.Size())
	}
	c0.Close()
	if err := s.RemoveExport("era@snapshot"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveExport("era@snapshot"); !errors.Is(err, ErrNoExport) {
		t.Fatalf("second RemoveExport: %v", err)
	}
	if _, err := c.ReadAt(p, 0); err == nil {
		t.Fatal("a connection to a removed export goes on reading")
	}
	c.Close()
	if _, err := DialURI(ctx, uri); !errors.Is(err, ErrRemote) {
		t.Fatalf("dial a removed export: %v", err)
	}
}
