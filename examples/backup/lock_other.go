//go:build !unix

package main

import (
	"os"
	"path/filepath"
)

// lock creates the lock file; on this platform it does not exclude other
// writers: run one backup at a time.
func (r *Repo) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(r.Dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
