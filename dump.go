package era

import (
	"encoding/binary"
	"fmt"

	"github.com/era-go/era/array"
	"github.com/era-go/era/eraxml"
)

// DumpOptions tunes View.Dump.
type DumpOptions struct {
	// IncludeCurrent adds the superblock's current writeset (the one a
	// device is filling, or a crash left behind) to the dump as a writeset
	// of the current era. era_dump 0.9.0 ignores it, so a dump without it is
	// what that tool prints; with it, no committed mark is left out.
	IncludeCurrent bool

	// OnDamage, when set, makes Dump go on past damaged metadata, as
	// era_dump --repair does: each problem is passed to OnDamage, a
	// writeset that cannot be read is left out, and era-array values that
	// cannot be read are dumped as era 0. When nil, the first problem fails
	// Dump.
	OnDamage func(error)
}

// Dump reads the view into the intermediate representation the era
// command's dump, restore and invalidate speak: the superblock fields, every
// writeset of the writeset tree with its bits (ascending era) and the era
// array. With opts.IncludeCurrent the current writeset is added too.
//
// Rendered with eraxml.WriteDump, a dump of the committed state (OpenView)
// without IncludeCurrent is byte for byte what era_dump 0.9.0 prints.
// Writeset bits at or beyond a writeset's nr_bits are reported clear.
func (v *View) Dump(opts DumpOptions) (*eraxml.Metadata, error) {
	t := v.trees
	m := &eraxml.Metadata{
		UUID:       formatUUID(v.trees.uuid),
		BlockSize:  v.blockSectors,
		NrBlocks:   t.nrBlocks,
		CurrentEra: t.currentEra,
		EraArray:   make([]uint32, t.nrBlocks),
	}
	damage := func(err error) error {
		if opts.OnDamage == nil {
			return err
		}
		opts.OnDamage(err)
		return nil
	}

	sets, err := v.trees.archived(0, damage)
	if err != nil {
		return nil, err
	}
	if opts.IncludeCurrent && t.current.Root != 0 {
		if n := len(sets); n > 0 && sets[n-1].era >= t.currentEra {
			err := fmt.Errorf("writeset tree: archived writeset of era %d while the current writeset (root %d) is of era %d: %w", sets[n-1].era, t.current.Root, t.currentEra, ErrCorrupt)
			if err := damage(err); err != nil {
				return nil, err
			}
		} else {
			sets = append(sets, writesetEntry{era: t.currentEra, info: t.current})
		}
	}
	for _, ws := range sets {
		out := eraxml.Writeset{Era: ws.era, NrBits: ws.info.NrBits, Bits: make([]uint64, array.NrWords(uint64(ws.info.NrBits)))}
		err := t.bitsetWords(ws.info, func(i uint64, w uint64) error {
			out.Bits[i] = w
			return nil
		})
		if err != nil {
			what := "writeset"
			if ws.info == t.current && ws.era == t.currentEra {
				what = "current writeset"
			}
			if err := damage(fmt.Errorf("%s of era %d (%d bits, root %d): %w", what, ws.era, ws.info.NrBits, ws.info.Root, err)); err != nil {
				return nil, err
			}
			continue
		}
		m.Writesets = append(m.Writesets, out)
	}

	if err := v.eraValues(m.EraArray, damage); err != nil {
		return nil, err
	}
	return m, nil
}

// eraValues reads the era array into eras (len nr_blocks). With a damage
// handler, what one pass cannot read is read value by value, and the values
// of array blocks that cannot be read stay 0.
func (v *View) eraValues(eras []uint32, damage func(error) error) error {
	t := v.trees
	next := uint64(0)
	err := t.eraArray(func(b uint64, era uint32) error {
		eras[b] = era
		next = b + 1
		return nil
	})
	if err == nil {
		return nil
	}
	if err := damage(fmt.Errorf("read era array: %w", err)); err != nil {
		return err
	}
	// Salvage what can be read, one value at a time.
	a := array.New(t.tm, eraValueSize)
	n := uint64(len(eras))
	per := uint64(a.MaxEntries())
	for i := next; i < n; {
		val, err := a.Get(t.eraRoot, i)
		if err != nil {
			end := min(n, (i/per+1)*per)
			damage(fmt.Errorf("era array: values %d..%d unreadable, dumped as era 0: %w", i, end-1, err))
			i = end
			continue
		}
		eras[i] = binary.LittleEndian.Uint32(val)
		i++
	}
	return nil
}
