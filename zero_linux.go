package era

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Linux fallocate modes.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// punch deallocates [off, off+n) of an *os.File that is a regular file,
// keeping its size; reads of the range then return zeros. It reports
// false, with no error, where the file system cannot.
func punch(w io.WriterAt, off, n int64) (bool, error) {
	f, ok := w.(*os.File)
	if !ok || !regular(f) {
		return false, nil
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) {
		ferr = syscall.Fallocate(int(fd), fallocKeepSize|fallocPunchHole, off, n)
	}); err != nil {
		return false, nil
	}
	if errors.Is(ferr, syscall.EOPNOTSUPP) || errors.Is(ferr, syscall.ENOSYS) {
		return false, nil
	}
	return ferr == nil, ferr
}

// canPunch reports whether punch can work on w: a regular *os.File (the
// file system may still refuse, and WriteZeroes then writes zeros).
func canPunch(w io.WriterAt) bool {
	f, ok := w.(*os.File)
	return ok && regular(f)
}

func regular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}
