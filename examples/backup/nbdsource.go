package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/nbd"
)

// NBDSource is a running era serve export: the blocks written since an era
// come from BLOCK_STATUS on x-era:written-since:N, the data from READ, and
// the metadata snapshot is taken and dropped through era serve's control
// socket.
type NBDSource struct {
	URI     string // nbd://HOST:PORT/EXPORT or nbd+unix:///EXPORT?socket=PATH
	Control string // era serve's --control socket
}

// maxStatusRequest bounds one BLOCK_STATUS request (as virtnbdbackup
// does).
const maxStatusRequest = 32 << 20

// controlAnswer is the part of era serve's control answer the tool uses.
type controlAnswer struct {
	Error    string `json:"error"`
	Era      uint32 `json:"era"`
	ChangeID string `json:"change_id"`
	Status   *struct {
		Size       int64  `json:"size"`
		BlockBytes uint64 `json:"block_bytes"`
		CurrentEra uint32 `json:"current_era"`
		Snapshot   bool   `json:"metadata_snapshot"`
		// SnapshotExport is the export of a held point-in-time snapshot
		// (era serve --snapshot-store).
		SnapshotExport string `json:"snapshot_export"`
	} `json:"status"`
}

// errControl reports a request era serve refused.
var errControl = errors.New("era serve refused")

// control sends one request line to era serve's control socket.
func (s *NBDSource) control(ctx context.Context, line string) (*controlAnswer, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.Control)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var a controlAnswer
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&a); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.Control, err)
	}
	if a.Error != "" {
		return nil, fmt.Errorf("%s: %w: %s", line, errControl, a.Error)
	}
	return &a, nil
}

// backupNBD is Backup from a running era serve export.
func (r *Repo) backupNBD(ctx context.Context, kind Kind, src *NBDSource, opt Options) (res *Result, err error) {
	if src.URI == "" || src.Control == "" {
		return nil, errors.New("backup source: the NBD URI and the control socket are required")
	}
	m, prev, res, unlock, err := r.begin(kind)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := src.control(ctx, "status")
	if err != nil {
		return nil, err
	}
	if st.Status == nil || st.Status.BlockBytes == 0 {
		return nil, fmt.Errorf("control socket %s: no status in the answer", src.Control)
	}
	size, blockBytes := st.Status.Size, st.Status.BlockBytes
	switch {
	case prev != nil && size != prev.ImageSize:
		return nil, fmt.Errorf("export is %d bytes, backup %d in %s is of a %d-byte image: %w", size, prev.ID, r.Dir, prev.ImageSize, ErrImageMismatch)
	case prev != nil && blockBytes != prev.BlockBytes:
		return nil, fmt.Errorf("export tracks %d-byte blocks, backup %d in %s used %d-byte blocks: %w", blockBytes, prev.ID, r.Dir, prev.BlockBytes, ErrBlockSize)
	case st.Status.Snapshot:
		return nil, fmt.Errorf("era serve already holds a metadata snapshot (another backup running, or one that crashed; era message --control %s drop_metadata_snap): %w", src.Control, era.ErrSnapshotExists)
	case kind == Incremental && st.Status.CurrentEra < prev.Era:
		return nil, eraBackwards(st.Status.CurrentEra, prev)
	}

	thaw := func() {}
	if opt.Freeze != nil {
		thaw = opt.Freeze()
	}
	taken, err := src.control(ctx, "take_metadata_snap")
	thaw()
	if err != nil {
		return nil, fmt.Errorf("take metadata snapshot: %w", err)
	}
	defer func() {
		if _, derr := src.control(context.WithoutCancel(ctx), "drop_metadata_snap"); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop metadata snapshot: %w", derr))
		}
	}()
	snapEra := taken.Era
	if kind == Incremental && snapEra <= prev.Era {
		return nil, eraBackwards(snapEra, prev)
	}

	cur, err := era.ParseChangeID(taken.ChangeID)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", src.Control, err)
	}
	if kind == Incremental {
		_, err := sinceChange(prev, cur)
		if kind, err = fullIfStale(kind, err, opt); err != nil {
			return nil, err
		}
	}
	// With --snapshot-store, era serve offers the image as of the
	// snapshot as a second export: read it, and its metadata's contexts.
	dataURI, consistent := src.URI, false
	if held, err := src.control(ctx, "status"); err != nil {
		return nil, err
	} else if held.Status != nil && held.Status.SnapshotExport != "" {
		if dataURI, err = withExport(src.URI, held.Status.SnapshotExport); err != nil {
			return nil, err
		}
		consistent = true
	}
	var contexts []string
	if kind == Incremental {
		contexts = []string{fmt.Sprintf("x-era:written-since:%d", prev.Era)}
	}
	client, err := nbd.DialURI(ctx, dataURI, contexts...)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if client.Size() != size {
		return nil, fmt.Errorf("export %s is %d bytes, its control socket says %d: not the same export: %w", src.URI, client.Size(), size, ErrImageMismatch)
	}
	nrBlocks := (uint64(size) + blockBytes - 1) / blockBytes
	var ranges []Range
	switch kind {
	case Full:
		ranges = []Range{{0, nrBlocks}}
	case Incremental:
		if ranges, err = writtenRanges(ctx, client, contexts[0], uint64(size), blockBytes); err != nil {
			return nil, fmt.Errorf("blocks written since era %d: %w", prev.Era, err)
		}
	}
	b := Backup{
		ID:         len(m.Backups) + 1,
		Kind:       kind,
		Mode:       "nbd",
		Era:        snapEra,
		ChangeID:   cur.String(),
		BlockBytes: blockBytes,
		ImageSize:  size,
		Created:    time.Now().UTC().Truncate(time.Second),
		Chunks:     []Chunk{},
		Consistent: consistent,
	}
	if kind == Incremental {
		b.SinceEra = prev.Era
	}
	return r.store(ctx, m, res, b, client, ranges, opt)
}

// withExport returns uri naming export instead of its own.
func withExport(uri, export string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("NBD URI %q: %w", uri, err)
	}
	u.Path, u.RawPath = "/"+export, ""
	return u.String(), nil
}

// writtenRanges asks the export for the context's extents over the whole
// image, in requests of at most 32 MiB, and returns the blocks of the
// extents with bit 0 set.
func writtenRanges(ctx context.Context, c *nbd.Client, context string, size, blockBytes uint64) ([]Range, error) {
	var out []Range
	for off := uint64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ext, err := c.BlockStatus(context, off, uint32(min(size-off, maxStatusRequest)))
		if err != nil {
			return nil, err
		}
		for _, e := range ext {
			end := off + uint64(e.Length)
			if e.Flags&1 != 0 {
				out = appendRange(out, off/blockBytes, (end+blockBytes-1)/blockBytes)
			}
			off = end
		}
	}
	return out, nil
}
