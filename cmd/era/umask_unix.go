//go:build unix

package main

import (
	"os"
	"sync"
	"syscall"
)

// umask returns the process's file mode creation mask. It reads it once:
// reading it means setting it, which must not race with creating files.
var umask = sync.OnceValue(func() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
})
