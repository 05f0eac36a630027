package etesting

import (
	"errors"
)

// NoOrigin is the origin of a device reopened only to be queried: Open
// never touches the origin, and any read or write of it fails.
type NoOrigin struct{}

// ReadAt fails.
func (NoOrigin) ReadAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

// WriteAt fails.
func (NoOrigin) WriteAt([]byte, int64) (int, error) { return 0, errors.New("no origin") }

// IsZero reports whether every byte of b is zero (an unformatted
// superblock, for instance).
func IsZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
