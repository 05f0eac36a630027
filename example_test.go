package era_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/era-go/era"
)

// Open a tracked image, write through it, move to a new era and ask what
// changed since.
func Example() {
	dir, _ := os.MkdirTemp("", "era-example")
	defer os.RemoveAll(dir)
	meta, _ := os.Create(filepath.Join(dir, "meta"))
	meta.Truncate(4 << 20) // a zeroed store: Open formats it
	image, _ := os.Create(filepath.Join(dir, "image"))
	image.Truncate(64 << 20)

	d, err := era.Open(meta, image, era.Config{Format: true, BlockSectors: 128}) // 64 KiB blocks
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("era at start:", d.Status().CurrentEra)

	d.WriteAt([]byte("hello"), 0)      // block 0
	d.WriteAt(make([]byte, 10), 65530) // crosses into block 1
	d.Checkpoint()                     // era 2 begins
	d.WriteAt([]byte("again"), 5<<16)  // block 5

	since1, _ := d.WrittenSince(1)
	since2, _ := d.WrittenSince(2)
	fmt.Println("written since era 1:", since1)
	fmt.Println("written since era 2:", since2)
	fmt.Println("era now:", d.Status().CurrentEra)
	if err := d.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// era at start: 1
	// written since era 1: [{0 2} {5 6}]
	// written since era 2: [{5 6}]
	// era now: 2
}

// A backup agent holds a metadata snapshot and reads it while the device
// goes on writing.
func ExampleOpenSnapshot() {
	dir, _ := os.MkdirTemp("", "era-example")
	defer os.RemoveAll(dir)
	meta, _ := os.Create(filepath.Join(dir, "meta"))
	meta.Truncate(4 << 20)
	image, _ := os.Create(filepath.Join(dir, "image"))
	image.Truncate(16 << 20)

	d, _ := era.Open(meta, image, era.Config{Format: true, BlockSectors: 8})
	d.WriteAt([]byte("a"), 3*4096)
	d.TakeSnapshot()               // era 2 begins; the snapshot covers eras 1
	d.WriteAt([]byte("b"), 9*4096) // after the snapshot: not in it

	v, err := era.OpenSnapshot(meta)
	if err != nil {
		log.Fatal(err)
	}
	changed, _ := v.WrittenSince(1)
	fmt.Println("snapshot era:", v.CurrentEra(), "changed:", changed)
	d.DropSnapshot()
	d.Close()
	// Output:
	// snapshot era: 2 changed: [{3 4}]
}

// After Close (or a crash), the committed state can be read without
// opening the device.
func ExampleOpenView() {
	dir, _ := os.MkdirTemp("", "era-example")
	defer os.RemoveAll(dir)
	meta, _ := os.Create(filepath.Join(dir, "meta"))
	meta.Truncate(4 << 20)
	image, _ := os.Create(filepath.Join(dir, "image"))
	image.Truncate(16 << 20)

	d, _ := era.Open(meta, image, era.Config{Format: true, BlockSectors: 8})
	d.WriteAt([]byte("x"), 7*4096)
	d.Close()

	v, _ := era.OpenView(meta)
	e, _ := v.BlockEra(7)
	fmt.Println("block 7 written in era", e, "of", v.NrBlocks(), "blocks")
	// Output:
	// block 7 written in era 1 of 4096 blocks
}

// Size a store the way Open does when Config leaves its size zero.
func ExampleStoreSize() {
	f, _ := os.CreateTemp("", "era-store")
	defer os.Remove(f.Name())
	f.Truncate(8 << 20)
	n, err := era.StoreSize(f)
	fmt.Println(n, err)
	_, err = era.StoreSize(struct{}{}) // no Size, Stat or Seek
	fmt.Println(errors.Is(err, era.ErrInvalidConfig))
	// Output:
	// 8388608 <nil>
	// true
}
