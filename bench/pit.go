package main

import (
	"fmt"

	"github.com/era-go/era/bench/workload"
)

// pitRows are the point-in-time snapshot's rows of the table.
func pitRows(p *workload.PITResult) []Row {
	if p == nil {
		return nil
	}
	note := fmt.Sprintf("median of %d alternating rounds of %d writes; every block marked beforehand", p.Rounds, p.Ops)
	return []Row{{
		Figure:  "4 KiB first write to a block while a point-in-time snapshot is held (copy + write)",
		Ours:    ns(p.FirstNs),
		Against: "raw WriteAt: " + ns(p.RawNs),
		Ratio:   p.FirstRatio, Target: "≤ 3× the time", Pass: pass(p.FirstRatio <= 3 && p.FirstWrites == 0),
		Note: note,
	}, {
		Figure:  "4 KiB later write to a copied block while the snapshot is held",
		Ours:    ns(p.LaterNs),
		Against: "raw WriteAt: " + ns(p.RawNs),
		Ratio:   p.LaterRatio, Target: "≤ 1.05× the time", Pass: pass(p.LaterRatio <= 1.05 && p.FirstWrites == 0),
		Note: note,
	}, readRow(p, p.Part, false), readRow(p, p.Full, true)}
}

// readRow is a whole-image read figure: with a target when target.
func readRow(p *workload.PITResult, r workload.PITRead, target bool) Row {
	share := 100 * float64(r.Copied) / workload.PITBlocks
	row := Row{
		Figure:  fmt.Sprintf("whole-image read of the point-in-time snapshot, %.0f%% of its blocks copied (1 MiB reads)", share),
		Ours:    fmt.Sprintf("%.0f MiB/s", r.SnapMiBs),
		Against: fmt.Sprintf("read of the origin file: %.0f MiB/s", r.RawMiBs),
		Ratio:   r.Ratio, Target: "reported",
		Note: fmt.Sprintf("%d of %d blocks in a preallocated difference store file; median of %d paired reads; page cache dropped before each: %s",
			r.Copied, workload.PITBlocks, p.Reads, yes(p.ColdReads)),
	}
	if target {
		row.Target, row.Pass = "≥ 0.9× the throughput", pass(r.Ratio >= 0.9)
	}
	return row

}
