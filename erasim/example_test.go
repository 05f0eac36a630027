package erasim_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/era-go/era/erasim"
)

// A storage stack commits a record by writing it, syncing, then writing a
// pointer to it. Every image a power cut can leave is checked: a pointer
// must never point at a record that did not survive.
func Example() {
	s := erasim.New(8192)
	s.WriteAt([]byte("record v1"), 4096) // the record
	s.Sync()                             // make it durable first
	s.WriteAt([]byte{1}, 0)              // then the pointer to it
	s.Sync()

	rng := rand.New(rand.NewPCG(1, 2))
	bad := 0
	for point := 0; point <= s.Len(); point++ {
		for range 100 {
			img := s.CrashImage(point, rng, erasim.CrashOptions{Tear: true})
			if img[0] == 1 && !bytes.HasPrefix(img[4096:], []byte("record v1")) {
				bad++
			}
		}
	}
	fmt.Println("points:", s.Len()+1, "bad images:", bad)

	// Without the first sync, the disk may keep the pointer and lose the
	// record.
	s = erasim.New(8192)
	s.WriteAt([]byte("record v1"), 4096)
	s.WriteAt([]byte{1}, 0)
	img := s.CrashImage(s.Len(), rng, erasim.CrashOptions{})
	for img[0] != 1 || img[4096] != 0 {
		img = s.CrashImage(s.Len(), rng, erasim.CrashOptions{})
	}
	fmt.Printf("unsafe order: pointer %d, record %q\n", img[0], bytes.TrimRight(img[4096:4105], "\x00"))
	// Output:
	// points: 5 bad images: 0
	// unsafe order: pointer 1, record ""
}
