package era

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestTmpGroup(t *testing.T) {
	dir := t.TempDir()
	m, _ := os.Create(filepath.Join(dir, "m"))
	m.Truncate(64 << 20)
	o, _ := os.Create(filepath.Join(dir, "o"))
	o.Truncate(4096 << 20)
	d, err := Open(m, o, Config{BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	for d.Stats().Digesting {
		time.Sleep(time.Millisecond)
	}
	for _, g := range []int{1, 16, 64} {
		s0 := d.Stats()
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := uint64(g * 1000000 % (1 << 20))
		start := time.Now()
		for range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for time.Since(start) < time.Second {
					mu.Lock()
					b := next
					next = (next + 7919) % (1 << 20)
					mu.Unlock()
					d.WriteAt(buf, int64(b)*4096)
				}
			}()
		}
		wg.Wait()
		s1 := d.Stats()
		t.Logf("g=%d writes=%d commits=%d per=%.1f lastCommit=%v", g, s1.FirstWrites-s0.FirstWrites, s1.MarkCommits-s0.MarkCommits, float64(s1.FirstWrites-s0.FirstWrites)/float64(s1.MarkCommits-s0.MarkCommits), time.Duration(d.lastCommit.Load()))
	}
	d.Close()
}
