//go:build !unix

package era

import "os"

// keyOf has no device and inode to offer here.
func keyOf(*os.File) (fileKey, bool) { return fileKey{}, false }

// flockFile does nothing where flock is not available.
func flockFile(*os.File) error { return nil }

// funlockFile does nothing where flock is not available.
func funlockFile(*os.File) error { return nil }
