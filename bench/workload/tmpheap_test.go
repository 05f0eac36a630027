package workload

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

func TestTmpHeap(t *testing.T) {
	runtime.MemProfileRate = 512
	dir := t.TempDir()
	var keep *Rig
	_ = keep
	h, err := MeasureHeapProfile(dir, 1<<24, 0, func() {
		f, _ := os.Create("/tmp/heap.prof")
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	})
	t.Log(h, err)
}
