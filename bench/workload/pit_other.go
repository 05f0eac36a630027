//go:build !linux

package workload

import "os"

// dropCache only syncs f: other systems keep its pages cached.
func dropCache(f *os.File) error { return f.Sync() }

// coldReads reports whether dropCache drops pages.
const coldReads = false

// preallocate does nothing on other systems.
func preallocate(*os.File, int64) error { return nil }
