package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openStore opens a file or block device that era writes. A block device
// is opened exclusively (O_EXCL), so that one a device-mapper target (the
// kernel's dm-era), a mount or another era holds is refused rather than
// written under it.
func openStore(path string, flag int) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0 {
		flag |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%s is in use (a device-mapper target, a mount or another program holds it): %w", path, err)
	}
	return f, err
}
