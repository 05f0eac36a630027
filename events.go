package era

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The events a Device reports through Config.Events and Config.Logger.
const (
	// EventFailed: a metadata write or sync failed and the device entered
	// fail mode (writes refused until reopened). Err says why.
	EventFailed EventKind = iota + 1
	// EventNoSpace: a change needed more metadata blocks than were free;
	// it was dropped and the device goes on from the last commit. Err says
	// what.
	EventNoSpace
	// EventUsage: the metadata in use crossed Config.UsageWarn upwards.
	// Used and Total are in blocks.
	EventUsage
	// EventBacklog: an era change found the digest backlog at its bound
	// and digested inline first. Backlog is the count it found.
	EventBacklog
	// EventSlowCommit: a commit took Config.SlowCommit or more. Took is how
	// long.
	EventSlowCommit
	// EventSnapshotOverflow: the point-in-time snapshot of era Era could
	// not preserve a block (its difference store is full, or a copy
	// failed) and failed; writes and tracking go on. Err says why.
	EventSnapshotOverflow
	// EventSnapshotLost: Open found the metadata snapshot of a
	// point-in-time snapshot (of era Era) whose holder crashed, and
	// dropped it: its preserved data is gone. Tracking lost nothing.
	EventSnapshotLost
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventFailed:
		return "failed"
	case EventNoSpace:
		return "no space"
	case EventUsage:
		return "metadata usage high"
	case EventBacklog:
		return "digest backlog at its bound"
	case EventSlowCommit:
		return "slow commit"
	case EventSnapshotOverflow:
		return "point-in-time snapshot overflowed"
	case EventSnapshotLost:
		return "point-in-time snapshot lost in a crash"
	}
	return "unknown"
}

// Event is something an operator must see.
type Event struct {
	Kind        EventKind
	Err         error         // EventFailed, EventNoSpace
	Used, Total uint64        // EventUsage: metadata blocks
	Backlog     int           // EventBacklog
	Took        time.Duration // EventSlowCommit
	Era         uint32        // EventSnapshotOverflow, EventSnapshotLost
}

// emit reports an event to the configured hook and logger.
func (d *Device) emit(e Event) {
	if d.cfg.Events != nil {
		d.cfg.Events(e)
	}
	if l := d.cfg.Logger; l != nil {
		level := slog.LevelWarn
		if e.Kind == EventFailed {
			level = slog.LevelError
		}
		attrs := []slog.Attr{slog.String("event", e.Kind.String())}
		switch e.Kind {
		case EventFailed, EventNoSpace:
			attrs = append(attrs, slog.Any("error", e.Err))
		case EventSnapshotOverflow:
			attrs = append(attrs, slog.Uint64("era", uint64(e.Era)), slog.Any("error", e.Err))
		case EventSnapshotLost:
			attrs = append(attrs, slog.Uint64("era", uint64(e.Era)))
		case EventUsage:
			attrs = append(attrs, slog.Uint64("used_blocks", e.Used), slog.Uint64("total_blocks", e.Total))
		case EventBacklog:
			attrs = append(attrs, slog.Int("backlog", e.Backlog))
		case EventSlowCommit:
			attrs = append(attrs, slog.Duration("took", e.Took))
		}
		l.LogAttrs(context.Background(), level, "era: "+e.Kind.String(), attrs...)
	}
}
