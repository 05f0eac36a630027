package main

import (
	"fmt"
	"io"

	"github.com/era-go/era"
	"github.com/era-go/era/eraxml"
)

var dumpCommand = &command{
	name:     "dump",
	toolName: true,
	synopsis: "dump [--logical] [--compat] [--include-current] [--repair] [--format xml|json] [-o FILE] META",
	summary:  "print metadata as era_dump XML, or JSON",
	help: `Prints the era metadata on the device or file META: the superblock, every
writeset of the writeset tree with all its bits, and the era of every block.
The XML is what era_dump 0.9.0 prints, byte for byte, and era restore (or
era_restore) reads it back.

--logical prints no writesets; instead each block's era is folded: the
greatest of its era-array value and the eras of the writesets that mark it,
the current writeset included. That is the era in which the block was last
written. era_dump --logical 0.9.0 differs twice: when several writesets mark
a block the lowest era wins there (so a block written in eras 3 and 4 shows
3), and it ignores the superblock's current writeset (so the writes of the
current era, or of the era a crash interrupted, are missing). --compat
reproduces those results, byte for byte.

The superblock's uuid attribute holds the metadata's identity (era restore
keeps it, so change IDs survive a dump and restore); 0.9.0 always prints
uuid="", and so does --compat.

The plain dump ignores the current writeset too, as 0.9.0 does;
--include-current adds it as a writeset of the current era.

Options:
      --logical         fold the writesets into the era of each block
      --compat          print what era_dump 0.9.0 prints (uuid="", and with
                        --logical its lowest-era folding)
      --include-current add the current writeset to the plain dump
      --repair          dump what can be read of damaged metadata (problems
                        go to standard error)
      --format FORMAT   xml (default) or json: {"block_size", "nr_blocks",
                        "current_era", "writesets": [{"era", "nr_bits",
                        "marked": [{"begin", "end"}]}], "era_array": [{"begin",
                        "end", "era"}]}, ranges half-open, in blocks
  -o, --output FILE     write to FILE (replaced when complete) instead of
                        standard output
  -h, --help            show this help
  -V, --version         show the version
`,
	run: runDump,
}

func runDump(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	var logical, compat, current, repair bool
	var output string
	format := formatFlag("xml")
	fs.BoolVar(&logical, "logical", false, "")
	fs.BoolVar(&compat, "compat", false, "")
	fs.BoolVar(&current, "include-current", false, "")
	fs.BoolVar(&repair, "repair", false, "")
	fs.Var(&format, "format", "")
	fs.StringVar(&output, "o", "", "")
	fs.StringVar(&output, "output", "", "")
	ops, status, done := c.parse(fs, help, ver, args, 1)
	if done {
		return status
	}
	switch {
	case compat && current:
		return c.usage("--compat and --include-current contradict each other: 0.9.0 ignores the current writeset")
	}
	path := ops[0]
	f, v, err := openView(path, false)
	if err != nil {
		return c.fail(err)
	}
	defer f.Close()
	opts := era.DumpOptions{IncludeCurrent: current || (logical && !compat)}
	if repair {
		opts.OnDamage = func(err error) {
			fmt.Fprintf(c.stderr, "%s: %s: skipped (--repair)\n", path, describe(err))
		}
	}
	m, err := v.Dump(opts)
	if err != nil {
		return c.fail(fileError(path, err))
	}
	if compat {
		m.UUID = ""
	}
	err = writeOutput(output, c.stdout, func(w io.Writer) error {
		switch {
		case format == "json" && logical:
			return eraxml.WriteJSON(w, folded(m, compat))
		case format == "json":
			return eraxml.WriteJSON(w, m)
		case logical:
			return eraxml.WriteLogicalDump(w, m, compat)
		}
		return eraxml.WriteDump(w, m)
	})
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

// folded returns m without writesets and with each block's era folded as
// eraxml.WriteLogicalDump does.
func folded(m *eraxml.Metadata, compat bool) *eraxml.Metadata {
	return &eraxml.Metadata{BlockSize: m.BlockSize, NrBlocks: m.NrBlocks, CurrentEra: m.CurrentEra, EraArray: m.LogicalEras(compat)}
}
