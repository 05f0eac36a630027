package workload

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/internal/benchhook"
)

// ---------------------------------------------------------------------
// Point-in-time snapshots: the cost of the copies.

// PITBlocks is the size of the point-in-time figure's origin, in blocks
// (256 MiB: the whole-image reads are long enough for the kernel's
// readahead to reach its stride on each file the snapshot reads).
const PITBlocks = 65536

// PITResult compares writes and reads under a held point-in-time
// snapshot with raw ones, per 4 KiB write and per whole-image read.
type PITResult struct {
	RawNs, FirstNs, LaterNs float64 // per write, median over rounds
	FirstRatio, LaterRatio  float64 // medians of the per-round ratios
	Rounds, Ops             int

	// Whole-image reads of the snapshot and of the origin file, with
	// half the rounds' blocks copied (Part) and with all of them (Full,
	// after every round).
	Part, Full  PITRead
	Reads       int    // paired reads of each
	ColdReads   bool   // the reads came from the disk, not the page cache
	FirstWrites uint64 // must stay 0: every timed write found its block marked
}

// PITRead compares whole-image reads.
type PITRead struct {
	SnapMiBs, RawMiBs float64 // medians
	Ratio             float64 // snapshot / raw throughput, median of the paired reads
	Copied            uint64  // blocks in the difference store when the image was read
}

