package era

import (
	"fmt"
	"os"
	"sync"
)

// Locker is implemented by metadata stores that guard their own ownership,
// for stores that are not an *os.File (a network block device, say). Open
// calls TryLock, which must fail at once, wrapping ErrLocked, while another
// owner holds the store; Close calls Unlock.
type Locker interface {
	TryLock() error
	Unlock() error
}

// owned holds the metadata files that a Device of this process owns, by
// device and inode: an advisory file lock does not tell two opens of the
// same file within one process apart when they share a descriptor.
var owned = struct {
	sync.Mutex
	files map[fileKey]bool
}{files: map[fileKey]bool{}}

// fileKey names a file whatever path or descriptor reaches it.
type fileKey struct{ dev, ino uint64 }

// lockStore takes the exclusive ownership of a metadata store for a Device:
// the store's own Locker, or for an *os.File an entry in this process's
// table and a non-blocking exclusive advisory lock on the file, which the
// system releases if the process dies. Other stores are not locked. It
// returns the function that releases the ownership.
func lockStore(meta any) (unlock func() error, err error) {
	if l, ok := meta.(Locker); ok {
		if err := l.TryLock(); err != nil {
			return nil, err
		}
		return l.Unlock, nil
	}
	f, ok := meta.(*os.File)
	if !ok {
		return func() error { return nil }, nil
	}
	key, ok := keyOf(f)
	if ok {
		owned.Lock()
		if owned.files[key] {
			owned.Unlock()
			return nil, fmt.Errorf("%s: an era device of this process has it open: %w", f.Name(), ErrLocked)
		}
		owned.files[key] = true
		owned.Unlock()
	}
	release := func() {
		if ok {
			owned.Lock()
			delete(owned.files, key)
			owned.Unlock()
		}
	}
	if err := flockFile(f); err != nil {
		release()
		return nil, err
	}
	return func() error {
		err := funlockFile(f)
		release()
		return err
	}, nil
}
