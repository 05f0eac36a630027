package main

import (
	"encoding/binary"

	"github.com/era-go/era/block"
)

// putChecksum recomputes the checksum of block b of the given kind, leaving
// its stored location as it is.
func putChecksum(b []byte, kind *block.Kind) {
	binary.LittleEndian.PutUint32(b, kind.Checksum(b))
}
