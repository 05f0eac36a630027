package era

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/era-go/era/internal/kvm"
	"github.com/era-go/era/internal/tooltest"
)

// altModel is what one device of the alternation test must report: the
// era each block was last written in (0: never), the origin's bytes, the
// current era and whether a metadata snapshot is held.
//
// Resizes follow the two sides' rules. Blocks the library adds to an
// existing device count as written in the era its Open began; blocks the
// kernel adds count as never written. A block the kernel adds back after
// a shrink dropped it while it had an era may reappear with that old era
// (the kernel digests an archived writeset lazily, and a writeset made
// before the shrink still holds the bit), so such a block is "loose":
// its reported era may be anything at or above the model's until it is
// written again. Every other block must be reported exactly.
type altModel struct {
	blockBytes int
	size       int64 // origin bytes
	era        []uint32
	loose      []bool
	data       []byte
	current    uint32
	snapHeld   bool
	formatted  bool
	dropped    map[uint64]bool // blocks a shrink dropped while they had an era
}

func (m *altModel) nrBlocks() int { return len(m.era) }

// resize changes the origin size. byLibrary says which side sees it.
func (m *altModel) resize(size int64, byLibrary bool, openEra uint32) {
	old := len(m.era)
	n := int((size + int64(m.blockBytes) - 1) / int64(m.blockBytes))
	for b := n; b < old; b++ {
		if m.era[b] != 0 || m.loose[b] {
			m.dropped[uint64(b)] = true
		}
	}
	if n < old {
		m.era, m.loose = m.era[:n], m.loose[:n]
	}
	for b := old; b < n; b++ {
		e, loose := uint32(0), false
		if byLibrary {
			e = openEra
		} else {
			loose = m.dropped[uint64(b)]
		}
		m.era, m.loose = append(m.era, e), append(m.loose, loose)
	}
	if size < int64(len(m.data)) {
		m.data = m.data[:size]
	} else {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	m.size = size
}

func (m *altModel) write(p []byte, off int64) {
	copy(m.data[off:], p)
	for b := off / int64(m.blockBytes); b <= (off+int64(len(p))-1)/int64(m.blockBytes); b++ {
		m.era[b], m.loose[b] = m.current, false
	}
}

// summary is one line about the model for the test log.
func (m *altModel) summary() string {
	perEra := map[uint32]int{}
	written, loose := 0, 0
	for b, e := range m.era {
		if e != 0 {
			written++
			perEra[e]++
		}
		if m.loose[b] {
			loose++
		}
	}
	eras := make([]string, 0, len(perEra))
	for e := uint32(1); e <= m.current; e++ {
		if perEra[e] > 0 {
			eras = append(eras, fmt.Sprintf("%d:%d", e, perEra[e]))
		}
	}
	snap := "none"
	if m.snapHeld {
		snap = "held"
	}
	return fmt.Sprintf("%d blocks (%d bytes), era %d, %d written [era:blocks %s], %d loose, snapshot %s",
		len(m.era), m.size, m.current, written, strings.Join(eras, " "), loose, snap)
}

// eraReader is what the checks need from a Device or a View.
type eraReader interface {
	WrittenSince(n uint32) ([]Range, error)
	BlockEra(b uint64) (uint32, error)
}

// check compares r with the model: BlockEra of every block, and
// WrittenSince of every era up to the current one, which must list
// exactly the blocks whose BlockEra is at or above it. It returns how
// many loose blocks were reported with an era the model does not give.
func (m *altModel) check(t *testing.T, who string, r eraReader) (resurrected int) {
	t.Helper()
	got := make([]uint32, len(m.era))
	for b := range m.era {
		e, err := r.BlockEra(uint64(b))
		if err != nil {
			t.Fatalf("%s: BlockEra(%d): %v", who, b, err)
		}
		got[b] = e
		if e > m.current {
			t.Fatalf("%s: block %d in era %d, after the current era %d", who, b, e, m.current)
		}
		if m.loose[b] {
			if e < m.era[b] {
				t.Fatalf("%s: block %d in era %d, model %d (never under-report)", who, b, e, m.era[b])
			}
			if e != m.era[b] {
				resurrected++
			}
		} else if e != m.era[b] {
			t.Fatalf("%s: block %d in era %d, model %d", who, b, e, m.era[b])
		}
	}
	if _, err := r.BlockEra(uint64(len(m.era))); err == nil {
		t.Fatalf("%s: BlockEra past the last block %d succeeded", who, len(m.era)-1)
	}
	if _, err := r.WrittenSince(m.current + 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("%s: WrittenSince(%d) after the current era: %v, want ErrOutOfRange", who, m.current+1, err)
	}
	for n := uint32(0); n <= m.current; n++ {
		ranges, err := r.WrittenSince(n)
		if err != nil {
			t.Fatalf("%s: WrittenSince(%d): %v", who, n, err)
		}
		var want []Range
		for b, e := range got {
			if e < n {
				continue
			}
			if k := len(want); k > 0 && want[k-1].End == uint64(b) {
				want[k-1].End++
			} else {
				want = append(want, Range{uint64(b), uint64(b) + 1})
			}
		}
		if diff := cmp.Diff(want, ranges); diff != "" {
			t.Fatalf("%s: WrittenSince(%d) (-blocks at or above it by BlockEra +reported):\n%s", who, n, diff)
		}
	}
	return resurrected
}

// checkOrigin compares the origin file with the model's bytes.
func (m *altModel) checkOrigin(t *testing.T, who, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(m.data) {
		t.Fatalf("%s: origin of %d bytes, model %d", who, len(got), len(m.data))
	}
	if !bytes.Equal(got, m.data) {
		for i := range got {
			if got[i] != m.data[i] {
				t.Fatalf("%s: origin differs from the model at byte %d (block %d)", who, i, i/m.blockBytes)
			}
		}
	}
}

// altTrack is one device of the alternation: its files and its model.
type altTrack struct {
	sectors      int
	meta, origin string
	m            *altModel
}

// TestKernelAlternation lets the library and the kernel take turns on the
// same metadata, at block sizes of 8, 24 and 128 sectors: in each round
// the library opens the device, writes, checkpoints, takes and drops
// metadata snapshots and closes it; then one guest boot runs dm-era on
// every device with its own random writes (O_DIRECT), checkpoints and
// snapshots, and removes it, except one device per boot that is left
// active at power-off, as in a crash. The origin is resized before most turns, by
// growing and by shrinking, on both sides. After every turn the model is
// checked: the library's answers before Close and era_check after it,
// and after the kernel, era_check, Check, a View, and the origin's bytes.
// ERA_KERNEL_SEED reruns a given seed.
func TestKernelAlternation(t *testing.T) {
	m := kernelMachine(t, kvm.Config{})
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ERA_KERNEL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ERA_KERNEL_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with ERA_KERNEL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	const rounds = 4
	dir := t.TempDir()
	var tracks []*altTrack
	for _, sectors := range []int{8, 24, 128} {
		bb := sectors * 512
		tr := &altTrack{sectors: sectors,
			meta:   filepath.Join(dir, fmt.Sprintf("bs%d.meta", sectors)),
			origin: filepath.Join(dir, fmt.Sprintf("bs%d.origin", sectors)),
			m:      &altModel{blockBytes: bb, dropped: map[uint64]bool{}},
		}
		tempFileAt(t, tr.meta, 4<<20)
		tempFileAt(t, tr.origin, 0)
		tr.m.resize(altSize(rng, bb, 300), false, 0)
		if err := os.Truncate(tr.origin, tr.m.size); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	for round := 0; round <= rounds; round++ {
		for _, tr := range tracks {
			libraryTurn(t, rng, round, tr)
		}
		if round == rounds {
			break // the library has the last word
		}
		kernelTurn(t, rng, m, round, tracks)
	}
}

// altSize picks an origin size of about blocks blocks; one time in three
// the last block is partial (a multiple of 4 KiB short of full).
func altSize(rng *rand.Rand, blockBytes, blocks int) int64 {
	size := int64(blocks * blockBytes)
	if blockBytes > 4096 && rng.IntN(3) == 0 {
		size -= int64(4096 * (1 + rng.IntN(blockBytes/4096-1)))
	}
	return size
}

// altResize picks the next size: growing when grow, else shrinking, by 10
// to 150 blocks, keeping between 50 and 1000 blocks.
func altResize(rng *rand.Rand, m *altModel, grow bool) int64 {
	n := m.nrBlocks()
	d := 10 + rng.IntN(141)
	if grow {
		n = min(n+d, 1000)
	} else {
		n = max(n-d, 50)
	}
	return altSize(rng, m.blockBytes, n)
}

// libraryTurn opens the device (after resizing the origin, except in
// round 0), runs random operations, checks the model and closes.
func libraryTurn(t *testing.T, rng *rand.Rand, round int, tr *altTrack) {
	t.Helper()
	m := tr.m
	who := fmt.Sprintf("round %d, library, block size %d", round, tr.sectors)
	resized := ""
	if round > 0 {
		old := m.nrBlocks()
		size := altResize(rng, m, round%2 == 1)
		if err := os.Truncate(tr.origin, size); err != nil {
			t.Fatal(err)
		}
		m.resize(size, true, m.current+1)
		resized = fmt.Sprintf(", resized %d -> %d blocks", old, m.nrBlocks())
	}
	metaF, err := os.OpenFile(tr.meta, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer metaF.Close()
	originF, err := os.OpenFile(tr.origin, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer originF.Close()
	d := kernelOpen(t, metaF, originF, uint32(tr.sectors), !m.formatted)
	m.current++
	if !m.formatted {
		m.current, m.formatted = 1, true
	}
	if got := d.CurrentEra(); got != m.current {
		t.Fatalf("%s: opened at era %d, model %d", who, got, m.current)
	}
	var ops []string
	count := map[string]int{}
	for i := range 40 {
		switch p := rng.IntN(100); {
		case p < 75:
			off := rng.Int64N(m.size)
			n := 1 + rng.IntN(min(m.blockBytes+512, int(m.size-off)))
			pat := fmt.Sprintf("r%dL%d.%d|", round, tr.sectors, i)
			buf := []byte(strings.Repeat(pat, n/len(pat)+1)[:n])
			if _, err := d.WriteAt(buf, off); err != nil {
				t.Fatalf("%s: WriteAt(%d bytes at %d): %v", who, n, off, err)
			}
			m.write(buf, off)
			count["write"]++
		case p < 87:
			e, err := d.Checkpoint()
			if err != nil {
				t.Fatalf("%s: Checkpoint: %v", who, err)
			}
			m.current++
			if e != m.current {
				t.Fatalf("%s: Checkpoint began era %d, model %d", who, e, m.current)
			}
			ops = append(ops, fmt.Sprintf("checkpoint(%d)", m.current))
		case p < 94:
			if m.snapHeld {
				if _, err := d.TakeSnapshot(); !errors.Is(err, ErrSnapshotExists) {
					t.Fatalf("%s: second snapshot: %v, want ErrSnapshotExists", who, err)
				}
				ops = append(ops, "snap(refused)")
				continue
			}
			e, err := d.TakeSnapshot()
			if err != nil {
				t.Fatalf("%s: TakeSnapshot: %v", who, err)
			}
			m.current++
			if e != m.current {
				t.Fatalf("%s: TakeSnapshot began era %d, model %d", who, e, m.current)
			}
			m.snapHeld = true
			ops = append(ops, fmt.Sprintf("snap(%d)", m.current))
		default:
			if !m.snapHeld {
				continue
			}
			if err := d.DropSnapshot(); err != nil {
				t.Fatalf("%s: DropSnapshot: %v", who, err)
			}
			m.snapHeld = false
			ops = append(ops, "drop")
		}
		if i == 20 {
			m.check(t, who+" (midway)", d)
		}
	}
	m.check(t, who, d)
	if err := d.Close(); err != nil {
		t.Fatalf("%s: Close: %v", who, err)
	}
	if out, stderr, err := tooltest.Try(t, "era_check", tr.meta); err != nil {
		t.Fatalf("%s: era_check after Close: %v\n%s%s", who, err, out, stderr)
	}
	m.checkOrigin(t, who, tr.origin)
	t.Logf("%s%s: %d writes, %s", who, resized, count["write"], strings.Join(ops, " "))
	t.Logf("  model: %s", m.summary())
}

// kernelTurn resizes the origins, then boots one guest that runs a random
// scenario on every track, and checks what the kernel left.
func kernelTurn(t *testing.T, rng *rand.Rand, machine *kvm.Machine, round int, tracks []*altTrack) {
	t.Helper()
	var script strings.Builder
	var disks []kvm.Disk
	type expect struct {
		startEra, endEra uint32
		snapHeld         bool
		resized, ops     string
	}
	exp := make([]expect, len(tracks))
	for i, tr := range tracks {
		m := tr.m
		old := m.nrBlocks()
		size := altResize(rng, m, round%2 == 0)
		if err := os.Truncate(tr.origin, size); err != nil {
			t.Fatal(err)
		}
		m.resize(size, false, 0)
		exp[i].resized = fmt.Sprintf("resized %d -> %d blocks", old, m.nrBlocks())
		name := fmt.Sprintf("t%d", tr.sectors)
		dev := "/dev/mapper/" + name
		fmt.Fprintf(&script, "era_create %s %s %s %d\nera_status %s\n",
			name, guestDisk(2*i), guestDisk(2*i+1), tr.sectors, name)
		disks = append(disks, kvm.Disk{Path: tr.meta}, kvm.Disk{Path: tr.origin})
		m.current++
		exp[i].startEra = m.current
		var ops []string
		writes := 0
		// Only blocks whose first 4 KiB lie inside the origin.
		full := int((m.size - 4096) / int64(m.blockBytes))
		for j := range 16 {
			switch p := rng.IntN(100); {
			case p < 70:
				b := rng.IntN(full + 1)
				tag := fmt.Sprintf("r%dK%d.%d", round, tr.sectors, j)
				fmt.Fprintf(&script, "write_block %s %d %d %s\n", dev, b, tr.sectors, tag)
				m.write(bytes.Repeat([]byte(tag+"\n"), 4096/len(tag)+1)[:4096], int64(b*m.blockBytes))
				writes++
			case p < 85:
				fmt.Fprintf(&script, "era_message %s checkpoint\n", name)
				m.current++
				ops = append(ops, fmt.Sprintf("checkpoint(%d)", m.current))
			case p < 93:
				if m.snapHeld {
					continue
				}
				fmt.Fprintf(&script, "era_message %s take_metadata_snap\n", name)
				m.current++
				m.snapHeld = true
				ops = append(ops, fmt.Sprintf("snap(%d)", m.current))
			default:
				if !m.snapHeld {
					continue
				}
				fmt.Fprintf(&script, "era_message %s drop_metadata_snap\n", name)
				m.snapHeld = false
				ops = append(ops, "drop")
			}
		}
		fmt.Fprintf(&script, "era_status %s\n", name)
		// One track in each round is left active when the guest powers
		// off, as in a crash: a first write to a block in an era returns
		// only once its mark is committed, so nothing may be lost, and
		// the next Open archives the writeset the superblock still
		// points at. The others are removed cleanly.
		if i == round%len(tracks) {
			b := rng.IntN(full + 1)
			tag := fmt.Sprintf("r%dK%d.crash", round, tr.sectors)
			fmt.Fprintf(&script, "write_block %s %d %d %s\n", dev, b, tr.sectors, tag)
			m.write(bytes.Repeat([]byte(tag+"\n"), 4096/len(tag)+1)[:4096], int64(b*m.blockBytes))
			writes++
			ops = append(ops, "crash")
		} else {
			fmt.Fprintf(&script, "era_remove %s\n", name)
			ops = append(ops, "remove")
		}
		exp[i].endEra, exp[i].snapHeld = m.current, m.snapHeld
		exp[i].ops = fmt.Sprintf("%d writes, %s", writes, strings.Join(ops, " "))
	}
	res := bootOK(t, machine, kvm.Options{Scenario: script.String(), Disks: disks})
	for i, tr := range tracks {
		who := fmt.Sprintf("round %d, kernel, block size %d", round, tr.sectors)
		lines, eras, snaps := statusLines(res.Output, fmt.Sprintf("t%d", tr.sectors))
		if len(lines) != 2 {
			t.Fatalf("%s: want 2 status lines:\n%s", who, res.Output)
		}
		if eras[0] != exp[i].startEra || eras[1] != exp[i].endEra {
			t.Fatalf("%s: kernel eras %d..%d, model %d..%d", who, eras[0], eras[1], exp[i].startEra, exp[i].endEra)
		}
		if (snaps[1] != "-") != exp[i].snapHeld {
			t.Fatalf("%s: kernel snapshot field %q, model held=%v", who, snaps[1], exp[i].snapHeld)
		}
		t.Logf("%s, %s: %s; status %q then %q", who, exp[i].resized, exp[i].ops, lines[0], lines[1])
		kernelCheckMetadata(t, tr.meta, nil, 0)
		f, err := os.Open(tr.meta)
		if err != nil {
			t.Fatal(err)
		}
		v, err := OpenView(f)
		if err != nil {
			f.Close()
			t.Fatalf("%s: OpenView: %v", who, err)
		}
		if v.CurrentEra() != tr.m.current || v.NrBlocks() != uint64(tr.m.nrBlocks()) {
			f.Close()
			t.Fatalf("%s: view at era %d with %d blocks, model %d with %d", who, v.CurrentEra(), v.NrBlocks(), tr.m.current, tr.m.nrBlocks())
		}
		old := tr.m.check(t, who, v)
		f.Close()
		tr.m.checkOrigin(t, who, tr.origin)
		t.Logf("  model: %s; %d loose blocks came back with an era from before a shrink", tr.m.summary(), old)
	}
}
