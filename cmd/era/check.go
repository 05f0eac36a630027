package main

import (
	"fmt"
	"strings"

	"github.com/era-go/era"
)

var checkCommand = &command{
	name:     "check",
	toolName: true,
	synopsis: "check [-q|--quiet] [--super-block-only] META",
	summary:  "check metadata: structure, eras and every space-map count",
	help: `Checks the era metadata on the device or file META. Exit status 0 when it
is sound; 1 with the problems found on standard error, one per line, each
naming the file and the block.

It checks what era_check 0.9.0 checks (the superblock, every btree node and
array block of the writeset tree, the era array and the writesets, array
lengths, era values not beyond the current era) and what it skips: the
checksum and stored location of every reachable block, the space map
(index, bitmaps and overflow tree, every reference count against the
references actually found, so leaks and over-counts, and nr_allocated),
writeset eras, the current writeset and the metadata snapshot's trees. It
does not reject what 0.9.0 wrongly reports as damage: an empty era array
(a device formatted but never resumed).

Options:
  -q, --quiet           print nothing; the exit status tells
      --super-block-only
                        check only the superblock
  -h, --help            show this help
  -V, --version         show the version
`,
	run: runCheck,
}

func runCheck(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	var quiet, sbOnly bool
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&quiet, "quiet", false, "")
	fs.BoolVar(&sbOnly, "super-block-only", false, "")
	ops, status, done := c.parse(fs, help, ver, args, 1)
	if done {
		return status
	}
	path := ops[0]
	f, err := openMetadata(path)
	if err != nil {
		if quiet {
			return exitFail
		}
		return c.fail(err)
	}
	defer f.Close()
	err = era.CheckWith(f, era.CheckOptions{SuperblockOnly: sbOnly})
	if err == nil {
		return exitOK
	}
	if !quiet {
		// era.Check joins one error per problem (errors.Join: one per line).
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(c.stderr, "%s: %s\n", path, tidy(line))
		}
	}
	return exitFail
}
