package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
)

// handshake runs the fixed newstyle negotiation. It returns go=true when
// the client entered the transmission phase, go=false (with a nil error)
// when it aborted.
func (c *conn) handshake() (enter bool, err error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicInit)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.bw.Write(hello[:]); err != nil {
		return false, err
	}
	if err := c.bw.Flush(); err != nil {
		return false, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return false, fmt.Errorf("client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(clientFixedNewstyle|clientNoZeroes) != 0 {
		return false, fmt.Errorf("unknown client flags %#x: %w", flags, ErrProtocol)
	}
	fixed := flags&clientFixedNewstyle != 0
	c.noZeroes = flags&clientNoZeroes != 0
	for {
		var h [16]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			if err == io.EOF {
				return false, nil // the client went away between options
			}
			return false, fmt.Errorf("option header: %w", err)
		}
		if m := binary.BigEndian.Uint64(h[:]); m != magicOpt {
			return false, fmt.Errorf("option magic %#x: %w", m, ErrProtocol)
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if !fixed && opt != optExportName {
			return false, fmt.Errorf("option %d without fixed newstyle: %w", opt, ErrProtocol)
		}
		if n > maxOptionLen {
			if opt == optExportName {
				return false, fmt.Errorf("export name of %d bytes: %w", n, ErrProtocol)
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return false, fmt.Errorf("option data: %w", err)
			}
			if err := c.optReply(opt, repErrTooBig, []byte("option data too long")); err != nil {
				return false, err
			}
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return false, fmt.Errorf("option data: %w", err)
		}
		done, enter, err := c.option(opt, data)
		if err != nil || done {
			return enter, err
		}
	}
}

// option answers one option; done ends the handshake.
func (c *conn) option(opt uint32, data []byte) (done, enter bool, err error) {
	s := c.s
	switch opt {
	case optExportName:
		name := string(data)
		ex := s.lookup(name)
		if ex == nil || !c.enter(ex) {
			return true, false, fmt.Errorf("export %q unknown: %w", name, ErrProtocol)
		}
		b := binary.BigEndian.AppendUint64(nil, uint64(ex.b.Size()))
		b = binary.BigEndian.AppendUint16(b, c.tflags(ex))
		if !c.noZeroes {
			b = append(b, make([]byte, 124)...)
		}
		if _, err := c.bw.Write(b); err != nil {
			return true, false, err
		}
		return true, true, c.bw.Flush()
	case optAbort:
		// The client may not wait for the answer.
		_ = c.optReply(opt, repAck, nil)
		return true, false, nil
	case optList:
		if len(data) != 0 {
			return false, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		for _, ex := range s.exports() {
			b := binary.BigEndian.AppendUint32(nil, uint32(len(ex.name)))
			b = append(b, ex.name...)
			b = append(b, ex.description...)
			if err := c.optReply(opt, repServer, b); err != nil {
				return false, false, err
			}
		}
		return false, false, c.optReply(opt, repAck, nil)
	case optInfo, optGo:
		g, err := parseGoRequest(data)
		if err != nil {
			return false, false, c.optReply(opt, repErrInvalid, []byte(err.Error()))
		}
		ex := s.lookup(g.name)
		if ex == nil || opt == optGo && !c.enter(ex) {
			return false, false, c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export %q", g.name))
		}
		if err := c.sendInfo(opt, g, ex); err != nil {
			return false, false, err
		}
		if err := c.optReply(opt, repAck, nil); err != nil {
			return false, false, err
		}
		if opt == optGo {
			if c.ctxEx != ex { // contexts were selected for another export
				c.contexts = nil
			}
			return true, true, nil
		}
		return false, false, nil
	case optStructuredReply:
		if len(data) != 0 {
			return false, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		c.structured = true
		return false, false, c.optReply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return false, false, c.metaOption(opt, data)
	}
	// STARTTLS, EXTENDED_HEADERS and anything unknown: not supported, and
	// the client may go on with other options.
	return false, false, c.optReply(opt, repErrUnsup, fmt.Appendf(nil, "option %d is not supported", opt))
}

// metaOption answers NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
func (c *conn) metaOption(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		c.contexts = nil // replaced even on failure
	}
	if !c.structured {
		return c.optReply(opt, repErrInvalid, []byte("negotiate structured replies first"))
	}
	m, err := parseMetaRequest(data)
	if err != nil {
		return c.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	ex := c.s.lookup(m.name)
	if ex == nil {
		return c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export %q", m.name))
	}
	reply := func(id uint32, name string) error {
		b := binary.BigEndian.AppendUint32(nil, id)
		return c.optReply(opt, repMetaContext, append(b, name...))
	}
	if opt == optListMetaContext {
		for _, name := range ex.b.listContexts(m.queries) {
			if err := reply(0, name); err != nil {
				return err
			}
		}
		return c.optReply(opt, repAck, nil)
	}
	sel := ex.b.selectContexts(m.queries)
	for i, mc := range sel {
		if err := reply(uint32(i+1), mc.name); err != nil {
			return err
		}
	}
	c.contexts, c.ctxEx = sel, ex
	return c.optReply(opt, repAck, nil)
}

// sendInfo sends the NBD_REP_INFO replies of NBD_OPT_INFO or NBD_OPT_GO:
// always the export and the block sizes, the name and description when
// asked.
func (c *conn) sendInfo(opt uint32, g goRequest, ex *export) error {
	s := c.s
	b := binary.BigEndian.AppendUint16(nil, infoExport)
	b = binary.BigEndian.AppendUint64(b, uint64(ex.b.Size()))
	b = binary.BigEndian.AppendUint16(b, c.tflags(ex))
	if err := c.optReply(opt, repInfo, b); err != nil {
		return err
	}
	b = binary.BigEndian.AppendUint16(nil, infoBlockSize)
	b = binary.BigEndian.AppendUint32(b, defaultMinBlockSize)
	b = binary.BigEndian.AppendUint32(b, defaultPreferred)
	b = binary.BigEndian.AppendUint32(b, s.opts.MaxPayload)
	if err := c.optReply(opt, repInfo, b); err != nil {
		return err
	}
	for _, info := range g.infos {
		switch {
		case info == infoName:
			b = binary.BigEndian.AppendUint16(nil, infoName)
			b = append(b, ex.name...)
		case info == infoDescription && ex.description != "":
			b = binary.BigEndian.AppendUint16(nil, infoDescription)
			b = append(b, ex.description...)
		default:
			continue
		}
		if err := c.optReply(opt, repInfo, b); err != nil {
			return err
		}
	}
	return nil
}

// optReply sends an option reply and flushes it.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
	return c.bw.Flush()
}

// enter makes ex the connection's export, unless it has been removed.
func (c *conn) enter(ex *export) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ex = ex
	return !ex.removed.Load() // RemoveExport sets it, then looks at c.ex
}

// tflags are the transmission flags of this connection to ex.
func (c *conn) tflags(ex *export) uint16 {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagCanMultiConn)
	if c.structured {
		f |= tflagSendDF
	}
	if ex.readOnly {
		return f | tflagReadOnly
	}
	f |= tflagSendWriteZeroes | tflagSendFastZero
	if ex.b.fastZero {
		f |= tflagSendTrim
	}
	return f
}
