package era_test

// Bad input: valid metadata images (written by Device, and the golden
// images of testdata/golden) go through structured mutations — bit
// flips, swapped and copied blocks, btree cycles, huge counts, roots past
// the end — with every block's checksum and location recomputed for the
// kind it had (block.Identify), so the mutations reach the structure
// checks behind the checksum. Open, OpenView, OpenSnapshot and Check must
// never panic, hang or allocate without bound, and must fail with an error
// wrapping ErrCorrupt that names a block (or succeed, when the mutation
// happened to be harmless).
//
//	go test -run '^$' -fuzz FuzzOpen -fuzztime 60s .
//
// (FuzzOpen, FuzzOpenView, FuzzOpenSnapshot, FuzzCheck.) TestMutatedImages
// runs a few thousand mutations deterministically in every test run.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/block"
	"github.com/era-go/era/erasim"
	"github.com/era-go/era/internal/etesting"
	"github.com/era-go/era/internal/memstore"
)

var (
	fuzzMutations = flag.Int("fuzz.mutations", 0, "TestMutatedImages: number of mutations (0: default)")
	fuzzSeed      = flag.Uint64("fuzz.seed", 0, "TestMutatedImages: seed (0: from the time)")
)

// baseImage is a valid metadata image to mutate.
type baseImage struct {
	name    string
	img     []byte
	kinds   []*block.Kind // kind of each block, nil if none (free, zero)
	nodes   []uint64      // btree nodes
	sectors uint32        // data block size of the superblock
	size    int64         // origin size for Open
}

var (
	basesOnce     sync.Once
	mutationBases []*baseImage
)

// baseImages returns the images to mutate: a few written by Device, and
// the golden images up to maxSize bytes.
func baseImages(t testing.TB, maxSize int) []*baseImage {
	basesOnce.Do(func() {
		for i, img := range deviceImages(t) {
			mutationBases = append(mutationBases, newBaseImage(fmt.Sprintf("device-%d", i), img))
		}
		paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.bin"))
		for _, p := range paths {
			img, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			mutationBases = append(mutationBases, newBaseImage(filepath.Base(p), img))
		}
	})
	var out []*baseImage
	for _, b := range mutationBases {
		if len(b.img) <= maxSize {
			out = append(out, b)
		}
	}
	return out
}

func newBaseImage(name string, img []byte) *baseImage {
	b := &baseImage{name: name, img: img, kinds: make([]*block.Kind, len(img)/block.Size)}
	for loc := range b.kinds {
		data := img[loc*block.Size : (loc+1)*block.Size]
		if k := block.Identify(data); k != nil && k.Validate(data, uint64(loc)) == nil {
			b.kinds[loc] = k
			if k == block.Node {
				b.nodes = append(b.nodes, uint64(loc))
			}
		}
	}
	sb, err := era.DecodeSuperblock(img[:block.Size])
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	b.sectors = sb.DataBlockSize
	b.size = int64(max(sb.NrBlocks, 1)) * int64(sb.DataBlockSize) * 512
	return b
}

