package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/era-go/era"
)

var statusCommand = &command{
	name:     "status",
	synopsis: "status (META | --control PATH)",
	summary:  "show the era, sizes, snapshot and the dm status line",
	help: `Shows, for the era metadata on the device or file META: the current era,
the data block size, the number of data blocks tracked, the metadata blocks
in use, the metadata snapshot held if any, the archived writesets not yet
digested into the era array (the digest backlog), the current writeset,
the change ID of the current era, the metadata size the sizing rule asks
for (era.MetadataSize), and the line the
kernel's dm-era target reports for "dmsetup status":
<metadata block size> <used>/<total metadata blocks> <current era> <held snapshot or ->.

With --control PATH it shows instead the status of the era serve listening
on that control socket: the URI served, the current era and its change ID,
the connections, the commits and the dm status line.

Options:
      --control PATH    ask a running era serve (its --control socket)
  -h, --help            show this help
  -V, --version         show the version
`,
	run: runStatus,
}

func runStatus(c *cmdEnv, args []string) int {
	if statusControlled(args) { // era status --control PATH: ask era serve
		return runStatusControl(c, args)
	}
	fs, help, ver := c.flags()
	ops, status, done := c.parse(fs, help, ver, args, 1)
	if done {
		return status
	}
	path := ops[0]
	f, v, err := openView(path, false) // checks the superblock and its roots
	if err != nil {
		return c.fail(err)
	}
	defer f.Close()
	st, err := v.Status()
	if err != nil {
		return c.fail(fileError(path, err))
	}

	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("metadata", "%s", path)
	if st.UUID != ([16]byte{}) {
		row("change ID", "%s", era.ChangeID{UUID: st.UUID, Era: st.CurrentEra})
	} else {
		row("change ID", "none (no identity: formatted by the kernel or restored without one; era gives one at the next Open)")
	}
	row("current era", "%d", st.CurrentEra)
	row("data block size", "%d sectors (%s)", st.BlockSectors, humanBytes(uint64(st.BlockSectors)*512))
	row("data blocks", "%d (%s)", st.NrBlocks, humanBytes(st.NrBlocks*uint64(st.BlockSectors)*512))
	used, total := st.UsedMetadataBlocks, st.TotalMetadataBlocks
	row("metadata blocks", "%d used of %d (%s of %s)", used, total, humanBytes(used*blockSize), humanBytes(total*blockSize))
	need := uint64(era.MetadataSize(st.NrBlocks, 0))
	fits := "sparse writes need far less"
	if need/blockSize <= total {
		fits = "this store is large enough"
	}
	row("metadata sizing", "%s for any workload at the default backlog bound (%d blocks; %s)", humanBytes(need), need/blockSize, fits)
	if st.Held {
		row("metadata snapshot", "held at block %d (taken when era %d began)", st.HeldRoot, st.SnapshotEra)
	} else {
		row("metadata snapshot", "none")
	}
	row("undigested writesets", "%s: the digest backlog (bounded by the device's MaxBacklog, default %d)", erasList(st.Writesets), era.DefaultMaxBacklog)
	if st.Current {
		row("current writeset", "era %d: %d of %d blocks marked", st.CurrentEra, st.CurrentMarked, st.CurrentBits)
	} else {
		row("current writeset", "none")
	}
	row("dm status", "%s", st.Status)
	if err := tw.Flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// blockSize is the metadata block size in bytes.
const blockSize = 4096

// erasList describes a list of eras: "none", "1 (era 4)", "3 (eras 2-4)".
func erasList(eras []uint32) string {
	if len(eras) == 0 {
		return "none"
	}
	var parts []string
	for i := 0; i < len(eras); {
		j := i
		for j+1 < len(eras) && eras[j+1] == eras[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", eras[i], eras[j]))
		} else {
			parts = append(parts, fmt.Sprint(eras[i]))
		}
		i = j + 1
	}
	word := "era"
	if len(eras) > 1 {
		word = "eras"
	}
	return fmt.Sprintf("%d (%s %s)", len(eras), word, strings.Join(parts, ", "))
}

// humanBytes renders n bytes with a binary unit.
func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	f := float64(n)
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f == float64(uint64(f)) {
		return fmt.Sprintf("%d %s", uint64(f), units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
