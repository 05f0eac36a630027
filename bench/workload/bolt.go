package workload

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// BoltTracker is the tracker the era device is measured against: the
// simplest durable changed-block tracker one would write with bbolt. It
// maps block → era in one bucket; a write to a block not yet marked in the
// current era first commits the mark in a bbolt read-write transaction
// (which bbolt makes durable with fdatasync before it returns), then
// writes the origin. Marks already committed are remembered in memory, as
// the era device's are, so a repeated write costs one bit test.
//
// With Batch set it uses db.Batch instead of db.Update, which lets
// concurrent first writes share a transaction (bbolt's defaults: up to
// 1000 calls or 10 ms).
type BoltTracker struct {
	DB     *bolt.DB
	origin Writer
	size   int64
	era    uint32
	batch  bool
	marked []atomic.Uint64
}

var boltBucket = []byte("eras")

// OpenBolt creates a bbolt database in dir for a tracker of nrBlocks
// 4 KiB blocks over origin, with bbolt's default options (syncs on).
func OpenBolt(dir string, origin Writer, nrBlocks uint64, batch bool) (*BoltTracker, error) {
	path := filepath.Join(dir, "bolt.db")
	os.Remove(path)
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		return nil, err
	}
	if db.NoSync {
		return nil, fmt.Errorf("bbolt opened with NoSync")
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &BoltTracker{
		DB:     db,
		origin: origin,
		size:   int64(nrBlocks) * BlockBytes,
		era:    1,
		batch:  batch,
		marked: make([]atomic.Uint64, (nrBlocks+63)/64),
	}, nil
}

func (t *BoltTracker) isSet(b uint64) bool {
	return t.marked[b/64].Load()&(1<<(b%64)) != 0
}

// WriteAt marks the blocks [off, off+len(p)) touches, durably, then writes
// the origin.
func (t *BoltTracker) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > t.size {
		return 0, fmt.Errorf("write of %d bytes at %d: out of range", len(p), off)
	}
	lo := uint64(off) / BlockBytes
	hi := (uint64(off) + uint64(len(p)) + BlockBytes - 1) / BlockBytes
	var todo []uint64
	for b := lo; b < hi; b++ {
		if !t.isSet(b) {
			todo = append(todo, b)
		}
	}
	if len(todo) > 0 {
		fn := func(tx *bolt.Tx) error {
			bk := tx.Bucket(boltBucket)
			var k [8]byte
			var v [4]byte
			binary.LittleEndian.PutUint32(v[:], t.era)
			for _, b := range todo {
				binary.BigEndian.PutUint64(k[:], b)
				if err := bk.Put(k[:], v[:]); err != nil {
					return err
				}
			}
			return nil
		}
		var err error
		if t.batch {
			err = t.DB.Batch(fn)
		} else {
			err = t.DB.Update(fn)
		}
		if err != nil {
			return 0, err
		}
		for _, b := range todo {
			t.marked[b/64].Or(1 << (b % 64))
		}
	}
	return t.origin.WriteAt(p, off)
}

// Close closes the database and removes it.
func (t *BoltTracker) Close() error {
	path := t.DB.Path()
	err := t.DB.Close()
	os.Remove(path)
	return err
}
