package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn
	br *bufio.Reader

	// bw is written by the handshake, then by the writer goroutine
	// alone, which takes the replies from out and flushes whenever no
	// further reply is waiting: replies that complete together go out in
	// one write.
	bw     *bufio.Writer
	out    chan reply
	broken bool // a reply failed to go out; writer goroutine only

	// negotiated
	noZeroes   bool
	structured bool
	contexts   []metaContext
	ctxEx      *export // the export contexts were selected for
	ex         *export // the export being served; set under mu

	mu           sync.Mutex // phase changes against stop
	stopping     bool
	transmitting bool

	inflight sync.WaitGroup
	slots    chan struct{} // one per request being handled
	budget   budget        // payload bytes of requests being handled
	ctx      context.Context
	cancel   context.CancelFunc
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		s:      s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 64<<10),
		bw:     bufio.NewWriterSize(nc, 64<<10),
		slots:  make(chan struct{}, s.opts.MaxInFlight),
		out:    make(chan reply, s.opts.MaxInFlight),
		budget: budget{limit: 4 * int64(s.opts.MaxPayload)},
		ctx:    ctx,
		cancel: cancel,
	}
}

// stop asks the connection to end: a handshake is cut short; in the
// transmission phase no further request is read, and the requests already
// read are answered.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	if c.transmitting {
		c.nc.SetReadDeadline(time.Now())
	} else {
		c.nc.Close()
	}
}

// serve runs the connection to its end and closes it.
func (c *conn) serve() (err error) {
	defer c.nc.Close()
	defer c.cancel()
	if t := c.s.opts.HandshakeTimeout; t > 0 {
		c.nc.SetDeadline(time.Now().Add(t))
	}
	enter, err := c.handshake()
	if err != nil || !enter {
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if stopping {
			return nil
		}
		return err
	}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return nil
	}
	c.transmitting = true
	c.nc.SetDeadline(time.Time{})
	c.mu.Unlock()
	written := make(chan struct{})
	go c.writer(written)
	err = c.transmit()
	c.inflight.Wait()
	close(c.out)
	<-written
	return err
}

// reply is a reply ready to go: head, then data; release, if set, is
// called once data is written.
type reply struct {
	head, data []byte
	release    func()
}

// writer writes the replies of the transmission phase. After a failed
// write it closes the connection, which ends the reading side too, and
// drops the rest.
func (c *conn) writer(done chan<- struct{}) {
	defer close(done)
	for r := range c.out {
		if !c.broken {
			_, err := c.bw.Write(r.head)
			if err == nil && len(r.data) > 0 {
				_, err = c.bw.Write(r.data)
			}
			if err == nil && len(c.out) == 0 {
				err = c.bw.Flush()
			}
			if err != nil {
				c.broken = true
				c.nc.Close()
			}
		}
		if r.release != nil {
			r.release()
		}
	}
	if !c.broken {
		c.bw.Flush()
	}
}

// transmit reads requests and hands each to a goroutine, until DISC, the
// end of the stream, a protocol violation or stop.
func (c *conn) transmit() error {
	var hdr [requestHeaderLen]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return c.readEnd(err, "request header")
		}
		r, err := parseRequest(hdr[:])
		if err != nil {
			return err
		}
		if r.typ == cmdDisc {
			return nil
		}
		var payload []byte
		var held int64
		if r.typ == cmdWrite {
			if r.length > c.s.opts.MaxPayload {
				if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
					return c.readEnd(err, "write payload")
				}
				c.reply(r, errInval, fmt.Sprintf("write of %d bytes: the limit is %d", r.length, c.s.opts.MaxPayload))
				continue
			}
			held = int64(r.length)
		} else if r.typ == cmdRead && r.length <= c.s.opts.MaxPayload {
			held = int64(r.length)
		}
		c.slots <- struct{}{}
		c.budget.acquire(held)
		if r.typ == cmdWrite {
			payload = getBuf(int(r.length))
			if _, err := io.ReadFull(c.br, payload); err != nil {
				putBuf(payload)
				c.budget.release(held)
				<-c.slots
				return c.readEnd(err, "write payload")
			}
		}
		c.inflight.Add(1)
		go func() {
			defer c.inflight.Done()
			c.handle(r, payload)
			if payload != nil {
				putBuf(payload)
			}
			c.budget.release(held)
			<-c.slots
		}()
	}
}

