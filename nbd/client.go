package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ErrRemote reports an error the server answered to a request.
var ErrRemote = errors.New("nbd server error")

// Client is a minimal NBD client, enough for a backup tool: it negotiates
// structured replies and meta contexts, then reads and asks for block
// status, one request at a time.
type Client struct {
	mu       sync.Mutex
	nc       net.Conn
	br       *bufio.Reader
	size     int64
	contexts map[string]uint32
	cookie   uint64
}

// Extent is one block status descriptor: Length bytes with Flags.
type Extent struct {
	Length uint32
	Flags  uint32
}

// maxClientRead is the largest READ the client sends.
const maxClientRead = 32 << 20

// DialURI connects to an NBD URI (nbd://HOST[:PORT]/EXPORT or
// nbd+unix:///EXPORT?socket=PATH), negotiates structured replies and the
// meta contexts given, and enters the transmission phase. A context the
// server does not offer is an error.
func DialURI(ctx context.Context, uri string, contexts ...string) (*Client, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("nbd URI %q: %w", uri, err)
	}
	export := strings.TrimPrefix(u.Path, "/")
	var network, addr string
	switch u.Scheme {
	case "nbd":
		network, addr = "tcp", u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "10809")
		}
	case "nbd+unix":
		network, addr = "unix", u.Query().Get("socket")
		if addr == "" {
			return nil, fmt.Errorf("nbd URI %q: no socket", uri)
		}
	default:
		return nil, fmt.Errorf("nbd URI %q: scheme %q: want nbd or nbd+unix", uri, u.Scheme)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, br: bufio.NewReaderSize(nc, 1<<20), contexts: map[string]uint32{}}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if err := c.negotiate(export, contexts); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nbd %s: %w", uri, err)
	}
	nc.SetDeadline(noDeadline)
	return c, nil
}

func (c *Client) negotiate(export string, contexts []string) error {
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[:]) != magicInit || binary.BigEndian.Uint64(g[8:]) != magicOpt ||
		binary.BigEndian.Uint16(g[16:])&flagFixedNewstyle == 0 {
		return fmt.Errorf("not a fixed newstyle NBD server: %w", ErrProtocol)
	}
	flags := uint32(clientFixedNewstyle)
	if binary.BigEndian.Uint16(g[16:])&flagNoZeroes != 0 {
		flags |= clientNoZeroes
	}
	if _, err := c.nc.Write(binary.BigEndian.AppendUint32(nil, flags)); err != nil {
		return err
	}
	if _, err := c.option(optStructuredReply, nil); err != nil {
		return fmt.Errorf("structured replies: %w", err)
	}
	if len(contexts) > 0 {
		replies, err := c.option(optSetMetaContext, metaContextRequest(export, contexts...))
		if err != nil {
			return fmt.Errorf("meta contexts: %w", err)
		}
		for _, r := range replies {
			if len(r) < 4 {
				return fmt.Errorf("short meta context reply: %w", ErrProtocol)
			}
			c.contexts[string(r[4:])] = binary.BigEndian.Uint32(r)
		}
		for _, q := range contexts {
			if _, ok := c.contexts[q]; !ok {
				return fmt.Errorf("the server does not offer meta context %q", q)
			}
		}
	}
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 0)
	replies, err := c.option(optGo, data)
	if err != nil {
		return fmt.Errorf("export %q: %w", export, err)
	}
	for _, r := range replies {
		if len(r) >= 12 && binary.BigEndian.Uint16(r) == infoExport {
			c.size = int64(binary.BigEndian.Uint64(r[2:]))
			return nil
		}
	}
	return fmt.Errorf("no export information: %w", ErrProtocol)
}

// option sends an option and returns the data of its replies before the
// final ACK.
func (c *Client) option(opt uint32, data []byte) ([][]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := c.nc.Write(append(b, data...)); err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		var h [20]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint64(h[:]) != magicOptReply || binary.BigEndian.Uint32(h[8:]) != opt {
			return nil, fmt.Errorf("bad option reply: %w", ErrProtocol)
		}
		n := binary.BigEndian.Uint32(h[16:])
		if n > maxOptionLen {
			return nil, fmt.Errorf("option reply of %d bytes: %w", n, ErrProtocol)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		switch typ := binary.BigEndian.Uint32(h[12:]); {
		case typ == repAck:
			return out, nil
		case typ&repErrBit != 0:
			return nil, fmt.Errorf("%w: option %d refused (%#x): %s", ErrRemote, opt, typ, p)
		default:
			out = append(out, p)
		}
	}
}

