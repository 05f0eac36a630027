//go:build unix

package era

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// keyOf returns the device and inode of f.
func keyOf(f *os.File) (fileKey, bool) {
	fi, err := f.Stat()
	if err != nil {
		return fileKey{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// flockFile takes a non-blocking exclusive flock on f.
func flockFile(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	var lerr error
	if err := sc.Control(func(fd uintptr) {
		lerr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
	}); err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	switch {
	case errors.Is(lerr, syscall.EWOULDBLOCK):
		return fmt.Errorf("%s: another process owns it: %w", f.Name(), ErrLocked)
	case errors.Is(lerr, syscall.ENOLCK), errors.Is(lerr, syscall.ENOTSUP), errors.Is(lerr, syscall.EINVAL):
		return nil // a file system without flock: this process's table still guards
	case lerr != nil:
		return fmt.Errorf("lock %s: %w", f.Name(), lerr)
	}
	return nil
}

// funlockFile releases the flock on f.
func funlockFile(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil // closed by its owner: the lock went with it
	}
	var uerr error
	if err := sc.Control(func(fd uintptr) { uerr = syscall.Flock(int(fd), syscall.LOCK_UN) }); err != nil {
		return nil
	}
	return uerr
}
