package era

// Internals the external tests (package era_test) need, exported to the
// test binary only.

// DecodeSuperblock decodes the superblock at the start of a metadata
// image: the fuzz tests read their base images' data block size and
// nr_blocks from it, and the space map root of an image they break.
func DecodeSuperblock(data []byte) (*superblock, error) { return decodeSuperblock(0, data) }

// SuperblockEnd is where the meaningful bytes of the superblock's block
// end (the superblock, then the identity copy): every superblock write must
// be zero past it, so that a torn write leaves the old or the new one.
var SuperblockEnd = identityTagOff + len(identityTag)

// SeqWindow is how many blocks WrittenSinceSeq reads at a time: the
// streaming tests write across its boundaries.
const SeqWindow = seqWindow

// PitFill is the point-in-time tests' data pattern (pit_test.go), for
// TestPointInTimeCrash, an external test.
var PitFill = pitFill