// Size returns the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// ReadAt reads len(p) bytes at off, in requests of at most 32 MiB.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > c.size {
		return 0, fmt.Errorf("read at %d of a %d-byte export: %w", off, c.size, io.EOF)
	}
	n := 0
	for n < len(p) {
		if off+int64(n) == c.size {
			return n, io.EOF
		}
		k := min(len(p)-n, maxClientRead, int(c.size-off-int64(n)))
		if err := c.read(p[n:n+k], uint64(off)+uint64(n)); err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

func (c *Client) read(p []byte, off uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := 0
	err := c.do(request{typ: cmdRead, offset: off, length: uint32(len(p))}, nil, func(typ uint16, payload []byte) error {
		if typ != replyOffsetData || len(payload) < 8 {
			return fmt.Errorf("unexpected chunk type %d to READ: %w", typ, ErrProtocol)
		}
		o := binary.BigEndian.Uint64(payload)
		data := payload[8:]
		if o < off || o-off+uint64(len(data)) > uint64(len(p)) {
			return fmt.Errorf("READ data outside the request: %w", ErrProtocol)
		}
		got += copy(p[o-off:], data)
		return nil
	})
	if err == nil && got != len(p) {
		err = fmt.Errorf("READ returned %d of %d bytes: %w", got, len(p), ErrProtocol)
	}
	return err
}

// WriteAt writes p at off, in requests of at most 32 MiB.
func (c *Client) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > c.size {
		return 0, fmt.Errorf("write of %d bytes at %d of a %d-byte export: %w", len(p), off, c.size, io.ErrShortWrite)
	}
	n := 0
	for n < len(p) {
		k := min(len(p)-n, maxClientRead)
		c.mu.Lock()
		err := c.do(request{typ: cmdWrite, offset: uint64(off) + uint64(n), length: uint32(k)}, p[n:n+k], nil)
		c.mu.Unlock()
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

// Flush asks the server to make every completed write durable.
func (c *Client) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.do(request{typ: cmdFlush}, nil, nil)
}

// BlockStatus returns the extents the server reports for the meta context
// name, from off on; they cover at least part of [off, off+length) and are
// clipped to it.
func (c *Client) BlockStatus(name string, off uint64, length uint32) ([]Extent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.contexts[name]
	if !ok {
		return nil, fmt.Errorf("meta context %q was not negotiated", name)
	}
	var out []Extent
	err := c.do(request{typ: cmdBlockStatus, offset: off, length: length}, nil, func(typ uint16, p []byte) error {
		if typ != replyBlockStatus || len(p) < 12 || (len(p)-4)%8 != 0 {
			return fmt.Errorf("unexpected chunk type %d to BLOCK_STATUS: %w", typ, ErrProtocol)
		}
		if binary.BigEndian.Uint32(p) != id {
			return nil
		}
		left := uint64(length)
		for q := p[4:]; len(q) >= 8 && left > 0; q = q[8:] {
			e := Extent{binary.BigEndian.Uint32(q), binary.BigEndian.Uint32(q[4:])}
			if e.Length == 0 {
				return fmt.Errorf("extent of length 0: %w", ErrProtocol)
			}
			e.Length = uint32(min(uint64(e.Length), left))
			left -= uint64(e.Length)
			out = append(out, e)
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no extents for %q: %w", name, ErrProtocol)
	}
	return out, err
}

// do sends r with its payload and reads its structured reply, passing
// each content chunk to chunk. Called with c.mu held.
func (c *Client) do(r request, payload []byte, chunk func(typ uint16, payload []byte) error) error {
	c.cookie++
	r.cookie = c.cookie
	if _, err := c.nc.Write(append(appendRequest(nil, r), payload...)); err != nil {
		return err
	}
	var failure error
	for {
		var h [20]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint32(h[:]) != magicStructured || binary.BigEndian.Uint64(h[8:]) != r.cookie {
			return fmt.Errorf("unexpected reply: %w", ErrProtocol)
		}
		flags, typ, n := binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint32(h[16:])
		if n > maxClientRead+64 { // a READ chunk, or 2^20 extents (8 MiB)
			return fmt.Errorf("reply chunk of %d bytes: %w", n, ErrProtocol)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return err
		}
		switch {
		case typ&(1<<15) != 0:
			if failure == nil {
				failure = fmt.Errorf("%w: %s", ErrRemote, errorChunkText(p))
			}
		case typ == replyNone:
		case chunk == nil:
			return fmt.Errorf("unexpected chunk type %d: %w", typ, ErrProtocol)
		case failure == nil:
			if err := chunk(typ, p); err != nil {
				return err
			}
		}
		if flags&replyFlagDone != 0 {
			return failure
		}
	}
}

func errorChunkText(p []byte) string {
	if len(p) < 6 {
		return "malformed error chunk"
	}
	code := binary.BigEndian.Uint32(p)
	n := int(binary.BigEndian.Uint16(p[4:]))
	msg := ""
	if 6+n <= len(p) {
		msg = string(p[6 : 6+n])
	}
	return fmt.Sprintf("error %d: %s", code, msg)
}

// Close ends the session (NBD_CMD_DISC) and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nc.Write(appendRequest(nil, request{typ: cmdDisc}))
	return c.nc.Close()
}

var noDeadline time.Time

// metaContextRequest encodes the data of NBD_OPT_SET_META_CONTEXT or
// NBD_OPT_LIST_META_CONTEXT: the export name and the queries, each with
// its length before it, and their count.
func metaContextRequest(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}