// MeasurePointInTime holds a point-in-time snapshot over a 256 MiB origin
// file, with a file as its difference store, and times, in alternating
// rounds of ops writes each: a raw 4 KiB write to the origin file (to the
// blocks of the round before, which the snapshot no longer reads from it);
// the first write to a block since the snapshot (the old
// content copied to the difference store, then the write); a second write
// to the same blocks (the fast path). Every block is marked in the
// snapshot's era beforehand, so that neither device write waits for a
// mark commit: the figure times the copy, not the era's marks. It then
// reads the whole image through the snapshot and from the origin file,
// reads times, alternating.
func MeasurePointInTime(dir string, rounds, ops, reads int) (PITResult, error) {
	if rounds*ops > PITBlocks {
		return PITResult{}, fmt.Errorf("%d rounds of %d writes need more than %d blocks", rounds, ops, PITBlocks)
	}
	sd, err := subdir(dir, "pit")
	if err != nil {
		return PITResult{}, err
	}
	r, err := NewRig(sd, RigConfig{NrBlocks: PITBlocks, Origin: FileOrigin})
	if err != nil {
		return PITResult{}, err
	}
	defer r.Close()
	size := int64(PITBlocks) * BlockBytes
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i * 7)
	}
	if _, err := r.Dev.WriteAt(img, 0); err != nil { // allocated, in the page cache
		return PITResult{}, err
	}
	diffFile, err := CreateFile(filepath.Join(sd, "diff"), 0)
	if err != nil {
		return PITResult{}, err
	}
	defer os.Remove(diffFile.Name())
	defer diffFile.Close()
	// Preallocated, as a difference store should be (blksnap's is too):
	// copies appended a block at a time otherwise end up scattered on
	// the disk, and reading them back is slower.
	if err := preallocate(diffFile, size); err != nil {
		return PITResult{}, err
	}

	snap, err := r.Dev.HoldPointInTime(diffFile, era.PointInTimeOptions{})
	if err != nil {
		return PITResult{}, err
	}
	defer snap.Release()
	if err := benchhook.MarkOnly(r.Dev, 0, PITBlocks); err != nil {
		return PITResult{}, err
	}
	before := r.Dev.Stats()

	buf := make([]byte, BlockBytes)
	for i := range buf {
		buf[i] = byte(i)
	}
	// Warm up the raw path and the fast path on the last blocks, which
	// the rounds never reach.
	warm := uint64(PITBlocks - 64)
	for b := warm; b < PITBlocks; b++ {
		if _, err := r.OriginFile.WriteAt(buf, int64(b)*BlockBytes); err != nil {
			return PITResult{}, err
		}
		if _, err := r.Dev.WriteAt(buf, int64(b)*BlockBytes); err != nil {
			return PITResult{}, err
		}
	}
	timeRun := func(base int, w io.WriterAt) (float64, error) {
		t0 := time.Now()
		for i := range ops {
			b := int64(base + i)
			if b < 0 { // before the first round: the warm-up blocks
				b = int64(warm) + (b+int64(ops))%(PITBlocks-int64(warm))
			}
			if _, err := w.WriteAt(buf, b*BlockBytes); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(ops), nil
	}
	// Whole-image reads, 1 MiB at a time, from the disk: a backup reads
	// an image that is not in the page cache, and the page cache holds
	// the difference store's pages, written a block at a time, in smaller
	// pieces than the origin's.
	chunk := make([]byte, 1<<20)
	readAll := func(ra io.ReaderAt) (float64, error) {
		for _, f := range []*os.File{r.OriginFile, diffFile} {
			if err := dropCache(f); err != nil {
				return 0, err
			}
		}
		t0 := time.Now()
		var err error
		for off := int64(0); off < size; off += int64(len(chunk)) {
			if _, err = ra.ReadAt(chunk, off); err != nil && err != io.EOF {
				return 0, err
			}
		}
		return float64(size) / (1 << 20) / time.Since(t0).Seconds(), nil
	}
	measureReads := func() (PITRead, error) {
		if _, err := readAll(snap); err != nil { // warm up
			return PITRead{}, err
		}
		var sr, rr, ratios []float64
		for i := range reads {
			var s, o float64
			if i%2 == 0 {
				if s, err = readAll(snap); err == nil {
					o, err = readAll(r.OriginFile)
				}
			} else {
				if o, err = readAll(r.OriginFile); err == nil {
					s, err = readAll(snap)
				}
			}
			if err != nil {
				return PITRead{}, err
			}
			sr, rr, ratios = append(sr, s), append(rr, o), append(ratios, s/o)
		}
		return PITRead{SnapMiBs: Median(sr), RawMiBs: Median(rr), Ratio: Median(ratios), Copied: r.Dev.Stats().SnapshotCopied}, nil
	}
	var part PITRead // after half the rounds
	var raws, firsts, laters, fr, lr []float64
	for round := range rounds {
		base := round * ops
		var raw, first, later float64
		steps := []func() error{
			// Raw writes go to the blocks of the round before, copied
			// already: the snapshot no longer reads them from the origin.
			func() (err error) { raw, err = timeRun(base-ops, r.OriginFile); return },
			func() (err error) { first, err = timeRun(base, r.Dev); return },
			func() (err error) { later, err = timeRun(base, r.Dev); return },
		}
		order := []int{0, 1, 2}
		if round%2 == 1 {
			order = []int{1, 2, 0} // the first write must come before the later one
		}
		for _, k := range order {
			if err := steps[k](); err != nil {
				return PITResult{}, err
			}
		}
		raws, firsts, laters = append(raws, raw), append(firsts, first), append(laters, later)
		fr, lr = append(fr, first/raw), append(lr, later/raw)
		if round+1 == rounds/2 {
			var err error
			if part, err = measureReads(); err != nil {
				return PITResult{}, err
			}
		}
	}
	res := PITResult{
		RawNs: Median(raws), FirstNs: Median(firsts), LaterNs: Median(laters),
		FirstRatio: Median(fr), LaterRatio: Median(lr), Rounds: rounds, Ops: ops,
		FirstWrites: r.Dev.Stats().FirstWrites - before.FirstWrites,
	}
	if err := snap.Err(); err != nil {
		return PITResult{}, err
	}

	res.Full, err = measureReads()
	if err != nil {
		return PITResult{}, err
	}
	res.Part = part
	res.Reads, res.ColdReads = reads, coldReads
	return res, nil
}
