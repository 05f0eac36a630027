package era

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/era-go/era/array"
	"github.com/era-go/era/block"
	"github.com/era-go/era/eraxml"
	"github.com/era-go/era/spacemap"
)

// RestoreInputError reports metadata that Restore refuses to write, and
// where the problem is, so that a caller holding the XML can point at the
// line.
type RestoreInputError struct {
	// Element is "superblock", "writeset" (Index is the writeset's era) or
	// "era" (an era-array entry; Index is the block).
	Element string
	Index   uint32
	Msg     string
}

// Error describes the problem and where it is.
func (e *RestoreInputError) Error() string {
	switch e.Element {
	case "writeset":
		return fmt.Sprintf("writeset era %d: %s", e.Index, e.Msg)
	case "era":
		return fmt.Sprintf("era_array: block %d: %s", e.Index, e.Msg)
	}
	return e.Msg
}

// restoreFlushBlocks is how many changed blocks Restore keeps in memory
// before it writes them out. Below it, a restore that fails (a store too
// small) leaves the store untouched.
const restoreFlushBlocks = 16384 // 64 MiB

// restoreResizeStep is how many era-array values Restore adds at a time:
// 1024 array blocks.
const restoreResizeStep = 1024 * 1018

// Restore writes fresh era metadata holding exactly m into out, a store of
// size bytes, as era_restore does: the era array with m's values, each
// writeset of m in the writeset tree under its era, m's current era, no
// current writeset and no metadata snapshot, all in one transaction with
// exact reference counts. The result passes era_check and dumps (View.Dump,
// era_dump) as m. The space map manages min(size/4096, 4161600) blocks.
//
// Restore refuses metadata the kernel and the 0.9.0 tools cannot use, with a
// *RestoreInputError: nr_blocks 0, an era array whose length is not
// nr_blocks, a data block size that is not a positive multiple of 8
// sectors, writesets with nr_bits 0, duplicate eras, bits at or beyond
// nr_bits, or eras (of writesets or era-array values) beyond the current era.
//
// Nothing is written to out before the new metadata is built in memory, so
// a store too small is refused untouched (unless the metadata is larger than
// 64 MiB; see below), with an error wrapping ErrNoSpace that says how many
// blocks the metadata needs. Once writing starts, block 0 is
// zeroed and synced first and the superblock is written last, after
// everything else is synced: a restore cut short leaves metadata that looks
// unformatted, never valid. Metadata of more than 64 MiB is written out as
// it is built.
func Restore(m *eraxml.Metadata, out Store, size int64) error {
	if err := validateRestore(m); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("store size %d: %w", size, ErrInvalidConfig)
	}
	nr := min(uint64(size)/block.Size, spacemap.MaxBlocks)
	if low := restoreLowerBound(m, nr); nr < low {
		return tooSmall(m, size, nr)
	}
	g := &guardStore{out: out}
	md, err := buildRestore(block.NewManager(g, nr, 0), m, restoreFlushBlocks)
	if errors.Is(err, ErrNoSpace) {
		err = tooSmall(m, size, nr)
		if g.zeroed {
			err = fmt.Errorf("%w (the store was partly written and no longer holds valid metadata)", err)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("build the metadata: %w", err)
	}
	if err := g.zero(); err != nil {
		return err
	}
	if err := md.commit(); err != nil {
		return fmt.Errorf("write the metadata: %w", err)
	}
	return nil
}

