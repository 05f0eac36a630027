package nbd

import (
	"encoding/binary"
	"fmt"
)

// request is a transmission request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a 28-byte request header. Only the magic number can
// make it fail: after a wrong magic the stream cannot be trusted any more.
func parseRequest(b []byte) (request, error) {
	if len(b) != requestHeaderLen {
		return request{}, fmt.Errorf("request header of %d bytes: %w", len(b), ErrProtocol)
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("request magic %#08x, want %#08x: %w", m, magicRequest, ErrProtocol)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// appendRequest encodes a request header (tests and fuzzing).
func appendRequest(b []byte, r request) []byte {
	b = binary.BigEndian.AppendUint32(b, magicRequest)
	b = binary.BigEndian.AppendUint16(b, r.flags)
	b = binary.BigEndian.AppendUint16(b, r.typ)
	b = binary.BigEndian.AppendUint64(b, r.cookie)
	b = binary.BigEndian.AppendUint64(b, r.offset)
	return binary.BigEndian.AppendUint32(b, r.length)
}

// allowedFlags are the command flags each command accepts.
var allowedFlags = map[uint16]uint16{
	cmdRead:        cflagDF,
	cmdWrite:       cflagFUA,
	cmdDisc:        0,
	cmdFlush:       0,
	cmdTrim:        cflagFUA,
	cmdWriteZeroes: cflagFUA | cflagNoHole | cflagFastZero,
	cmdBlockStatus: cflagReqOne,
}

// commandName names a command for messages.
func commandName(t uint16) string {
	switch t {
	case cmdRead:
		return "READ"
	case cmdWrite:
		return "WRITE"
	case cmdDisc:
		return "DISC"
	case cmdFlush:
		return "FLUSH"
	case cmdTrim:
		return "TRIM"
	case cmdCache:
		return "CACHE"
	case cmdWriteZeroes:
		return "WRITE_ZEROES"
	case cmdBlockStatus:
		return "BLOCK_STATUS"
	}
	return fmt.Sprintf("command %d", t)
}
