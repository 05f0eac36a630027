// Command era checks, dumps, restores and queries the metadata of the Linux
// device-mapper era target, as written by the kernel or by the
// github.com/era-go/era library. It is a drop-in for era_check, era_dump,
// era_restore and era_invalidate of thin-provisioning-tools 0.9.0: the
// same options, and for dump and invalidate the same XML, byte for byte.
// Where 0.9.0 is wrong it is not: era check verifies the space map, dump
// --logical lets the newest era win, and invalidate counts the current
// writeset and really reads the metadata snapshot.
//
// Usage:
//
//	era check [-q|--quiet] [--super-block-only] META
//	era dump [--logical] [--compat] [--include-current] [--repair] [--format xml|json] [-o FILE] META
//	era restore -i XML -o META [-q|--quiet]
//	era invalidate --written-since N [--metadata-snapshot] [--format xml|json] [--bytes] [-o FILE] META
//	era status META
//	era serve --meta FILE --image FILE [--socket PATH | --listen HOST:PORT] [--control PATH] ...
//	era message --control PATH checkpoint|take_metadata_snap|drop_metadata_snap
//
// Run "era COMMAND --help" for the details of a command. Installed or
// linked under the name era_check, era_dump, era_restore or era_invalidate,
// the binary runs that command.
//
// Exit status: 0 on success, 1 when the metadata is damaged or a command
// fails, 2 on a usage error, 141 (as if killed by SIGPIPE) when the reader
// of standard output went away.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is the version of the era command.
const version = "0.1.0"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
	exitPipe  = 128 + 13 // what a shell reports for a process killed by SIGPIPE
)

func main() {
	// Without this a write to a closed pipe on standard output kills the
	// process with SIGPIPE; with it the write fails with EPIPE, which the
	// commands turn into a quiet exit.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(runProgram(filepath.Base(os.Args[0]), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runProgram runs the program invoked as name: one of the tool names of
// thin-provisioning-tools runs that command, anything else is era.
func runProgram(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	for _, c := range commands {
		if name == "era_"+c.name && c.toolName {
			return c.run(&cmdEnv{prog: name, cmd: c, stdin: stdin, stdout: stdout, stderr: stderr}, args)
		}
	}
	return runEra(args, stdin, stdout, stderr)
}

// run runs "era args...": a command and its arguments, writing to stdout
// and stderr, and returns the exit status. Standard input is os.Stdin.
func run(args []string, stdout, stderr io.Writer) int {
	return runEra(args, os.Stdin, stdout, stderr)
}

func runEra(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "era: no command\n%sTry 'era --help' for more information.\n", synopses())
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help":
		fmt.Fprint(stdout, mainHelp())
		return exitOK
	case "-V", "--version", "-version", "version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, mainHelp())
			return exitOK
		}
		if c := lookup(args[1]); c != nil {
			return c.run(&cmdEnv{prog: "era " + c.name, cmd: c, stdin: stdin, stdout: stdout, stderr: stderr}, []string{"--help"})
		}
		fmt.Fprintf(stderr, "era help: unknown command %q\n%sTry 'era --help' for more information.\n", args[1], synopses())
		return exitUsage
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "era: unknown command %q\n%sTry 'era --help' for more information.\n", args[0], synopses())
		return exitUsage
	}
	return c.run(&cmdEnv{prog: "era " + c.name, cmd: c, stdin: stdin, stdout: stdout, stderr: stderr}, args[1:])
}

// command is one subcommand of era.
type command struct {
	name     string
	toolName bool   // also runs as era_<name>
	synopsis string // the usage line, after "era "
	summary  string // one line for the command list
	help     string // the options and what the command does
	run      func(c *cmdEnv, args []string) int
}

// commands lists the subcommands, in the order of the help.
var commands []*command

func init() {
	commands = []*command{checkCommand, dumpCommand, restoreCommand, invalidateCommand, statusCommand, serveCommand, messageCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func synopses() string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  era %s\n", c.synopsis)
	}
	return b.String()
}

func mainHelp() string {
	var b strings.Builder
	b.WriteString(`era - check, dump, restore and query dm-era metadata

The metadata of the Linux device-mapper era target (and of the
github.com/era-go/era library, which writes the same format). A drop-in for
era_check, era_dump, era_restore and era_invalidate of
thin-provisioning-tools 0.9.0, with the same options and, for dump and
invalidate, the same XML byte for byte.

`)
	b.WriteString(synopses())
	b.WriteString("\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString(`  help        show the help of a command: era help COMMAND

Every command takes -h/--help and -V/--version. Installed or linked as
era_check, era_dump, era_restore or era_invalidate, the binary runs that
command, so scripts written for thin-provisioning-tools keep working.

Exit status: 0 on success, 1 when the metadata is damaged or a command
fails, 2 on a usage error, 141 when the reader of standard output went
away (as for a process killed by SIGPIPE).
`)
	return b.String()
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = strings.TrimPrefix(bi.Main.Version, "v")
	}
	return "era " + v + " (github.com/era-go/era; dm-era metadata, compatible with thin-provisioning-tools 0.9.0)"
}
