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
	}, {
		Figure:  "whole-image read of the point-in-time snapshot (1 MiB reads)",
		Ours:    fmt.Sprintf("%.0f MiB/s", p.SnapReadMiBs),
		Against: fmt.Sprintf("read of the origin file: %.0f MiB/s", p.RawReadMiBs),
		Ratio:   p.ReadRatio, Target: "≥ 0.9× the throughput", Pass: pass(p.ReadRatio >= 0.9),
		Note: fmt.Sprintf("%d of %d blocks copied; median of %d paired reads; page cache dropped before each: %s", p.Copied, workload.PITBlocks, p.Reads, yes(p.ColdReads)),
	}}
}
