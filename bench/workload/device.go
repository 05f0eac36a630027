package workload

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/era-go/era"
)

// OriginKind says what a Rig's origin is.
type OriginKind int

const (
	// FileOrigin is a sparse file of nrBlocks blocks in the rig's directory.
	FileOrigin OriginKind = iota
	// NullOrigin drops writes (a NullStore): metadata-only figures.
	NullOrigin
	// SwitchOrigin is a file whose writes can be dropped (a SwitchStore).
	SwitchOrigin
)

// RigConfig sets up a Rig.
type RigConfig struct {
	NrBlocks    uint64
	Origin      OriginKind
	CacheBlocks int // 0: the library's default
}

// Rig is an era.Device whose metadata is a real file in Dir (so every
// commit's sync is a real fsync), over an origin.
type Rig struct {
	Dir        string
	NrBlocks   uint64
	Meta       *os.File
	OriginFile *os.File     // the origin file, nil for NullOrigin
	Switch     *SwitchStore // for SwitchOrigin
	Dev        *era.Device
}

// NewRig creates the files in dir and opens a fresh device.
func NewRig(dir string, cfg RigConfig) (*Rig, error) {
	r := &Rig{Dir: dir, NrBlocks: cfg.NrBlocks}
	size := int64(cfg.NrBlocks) * BlockBytes
	var err error
	if r.Meta, err = CreateFile(metaPath(dir), MetaBytesFor(cfg.NrBlocks)); err != nil {
		return nil, err
	}

	var origin era.Store
	switch cfg.Origin {
	case NullOrigin:
		origin = NullStore{N: size}
	case FileOrigin, SwitchOrigin:
		if r.OriginFile, err = CreateFile(originPath(dir), size); err != nil {
			r.Meta.Close()
			return nil, err
		}
		origin = r.OriginFile
		if cfg.Origin == SwitchOrigin {
			r.Switch = &SwitchStore{F: r.OriginFile, N: size}
			origin = r.Switch
		}
	}
	r.Dev, err = era.Open(r.Meta, origin, era.Config{Format: true, BlockSectors: BlockSectors, OriginSize: size, CacheBlocks: cfg.CacheBlocks})
	if err != nil {
		r.closeFiles()
		return nil, wrap("open device", err)
	}
	return r, nil
}

func (r *Rig) closeFiles() {
	r.Meta.Close()
	if r.OriginFile != nil {
		r.OriginFile.Close()
	}
}

// Close closes the device (if still open) and the files, and removes them.
func (r *Rig) Close() error {
	var err error
	if r.Dev != nil {
		if e := r.Dev.Close(); e != nil && !errors.Is(e, era.ErrClosed) {
			err = e
		}
	}
	r.closeFiles()
	os.Remove(metaPath(r.Dir))
	os.Remove(originPath(r.Dir))
	return err
}

// WaitDigest waits until the device has no archived writeset left to
// digest, or until timeout.
func WaitDigest(d *era.Device, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for d.Stats().Digesting {
		if time.Now().After(deadline) {
			return fmt.Errorf("digest still running after %v", timeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// MarkAll marks every block of the current era with large writes through
// the rig's SwitchStore (dropped at the origin), chunk blocks per write
// and so per commit.
func (r *Rig) MarkAll(chunk uint64) error {
	if r.Switch == nil {
		return errors.New("MarkAll needs a SwitchOrigin rig")
	}
	r.Switch.Discard(true)
	defer r.Switch.Discard(false)
	buf := make([]byte, chunk*BlockBytes)
	for b := uint64(0); b < r.NrBlocks; b += chunk {
		n := min(chunk, r.NrBlocks-b)
		if _, err := r.Dev.WriteAt(buf[:n*BlockBytes], int64(b)*BlockBytes); err != nil {
			return err
		}
	}
	return nil
}

// Perm hands out the blocks of [0, n) in a scattered order, each once per
// n calls (i*stride mod n with stride coprime to n), to many goroutines.
type Perm struct {
	n, stride uint64
	i         atomic.Uint64
}

// NewPerm returns a permutation of [0, n).
func NewPerm(n uint64) *Perm {
	stride := uint64(0x9E3779B97F4A7C15) % n
	for stride == 0 || gcd(stride, n) != 1 {
		stride++
		if stride >= n {
			stride = 1
		}
	}
	return &Perm{n: n, stride: stride}
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Next returns the next block.
func (p *Perm) Next() uint64 {
	i := p.i.Add(1) - 1
	hi, lo := bits.Mul64(i%p.n, p.stride)
	_, rem := bits.Div64(hi, lo, p.n)
	return rem
}

// Used returns how many blocks were handed out.
func (p *Perm) Used() uint64 { return p.i.Load() }

// Writer is what the write figures drive: an era.Device, a BoltTracker or
// a raw file.
type Writer interface {
	WriteAt(p []byte, off int64) (int, error)
}

// RunResult is what RunWrites measured.
type RunResult struct {
	Ops     int64
	Elapsed time.Duration
	Lat     []time.Duration // per write, when asked
}

// OpsPerSec returns the throughput.
func (r RunResult) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// RunWrites runs goroutines writers, each writing 4 KiB blocks taken from
// perm, until ops writes are done (ops > 0) or dur has passed (dur > 0).
// With a fresh perm over an era's blocks, every write is a first write.
func RunWrites(w Writer, perm *Perm, goroutines int, ops int64, dur time.Duration, keepLat bool) (RunResult, error) {
	var (
		issued   atomic.Int64
		done     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		lats     = make([][]time.Duration, goroutines)
	)
	start := time.Now()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, BlockBytes)
			for i := range buf {
				buf[i] = byte(g + i)
			}
			for {
				k := issued.Add(1)
				if ops > 0 && k > ops {
					return
				}
				if dur > 0 && time.Since(start) > dur {
					return
				}
				b := perm.Next()
				t0 := time.Now()
				if _, err := w.WriteAt(buf, int64(b)*BlockBytes); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if keepLat {
					lats[g] = append(lats[g], time.Since(t0))
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	res := RunResult{Ops: done.Load(), Elapsed: time.Since(start)}
	for _, l := range lats {
		res.Lat = append(res.Lat, l...)
	}
	return res, firstErr
}

// SyncedFile is a raw origin file whose every write is followed by an
// fsync: the floor for a durable 4 KiB write.
type SyncedFile struct{ F *os.File }

// WriteAt writes p and syncs the file.
func (s SyncedFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := s.F.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, s.F.Sync()
}
