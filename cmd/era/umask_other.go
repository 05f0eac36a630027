//go:build !unix

package main

import "os"

// umask returns the usual file mode creation mask where there is none.
func umask() os.FileMode { return 0o022 }
