package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

var messageCommand = &command{
	name:     "message",
	synopsis: "message --control PATH [--json] checkpoint|take_metadata_snap|drop_metadata_snap",
	summary:  "send a dm-era message to a running era serve",
	help: `Sends a dm-era message to the era serve listening on the control socket
PATH and prints the answer: for checkpoint and take_metadata_snap the era
that began and its change ID, for drop_metadata_snap the current era and
its change ID.

  checkpoint          start a new era
  take_metadata_snap  start a new era and hold a metadata snapshot of the
                      state at that point (era invalidate --metadata-snapshot
                      and backups read it while the device goes on)
  drop_metadata_snap  release the held metadata snapshot

Options:
      --control PATH  the control socket of era serve
      --json          print the answer as JSON
  -h, --help          show this help
  -V, --version       show the version
`,
	run: runMessage,
}

func runMessage(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	control := fs.String("control", "", "")
	asJSON := fs.Bool("json", false, "")
	ops, status, done := c.parse(fs, help, ver, args, 1)
	if done {
		return status
	}
	msg := strings.ToLower(ops[0])
	switch {
	case *control == "":
		return c.usage("--control is required")
	case msg != "checkpoint" && msg != "take_metadata_snap" && msg != "drop_metadata_snap":
		return c.usage("unknown message %q: want checkpoint, take_metadata_snap or drop_metadata_snap", ops[0])
	}
	r, err := controlRequest(*control, msg)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		return c.printJSON(r)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if msg == "drop_metadata_snap" {
		fmt.Fprintf(tw, "current era\t%d\n", r.Era)
	} else {
		fmt.Fprintf(tw, "era began\t%d\n", r.Era)
	}
	if r.ChangeID != "" {
		fmt.Fprintf(tw, "change ID\t%s\n", r.ChangeID)
	}
	if err := tw.Flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// runStatusControl is era status --control PATH: the status of a running
// era serve.
func runStatusControl(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	control := fs.String("control", "", "")
	asJSON := fs.Bool("json", false, "")
	if _, status, done := c.parse(fs, help, ver, args, 0); done {
		return status
	}
	r, err := controlRequest(*control, "status")
	if err != nil {
		return c.fail(err)
	}
	s := r.Status
	if s == nil {
		return c.fail(fmt.Errorf("control socket %s: no status in the answer", *control))
	}
	if *asJSON {
		return c.printJSON(r)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("serving", "%s", s.URI)
	row("metadata", "%s", s.MetadataPath)
	row("image", "%s (%s)", s.ImagePath, humanBytes(uint64(s.Size)))
	row("current era", "%d", s.CurrentEra)
	if r.ChangeID != "" {
		row("change ID", "%s", r.ChangeID)
	}
	row("data block size", "%s", humanBytes(s.BlockBytes))
	row("data blocks", "%d", s.Blocks)
	if s.Snapshot {
		row("metadata snapshot", "held")
	} else {
		row("metadata snapshot", "none")
	}
	if s.SnapshotExport != "" {
		state := "good"
		if s.SnapshotError != "" {
			state = "FAILED: " + s.SnapshotError
		}
		row("point-in-time snapshot", "export %s, image as of era %d; %d blocks (%s) in the difference store; %s",
			s.SnapshotExport, s.SnapshotEra, s.SnapshotCopied, humanBytes(uint64(s.SnapshotBytes)), state)
	}
	row("read-only", "%v", s.ReadOnly)
	row("connections", "%d", s.Connections)
	row("commits", "%d", s.Commits)
	row("dm status", "%s", s.DMStatus)
	if err := tw.Flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// statusControlled reports whether era status was given --control, which
// asks a running era serve instead of reading metadata.
func statusControlled(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--control" || a == "-control" || strings.HasPrefix(a, "--control=") || strings.HasPrefix(a, "-control=") {
			return true
		}
	}
	return false
}

// printJSON prints v as one line of JSON.
func (c *cmdEnv) printJSON(v any) int {
	b, err := json.Marshal(v)
	if err == nil {
		_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}
