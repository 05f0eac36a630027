// Package nbd serves a Backend (an *era.Device, or any fixed-size
// io.ReaderAt + io.WriterAt that can Sync) as one export of a Network
// Block Device server, so that QEMU, the Linux kernel client, libnbd
// (nbdinfo, nbdcopy) and backup tools read, write and query it.
//
// A server has one export from the start (Options.Name) and may offer
// more for a while (AddExport, RemoveExport): era serve offers a held
// point-in-time snapshot as a second, read-only export. NBD_OPT_LIST
// lists them all.
//
// # Protocol
//
// Fixed newstyle negotiation with the options NBD_OPT_EXPORT_NAME, INFO,
// GO, LIST, ABORT, STRUCTURED_REPLY, LIST_META_CONTEXT and
// SET_META_CONTEXT; any other option (STARTTLS, EXTENDED_HEADERS, ...) is
// answered NBD_REP_ERR_UNSUP and negotiation goes on. Simple replies
// unless the client negotiates structured replies. Commands READ, WRITE
// (with FUA), FLUSH, TRIM (offered only when the backend punches holes),
// WRITE_ZEROES (with NO_HOLE, and FAST_ZERO refused with ENOTSUP unless
// zeroing punches holes), BLOCK_STATUS (with REQ_ONE) and DISC.
//
// Requests of one connection are handled concurrently and answered in any
// order; so are those of different connections. FLUSH and FUA call the
// backend's Sync, which for an era device makes the data and the era
// metadata durable for every connection at once: the export therefore
// advertises NBD_FLAG_CAN_MULTI_CONN.
//
// # Meta contexts
//
//	base:allocation          bit 0 (hole) is never set: the server reports a
//	                         hole only where it knows one, and it knows none
//	x-era:written-since:N    bit 0 set: written in era N or later
//	x-era:era                the era the extent was last written in (0: never)
//	qemu:dirty-bitmap:era-N  the same bits as x-era:written-since:N, under a
//	                         name that tools taking a QEMU dirty bitmap accept
//
// The era contexts need the backend's optional interfaces
// (WrittenSinceSeqer, BlockEraser, BlockByteser); N may not be above the
// current era when the backend reports it (CurrentEraer). An extent counts
// as written when any block it touches was. A query that fails is
// answered with an error chunk, never with a map of zeroes, and every
// write acknowledged before the BLOCK_STATUS request is reflected.
// NBD_OPT_LIST_META_CONTEXT with no query, or with "x-era:",
// "x-era:written-since:", "qemu:" or "qemu:dirty-bitmap:", answers the
// families with pattern forms, "x-era:written-since:1-C" and
// "qemu:dirty-bitmap:era-1-C" (C the current era): names to build, not to
// select as they are.
//
// # Limits
//
// READ and WRITE carry at most Options.MaxPayload bytes (32 MiB by
// default; advertised as the maximum block size, with a minimum of 1 and
// a preferred size of 4096); a larger WRITE's payload is read and dropped
// and both fail with EINVAL. A connection handles at most
// Options.MaxInFlight requests (64) and 4 × MaxPayload bytes of payload at
// once, and reads no further request until one finishes. At most
// Options.MaxConnections (64) connections are served; one more is closed
// as soon as it is accepted. A handshake must end within
// Options.HandshakeTimeout (30 s). Option data is at most 64 KiB (longer
// is dropped and answered NBD_REP_ERR_TOO_BIG), names and queries 4096
// bytes. A BLOCK_STATUS answer holds at most 65536 extents per context,
// and an x-era:era answer looks at most 2^18 blocks: a longer request is
// answered for a prefix of its range, as the protocol allows.
//
// A client that breaks the protocol where no answer is possible (a wrong
// magic number, a stream that ends mid-request) loses its connection and
// nothing else.
package nbd
