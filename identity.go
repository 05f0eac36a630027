package era

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// A ChangeID names a point in one device's history: the identity (UUID) of
// its metadata and an era. A backup agent records the change ID of the era
// that began with its snapshot or checkpoint, and next time asks for what
// changed since it (WrittenSinceChange). A change ID from other metadata
// (reformatted, restored from a dump without its uuid, another device) or
// from an era the metadata has not reached fails with ErrStaleChangeID: the
// history it names is gone, and only a full backup is safe.
//
// The text form is the UUID in its usual 8-4-4-4-12 hex form, a colon and
// the era in decimal: "0f8fad5b-d9cb-469f-a165-70867728950e:17".
type ChangeID struct {
	UUID [16]byte
	Era  uint32
}

// String returns the change ID's text form.
func (c ChangeID) String() string {
	return formatUUID(c.UUID) + ":" + strconv.FormatUint(uint64(c.Era), 10)
}

// MarshalText implements encoding.TextMarshaler with the text form.
func (c ChangeID) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *ChangeID) UnmarshalText(b []byte) error {
	id, err := ParseChangeID(string(b))
	if err != nil {
		return err
	}
	*c = id
	return nil
}

// ParseChangeID parses the text form of a change ID. Bad input fails with
// ErrInvalidChangeID.
func ParseChangeID(s string) (ChangeID, error) {
	u, e, ok := strings.Cut(s, ":")
	if !ok {
		return ChangeID{}, fmt.Errorf("change ID %q: want UUID:ERA: %w", s, ErrInvalidChangeID)
	}
	uuid, err := parseUUID(u)
	if err != nil {
		return ChangeID{}, fmt.Errorf("change ID %q: %v: %w", s, err, ErrInvalidChangeID)
	}
	era, err := strconv.ParseUint(e, 10, 32)
	if err != nil {
		return ChangeID{}, fmt.Errorf("change ID %q: era: %v: %w", s, err, ErrInvalidChangeID)
	}
	return ChangeID{UUID: uuid, Era: uint32(era)}, nil
}

// checkChangeID returns the era of id if it names a point in the history of
// metadata with identity uuid at era current.
func checkChangeID(id ChangeID, uuid [16]byte, current uint32) (uint32, error) {
	if id.UUID != uuid {
		return 0, fmt.Errorf("change ID %v belongs to other metadata (this is %s): a full backup is needed: %w", id, formatUUID(uuid), ErrStaleChangeID)
	}
	if id.Era > current {
		return 0, fmt.Errorf("change ID %v is ahead of the current era %d (metadata rolled back?): a full backup is needed: %w", id, current, ErrStaleChangeID)
	}
	return id.Era, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() ([16]byte, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("random UUID: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

// formatUUID returns u as 8-4-4-4-12 hex digits; "" for the zero UUID
// (metadata without an identity, as the kernel and era_restore 0.9.0 write
// it).
func formatUUID(u [16]byte) string {
	if u == ([16]byte{}) {
		return ""
	}
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// validUUID reports whether s parses as a UUID.
func validUUID(s string) bool {
	_, err := parseUUID(s)
	return err == nil
}

// parseUUID parses 32 hex digits, with or without the dashes; "" is the
// zero UUID.
func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if s == "" {
		return u, nil
	}
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return u, fmt.Errorf("uuid %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("uuid %q: %v", s, err)
	}
	return u, nil
}

// The kernel's dm-era writes zeros over the superblock's uuid at every
// commit, but rewrites block 0 in place, keeping the bytes past the
// superblock's 224. The identity is therefore also kept there, after a tag,
// so that metadata the kernel ran keeps the identity it had: the kernel
// tracked every write meanwhile, and its change IDs stay good. A kernel
// format writes a zeroed block, which loses the copy, as it must.
const (
	identityOffset = superblockBytes      // 16 bytes of UUID
	identityTagOff = superblockBytes + 16 // 8 bytes of tag
)

var identityTag = []byte("era-uuid")

// putIdentity writes the identity copy into an encoded superblock.
func putIdentity(data []byte, uuid [16]byte) {
	if uuid == ([16]byte{}) {
		return
	}
	copy(data[identityOffset:], uuid[:])
	copy(data[identityTagOff:], identityTag)
}

// identityOf returns the identity copy of an encoded superblock, or zero.
func identityOf(data []byte) [16]byte {
	var u [16]byte
	if len(data) >= identityTagOff+len(identityTag) && bytes.Equal(data[identityTagOff:identityTagOff+len(identityTag)], identityTag) {
		copy(u[:], data[identityOffset:])
	}
	return u
}

// signatures are the marks, at byte offsets of a store's first block, of
// the formats a metadata store is most often confused with.
var signatures = []struct {
	off       int
	sig, what string
}{
	{0, "QFI\xfb", "a qcow2 disk image"},
	{0, "LUKS\xba\xbe", "a LUKS encrypted volume"},
	{0, "XFSB", "an XFS filesystem"},
	{512, "LABELONE", "an LVM physical volume"},
	{512, "EFI PART", "a disk with a GPT partition table"},
	{1080, "\x53\xef", "an ext2/3/4 filesystem"},
	{4086, "SWAPSPACE2", "a swap area"},
	{4086, "SWAP-SPACE", "a swap area"},
	{510, "\x55\xaa", "a disk with an MBR partition table or boot sector"},
	{0, "KDMV", "a VMDK disk image"},
	{0, "conectix", "a VHD disk image"},
	{0, "<<< ", "a VirtualBox VDI disk image"},
}

// describe says what a block 0 that is not era metadata looks like: other
// device-mapper metadata (same superblock layout, other magic), or one of
// the signatures.
func describe(b0 []byte) string {
	switch binary.LittleEndian.Uint64(b0[32:]) {
	case 27022010:
		return "dm-thin pool metadata"
	case 06142003:
		return "dm-cache metadata"
	}
	for _, s := range signatures {
		if len(b0) >= s.off+len(s.sig) && string(b0[s.off:s.off+len(s.sig)]) == s.sig {
			return s.what
		}
	}
	return "unrecognised data"
}

// eraMagicAt reports whether block 0 carries the era superblock's magic.
func eraMagicAt(b0 []byte) bool {
	return len(b0) >= 40 && binary.LittleEndian.Uint64(b0[32:]) == superblockMagic
}
