package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync"

	"github.com/era-go/era"
	"github.com/era-go/era/nbd"
)

// snapshotSuffix names the export of a held point-in-time snapshot: the
// export name followed by it.
const snapshotSuffix = "@snapshot"

// pitServer holds the point-in-time snapshots of era serve
// --snapshot-store: take_metadata_snap takes one with the file as its
// difference store and offers it as the read-only export NAME@snapshot;
// drop_metadata_snap withdraws the export and releases it.
type pitServer struct {
	d      *era.Device
	srv    *nbd.Server
	path   string // the difference store
	export string // NAME@snapshot

	mu   sync.Mutex
	snap *era.Snapshot
	view *era.View
	f    *os.File
}

// take takes a point-in-time snapshot and offers its export.
func (p *pitServer) take() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap != nil {
		return 0, fmt.Errorf("snapshot of era %d: %w", p.snap.Era(), era.ErrSnapshotExists)
	}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("--snapshot-store: %w", err)
	}
	snap, err := p.d.HoldPointInTime(f, era.PointInTimeOptions{})
	if err != nil {
		f.Close()
		return 0, err
	}
	v, err := snap.View()
	if err == nil {
		err = p.srv.AddExport(p.export, &pitBackend{snap: snap, view: v, blockBytes: p.d.BlockBytes()},
			nbd.ExportOptions{ReadOnly: true, Description: fmt.Sprintf("image as of era %d", snap.Era())})
		if err != nil {
			v.Close()
		}
	}
	if err != nil {
		snap.Release()
		f.Close()
		return 0, err
	}
	p.snap, p.view, p.f = snap, v, f
	return snap.Era(), nil
}

// held reports whether a snapshot is held.
func (p *pitServer) held() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap != nil
}

// drop withdraws the export and releases the snapshot; ErrNoSnapshot when
// none is held.
func (p *pitServer) drop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap == nil {
		return era.ErrNoSnapshot
	}
	err := p.srv.RemoveExport(p.export)
	p.view.Close()
	err = errors.Join(err, p.snap.Release(), p.f.Close())
	p.snap, p.view, p.f = nil, nil, nil
	return err
}

// status fills in the snapshot's part of a status.
func (p *pitServer) status(s *controlStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap == nil {
		return
	}
	st := p.d.Stats()
	s.SnapshotExport = p.export
	s.SnapshotEra = p.snap.Era()
	s.SnapshotCopied = st.SnapshotCopied
	s.SnapshotBytes = st.SnapshotBytes
	if err := p.snap.Err(); err != nil {
		s.SnapshotError = err.Error()
	}
}

// pitBackend serves a point-in-time snapshot: its image, read-only, and
// the era queries of its metadata snapshot.
type pitBackend struct {
	snap       *era.Snapshot
	view       *era.View
	blockBytes uint64
}

func (b *pitBackend) ReadAt(p []byte, off int64) (int, error) { return b.snap.ReadAt(p, off) }

func (b *pitBackend) WriteAt([]byte, int64) (int, error) {
	return 0, fmt.Errorf("the snapshot export is read-only: %w", era.ErrReadOnly)
}

func (b *pitBackend) Size() int64        { return b.snap.Size() }
func (b *pitBackend) Sync() error        { return nil }
func (b *pitBackend) BlockBytes() uint64 { return b.blockBytes }
func (b *pitBackend) CurrentEra() uint32 { return b.view.CurrentEra() }
func (b *pitBackend) WrittenSinceSeq(ctx context.Context, since uint32, from uint64) iter.Seq2[era.Range, error] {
	return b.view.WrittenSinceSeq(ctx, since, from)
}
func (b *pitBackend) BlockEras(ctx context.Context, lo, hi uint64) ([]uint32, error) {
	return b.view.BlockEras(ctx, lo, hi)
}
