package main

import (
	"fmt"
	"math/bits"
	"strings"
	"text/tabwriter"

	"github.com/era-go/era"
	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/btree"
	"github.com/era-go/era/spacemap"
	"github.com/era-go/era/transaction"
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

// statusInfo is what era status shows.
type statusInfo struct {
	sb        *era.Superblock
	sm        spacemap.Root
	writesets []uint32 // eras of the archived writesets
	marked    uint64   // bits set in the current writeset
	snapEra   uint32   // current era of the snapshot, if one is held
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
	f, _, err := openView(path, false) // checks the superblock and its roots
	if err != nil {
		return c.fail(err)
	}
	defer f.Close()
	size, err := storeSize(f)
	if err != nil {
		return c.fail(fileError(path, err))
	}
	st, err := readStatus(f, uint64(size)/block.Size)
	if err != nil {
		return c.fail(fileError(path, err))
	}
	if st.sb.MetadataSnap != 0 {
		if sv, err := era.OpenSnapshot(f); err == nil {
			st.snapEra = sv.CurrentEra()
		} else {
			return c.fail(fileError(path, err))
		}
	}

	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	sb := st.sb
	row("metadata", "%s", path)
	if id := (era.ChangeID{UUID: sb.UUID, Era: sb.CurrentEra}); sb.UUID != ([16]byte{}) {
		row("change ID", "%s", id)
	} else {
		row("change ID", "none (no identity: formatted by the kernel or restored without one; era gives one at the next Open)")
	}
	row("current era", "%d", sb.CurrentEra)
	row("data block size", "%d sectors (%s)", sb.DataBlockSize, humanBytes(uint64(sb.DataBlockSize)*512))
	row("data blocks", "%d (%s)", sb.NrBlocks, humanBytes(uint64(sb.NrBlocks)*uint64(sb.DataBlockSize)*512))
	row("metadata blocks", "%d used of %d (%s of %s)", st.sm.NrAllocated, st.sm.NrBlocks,
		humanBytes(st.sm.NrAllocated*block.Size), humanBytes(st.sm.NrBlocks*block.Size))
	need := era.MetadataSize(uint64(sb.NrBlocks), 0)
	row("metadata sizing", "%s for any workload at the default backlog bound (%d blocks; %s)", humanBytes(uint64(need)), need/block.Size,
		map[bool]string{true: "this store is large enough", false: "sparse writes need far less"}[uint64(need/block.Size) <= st.sm.NrBlocks])
	if sb.MetadataSnap != 0 {
		row("metadata snapshot", "held at block %d (taken when era %d began)", sb.MetadataSnap, st.snapEra)
	} else {
		row("metadata snapshot", "none")
	}
	row("undigested writesets", "%s: the digest backlog (bounded by the device's MaxBacklog, default %d)", erasList(st.writesets), era.DefaultMaxBacklog)
	if cur := sb.CurrentWriteset; cur.Root != 0 {
		row("current writeset", "era %d: %d of %d blocks marked", sb.CurrentEra, st.marked, cur.NrBits)
	} else {
		row("current writeset", "none")
	}
	row("dm status", "%s", era.Status{
		MetadataBlockSize:   sb.MetadataBlockSize,
		UsedMetadataBlocks:  st.sm.NrAllocated,
		TotalMetadataBlocks: st.sm.NrBlocks,
		CurrentEra:          sb.CurrentEra,
		HeldRoot:            sb.MetadataSnap,
		Held:                sb.MetadataSnap != 0,
	})
	if err := tw.Flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// readStatus reads the superblock, the space-map root, the writeset tree
// and the current writeset of the metadata in store (nr blocks).
func readStatus(store block.Store, nr uint64) (*statusInfo, error) {
	bm := block.NewManager(store, nr, 0)
	data, err := bm.Read(0, block.Superblock)
	if err != nil {
		return nil, err
	}
	sb, err := era.DecodeSuperblock(0, data)
	if err != nil {
		return nil, err
	}
	root, err := spacemap.DecodeRoot(sb.SpaceMapRoot[:])
	if err != nil {
		return nil, err
	}
	st := &statusInfo{sb: sb, sm: root}
	tm := transaction.NewReadOnly(bm)
	err = btree.New(tm, btree.ValueType{Size: 12}).Iterate(sb.WritesetTreeRoot, 0, func(key uint64, _ []byte) error {
		st.writesets = append(st.writesets, uint32(key))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("writeset tree: %w", err)
	}
	if cur := sb.CurrentWriteset; cur.Root != 0 {
		err := array.NewBitset(tm).Words(cur.Root, uint64(cur.NrBits), func(_ uint64, w uint64) error {
			st.marked += uint64(bits.OnesCount64(w))
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("current writeset: %w", err)
		}
	}
	return st, nil
}

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