// deviceImages runs small workloads and keeps their metadata: cut
// right after a snapshot's commit (an archived writeset not yet digested),
// cut with marks in the current writeset, cut right after a checkpoint,
// and closed. The workloads wait for the digest, so the images are the
// same in every run and a fuzz corpus entry always means the same image.
func deviceImages(t testing.TB) [][]byte {
	var out [][]byte
	for i, nr := range []int64{300, 2100} {
		meta := erasim.New(int64(32+24*i) * block.Size) // room for the writes and the reserve
		origin := erasim.New(nr * 4096)
		d, err := era.Open(meta, origin, era.Config{Format: true, BlockSectors: 8})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 5))
		write := func(n int) {
			etesting.WaitDigest(d)
			for range n {
				if _, err := d.WriteAt([]byte{1, 2, 3}, rng.Int64N(nr*4096-3)); err != nil {
					t.Fatal(err)
				}
			}
		}
		// afterCommit cuts just after the commit that began at point
		// from (two syncs: the blocks, then the superblock).
		afterCommit := func(from int) []byte {
			syncs := 0
			for j, op := range meta.Ops()[from:] {
				if op.Kind == erasim.OpSync {
					if syncs++; syncs == 2 {
						return meta.CrashImage(from+j+1, nil, erasim.CrashOptions{Unsynced: erasim.KeepNone})
					}
				}
			}
			t.Fatal("no commit")
			return nil
		}
		write(30)
		if _, err := d.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		write(20)
		etesting.WaitDigest(d)
		from := meta.Len()
		if _, err := d.TakeSnapshot(); err != nil {
			t.Fatal(err)
		}
		out = append(out, afterCommit(from))
		write(20)
		out = append(out, meta.CrashImage(meta.Len(), nil, erasim.CrashOptions{Unsynced: erasim.KeepNone}))
		etesting.WaitDigest(d)
		from = meta.Len()
		if _, err := d.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		out = append(out, afterCommit(from))
		write(10)
		etesting.WaitDigest(d)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		out = append(out, meta.Bytes())
	}
	return out
}

// mutationProg reads a mutation program; past its end it reads zeros.
type mutationProg struct {
	p []byte
	i int
}

func (r *mutationProg) byte() byte {
	if r.i >= len(r.p) {
		r.i++
		return 0
	}
	r.i++
	return r.p[r.i-1]
}

func (r *mutationProg) u16() int { return int(r.byte()) | int(r.byte())<<8 }

func (r *mutationProg) u64() uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(r.byte()) << (8 * i)
	}
	return v
}

func (r *mutationProg) done() bool { return r.i >= len(r.p) }

// value picks a field value likely to break something.
func (r *mutationProg) value(nblocks int) uint64 {
	n := uint64(nblocks)
	table := []uint64{0, 1, 2, 3, n - 1, n, n + 1, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32, 1 << 63, ^uint64(0),
		252, 253, 201, 336, 509, 1016, 1017, 1018, 1019, 16320, 16321, 4096}
	if i := int(r.byte()); i < len(table) {
		return table[i]
	} else if i < 200 {
		return uint64(i) % n // a block of the image
	}
	return r.u64()
}

// mutate applies the program to a copy of the base image. The first byte
// says whether to recompute checksums and locations (most programs do);
// the others are operations.
func mutate(b *baseImage, prog []byte) []byte {
	img := bytes.Clone(b.img)
	kinds := append([]*block.Kind(nil), b.kinds...)
	nb := len(kinds)
	r := &mutationProg{p: prog}
	fix := r.byte()%8 != 0
	blk := func() int { return int(r.byte()) % nb }
	data := func(loc int) []byte { return img[loc*block.Size : (loc+1)*block.Size] }
	put32 := func(loc, off int, v uint64) { binary.LittleEndian.PutUint32(data(loc)[off&^3%block.Size:], uint32(v)) }
	put64 := func(loc, off int, v uint64) { binary.LittleEndian.PutUint64(data(loc)[off&^7%block.Size:], v) }
	pickNode := func() int {
		if len(b.nodes) == 0 {
			return blk()
		}
		return int(b.nodes[int(r.byte())%len(b.nodes)])
	}
	for steps := 0; !r.done() && steps < 16; steps++ {
		switch r.byte() % 10 {
		case 0: // bit flip
			loc, off, bit := blk(), r.u16()%block.Size, r.byte()%8
			data(loc)[off] ^= 1 << bit
		case 1: // a u32 field
			loc, off := blk(), r.u16()
			put32(loc, off, r.value(nb))
		case 2: // a u64 field
			loc, off := blk(), r.u16()
			put64(loc, off, r.value(nb))
		case 3: // swap two blocks
			a, c := blk(), blk()
			tmp := bytes.Clone(data(a))
			copy(data(a), data(c))
			copy(data(c), tmp)
			kinds[a], kinds[c] = kinds[c], kinds[a]
		case 4: // copy a block over another
			a, c := blk(), blk()
			copy(data(c), data(a))
			kinds[c] = kinds[a]
		case 5: // a btree child or value pointing at another node (a cycle, a shared subtree)
			n := pickNode()
			d := data(n)
			max := int(binary.LittleEndian.Uint32(d[20:]))
			nr := int(binary.LittleEndian.Uint32(d[16:]))
			vs := int(binary.LittleEndian.Uint32(d[24:]))
			if max <= 0 || max > 336 || nr <= 0 || vs < 8 {
				break
			}
			i := int(r.byte()) % min(nr, max)
			off := 32 + 8*max + vs*i
			if off+8 <= block.Size {
				put64(n, off, uint64(pickNode()))
			}
		case 6: // zero a block
			clear(data(blk()))
		case 7: // a superblock field
			fields := []int{44, 52, 60, 68, 180, 184, 188, 192, 200, 208, 216, 172, 176, 40}
			f := fields[int(r.byte())%len(fields)]
			v := r.value(nb)
			if f == 180 || f == 184 || f == 188 || f == 172 || f == 176 || f == 40 {
				put32(0, f, v)
			} else {
				put64(0, f, v)
			}
		case 8: // a header field of a node or an array block
			loc := blk()
			if r.byte()%2 == 0 {
				loc = pickNode()
			}
			offs := []int{4, 16, 20, 24, 4, 8, 12}
			put32(loc, offs[int(r.byte())%len(offs)], r.value(nb))
		case 9: // a key of a node
			n := pickNode()
			put64(n, 32+8*(int(r.byte())%8), r.value(nb))
		}
	}
	if fix {
		for loc, k := range kinds {
			if k != nil {
				k.Prepare(data(loc), uint64(loc))
			}
		}
	}
	return img
}

