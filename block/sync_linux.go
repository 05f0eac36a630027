//go:build linux

package block

import (
	"os"
	"syscall"
)

// datasync syncs an *os.File with fdatasync(2): its data, and the file
// metadata needed to read the data back (size, block allocation), but not
// its timestamps, which nothing here reads. It is what databases use for
// their logs, and it saves ext4 a journal commit for the mtime that every
// write changes. It reports false for other stores.
func datasync(s Syncer) (bool, error) {
	f, ok := s.(*os.File)
	if !ok {
		return false, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return true, err
	}
	if serr != nil {
		return true, &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return true, nil
}
