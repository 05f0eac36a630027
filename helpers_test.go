package era

import (
	"time"

	"github.com/era-go/era/block"
)

// sleepBriefly lets background work (the digest) run.
func sleepBriefly() { time.Sleep(time.Millisecond) }

// blockManagerOf returns a fresh, uncached block manager over a store.
func blockManagerOf(m *memStore) *block.Manager {
	return block.NewManager(m, uint64(len(m.data))/block.Size, 0)
}
