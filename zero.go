package era

import (
	"fmt"
	"io"
)

// Zeroer is implemented by origins that can zero a byte range without
// writing the zeros, by deallocating it (punching a hole), as *os.File
// does on Linux. WriteZeroes uses it.
type Zeroer interface {
	ZeroRange(off, n int64) error
}

// WriteZeroes zeroes bytes [off, off+n) of the origin, marking every block
// the range touches in the current era first, as WriteAt does. It punches a
// hole where the origin can (a Zeroer, or an *os.File on a file system
// that supports it) and writes zeros otherwise.
func (d *Device) WriteZeroes(off, n int64) error {
	if n < 0 || n > int64(int(^uint(0)>>1)) {
		return fmt.Errorf("zero %d bytes: %w", n, ErrOutOfRange)
	}
	_, err := d.write(off, int(n), func() (int, error) {
		if err := zeroRange(d.origin, off, n); err != nil {
			return 0, err
		}
		return int(n), nil
	})
	return err
}

// ZeroesFast reports whether WriteZeroes deallocates rather than writes.
func (d *Device) ZeroesFast() bool {
	if _, ok := d.origin.(Zeroer); ok {
		return true
	}
	return canPunch(d.origin)
}

// zeroChunk is the size of the zero buffer WriteZeroes writes with.
const zeroChunk = 1 << 20

// zeroRange zeroes [off, off+n) of w, by deallocation when it can.
func zeroRange(w io.WriterAt, off, n int64) error {
	if z, ok := w.(Zeroer); ok {
		return z.ZeroRange(off, n)
	}
	if punched, err := punch(w, off, n); punched || err != nil {
		return err
	}
	buf := make([]byte, min(n, zeroChunk))
	for n > 0 {
		m := min(n, int64(len(buf)))
		k, err := w.WriteAt(buf[:m], off)
		if err == nil && int64(k) < m {
			err = io.ErrShortWrite
		}
		if err != nil {
			return err
		}
		off, n = off+m, n-m
	}
	return nil
}
