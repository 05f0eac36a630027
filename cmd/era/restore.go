package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"

	"github.com/era-go/era"
	"github.com/era-go/era/eraxml"
)

var restoreCommand = &command{
	name:     "restore",
	toolName: true,
	synopsis: "restore -i XML -o META [-q|--quiet]",
	summary:  "write fresh metadata from era_dump XML",
	help: `Writes fresh era metadata holding exactly what the XML file describes
onto META, an existing device or file, whose size sets the size of the
metadata's space map. The XML is what era dump or era_dump prints, or the
compact form with <marked block_begin=".." len=".."/> runs of the newer
tools; "-" reads standard input. The result passes era check and era_check
0.9.0 and dumps as the input.

A META too small is refused untouched, with the size needed. Once writing
starts, block 0 is zeroed first and the superblock written last, after
everything else is on disk: a restore cut short never leaves metadata that
looks valid.

Refused, as the kernel or the 0.9.0 tools cannot use them: nr_blocks 0, a
block_size that is not a positive multiple of 8 sectors, writesets with
nr_bits 0, and eras beyond the current era. Errors give the line.

Options:
  -i, --input XML       the XML to restore ("-": standard input)
  -o, --output META     the metadata device or file to write; it must exist
  -q, --quiet           print nothing on success
  -h, --help            show this help
  -V, --version         show the version
`,
	run: runRestore,
}

func runRestore(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	var input, output string
	var quiet bool
	fs.StringVar(&input, "i", "", "")
	fs.StringVar(&input, "input", "", "")
	fs.StringVar(&output, "o", "", "")
	fs.StringVar(&output, "output", "", "")
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&quiet, "quiet", false, "")
	if _, status, done := c.parse(fs, help, ver, args, 0); done {
		return status
	}
	switch {
	case input == "":
		return c.usage("no input file given (-i XML)")
	case output == "":
		return c.usage("no output device or file given (-o META)")
	}

	var in io.Reader = c.stdin
	name := "<stdin>"
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return c.fail(err)
		}
		defer f.Close()
		in, name = f, input
	}
	m, err := readRestoreInput(in)
	if err != nil {
		return c.fail(fileError(name, err))
	}

	out, err := openOutputStore(output, m)
	if err != nil {
		return c.fail(err)
	}
	size, err := era.StoreSize(out)
	if err != nil {
		out.Close()
		return c.fail(fileError(output, err))
	}
	err = era.Restore(m, out, size)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		var ie *era.RestoreInputError
		if errors.As(err, &ie) {
			return c.fail(fileError(name, locateInput(input, ie)))
		}
		return c.fail(fileError(output, err))
	}
	if !quiet {
		fmt.Fprintf(c.stdout, "%s: restored %d blocks of %d sectors, %d writesets, current era %d\n",
			output, m.NrBlocks, m.BlockSize, len(m.Writesets), m.CurrentEra)
	}
	return exitOK
}

// readRestoreInput reads the XML era restore takes.
func readRestoreInput(r io.Reader) (*eraxml.Metadata, error) {
	return eraxml.Read(bufio.NewReaderSize(r, 1<<20))
}

// locateInput returns ie with the line of the XML element it is about, when
// the input is a file that can be read again.
func locateInput(path string, ie *era.RestoreInputError) error {
	if path == "-" {
		return ie
	}
	f, err := os.Open(path)
	if err != nil {
		return ie
	}
	defer f.Close()
	return locate(bufio.NewReader(f), ie)
}

// locate returns ie prefixed with "line N: " for the XML element of r it
// is about: the <superblock>, the <writeset> of its era, or the last
// <era> of its block (the one that counts). If none is found it returns ie.
func locate(r io.Reader, ie *era.RestoreInputError) error {
	d := xml.NewDecoder(r)
	line := 0
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		at, _ := d.InputPos()
		attr := func(name string) (uint32, bool) {
			for _, a := range se.Attr {
				if a.Name.Local == name {
					n, err := strconv.ParseUint(a.Value, 10, 32)
					return uint32(n), err == nil
				}
			}
			return 0, false
		}
		switch {
		case se.Name.Local == "superblock" && ie.Element == "superblock":
			return &lineError{line: at, err: ie}
		case se.Name.Local == "writeset" && ie.Element == "writeset":
			if e, ok := attr("era"); ok && e == ie.Index {
				return &lineError{line: at, err: ie}
			}
		case se.Name.Local == "era" && ie.Element == "era":
			if b, ok := attr("block"); ok && b == ie.Index {
				line = at
			}
		}
	}
	if line > 0 {
		return &lineError{line: line, err: ie}
	}
	return ie
}

// lineError is an error about the input at a given line.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }

func (e *lineError) Unwrap() error { return e.err }

// openOutputStore opens the metadata store era restore writes: an existing
// file or block device (a block device exclusively, so that one the
// kernel's dm-era or a mount holds is refused), or a new file sized for m
// and for a device to go on with.
func openOutputStore(path string, m *eraxml.Metadata) (*os.File, error) {
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		size, err := era.RestoreSize(m)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, err
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
		return f, nil
	case err != nil:
		return nil, err
	}
	return openStore(path, os.O_RDWR)
}
