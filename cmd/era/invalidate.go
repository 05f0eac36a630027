package main

import (
	"fmt"
	"io"
	"math/bits"

	"github.com/era-go/era/eraxml"
)

var invalidateCommand = &command{
	name:     "invalidate",
	toolName: true,
	synopsis: "invalidate --written-since N [--metadata-snapshot] [--format xml|json] [--bytes] [-o FILE] META",
	summary:  "list the blocks written since an era",
	help: `Lists the blocks of the origin written in era N or later, according to the
era metadata on the device or file META: blocks whose era-array value is N
or more, and the blocks marked by every writeset of era N or more. Runs of
blocks are printed as <range begin="B" end = "E"/> (end excluded), single
blocks as <block block="B"/>: the XML of era_invalidate 0.9.0.

Two differences from era_invalidate 0.9.0, which give the same output on
metadata without a current writeset (a device suspended or closed): the
superblock's current writeset counts too (0.9.0 misses the blocks written in
the current era, or in the era a crash interrupted), and
--metadata-snapshot reads the trees of the metadata snapshot the device
holds (0.9.0 requires a snapshot but then reads the live trees). Like 0.9.0,
writeset bits past the end of the origin (recorded before it shrank) are
listed.

Options:
      --written-since N list the blocks written in era N or later (required)
      --metadata-snapshot
                        read the metadata snapshot instead of the live metadata
      --format FORMAT   xml (default) or json: {"ranges": [{"begin", "end"}]},
                        ranges half-open
      --bytes           give the ranges in bytes of the origin rather than in
                        blocks (JSON: adds "block_bytes", and "byte_begin" and
                        "byte_end" to each range)
  -o, --output FILE     write to FILE (replaced when complete) instead of
                        standard output
  -h, --help            show this help
  -V, --version         show the version
`,
	run: runInvalidate,
}

func runInvalidate(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	var since uint32Flag
	var snapshot, inBytes bool
	var output string
	format := formatFlag("xml")
	fs.Var(&since, "written-since", "")
	fs.BoolVar(&snapshot, "metadata-snapshot", false, "")
	fs.BoolVar(&inBytes, "bytes", false, "")
	fs.Var(&format, "format", "")
	fs.StringVar(&output, "o", "", "")
	fs.StringVar(&output, "output", "", "")
	ops, status, done := c.parse(fs, help, ver, args, 1)
	if done {
		return status
	}
	if !since.set {
		return c.usage("--written-since N is required")
	}
	path := ops[0]
	f, v, err := openView(path, snapshot)
	if err != nil {
		return c.fail(err)
	}
	defer f.Close()
	rs, err := v.Invalidate(since.v, true)
	if err != nil {
		return c.fail(fileError(path, err))
	}
	ranges := make([]eraxml.Range, len(rs))
	for i, r := range rs {
		ranges[i] = eraxml.Range{Begin: r.Begin, End: r.End}
	}
	blockBytes := uint64(v.BlockSectors()) * 512
	if inBytes && format == "xml" {
		for i, r := range ranges {
			hi, end := bits.Mul64(r.End, blockBytes)
			if hi != 0 {
				return c.fail(fmt.Errorf("%s: block %d times the block size %d overflows 64 bits", path, r.End, blockBytes))
			}
			ranges[i] = eraxml.Range{Begin: r.Begin * blockBytes, End: end}
		}
	}
	err = writeOutput(output, c.stdout, func(w io.Writer) error {
		switch {
		case format == "json" && inBytes:
			return eraxml.WriteRangesJSON(w, ranges, blockBytes)
		case format == "json":
			return eraxml.WriteRangesJSON(w, ranges, 0)
		}
		return eraxml.WriteInvalidate(w, ranges)
	})
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}