// readEnd turns the error that ended reading into the connection's result:
// nil for a clean end (stop, or the client closing between requests).
func (c *conn) readEnd(err error, what string) error {
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if stopping && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if errors.Is(err, io.EOF) && what == "request header" {
		return nil // closed without DISC, between requests
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %w", what, err)
}

// handle runs one request and sends its reply.
func (c *conn) handle(r request, payload []byte) {
	b := c.ex.b
	if extra := r.flags &^ allowedFlags[r.typ]; extra != 0 {
		c.reply(r, errInval, fmt.Sprintf("%s: unsupported flags %#x", commandName(r.typ), extra))
		return
	}
	size := uint64(b.Size())
	inside := r.offset <= size && uint64(r.length) <= size-r.offset
	writes := r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes
	switch {
	case r.typ != cmdRead && !writes && r.typ != cmdFlush && r.typ != cmdBlockStatus:
		c.reply(r, errInval, fmt.Sprintf("%s is not supported", commandName(r.typ)))
		return
	case writes && c.ex.readOnly:
		c.reply(r, errPerm, "the export is read-only")
		return
	case r.typ == cmdFlush:
		c.replyErr(r, b.Sync())
		return
	case !inside:
		var e uint32 = errInval
		if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
			e = errNoSpc
		}
		c.reply(r, e, fmt.Sprintf("%s of %d bytes at %d: past the end of the export (%d bytes)", commandName(r.typ), r.length, r.offset, size))
		return
	}
	off := int64(r.offset)
	switch r.typ {
	case cmdRead:
		if r.length > c.s.opts.MaxPayload {
			c.reply(r, errInval, fmt.Sprintf("read of %d bytes: the limit is %d", r.length, c.s.opts.MaxPayload))
			return
		}
		buf := getBuf(int(r.length))
		n, err := b.ReadAt(buf, off)
		if n == len(buf) {
			err = nil // io.EOF with the last byte
		}
		if err != nil {
			putBuf(buf)
			c.replyErr(r, fmt.Errorf("read %d bytes at %d: %w", len(buf), off, err))
			return
		}
		c.replyData(r, buf)
	case cmdWrite:
		_, err := b.WriteAt(payload, off)
		c.replyErr(r, c.durable(r, err))
	case cmdTrim:
		if !b.fastZero {
			c.reply(r, errInval, "TRIM is not supported")
			return
		}
		c.replyErr(r, c.durable(r, b.zeroer.WriteZeroes(off, int64(r.length))))
	case cmdWriteZeroes:
		noHole := r.flags&cflagNoHole != 0
		if r.flags&cflagFastZero != 0 && (!b.fastZero || noHole) {
			c.reply(r, errNotSup, "zeroing would not be faster than writing")
			return
		}
		var err error
		if b.zeroer != nil && !(noHole && b.fastZero) {
			err = b.zeroer.WriteZeroes(off, int64(r.length))
		} else {
			err = writeZeroes(b, off, int64(r.length))
		}
		c.replyErr(r, c.durable(r, err))
	case cmdBlockStatus:
		c.blockStatus(r)
	}
}

// durable syncs after a successful write with FUA.
func (c *conn) durable(r request, err error) error {
	if err == nil && r.flags&cflagFUA != 0 {
		err = c.ex.b.Sync()
	}
	return err
}

// zeroes is a shared buffer of zeroes for writing them.
var zeroes = make([]byte, 1<<20)

// writeZeroes writes zeroes over [off, off+n) with WriteAt.
func writeZeroes(w io.WriterAt, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroes)))
		if _, err := w.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// blockStatus answers NBD_CMD_BLOCK_STATUS: one chunk per selected