// validateRestore checks m as the doc of Restore says.
func validateRestore(m *eraxml.Metadata) error {
	sb := func(format string, args ...any) error {
		return &RestoreInputError{Element: "superblock", Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case m.BlockSize == 0 || m.BlockSize%8 != 0:
		return sb("block_size %d: must be a positive multiple of 8 sectors", m.BlockSize)
	case !validUUID(m.UUID):
		return sb("uuid %q: want \"\" or 32 hex digits (8-4-4-4-12)", m.UUID)
	case m.NrBlocks == 0:
		return sb("nr_blocks 0: the era array must hold at least one block")
	case m.NrBlocks > eraxml.MaxCount:
		return sb("nr_blocks %d: more than %d", m.NrBlocks, eraxml.MaxCount)
	case uint64(len(m.EraArray)) != uint64(m.NrBlocks):
		return sb("the era array has %d entries, nr_blocks is %d", len(m.EraArray), m.NrBlocks)
	}
	seen := make(map[uint32]bool, len(m.Writesets))
	for i := range m.Writesets {
		ws := &m.Writesets[i]
		bad := func(format string, args ...any) error {
			return &RestoreInputError{Element: "writeset", Index: ws.Era, Msg: fmt.Sprintf(format, args...)}
		}
		words := array.NrWords(uint64(ws.NrBits))
		switch {
		case seen[ws.Era]:
			return bad("a second writeset of this era")
		case ws.Era > m.CurrentEra:
			return bad("era beyond the current era %d", m.CurrentEra)
		case ws.NrBits == 0:
			return bad("nr_bits 0: a writeset must have at least one bit")
		case ws.NrBits > eraxml.MaxCount:
			return bad("nr_bits %d: more than %d", ws.NrBits, eraxml.MaxCount)
		case uint64(len(ws.Bits)) > words:
			return bad("%d words of bits for nr_bits %d", len(ws.Bits), ws.NrBits)
		}
		if tail := ws.NrBits % 64; tail != 0 && uint64(len(ws.Bits)) == words && ws.Bits[words-1]>>tail != 0 {
			b := (words-1)*64 + uint64(tail) + uint64(bits.TrailingZeros64(ws.Bits[words-1]>>tail))
			return bad("bit %d set, at or beyond nr_bits %d", b, ws.NrBits)
		}
		seen[ws.Era] = true
	}
	for b, e := range m.EraArray {
		if e > m.CurrentEra {
			return &RestoreInputError{Element: "era", Index: uint32(b), Msg: fmt.Sprintf("era %d beyond the current era %d", e, m.CurrentEra)}
		}
	}
	return nil
}

// RestoreSize returns the size, in bytes, of a new store for restoring m
// that a device can then go on with: what m needs, and at least
// MetadataSize for its blocks.
func RestoreSize(m *eraxml.Metadata) (int64, error) {
	if err := validateRestore(m); err != nil {
		return 0, err
	}
	need, err := restoreNeed(m)
	if err != nil {
		return 0, err
	}
	return max(int64(need)*block.Size, MetadataSize(uint64(m.NrBlocks), 0)), nil
}

// arrayBlocks returns the number of array blocks of n values of per each.
func arrayBlocks(n, per uint64) uint64 { return (n + per - 1) / per }

// restoreLowerBound returns a number of blocks below which m cannot be
// restored into a space map of nr blocks: every block Restore writes except
// internal btree nodes.
func restoreLowerBound(m *eraxml.Metadata, nr uint64) uint64 {
	n := uint64(3+spacemap.NrBitmaps(nr)) + 2 // superblock, index, overflow root, bitmaps, two tree roots
	n += arrayBlocks(uint64(m.NrBlocks), uint64(array.MaxEntries(eraValueSize)))
	for i := range m.Writesets {
		n += 1 + arrayBlocks(array.NrWords(uint64(m.Writesets[i].NrBits)), uint64(array.MaxEntries(8)))
	}
	return n
}

// tooSmall returns the error for a store of size bytes (nr blocks) too
// small for m, with the number of blocks m needs. That takes building m in
// memory; when m needs more than twice the store, the error gives only a
// lower bound instead.
func tooSmall(m *eraxml.Metadata, size int64, nr uint64) error {
	if low := restoreLowerBound(m, nr); low > 2*nr {
		return fmt.Errorf("a store of %d bytes (%d blocks of 4096) is too small: the metadata needs at least %d blocks (%d bytes): %w",
			size, nr, low, low*block.Size, ErrNoSpace)
	}
	need, err := restoreNeed(m)
	if err != nil {
		return fmt.Errorf("a store of %d bytes (%d blocks) is too small, and sizing the metadata failed (%v): %w", size, nr, err, ErrNoSpace)
	}
	if need > spacemap.MaxBlocks {
		return fmt.Errorf("the metadata needs %d blocks, more than the %d blocks a space map can manage: %w", need, spacemap.MaxBlocks, ErrNoSpace)
	}
	return fmt.Errorf("a store of %d bytes (%d blocks of 4096) is too small: the metadata needs %d blocks (%d bytes): %w",
		size, nr, need, need*block.Size, ErrNoSpace)
}

// restoreNeed returns the number of metadata blocks m needs. It builds m
// in a sparse in-memory store as large as a space map allows, which gives
// the blocks used besides the bitmaps (a fresh space map hands out blocks in
// order; only the number of bitmaps depends on the store's size), then
// confirms the estimate by building m in memory in a store of that size,
// one block more at a time, since blocks freed while building (and so not
// written) cannot be reused before the commit.
func restoreNeed(m *eraxml.Metadata) (uint64, error) {
	s := &sparseStore{blocks: map[int64][]byte{}}
	md, err := buildRestore(block.NewManager(s, spacemap.MaxBlocks, 0), m, math.MaxInt)
	if err != nil {
		return 0, err
	}
	if err := md.commit(); err != nil {
		return 0, err
	}
	base := s.end/block.Size - uint64(spacemap.NrBitmaps(spacemap.MaxBlocks))
	need := base + 1
	for need < base+uint64(spacemap.NrBitmaps(need)) {
		need++
	}
	for tries := 0; tries < 64 && need <= spacemap.MaxBlocks; tries++ {
		md, err := buildRestore(block.NewManager(discardStore{}, need, 0), m, math.MaxInt)
		if err == nil {
			err = md.commit()
		}
		if err == nil {
			return need, nil
		}
		if !errors.Is(err, ErrNoSpace) {
			return 0, err
		}
		need++
	}
	return need, nil // not confirmed: at least this many
}

// discardStore is a store that keeps nothing, for building metadata that
// stays in memory.
type discardStore struct{}

func (discardStore) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }

