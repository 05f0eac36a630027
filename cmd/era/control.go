package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The control socket of era serve: a unix socket (mode 0600) on which a
// client sends one line, a dm message ("checkpoint", "take_metadata_snap",
// "drop_metadata_snap") or "status", and reads one line of JSON back, a
// controlReply. era message --control and era status --control are its
// clients.

// controlReply answers a control request.
type controlReply struct {
	Error string `json:"error,omitempty"`
	// Era is the era that began (checkpoint, take_metadata_snap) or the
	// current era (drop_metadata_snap, status).
	Era uint32 `json:"era"`
	// ChangeID is the change ID of that era.
	ChangeID string         `json:"change_id,omitempty"`
	Status   *controlStatus `json:"status,omitempty"`
}

// controlStatus is the status of a serving device.
type controlStatus struct {
	URI          string `json:"uri"`
	Export       string `json:"export"`
	ReadOnly     bool   `json:"read_only"`
	Size         int64  `json:"size"`
	BlockBytes   uint64 `json:"block_bytes"`
	Blocks       uint64 `json:"blocks"`
	CurrentEra   uint32 `json:"current_era"`
	Snapshot     bool   `json:"metadata_snapshot"`
	DMStatus     string `json:"dm_status"`
	Connections  int    `json:"connections"`
	Commits      uint64 `json:"commits"`
	MetadataPath string `json:"metadata"`
	ImagePath    string `json:"image"`

	// A point-in-time snapshot held (--snapshot-store): its export, its
	// era, the blocks and bytes copied to the difference store, and why it
	// failed, if it did.
	SnapshotExport string `json:"snapshot_export,omitempty"`
	SnapshotEra    uint32 `json:"snapshot_era,omitempty"`
	SnapshotCopied uint64 `json:"snapshot_copied_blocks,omitempty"`
	SnapshotBytes  int64  `json:"snapshot_bytes,omitempty"`
	SnapshotError  string `json:"snapshot_error,omitempty"`
}

// controlHandler answers one request line.
type controlHandler func(line string) controlReply

// controlServer serves a control socket.
type controlServer struct {
	l      net.Listener
	handle controlHandler
	wg     sync.WaitGroup
}

// listenUnix listens on a unix socket at path with mode 0600. A stale
// socket file (nobody listening) is replaced; a live one is an error.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: a server is already listening there", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func serveControl(path string, h controlHandler) (*controlServer, error) {
	l, err := listenUnix(path)
	if err != nil {
		return nil, err
	}
	cs := &controlServer{l: l, handle: h}
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				cs.serve(c)
			}()
		}
	}()
	return cs, nil
}

// serve answers the requests of one control connection, a line each.
func (cs *controlServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 256), 4096)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		if err := enc.Encode(cs.handle(strings.TrimSpace(sc.Text()))); err != nil {
			return
		}
	}
}

// close stops accepting and waits for the connections under way.
func (cs *controlServer) close() {
	cs.l.Close()
	cs.wg.Wait()
}

// errControl reports a failure the server answered.
var errControl = errors.New("era serve")

// controlRequest sends one request to the control socket at path.
func controlRequest(path, line string) (controlReply, error) {
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return controlReply{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return controlReply{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	var r controlReply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&r); err != nil {
		return controlReply{}, fmt.Errorf("control socket %s: reply: %w", path, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%w: %s", errControl, r.Error)
	}
	return r, nil
}