// nullOrigin is an origin that keeps nothing.
type nullOrigin struct{}

func (nullOrigin) ReadAt(p []byte, _ int64) (int, error)  { clear(p); return len(p), nil }
func (nullOrigin) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// fuzzAPI is one of the APIs under test.
type fuzzAPI int

const (
	targetOpen fuzzAPI = iota
	targetOpenView
	targetOpenSnapshot
	targetCheck
)

var targetNames = []string{"Open", "OpenView", "OpenSnapshot", "Check"}

// badErr reports why err is not an acceptable answer to damaged
// metadata, or "".
func badErr(err error, also ...error) string {
	for _, e := range also {
		if errors.Is(err, e) {
			return ""
		}
	}
	if errors.Is(err, era.ErrNoMetadata) { // the magic was hit: not era metadata at all
		return ""
	}
	if !errors.Is(err, era.ErrCorrupt) {
		return "does not wrap ErrCorrupt"
	}
	// Where: a block, or a structure the superblock names.
	msg := err.Error()
	for _, where := range []string{"block", "writeset", "era array", "space map", "space-map", "snapshot"} {
		if strings.Contains(msg, where) {
			return ""
		}
	}
	return "does not say where"
}

// runTarget runs one target on a mutated image; it returns a description of
// a wrong answer, or "".
func runTarget(target fuzzAPI, b *baseImage, img []byte) string {
	rng := rand.New(rand.NewPCG(uint64(len(img)), 1))
	switch target {
	case targetCheck:
		err := era.Check(bytes.NewReader(img))
		if err == nil {
			return ""
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				if why := badErr(e); why != "" {
					return fmt.Sprintf("Check: %q %s", e, why)
				}
			}
			return ""
		}
		if why := badErr(err); why != "" {
			return fmt.Sprintf("Check: %q %s", err, why)
		}
	case targetOpenView, targetOpenSnapshot:
		open := era.OpenView
		if target == targetOpenSnapshot {
			open = era.OpenSnapshot
		}
		v, err := open(bytes.NewReader(img))
		if err != nil {
			if why := badErr(err, era.ErrNoSnapshot); why != "" {
				return fmt.Sprintf("%s: %q %s", targetNames[target], err, why)
			}
			return ""
		}
		for _, since := range []uint32{0, 1, v.CurrentEra(), v.CurrentEra() + 1, 1 + rng.Uint32N(max(1, v.CurrentEra()))} {
			if _, err := v.WrittenSince(since); err != nil {
				var also []error
				if since > v.CurrentEra() {
					also = append(also, era.ErrOutOfRange)
				}
				if why := badErr(err, also...); why != "" {
					return fmt.Sprintf("%s: WrittenSince(%d): %q %s", targetNames[target], since, err, why)
				}
			}
		}
		if n := v.NrBlocks(); n > 0 {
			for _, blk := range []uint64{0, n - 1, rng.Uint64N(n)} {
				if _, err := v.BlockEra(blk); err != nil {
					if why := badErr(err); why != "" {
						return fmt.Sprintf("%s: BlockEra(%d): %q %s", targetNames[target], blk, err, why)
					}
				}
			}
		}
	case targetOpen:
		store := &memstore.Store{Data: img}
		d, err := era.Open(store, nullOrigin{}, era.Config{Format: true, BlockSectors: b.sectors, OriginSize: b.size})
		if err != nil {
			if why := badErr(err, era.ErrBlockSizeMismatch, era.ErrNoSpace, era.ErrEraOverflow); why != "" {
				return fmt.Sprintf("Open: %q %s", err, why)
			}
			return ""
		}
		// It opened: it must work, or fail with a sound error.
		ok := func(what string, err error) string {
			if err == nil {
				return ""
			}
			if why := badErr(err, era.ErrNoSpace, era.ErrReadOnly, era.ErrEraOverflow); why != "" {
				return fmt.Sprintf("Open, then %s: %q %s", what, err, why)
			}
			return ""
		}
		defer d.Close()
		for _, step := range []func() (string, error){
			func() (string, error) { _, err := d.WrittenSince(1); return "WrittenSince", err },
			func() (string, error) { _, err := d.BlockEra(d.NrBlocks() - 1); return "BlockEra", err },
			func() (string, error) { _, err := d.WriteAt([]byte{1}, 0); return "WriteAt", err },
			func() (string, error) {
				_, err := d.WriteAt([]byte{1}, int64(d.NrBlocks()-1)*int64(d.BlockBytes()))
				return "WriteAt", err
			},
			func() (string, error) { _, err := d.Checkpoint(); return "Checkpoint", err },
			func() (string, error) {
				err := d.DropSnapshot()
				if errors.Is(err, era.ErrNoSnapshot) {
					err = nil
				}
				return "DropSnapshot", err
			},
			func() (string, error) { return "Close", d.Close() },
		} {
			what, err := step()
			if why := ok(what, err); why != "" {
				return why
			}
		}
	}
	return ""
}

