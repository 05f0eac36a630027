package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/era-go/era"
)

// cmdEnv is what a command runs with.
type cmdEnv struct {
	prog   string // "era dump", or "era_dump" when run under that name
	cmd    *command
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// flags returns a FlagSet for the command with -h/--help and
// -V/--version. The flag package accepts every flag with one dash or two.
func (c *cmdEnv) flags() (fs *flag.FlagSet, help, ver *bool) {
	fs = flag.NewFlagSet(c.prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help, ver = new(bool), new(bool)
	fs.BoolVar(help, "h", false, "")
	fs.BoolVar(help, "help", false, "")
	fs.BoolVar(ver, "V", false, "")
	fs.BoolVar(ver, "version", false, "")
	return fs, help, ver
}

// parse parses args with fs, allowing flags after operands as getopt
// does; "--" ends the flags. It returns the operands, and done with an exit
// status when the command must stop: after --help, --version, or a usage
// error. want is the number of operands the command takes.
func (c *cmdEnv) parse(fs *flag.FlagSet, help, ver *bool, args []string, want int) (operands []string, status int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, c.usage("%v", err), true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			operands = append(operands, rest...)
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	switch {
	case *help:
		fmt.Fprintf(c.stdout, "Usage: %s\n\n%s", c.synopsis(), c.cmd.help)
		return nil, exitOK, true
	case *ver:
		fmt.Fprintln(c.stdout, versionString())
		return nil, exitOK, true
	case len(operands) < want && want == 1:
		return nil, c.usage("no metadata device or file given"), true
	case len(operands) < want:
		return nil, c.usage("missing operand"), true
	case len(operands) > want:
		return nil, c.usage("unexpected operand %q", operands[want]), true
	}
	return operands, 0, false
}

func (c *cmdEnv) synopsis() string {
	name, rest, _ := strings.Cut(c.cmd.synopsis, " ")
	if c.prog == "era_"+name {
		return c.prog + " " + rest
	}
	return "era " + c.cmd.synopsis
}

// usage reports a usage error and returns its exit status.
func (c *cmdEnv) usage(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\nUsage: %s\nTry '%s --help' for more information.\n", c.prog, fmt.Sprintf(format, args...), c.synopsis(), c.prog)
	return exitUsage
}

// fail reports err and returns exit status 1, or ends quietly with the
// SIGPIPE status when err is a write to a closed pipe.
func (c *cmdEnv) fail(err error) int {
	if errors.Is(err, syscall.EPIPE) {
		return exitPipe
	}
	fmt.Fprintf(c.stderr, "%s: %s\n", c.prog, describe(err))
	return exitFail
}

// describe renders an error for a person.
func describe(err error) string {
	return tidy(err.Error())
}

// tidy drops the "corrupt metadata" that every corruption ends with, which
// says nothing the message does not.
func tidy(s string) string {
	return strings.TrimSuffix(s, ": "+era.ErrCorrupt.Error())
}

// fileError names the file an error is about.
func fileError(path string, err error) error {
	return fmt.Errorf("%s: %w", path, err)
}

// openMetadata opens a metadata device or file for reading.
func openMetadata(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	return f, nil
}

// openView opens the committed state of the metadata at path, or its
// metadata snapshot.
func openView(path string, snapshot bool) (*os.File, *era.View, error) {
	f, err := openMetadata(path)
	if err != nil {
		return nil, nil, err
	}
	var v *era.View
	if snapshot {
		v, err = era.OpenSnapshot(f)
	} else {
		v, err = era.OpenView(f)
	}
	if err != nil {
		f.Close()
		return nil, nil, fileError(path, err)
	}
	return f, v, nil
}

// writeOutput runs write on standard output (path "" or "-") or on the
// file path. A regular file is written as a temporary file next to it,
// synced and renamed over it, so that readers never see it half written
// and a failure leaves the old file as it was; a device or pipe is written
// in place.
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) (err error) {
	if path == "" || path == "-" {
		return write(stdout)
	}
	perm := 0o666 &^ umask()
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if err := write(f); err != nil {
				f.Close()
				return fileError(path, err)
			}
			return f.Close()
		}
		perm = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fileError(path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fileError(path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fileError(path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fileError(path, err)
	}
	if err := tmp.Close(); err != nil {
		return fileError(path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// uint32Flag is a flag holding a decimal uint32, remembering whether it was
// set.
type uint32Flag struct {
	v   uint32
	set bool
}

func (f *uint32Flag) String() string { return strconv.FormatUint(uint64(f.v), 10) }

func (f *uint32Flag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not an era (a number from 0 to 4294967295)", s)
	}
	f.v, f.set = uint32(n), true
	return nil
}

// formatFlag is the value of --format: xml or json.
type formatFlag string

func (f *formatFlag) String() string { return string(*f) }

func (f *formatFlag) Set(s string) error {
	switch s {
	case "xml", "json":
		*f = formatFlag(s)
		return nil
	}
	return fmt.Errorf("format %q: want xml or json", s)
}
