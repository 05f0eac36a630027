package nbd

// Wire constants of the NBD protocol (fixed newstyle negotiation,
// simple and structured replies). Every number is big-endian on the wire.

// Magic numbers.
const (
	magicInit        = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt         = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply    = 0x0003e889045565a9
	magicRequest     = 0x25609513
	magicSimple      = 0x67446698
	magicStructured  = 0x668e33ef
	requestHeaderLen = 28
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	clientFixedNewstyle = 1 << 0
	clientNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
	tflagSendFastZero    = 1 << 11
)

// Options.
const (
	optExportName       = 1
	optAbort            = 2
	optList             = 3
	optStartTLS         = 5
	optInfo             = 6
	optGo               = 7
	optStructuredReply  = 8
	optListMetaContext  = 9
	optSetMetaContext   = 10
	optExtendedHeaders  = 11
	repErrBit           = 1 << 31
	repAck              = 1
	repServer           = 2
	repInfo             = 3
	repMetaContext      = 4
	repErrUnsup         = repErrBit | 1
	repErrPolicy        = repErrBit | 2
	repErrInvalid       = repErrBit | 3
	repErrUnknown       = repErrBit | 6
	repErrShutdown      = repErrBit | 7
	repErrTooBig        = repErrBit | 9
	infoExport          = 0
	infoName            = 1
	infoDescription     = 2
	infoBlockSize       = 3
	maxStringLen        = 4096 // the protocol's limit on names and queries
	maxOptionLen        = 64 << 10
	maxInfoRequestCount = 64
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cflagFUA      = 1 << 0
	cflagNoHole   = 1 << 1
	cflagDF       = 1 << 2
	cflagReqOne   = 1 << 3
	cflagFastZero = 1 << 4
)

// Structured reply flags and chunk types.
const (
	replyFlagDone       = 1 << 0
	replyNone           = 0
	replyOffsetData     = 1
	replyBlockStatus    = 5
	replyError          = 1<<15 | 1
	replyErrorOffset    = 1<<15 | 2
	maxDescriptors      = 1 << 16 // per block status chunk; the protocol allows 2^20
	maxErrorMessageLen  = 4096
	statusDirty         = 1 << 0 // written-since and dirty bitmaps
	statusHole          = 1 << 0 // base:allocation
	defaultMaxPayload   = 32 << 20
	defaultPreferred    = 4096
	defaultMinBlockSize = 1
)

// Error values of replies.
const (
	errPerm     = 1
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errOverflow = 75
	errNotSup   = 95
	errShutdown = 108
)