// fuzzOne runs target on base b mutated by prog, failing t on a wrong
// answer, a panic, a hang or a large allocation.
func fuzzOne(t *testing.T, target fuzzAPI, b *baseImage, prog []byte, watchdog time.Duration) {
	img := mutate(b, prog)
	what := fmt.Sprintf("%s on %s mutated by %s", targetNames[target], b.name, hex.EncodeToString(prog))
	type result struct {
		why   string
		panic any
		alloc uint64
	}
	done := make(chan result, 1)
	go func() {
		var res result
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			res.panic = recover()
			runtime.ReadMemStats(&after)
			res.alloc = after.TotalAlloc - before.TotalAlloc
			done <- res
		}()
		res.why = runTarget(target, b, img)
	}()
	select {
	case res := <-done:
		switch {
		case res.panic != nil:
			t.Errorf("%s: panic: %v", what, res.panic)
		case res.why != "":
			t.Errorf("%s: %s", what, res.why)
		case res.alloc > 256<<20:
			t.Errorf("%s: allocated %d MiB", what, res.alloc>>20)
		}
	case <-time.After(watchdog):
		t.Fatalf("%s: no answer after %v (a hang?)", what, watchdog)
	}
}

func fuzzTarget(f *testing.F, target fuzzAPI) {
	bases := baseImages(f, 300<<10)
	rng := rand.New(rand.NewPCG(uint64(target), 11))
	for i := range bases {
		f.Add(uint8(i), []byte{0})
		for range 3 {
			f.Add(uint8(i), randomProg(rng))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, prog []byte) {
		fuzzOne(t, target, bases[int(which)%len(bases)], prog, time.Minute)
	})
}

