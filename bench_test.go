package era_test

// Benchmarks of the speed targets (issue 7), one per figure. They run only
// with -bench, on real files in b.TempDir() (so commits really fsync), and
// share their workloads with `go run ./bench`, which runs the figures side
// by side and prints the table of ratios:
//
//	go test -run '^$' -bench . -benchtime 2s .
//	go test -run '^$' -bench 'FirstWrites|Bolt|RawWriteSync' .
//
// Custom metrics: commits/firstwrite and metablocks/commit (metadata blocks
// written per commit, superblock included) on the first-write benchmarks;
// p99-ns and ratio on the digest and query-while-writing ones; bits/block
// on the heap one.

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/era-go/era/bench/workload"
)

// BenchmarkWriteAtMarked: a 4 KiB WriteAt to a block already marked in the
// current era (one bit test, then the origin write). Compare with
// BenchmarkWriteAtRaw: the target is ≤ 1.05× its time.
func BenchmarkWriteAtMarked(b *testing.B) {
	m, err := workload.NewMarkedRig(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	before := m.Dev.Stats().FirstWrites
	b.SetBytes(workload.BlockBytes)
	b.ResetTimer()
	for i := range b.N {
		if err := m.Tracked(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if fw := m.Dev.Stats().FirstWrites - before; fw != 0 {
		b.Fatalf("%d writes needed a mark", fw)
	}
}

// BenchmarkWriteAtRaw: the same 4 KiB writes straight to the origin file.
func BenchmarkWriteAtRaw(b *testing.B) {
	m, err := workload.NewMarkedRig(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.SetBytes(workload.BlockBytes)
	b.ResetTimer()
	for i := range b.N {
		if err := m.Raw(i); err != nil {
			b.Fatal(err)
		}
	}
}

func runSubject(b *testing.B, s *workload.Subject, err error) {
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	res, err := s.Run(int64(b.N))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if s.Dev != nil {
		b.ReportMetric(res.CommitsPerWrite, "commits/firstwrite")
		b.ReportMetric(res.BlocksPerCommit, "metablocks/commit")
		b.ReportMetric(res.SyncsPerCommit, "syncs/commit")
	}
}

// BenchmarkFirstWrites: durable first writes (each to a block not yet
// marked: the mark is committed and synced before the origin write) by 1,
// 16 and 64 goroutines sharing commits. ns/op is the inverse of the
// throughput; the target is 64 goroutines ≥ 8× the throughput of 1.
func BenchmarkFirstWrites(b *testing.B) {
	for _, g := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			s, err := workload.NewEraSubject(b.TempDir(), g)
			runSubject(b, s, err)
		})
	}
}

// BenchmarkBolt: the same first writes through a bbolt tracker (block →
// era, one durable transaction per first write with db.Update, or shared
// with db.Batch), 1 and 16 writers. Targets: era ≥ 3× the better of the
// two at 16 writers, no slower at 1.
func BenchmarkBolt(b *testing.B) {
	for _, batch := range []bool{false, true} {
		for _, g := range []int{1, 16} {
			name := "update"
			if batch {
				name = "batch"
			}
			b.Run(fmt.Sprintf("%s/writers=%d", name, g), func(b *testing.B) {
				s, err := workload.NewBoltSubject(b.TempDir(), g, batch)
				runSubject(b, s, err)
			})
		}
	}
}

// BenchmarkRawWriteSync: a raw 4 KiB write + fsync, one writer: the floor
// the 1-writer first writes are reported against.
func BenchmarkRawWriteSync(b *testing.B) {
	s, err := workload.NewRawSubject(b.TempDir())
	runSubject(b, s, err)
}

// BenchmarkWrittenSince: WrittenSince over 1,000,000 blocks after digest,
// on the open device, on a fresh OpenView of the metadata file (with the
// answer rendered as era_invalidate's XML), and era_invalidate 0.9.0 run
// on the same file. Target: ≥ 2× faster than era_invalidate.
func BenchmarkWrittenSince(b *testing.B) {
	q, err := workload.NewQueryFixture(b.TempDir(), workload.QueryBlocks, 8)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	b.Run("device", func(b *testing.B) {
		for range b.N {
			if _, err := q.Device(); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := q.CloseDevice(); err != nil {
		b.Fatal(err)
	}
	b.Run("view", func(b *testing.B) {
		for range b.N {
			if _, err := q.View(); err != nil {
				b.Fatal(err)
			}
		}
	})
	var ours bytes.Buffer
	b.Run("view+xml", func(b *testing.B) {
		for range b.N {
			if err := q.ViewXML(&ours); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("era_invalidate", func(b *testing.B) {
		tool := workload.FindEraInvalidate()
		if tool == "" {
			b.Skip("era_invalidate not installed")
		}
		var out []byte
		for range b.N {
			if out, err = q.Tool(tool); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(out, ours.Bytes()) {
			b.Fatal("era_invalidate and WrittenSince disagree")
		}
	})
}

// BenchmarkCheckpoint: Checkpoint latency for nr_blocks 2^10 to 2^24, each
// after a few first writes, with the previous era digested. Target: flat.
func BenchmarkCheckpoint(b *testing.B) {
	for lg := 10; lg <= 24; lg += 2 {
		b.Run(fmt.Sprintf("nr_blocks=2^%d", lg), func(b *testing.B) {
			n := uint64(1) << lg
			r, err := workload.NewRig(b.TempDir(), workload.RigConfig{NrBlocks: n, Origin: workload.NullOrigin})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			perm := workload.NewPerm(n)
			var written uint64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if _, err := workload.RunWrites(r.Dev, perm, 4, 8, 0, false); err != nil {
					b.Fatal(err)
				}
				if err := workload.WaitDigest(r.Dev, time.Minute); err != nil {
					b.Fatal(err)
				}
				w0 := r.Dev.Stats().MetadataWrites
				b.StartTimer()
				if _, err := r.Dev.Checkpoint(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				written += r.Dev.Stats().MetadataWrites - w0
			}
			b.ReportMetric(float64(written)/float64(b.N), "metablocks/checkpoint")
		})
	}
}

// BenchmarkWriterDuringDigest: one writer's first-write latency while a
// full 2^20-block writeset is digested, against the same writer once the
// digest is done. One op is one round (mark everything, checkpoint, write
// through the digest and as long again after). Target: p99 ratio ≤ 2.
func BenchmarkWriterDuringDigest(b *testing.B) {
	res, err := workload.MeasureDigestLatency(b.TempDir(), 1<<20, b.N, 200)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(res.P99With.Nanoseconds()), "p99-digest-ns")
	b.ReportMetric(float64(res.P99Without.Nanoseconds()), "p99-idle-ns")
	b.ReportMetric(res.Ratio, "p99-ratio")
}

// BenchmarkFirstWritesWhileQuerying: one writer's first-write latency on
// a 2^24-block device while another goroutine runs WrittenSince back to
// back, against the same writer alone and beside a goroutine spinning on
// the CPU (the control). One op is one round of three 300 ms slices.
// Target: p99 ratio (with queries / alone) ≤ 2.
func BenchmarkFirstWritesWhileQuerying(b *testing.B) {
	res, err := workload.MeasureQueryLoad(b.TempDir(), workload.QueryLoadBlocks, 1, b.N, 300*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(res.P99With.Nanoseconds()), "p99-query-ns")
	b.ReportMetric(float64(res.P99Without.Nanoseconds()), "p99-idle-ns")
	b.ReportMetric(res.Ratio, "p99-ratio")
	b.ReportMetric(res.BusyRatio, "p99-busy-ratio")
	b.ReportMetric(res.QueriesPerSec, "queries/s")
}

// BenchmarkHeap: the live heap a 2^24-block device holds (default cache),
// in bits per block and against the budget of 2 bits per block + the
// cache. One op is one device opened, used and measured.
func BenchmarkHeap(b *testing.B) {
	var res workload.HeapResult
	for range b.N {
		var err error
		if res, err = workload.MeasureHeap(b.TempDir(), 1<<24, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.BitsPerBlock, "bits/block")
	b.ReportMetric(float64(res.HeapBytes)/float64(res.BudgetBytes), "of-budget")
}