func (discardStore) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// buildRestore formats metadata over bm and fills it with m, in one
// transaction that it leaves uncommitted. When more than flushAt blocks
// are dirty between two steps, they are written out.
func buildRestore(bm *block.Manager, m *eraxml.Metadata, flushAt int) (*metadata, error) {
	md, err := formatMetadata(bm, m.BlockSize)
	if err != nil {
		return nil, err
	}
	md.sb.UUID, _ = parseUUID(m.UUID) // checked by validateRestore
	tm := md.tm
	flush := func() error {
		if tm.Dirty() > flushAt {
			return tm.Flush()
		}
		return nil
	}

	// Grow the era array and set its values in steps, so that the dirty
	// blocks can be written out between them. (Not md.resize: it writes
	// out after every step, and nothing must be written before the
	// metadata is known to fit.)
	for md.sb.NrBlocks != m.NrBlocks {
		from := md.sb.NrBlocks
		next := uint32(min(uint64(m.NrBlocks), uint64(from)+restoreResizeStep))
		root, err := md.eras.Resize(md.sb.EraArrayRoot, uint64(from), uint64(next), make([]byte, eraValueSize))
		if err != nil {
			return nil, fmt.Errorf("era array: %w", err)
		}
		root, err = md.eras.Update(root, uint64(from), uint64(next), func(i uint64, v []byte) bool {
			if e := m.EraArray[i]; e != 0 {
				binary.LittleEndian.PutUint32(v, e)
				return true
			}
			return false
		})
		if err != nil {
			return nil, fmt.Errorf("era array: %w", err)
		}
		md.sb.EraArrayRoot, md.sb.NrBlocks = root, next
		if err := flush(); err != nil {
			return nil, err
		}
	}

	for i := range m.Writesets {
		ws := &m.Writesets[i]
		root, err := md.bits.Create(uint64(ws.NrBits))
		if err != nil {
			return nil, fmt.Errorf("writeset of era %d: %w", ws.Era, err)
		}
		// Whole words at once: what Bitset.SetBits does bit by bit.
		if len(ws.Bits) > 0 {
			root, err = md.bits.Array().Update(root, 0, uint64(len(ws.Bits)), func(i uint64, v []byte) bool {
				if w := ws.Bits[i]; w != 0 {
					binary.LittleEndian.PutUint64(v, w)
					return true
				}
				return false
			})
			if err != nil {
				return nil, fmt.Errorf("writeset of era %d: %w", ws.Era, err)
			}
		}
		info := writesetInfo{NrBits: ws.NrBits, Root: root}
		if md.sb.WritesetTreeRoot, err = md.wsTree.Insert(md.sb.WritesetTreeRoot, uint64(ws.Era), info.bytes()); err != nil {
			return nil, fmt.Errorf("writeset of era %d: %w", ws.Era, err)
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	md.sb.CurrentEra = m.CurrentEra
	md.sb.CurrentWriteset = writesetInfo{}
	md.sb.MetadataSnap = 0
	return md, nil
}

// guardStore zeroes block 0 of the store, and syncs, before the first
// write, so that metadata half written never looks valid.
type guardStore struct {
	out    Store
	zeroed bool
}

func (g *guardStore) zero() error {
	if g.zeroed {
		return nil
	}
	if _, err := g.out.WriteAt(make([]byte, block.Size), 0); err != nil {
		return fmt.Errorf("zero block 0: %w", err)
	}
	if err := g.Sync(); err != nil {
		return fmt.Errorf("zero block 0: %w", err)
	}
	g.zeroed = true
	return nil
}

func (g *guardStore) ReadAt(p []byte, off int64) (int, error) { return g.out.ReadAt(p, off) }

func (g *guardStore) WriteAt(p []byte, off int64) (int, error) {
	if err := g.zero(); err != nil {
		return 0, err
	}
	return g.out.WriteAt(p, off)
}

// Sync syncs the store if it can.
func (g *guardStore) Sync() error {
	if s, ok := g.out.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// sparseStore is an in-memory store that holds only the blocks written,
// and remembers the end of the highest one.
type sparseStore struct {
	blocks map[int64][]byte
	end    uint64
}

func (s *sparseStore) ReadAt(p []byte, off int64) (int, error) {
	if off%block.Size != 0 || len(p) != block.Size {
		return 0, fmt.Errorf("sparse store: unaligned read of %d bytes at %d", len(p), off)
	}
	if b, ok := s.blocks[off]; ok {
		copy(p, b)
	} else {
		clear(p)
	}
	return len(p), nil
}

func (s *sparseStore) WriteAt(p []byte, off int64) (int, error) {
	if off%block.Size != 0 || len(p)%block.Size != 0 {
		return 0, fmt.Errorf("sparse store: unaligned write of %d bytes at %d", len(p), off)
	}
	for i := 0; i < len(p); i += block.Size {
		s.blocks[off+int64(i)] = append([]byte(nil), p[i:i+block.Size]...)
	}
	s.end = max(s.end, uint64(off)+uint64(len(p)))
	return len(p), nil
}
