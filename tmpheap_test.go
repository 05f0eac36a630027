package era

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"runtime/pprof"
)

type nullStore struct{ n int64 }

func (s nullStore) Size() int64                               { return s.n }
func (s nullStore) ReadAt(p []byte, off int64) (int, error)  { clear(p); return len(p), nil }
func (s nullStore) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

func heapNow() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestTmpHeapInternal(t *testing.T) {
	runtime.MemProfileRate = 512
	f, _ := os.Create(filepath.Join(t.TempDir(), "m"))
	f.Truncate(300 << 20)
	base := heapNow()
	d, err := Open(f, nullStore{4096 << 24}, Config{BlockSectors: 8})
	if err != nil {
		t.Fatal(err)
	}
	for d.Stats().Digesting {
		time.Sleep(time.Millisecond)
	}
	t.Log("after open", heapNow()-base, d.md.tm.Dirty())
	d.bm.Forget()
	t.Log("after forget", heapNow()-base)
	pf, _ := os.Create("/tmp/heap2.prof")
	pprof.Lookup("heap").WriteTo(pf, 0)
	pf.Close()
	runtime.KeepAlive(d)
}
