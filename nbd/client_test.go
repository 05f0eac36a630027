package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// startServer serves b on a unix socket in a temporary directory.
func startServer(t testing.TB, b Backend, opts Options) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s := NewServer(b, opts)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return s, sock
}

// tclient is a raw NBD client for tests.
type tclient struct {
	t          testing.TB
	nc         net.Conn
	br         *bufio.Reader
	structured bool
	size       uint64
	tflags     uint16
	reads      map[uint64]uint32 // pending simple-reply reads: cookie -> length
	contexts   map[uint32]string
}

// dialRaw connects and reads the greeting.
func dialRaw(t testing.TB, sock string) *tclient {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &tclient{t: t, nc: nc, br: bufio.NewReader(nc), reads: map[uint64]uint32{}}
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if binary.BigEndian.Uint64(g[:]) != magicInit || binary.BigEndian.Uint64(g[8:]) != magicOpt {
		t.Fatalf("greeting %x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x", f)
	}
	return c
}

func (c *tclient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *tclient) sendOpt(opt uint32, data []byte) {
	c.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	c.write(append(b, data...))
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (c *tclient) readOptReply() (optReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return optReply{}, err
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicOptReply {
		return optReply{}, fmt.Errorf("option reply magic %#x", m)
	}
	r := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	_, err := io.ReadFull(c.br, r.data)
	return r, err
}

// option sends an option and collects the replies up to the final one.
func (c *tclient) option(opt uint32, data []byte) (replies []optReply, final uint32) {
	c.t.Helper()
	c.sendOpt(opt, data)
	for {
		r, err := c.readOptReply()
		if err != nil {
			c.t.Fatalf("option %d: %v", opt, err)
		}
		if r.opt != opt {
			c.t.Fatalf("reply to option %d for option %d", r.opt, opt)
		}
		if r.typ == repAck || r.typ&repErrBit != 0 {
			return replies, r.typ
		}
		replies = append(replies, r)
	}
}

func goData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// connect dials and negotiates: structured replies when asked, the
// contexts, then NBD_OPT_GO for "era".
func connect(t testing.TB, sock string, structured bool, contexts ...string) *tclient {
	t.Helper()
	c := dialRaw(t, sock)
	c.write(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes))
	if structured {
		if _, fin := c.option(optStructuredReply, nil); fin != repAck {
			t.Fatalf("structured reply: %#x", fin)
		}
		c.structured = true
	}
	if len(contexts) > 0 {
		rs, fin := c.option(optSetMetaContext, metaContextRequest("era", contexts...))
		if fin != repAck {
			t.Fatalf("set meta context: %#x", fin)
		}
		c.contexts = map[uint32]string{}
		for _, r := range rs {
			c.contexts[binary.BigEndian.Uint32(r.data)] = string(r.data[4:])
		}
	}
	rs, fin := c.option(optGo, goData("era", infoBlockSize))
	if fin != repAck {
		t.Fatalf("go: %#x", fin)
	}
	for _, r := range rs {
		if binary.BigEndian.Uint16(r.data) == infoExport {
			c.size = binary.BigEndian.Uint64(r.data[2:])
			c.tflags = binary.BigEndian.Uint16(r.data[10:])
		}
	}
	return c
}

// send sends a request.
func (c *tclient) send(r request, payload []byte) {
	c.t.Helper()
	if r.typ == cmdRead && !c.structured {
		c.reads[r.cookie] = r.length
	}
	c.write(append(appendRequest(nil, r), payload...))
}

// treply is the whole reply to one request.
type treply struct {
	cookie   uint64
	err      uint32 // the first error, simple or chunk
	msg      string
	data     []byte              // READ data, assembled from chunks
	statuses map[uint32][]extent // BLOCK_STATUS chunks by context id
	done     bool
}

// next reads messages until some request's reply is complete.
func (c *tclient) next(partial map[uint64]*treply) (*treply, error) {
	for {
		var m [4]byte
		if _, err := io.ReadFull(c.br, m[:]); err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(m[:]) {
		case magicSimple:
			var h [12]byte
			if _, err := io.ReadFull(c.br, h[:]); err != nil {
				return nil, err
			}
			r := &treply{err: binary.BigEndian.Uint32(h[:]), cookie: binary.BigEndian.Uint64(h[4:]), done: true}
			if n, ok := c.reads[r.cookie]; ok {
				delete(c.reads, r.cookie)
				if r.err == 0 {
					r.data = make([]byte, n)
					if _, err := io.ReadFull(c.br, r.data); err != nil {
						return nil, err
					}
				}
			}
			return r, nil
		case magicStructured:
			var h [16]byte
			if _, err := io.ReadFull(c.br, h[:]); err != nil {
				return nil, err
			}
			flags, typ := binary.BigEndian.Uint16(h[:]), binary.BigEndian.Uint16(h[2:])
			cookie := binary.BigEndian.Uint64(h[4:])
			p := make([]byte, binary.BigEndian.Uint32(h[12:]))
			if _, err := io.ReadFull(c.br, p); err != nil {
				return nil, err
			}
			r := partial[cookie]
			if r == nil {
				r = &treply{cookie: cookie, statuses: map[uint32][]extent{}}
				partial[cookie] = r
			}
			switch typ {
			case replyNone:
			case replyOffsetData:
				r.data = append(r.data, p[8:]...)
			case replyBlockStatus:
				id := binary.BigEndian.Uint32(p)
				if _, dup := r.statuses[id]; dup {
					return nil, fmt.Errorf("two chunks for context %d", id)
				}
				for q := p[4:]; len(q) >= 8; q = q[8:] {
					r.statuses[id] = append(r.statuses[id], extent{binary.BigEndian.Uint32(q), binary.BigEndian.Uint32(q[4:])})
				}
			case replyError, replyErrorOffset:
				if r.err == 0 {
					r.err = binary.BigEndian.Uint32(p)
					n := binary.BigEndian.Uint16(p[4:])
					r.msg = string(p[6 : 6+n])
				}
			default:
				return nil, fmt.Errorf("unknown chunk type %d", typ)
			}
			if flags&replyFlagDone != 0 {
				delete(partial, cookie)
				r.done = true
				return r, nil
			}
		default:
			return nil, fmt.Errorf("reply magic %x", m)
		}
	}
}

// do sends one request and waits for its reply.
func (c *tclient) do(r request, payload []byte) *treply {
	c.t.Helper()
	c.send(r, payload)
	rep, err := c.next(map[uint64]*treply{})
	if err != nil {
		c.t.Fatalf("%s: %v", commandName(r.typ), err)
	}
	if rep.cookie != r.cookie {
		c.t.Fatalf("reply for cookie %d, want %d", rep.cookie, r.cookie)
	}
	return rep
}

// contextID returns the id the server gave a context name.
func (c *tclient) contextID(name string) uint32 {
	for id, n := range c.contexts {
		if n == name {
			return id
		}
	}
	c.t.Fatalf("context %q not selected (have %v)", name, c.contexts)
	return 0
}
