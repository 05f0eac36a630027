//go:build !linux

package era

import "io"

// punch cannot deallocate here.
func punch(io.WriterAt, int64, int64) (bool, error) { return false, nil }

// canPunch reports false: WriteZeroes writes zeros here.
func canPunch(io.WriterAt) bool { return false }