func FuzzOpen(f *testing.F)         { fuzzTarget(f, targetOpen) }
func FuzzOpenView(f *testing.F)     { fuzzTarget(f, targetOpenView) }
func FuzzOpenSnapshot(f *testing.F) { fuzzTarget(f, targetOpenSnapshot) }
func FuzzCheck(f *testing.F)        { fuzzTarget(f, targetCheck) }

// randomProg returns a random mutation program of one to four
// operations.
func randomProg(rng *rand.Rand) []byte {
	p := []byte{byte(1 + rng.IntN(255))} // fix checksums, mostly
	if rng.IntN(10) == 0 {
		p[0] = 0
	}
	for range 1 + rng.IntN(4) {
		for range 1 + rng.IntN(10) {
			p = append(p, byte(rng.Uint32()))
		}
	}
	return p
}

// TestMutatedImages runs a few thousand random mutation programs over
// every base image and every target (the fuzz targets' seed corpus is
// run by plain `go test` too).
func TestMutatedImages(t *testing.T) {
	n := 4000
	if etesting.Race {
		n = 1200
	}
	if testing.Short() {
		n = 200
	}
	if *crashFull {
		n = 50000
	}
	if *fuzzMutations > 0 {
		n = *fuzzMutations
	}
	all, small := baseImages(t, 3<<20), baseImages(t, 300<<10)
	seed := *fuzzSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-fuzz.seed), %d base images", seed, len(all))
	rng := rand.New(rand.NewPCG(seed, 13))
	watchdog := 20 * time.Second
	if etesting.Race {
		watchdog = time.Minute
	}
	for i := range n {
		b := small[rng.IntN(len(small))]
		if i%16 == 0 { // the large golden images, now and then
			b = all[rng.IntN(len(all))]
		}
		fuzzOne(t, fuzzAPI(i%4), b, randomProg(rng), watchdog)
		if t.Failed() && !testing.Verbose() {
			break
		}
	}
	t.Logf("%d mutated images checked (%d per target)", n, n/4)
	reportf("mutated images (Open, OpenView, OpenSnapshot, Check)", n)
}

// TestOpenRejectsFreeSuperblock: a space map that counts block 0 free (a
// bit flip in the first bitmap, checksum recomputed) must not let Open
// allocate the superblock's block to a tree node, which left a device
// with a current writeset rooted at block 0 ("mark without a current
// writeset" on the first write).
func TestOpenRejectsFreeSuperblock(t *testing.T) {
	for _, b := range baseImages(t, 300<<10) {
		img := bytes.Clone(b.img)
		sb, err := era.DecodeSuperblock(img[:block.Size])
		if err != nil {
			t.Fatal(err)
		}
		index := binary.LittleEndian.Uint64(sb.SpaceMapRoot[16:])
		bitmap := binary.LittleEndian.Uint64(img[index*block.Size+16:])
		data := img[bitmap*block.Size : (bitmap+1)*block.Size]
		data[16] &^= 3 // entry 0: count 0
		block.Bitmap.Prepare(data, bitmap)
		d, err := era.Open(&memstore.Store{Data: img}, nullOrigin{}, era.Config{Format: true, BlockSectors: b.sectors, OriginSize: b.size})
		if err == nil {
			_, err = d.WriteAt([]byte{1}, 0)
			d.Close()
			t.Fatalf("%s: Open accepted a space map with block 0 free (then WriteAt: %v)", b.name, err)
		}
		if !errors.Is(err, era.ErrCorrupt) {
			t.Fatalf("%s: Open: %v, want ErrCorrupt", b.name, err)
		}
	}
}