// context, or one error chunk if any context failed.
func (c *conn) blockStatus(r request) {
	switch {
	case !c.structured:
		c.reply(r, errInval, "BLOCK_STATUS needs structured replies")
		return
	case len(c.contexts) == 0:
		c.reply(r, errInval, "no meta context was selected")
		return
	case r.length == 0:
		c.reply(r, errInval, "BLOCK_STATUS of length 0")
		return
	}
	one := r.flags&cflagReqOne != 0
	chunks := make([][]byte, 0, len(c.contexts))
	for i, mc := range c.contexts {
		ext, err := c.ex.b.blockStatus(c.ctx, mc, r.offset, r.length, one)
		if err != nil {
			c.reply(r, errIO, fmt.Sprintf("%s: %v", mc.name, err))
			return
		}
		p := make([]byte, 0, 4+8*len(ext))
		p = binary.BigEndian.AppendUint32(p, uint32(i+1))
		for _, e := range ext {
			p = binary.BigEndian.AppendUint32(p, e.length)
			p = binary.BigEndian.AppendUint32(p, e.flags)
		}
		chunks = append(chunks, p)
	}
	var head []byte
	for i, p := range chunks {
		var flags uint16
		if i == len(chunks)-1 {
			flags = replyFlagDone
		}
		head = appendChunk(head, r.cookie, flags, replyBlockStatus, uint32(len(p)))
		head = append(head, p...)
	}
	c.out <- reply{head: head}
}

// errno maps a backend error to an NBD error value.
func errno(err error) uint32 {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES):
		return errPerm
	case errors.Is(err, syscall.ENOMEM):
		return errNoMem
	}
	return errIO
}

// replyErr answers success for a nil err, else the error.
func (c *conn) replyErr(r request, err error) {
	if err == nil {
		c.reply(r, 0, "")
		return
	}
	c.reply(r, errno(err), err.Error())
}

// reply answers a request without data: a simple reply, or with
// structured replies a NONE or ERROR chunk carrying msg.
func (c *conn) reply(r request, e uint32, msg string) {
	switch {
	case !c.structured:
		c.out <- reply{head: appendSimple(nil, r.cookie, e)}
	case e == 0:
		c.out <- reply{head: appendChunk(nil, r.cookie, replyFlagDone, replyNone, 0)}
	default:
		if len(msg) > maxErrorMessageLen {
			msg = msg[:maxErrorMessageLen]
		}
		h := appendChunk(nil, r.cookie, replyFlagDone, replyError, uint32(6+len(msg)))
		h = binary.BigEndian.AppendUint32(h, e)
		h = binary.BigEndian.AppendUint16(h, uint16(len(msg)))
		c.out <- reply{head: append(h, msg...)}
	}
}

// replyData answers a READ with its data, a pooled buffer the writer
// gives back once sent.
func (c *conn) replyData(r request, data []byte) {
	release := func() { putBuf(data) }
	switch {
	case !c.structured:
		c.out <- reply{head: appendSimple(nil, r.cookie, 0), data: data, release: release}
	case len(data) == 0:
		c.out <- reply{head: appendChunk(nil, r.cookie, replyFlagDone, replyNone, 0), release: release}
	default:
		h := appendChunk(nil, r.cookie, replyFlagDone, replyOffsetData, uint32(8+len(data)))
		h = binary.BigEndian.AppendUint64(h, r.offset)
		c.out <- reply{head: h, data: data, release: release}
	}
}

// appendSimple appends a simple reply header.
func appendSimple(b []byte, cookie uint64, e uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, magicSimple)
	b = binary.BigEndian.AppendUint32(b, e)
	return binary.BigEndian.AppendUint64(b, cookie)
}

// appendChunk appends a structured reply chunk header for a payload of n
// bytes.
func appendChunk(b []byte, cookie uint64, flags, typ uint16, n uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, magicStructured)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, n)
}

// budget bounds the payload bytes of the requests being handled. A request
// larger than the whole budget runs alone.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit int64
	used  int64
}

func (b *budget) acquire(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	for b.used > 0 && b.used+n > b.limit {
		b.cond.Wait()
	}
	b.used += n
	b.mu.Unlock()
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.cond != nil {
		b.cond.Broadcast()
	}
	b.mu.Unlock()
}

// Payload buffers are pooled by power-of-two size from 4 KiB.
var bufPools [32]sync.Pool

func bufClass(n int) int {
	c := 12
	for 1<<c < n {
		c++
	}
	return c
}

func getBuf(n int) []byte {
	c := bufClass(n)
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

func putBuf(b []byte) {
	c := bufClass(cap(b))
	if cap(b) != 1<<c {
		return
	}
	bufPools[c].Put(&b)
}
