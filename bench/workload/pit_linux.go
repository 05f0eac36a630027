package workload

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache writes f's dirty pages out and drops its pages from the page
// cache, so that the next read of it comes from the disk.
func dropCache(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// coldReads reports whether dropCache drops pages.
const coldReads = true

// preallocate reserves size bytes of disk for f, so that the blocks
// written to it later lie together as one extent would.
func preallocate(f *os.File, size int64) error {
	return unix.Fallocate(int(f.Fd()), 0, 0, size)
}
