//go:build !linux

package block

// datasync reports false: stores are synced with their Sync method.
func datasync(Syncer) (bool, error) { return false, nil }
