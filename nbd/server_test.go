package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// expected computes, block by block, the extents a context must report
// for [off, off+n) of the model.
func (m *model) expected(name string, off, n uint64) []extent {
	m.mu.Lock()
	defer m.mu.Unlock()
	var since uint32
	kind := metaAllocation
	switch {
	case name == ctxEraName:
		kind = metaEra
	case name != ctxAllocationName:
		kind = metaSince
		leaf := name[bytes.LastIndexAny([]byte(name), ":-")+1:]
		e, ok := parseEra(leaf)
		if !ok {
			panic(name)
		}
		since = e
	}
	var out []extent
	end := off + n
	for b := off / m.blockBytes; b*m.blockBytes < end; b++ {
		lo, hi := max(off, b*m.blockBytes), min(end, (b+1)*m.blockBytes)
		var f uint32
		switch kind {
		case metaEra:
			f = m.eras[b]
		case metaSince:
			if m.eras[b] >= since {
				f = 1
			}
		}
		if k := len(out); k > 0 && out[k-1].flags == f {
			out[k-1].length += uint32(hi - lo)
		} else {
			out = append(out, extent{uint32(hi - lo), f})
		}
	}
	return out
}

func TestHandshakeOptions(t *testing.T) {
	m := newModel(1<<20, 4096)
	m.current = 5
	_, sock := startServer(t, m, Options{Description: "test export"})
	c := dialRaw(t, sock)
	c.write(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle))

	rs, fin := c.option(optList, nil)
	if fin != repAck || len(rs) != 1 || rs[0].typ != repServer || string(rs[0].data[4:4+3]) != "era" {
		t.Fatalf("LIST: %v %#x", rs, fin)
	}
	if _, fin := c.option(optList, []byte("x")); fin != repErrInvalid {
		t.Errorf("LIST with data: %#x", fin)
	}
	for _, opt := range []uint32{optStartTLS, optExtendedHeaders, 4, 99, 1 << 20} {
		if _, fin := c.option(opt, nil); fin != repErrUnsup {
			t.Errorf("option %d: %#x, want NBD_REP_ERR_UNSUP", opt, fin)
		}
	}
	if _, fin := c.option(optInfo, goData("other")); fin != repErrUnknown {
		t.Errorf("INFO of an unknown export: %#x", fin)
	}
	if _, fin := c.option(optInfo, []byte{0, 0, 0, 9, 'e'}); fin != repErrInvalid {
		t.Errorf("INFO with short data: %#x", fin)
	}
	rs, fin = c.option(optInfo, goData("", infoName, infoDescription, 77))
	if fin != repAck {
		t.Fatalf("INFO: %#x", fin)
	}
	got := map[uint16][]byte{}
	for _, r := range rs {
		got[binary.BigEndian.Uint16(r.data)] = r.data[2:]
	}
	if binary.BigEndian.Uint64(got[infoExport]) != 1<<20 || string(got[infoName]) != "era" || string(got[infoDescription]) != "test export" {
		t.Errorf("INFO replies %v", got)
	}
	if bs := got[infoBlockSize]; len(bs) != 12 || binary.BigEndian.Uint32(bs[8:]) != DefaultMaxPayload {
		t.Errorf("block size info %x", bs)
	}
	flags := binary.BigEndian.Uint16(got[infoExport][8:])
	for _, f := range []uint16{tflagHasFlags, tflagSendFlush, tflagSendFUA, tflagCanMultiConn, tflagSendWriteZeroes, tflagSendFastZero} {
		if flags&f == 0 {
			t.Errorf("transmission flags %#x lack %#x", flags, f)
		}
	}
	if flags&(tflagSendTrim|tflagReadOnly) != 0 {
		t.Errorf("transmission flags %#x: trim or read-only", flags)
	}

	if _, fin := c.option(optSetMetaContext, metaContextRequest("era", "base:allocation")); fin != repErrInvalid {
		t.Errorf("SET_META_CONTEXT before structured replies: %#x", fin)
	}
	if _, fin := c.option(optStructuredReply, nil); fin != repAck {
		t.Fatal("structured replies refused")
	}
	list := func(queries ...string) []string {
		rs, fin := c.option(optListMetaContext, metaContextRequest("era", queries...))
		if fin != repAck {
			t.Fatalf("LIST_META_CONTEXT %q: %#x", queries, fin)
		}
		var names []string
		for _, r := range rs {
			if id := binary.BigEndian.Uint32(r.data); id != 0 {
				t.Errorf("LIST reply with context id %d", id)
			}
			names = append(names, string(r.data[4:]))
		}
		return names
	}
	for _, tc := range []struct {
		q    []string
		want []string
	}{
		{nil, []string{"base:allocation", "x-era:era", "x-era:written-since:1-5", "qemu:dirty-bitmap:era-1-5"}},
		{[]string{"base:"}, []string{"base:allocation"}},
		{[]string{"x-era:"}, []string{"x-era:era", "x-era:written-since:1-5"}},
		{[]string{"qemu:dirty-bitmap:"}, []string{"qemu:dirty-bitmap:era-1-5"}},
		{[]string{"x-era:written-since:3", "qemu:dirty-bitmap:era-5", "x-era:written-since:6", "x-era:written-since:03", "base:nothing", "other:thing"},
			[]string{"x-era:written-since:3", "qemu:dirty-bitmap:era-5"}},
	} {
		if got := list(tc.q...); !slices.Equal(got, tc.want) {
			t.Errorf("LIST_META_CONTEXT %q = %q, want %q", tc.q, got, tc.want)
		}
	}
	if _, fin := c.option(optListMetaContext, metaContextRequest("era", "nocolon")); fin != repErrInvalid {
		t.Errorf("query without namespace: %#x", fin)
	}
	if _, fin := c.option(optListMetaContext, metaContextRequest("other")); fin != repErrUnknown {
		t.Errorf("LIST_META_CONTEXT of another export: %#x", fin)
	}
	rs, fin = c.option(optSetMetaContext, metaContextRequest("era", "x-era:", "base:", "x-era:written-since:2", "x-era:written-since:9", "x-era:era", "x-era:era"))
	var sel []string
	ids := map[uint32]bool{}
	for _, r := range rs {
		ids[binary.BigEndian.Uint32(r.data)] = true
		sel = append(sel, string(r.data[4:]))
	}
	if fin != repAck || !slices.Equal(sel, []string{"x-era:written-since:2", "x-era:era"}) || len(ids) != 2 || ids[0] {
		t.Errorf("SET_META_CONTEXT selected %q (ids %v), %#x", sel, ids, fin)
	}
	if rs, fin := c.option(optAbort, nil); fin != repAck || len(rs) != 0 {
		t.Errorf("ABORT: %#x", fin)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after ABORT: %v, want EOF", err)
	}
}

func TestExportNameOption(t *testing.T) {
	m := newModel(12345, 4096)
	_, sock := startServer(t, m, Options{Name: "disk"})
	for _, noZeroes := range []bool{false, true} {
		c := dialRaw(t, sock)
		f := uint32(clientFixedNewstyle)
		if noZeroes {
			f |= clientNoZeroes
		}
		c.write(binary.BigEndian.AppendUint32(nil, f))
		c.sendOpt(optExportName, []byte("disk"))
		want := 10
		if !noZeroes {
			want += 124
		}
		b := make([]byte, want)
		if _, err := io.ReadFull(c.br, b); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(b) != 12345 || !bytes.Equal(b[10:], make([]byte, want-10)) {
			t.Fatalf("export name reply %x", b)
		}
		if r := c.do(request{typ: cmdRead, cookie: 1, offset: 12340, length: 5}, nil); r.err != 0 || len(r.data) != 5 {
			t.Fatalf("read after EXPORT_NAME: %+v", r)
		}
	}
	// An unknown name ends the session: the option has no way to say no.
	c := dialRaw(t, sock)
	c.write(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle))
	c.sendOpt(optExportName, []byte("era"))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("unknown export: %v, want EOF", err)
	}
}

func TestReadWrite(t *testing.T) {
	for _, structured := range []bool{false, true} {
		m := newModel(1<<20+1000, 4096)
		_, sock := startServer(t, m, Options{})
		c := connect(t, sock, structured)
		if c.size != uint64(m.Size()) {
			t.Fatalf("size %d", c.size)
		}
		rnd := rand.New(rand.NewPCG(1, uint64(len(sock))))
		want := make([]byte, m.Size())
		for i := range 200 {
			off := rnd.Uint64N(uint64(len(want)))
			n := min(rnd.Uint64N(70000)+1, uint64(len(want))-off)
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rnd.Uint32())
			}
			copy(want[off:], p)
			var flags uint16
			if i%7 == 0 {
				flags = cflagFUA
			}
			if r := c.do(request{typ: cmdWrite, flags: flags, cookie: uint64(i), offset: off, length: uint32(n)}, p); r.err != 0 {
				t.Fatalf("write: %+v", r)
			}
			roff := rnd.Uint64N(uint64(len(want)))
			rn := min(rnd.Uint64N(70000)+1, uint64(len(want))-roff)
			r := c.do(request{typ: cmdRead, cookie: uint64(i), offset: roff, length: uint32(rn)}, nil)
			if r.err != 0 || !bytes.Equal(r.data, want[roff:roff+rn]) {
				t.Fatalf("read %d at %d: error %d, %d bytes differ", rn, roff, r.err, len(r.data))
			}
		}
		syncs := m.syncs
		if r := c.do(request{typ: cmdFlush, cookie: 9}, nil); r.err != 0 || m.syncs != syncs+1 {
			t.Fatalf("flush: %+v, %d syncs", r, m.syncs-syncs)
		}
		if syncs < 200/7 {
			t.Errorf("%d syncs for the FUA writes", syncs)
		}
		if r := c.do(request{typ: cmdRead, cookie: 10, offset: 5, length: 0}, nil); r.err != 0 || len(r.data) != 0 {
			t.Errorf("read of 0 bytes: %+v", r)
		}
		c.send(request{typ: cmdDisc}, nil)
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("after DISC: %v", err)
		}
	}
}

func TestBlockStatus(t *testing.T) {
	const size = 300*4096 + 1234
	m := newModel(size, 4096)
	rnd := rand.New(rand.NewPCG(2, 3))
	for e := range 6 {
		for range 20 {
			off := rnd.Int64N(size)
			n := min(rnd.Int64N(3*4096)+1, size-off)
			m.WriteAt(make([]byte, n), off)
		}
		if e < 5 {
			m.Checkpoint()
		}
	}
	_, sock := startServer(t, m, Options{})
	names := []string{"base:allocation", "x-era:era", "x-era:written-since:1", "x-era:written-since:4", "qemu:dirty-bitmap:era-4", "x-era:written-since:6"}
	c := connect(t, sock, true, names...)
	if len(c.contexts) != len(names) {
		t.Fatalf("contexts %v", c.contexts)
	}
	check := func(off, n uint64, one bool) {
		t.Helper()
		var flags uint16
		if one {
			flags = cflagReqOne
		}
		r := c.do(request{typ: cmdBlockStatus, flags: flags, cookie: 1, offset: off, length: uint32(n)}, nil)
		if r.err != 0 {
			t.Fatalf("block status %d+%d: error %d %s", off, n, r.err, r.msg)
		}
		for _, name := range names {
			got, want := r.statuses[c.contextID(name)], m.expected(name, off, n)
			if one {
				want = want[:1]
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s at %d+%d (one %v):\n got %v\nwant %v", name, off, n, one, got, want)
			}
		}
	}
	check(0, size, false)
	check(size-1, 1, false)
	check(size-5000, 5000, true)
	for range 100 {
		off := rnd.Uint64N(size)
		check(off, rnd.Uint64N(size-off)+1, rnd.IntN(3) == 0)
	}
	// A write is in the very next answer.
	m.WriteAt([]byte{1}, 7*4096+5)
	check(0, size, false)

	for _, tc := range []request{
		{typ: cmdBlockStatus, offset: 0, length: 0},
		{typ: cmdBlockStatus, offset: size - 10, length: 11},
		{typ: cmdBlockStatus, offset: 1 << 62, length: 1},
		{typ: cmdBlockStatus, flags: cflagFUA, offset: 0, length: 10},
	} {
		if r := c.do(tc, nil); r.err != errInval {
			t.Errorf("%+v: error %d, want EINVAL", tc, r.err)
		}
	}
	// A failing query is an error chunk, never a map of zeroes.
	m.mu.Lock()
	m.failQuery = errModelQuery
	m.mu.Unlock()
	r := c.do(request{typ: cmdBlockStatus, cookie: 5, offset: 0, length: 4096}, nil)
	if r.err != errIO || len(r.statuses) != 0 {
		t.Errorf("failing query: error %d, statuses %v", r.err, r.statuses)
	}

	// Without contexts, or without structured replies: EINVAL.
	for _, structured := range []bool{false, true} {
		c := connect(t, sock, structured)
		if r := c.do(request{typ: cmdBlockStatus, cookie: 5, offset: 0, length: 4096}, nil); r.err != errInval {
			t.Errorf("block status without contexts (structured %v): %d", structured, r.err)
		}
	}
}

// A long map is answered for a prefix, and a client going on from where it
// ends gets the rest.
func TestBlockStatusLongMap(t *testing.T) {
	const bb = 4096
	const nb = 3 * maxDescriptors
	m := newModel(nb*bb, bb)
	for b := 0; b < nb; b += 2 {
		m.eras[b] = 1
	}
	_, sock := startServer(t, m, Options{})
	c := connect(t, sock, true, "x-era:written-since:1", "x-era:era")
	for _, name := range []string{"x-era:written-since:1", "x-era:era"} {
		var all []extent
		for off := uint64(0); off < nb*bb; {
			r := c.do(request{typ: cmdBlockStatus, cookie: 1, offset: off, length: uint32(nb*bb - off)}, nil)
			ext := r.statuses[c.contextID(name)]
			if r.err != 0 || len(ext) == 0 || len(ext) > maxDescriptors {
				t.Fatalf("%s at %d: error %d, %d extents", name, off, r.err, len(ext))
			}
			for _, e := range ext {
				off += uint64(e.length)
			}
			all = append(all, ext...)
		}
		if len(all) != nb {
			t.Errorf("%s: %d extents, want %d", name, len(all), nb)
		}
		for i, e := range all {
			if e.length != bb || e.flags != uint32(1-i%2) {
				t.Fatalf("%s: extent %d is %+v", name, i, e)
			}
		}
	}
}

func TestWriteZeroesAndTrim(t *testing.T) {
	for _, fast := range []bool{false, true} {
		m := newModel(64*4096, 4096)
		m.fastZero = fast
		for i := range m.data {
			m.data[i] = 0xaa
		}
		_, sock := startServer(t, m, Options{})
		c := connect(t, sock, true, "x-era:written-since:2")
		if got := c.tflags&tflagSendTrim != 0; got != fast {
			t.Errorf("fast %v: trim offered %v", fast, got)
		}
		m.Checkpoint()
		r := c.do(request{typ: cmdWriteZeroes, flags: cflagFastZero, cookie: 1, offset: 4096, length: 8192}, nil)
		if !fast {
			if r.err != errNotSup || m.data[4096] != 0xaa || m.eras[1] != 0 {
				t.Errorf("slow FAST_ZERO: error %d, data %#x, era %d", r.err, m.data[4096], m.eras[1])
			}
		} else if r.err != 0 || m.data[4096] != 0 || m.eras[1] != 2 {
			t.Errorf("fast FAST_ZERO: error %d", r.err)
		}
		zc := m.zeroCalls
		r = c.do(request{typ: cmdWriteZeroes, flags: cflagNoHole | cflagFUA, cookie: 2, offset: 10*4096 + 1, length: 4096}, nil)
		if r.err != 0 || !bytes.Equal(m.data[10*4096+1:11*4096+1], make([]byte, 4096)) || m.data[10*4096] != 0xaa || m.eras[10] != 2 || m.eras[11] != 2 {
			t.Errorf("NO_HOLE zeroes: error %d", r.err)
		}
		if fast && m.zeroCalls != zc {
			t.Errorf("NO_HOLE punched a hole")
		}
		r = c.do(request{typ: cmdTrim, cookie: 3, offset: 20 * 4096, length: 4096}, nil)
		if fast != (r.err == 0) || fast != (m.eras[20] == 2) {
			t.Errorf("trim (fast %v): error %d, era %d", fast, r.err, m.eras[20])
		}
		if r := c.do(request{typ: cmdWriteZeroes, cookie: 4, offset: 63 * 4096, length: 4097}, nil); r.err != errNoSpc {
			t.Errorf("zeroes past the end: %d", r.err)
		}
	}
}

func TestReadOnly(t *testing.T) {
	m := newModel(1<<16, 4096)
	_, sock := startServer(t, m, Options{ReadOnly: true})
	c := connect(t, sock, false)
	if c.tflags&tflagReadOnly == 0 || c.tflags&tflagSendWriteZeroes != 0 {
		t.Errorf("flags %#x", c.tflags)
	}
	for _, typ := range []uint16{cmdWrite, cmdWriteZeroes, cmdTrim} {
		var p []byte
		if typ == cmdWrite {
			p = []byte{1, 2, 3}
		}
		if r := c.do(request{typ: typ, cookie: 1, offset: 0, length: 3}, p); r.err != errPerm {
			t.Errorf("%s on a read-only export: %d", commandName(typ), r.err)
		}
	}
	if m.data[0] != 0 || m.eras[0] != 0 {
		t.Error("read-only export written")
	}
}

// Bad requests get the protocol's error, and nothing they do harms the
// server or another connection.
func TestBadInput(t *testing.T) {
	m := newModel(1<<20, 4096)
	_, sock := startServer(t, m, Options{MaxPayload: 1 << 16})
	other := connect(t, sock, true, "x-era:written-since:1")
	alive := func() {
		t.Helper()
		r := other.do(request{typ: cmdWrite, cookie: 77, offset: 4096, length: 4}, []byte{1, 2, 3, 4})
		r2 := other.do(request{typ: cmdBlockStatus, cookie: 78, offset: 0, length: 8192}, nil)
		if r.err != 0 || r2.err != 0 {
			t.Fatalf("other connection: %d %d", r.err, r2.err)
		}
	}
	for _, structured := range []bool{false, true} {
		c := connect(t, sock, structured)
		for _, tc := range []struct {
			r    request
			p    []byte
			want uint32
		}{
			{request{typ: cmdRead, offset: 1 << 20, length: 1}, nil, errInval},
			{request{typ: cmdRead, offset: 1<<64 - 1, length: 2}, nil, errInval},
			{request{typ: cmdRead, offset: 0, length: 1<<16 + 1}, nil, errInval},
			{request{typ: cmdWrite, offset: 1<<20 - 1, length: 2}, []byte{1, 2}, errNoSpc},
			{request{typ: cmdWrite, offset: 0, length: 1<<16 + 1}, make([]byte, 1<<16+1), errInval},
			{request{typ: cmdWrite, flags: cflagReqOne, offset: 0, length: 1}, []byte{9}, errInval},
			{request{typ: cmdRead, flags: 1 << 15, offset: 0, length: 1}, nil, errInval},
			{request{typ: cmdCache, offset: 0, length: 1}, nil, errInval},
			{request{typ: 99, offset: 0, length: 1}, nil, errInval},
			{request{typ: cmdTrim, offset: 0, length: 1}, nil, errInval},
		} {
			tc.r.cookie = uint64(tc.r.typ)<<8 | 1
			if r := c.do(tc.r, tc.p); r.err != tc.want {
				t.Errorf("structured %v, %+v: error %d, want %d", structured, tc.r, r.err, tc.want)
			}
		}
		if m.data[1<<20-1] != 0 || m.data[0] != 0 {
			t.Error("a refused write reached the backend")
		}
		// The connection still works.
		if r := c.do(request{typ: cmdRead, cookie: 3, offset: 0, length: 10}, nil); r.err != 0 || len(r.data) != 10 {
			t.Fatalf("read after errors: %+v", r)
		}
		alive()
	}

	// A wrong magic number ends that connection only.
	c := connect(t, sock, true)
	b := appendRequest(nil, request{typ: cmdRead, length: 1})
	b[0] ^= 0xff
	c.write(b)
	if _, err := io.ReadAll(c.br); err != nil {
		t.Errorf("after a wrong magic: %v", err)
	}
	alive()

	// Disconnects mid-request, mid-payload, mid-handshake.
	for _, cut := range [][]byte{
		appendRequest(nil, request{typ: cmdRead, length: 1})[:13],
		append(appendRequest(nil, request{typ: cmdWrite, length: 1000}), make([]byte, 500)...),
	} {
		c := connect(t, sock, true)
		c.write(cut)
		c.nc.Close()
	}
	for _, cut := range [][]byte{{0, 0}, {0, 0, 0, 1, 0x49, 0x48}, binary.BigEndian.AppendUint32(nil, 1<<7)} {
		c := dialRaw(t, sock)
		c.write(cut)
		if len(cut) == 4 { // unknown client flags: the server hangs up
			if _, err := io.ReadAll(c.br); err != nil {
				t.Error(err)
			}
		}
		c.nc.Close()
	}
	// Wrong option magic, a huge option.
	c = dialRaw(t, sock)
	c.write(binary.BigEndian.AppendUint32(nil, clientFixedNewstyle))
	big := binary.BigEndian.AppendUint64(nil, magicOpt)
	big = binary.BigEndian.AppendUint32(big, optInfo)
	big = binary.BigEndian.AppendUint32(big, 1<<20)
	c.write(append(big, make([]byte, 1<<20)...))
	if r, err := c.readOptReply(); err != nil || r.typ != repErrTooBig {
		t.Errorf("huge option: %+v %v", r, err)
	}
	c.write(make([]byte, 16))
	if _, err := io.ReadAll(c.br); err != nil {
		t.Error(err)
	}
	alive()
}

// gate is a backend whose writes wait until released.
type gate struct {
	*model
	entered chan struct{}
	release chan struct{}
}

func (g *gate) WriteAt(p []byte, off int64) (int, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.model.WriteAt(p, off)
}

func TestShutdownAnswersInFlight(t *testing.T) {
	g := &gate{model: newModel(1<<16, 4096), entered: make(chan struct{}, 4), release: make(chan struct{})}
	sock := t.TempDir() + "/s"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(g, Options{Logf: t.Logf})
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c := connect(t, sock, true)
	c.send(request{typ: cmdWrite, cookie: 1, offset: 0, length: 3}, []byte{7, 8, 9})
	<-g.entered
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.release)
	r, err := c.next(map[uint64]*treply{})
	if err != nil || r.err != 0 || r.cookie != 1 {
		t.Fatalf("in-flight write: %+v %v", r, err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if g.data[2] != 9 {
		t.Error("write lost")
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("still accepting")
	}
}

func TestMaxConnections(t *testing.T) {
	m := newModel(1<<16, 4096)
	s, sock := startServer(t, m, Options{MaxConnections: 2})
	a, b := connect(t, sock, false), connect(t, sock, false)
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("third connection: %d %v", n, err)
	}
	if s.Connections() != 2 {
		t.Errorf("%d connections", s.Connections())
	}
	a.send(request{typ: cmdDisc}, nil)
	io.ReadAll(a.br)
	for deadline := time.Now().Add(5 * time.Second); s.Connections() > 1; {
		if time.Now().After(deadline) {
			t.Fatal("connection not released")
		}
		time.Sleep(time.Millisecond)
	}
	connect(t, sock, false)
	if r := b.do(request{typ: cmdRead, cookie: 1, length: 4}, nil); r.err != 0 {
		t.Error(r.err)
	}
}

// Many connections with many requests in flight each: every reply matches
// its request, whatever the order.
func TestConcurrent(t *testing.T) {
	const bb = 4096
	m := newModel(256*bb, bb)
	_, sock := startServer(t, m, Options{MaxInFlight: 8})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			structured := w%2 == 0
			var c *tclient
			if structured {
				c = connect(t, sock, true, "x-era:written-since:1")
			} else {
				c = connect(t, sock, false)
			}
			// Each connection owns blocks w, w+6, ...: its writes and
			// reads do not race with the others'.
			const n = 40
			want := map[uint64][]byte{}
			for i := range n {
				blk := uint64(w + 6*i)
				p := bytes.Repeat([]byte{byte(w*n + i)}, bb)
				want[blk] = p
				c.send(request{typ: cmdWrite, cookie: uint64(i), offset: blk * bb, length: bb}, p)
			}
			partial := map[uint64]*treply{}
			for range n {
				r, err := c.next(partial)
				if err != nil || r.err != 0 {
					t.Errorf("conn %d write: %+v %v", w, r, err)
					return
				}
			}
			for blk := range want {
				c.send(request{typ: cmdRead, cookie: blk, offset: blk * bb, length: bb}, nil)
				if structured {
					c.send(request{typ: cmdBlockStatus, cookie: 1<<32 | blk, offset: blk * bb, length: bb}, nil)
				}
			}
			replies := len(want)
			if structured {
				replies *= 2
			}
			for range replies {
				r, err := c.next(partial)
				if err != nil || r.err != 0 {
					t.Errorf("conn %d: %+v %v", w, r, err)
					return
				}
				if r.cookie>>32 == 1 {
					if ext := r.statuses[1]; len(ext) != 1 || ext[0].flags != 1 {
						t.Errorf("conn %d: block %d not written: %v", w, r.cookie&0xffffffff, ext)
					}
				} else if !bytes.Equal(r.data, want[r.cookie]) {
					t.Errorf("conn %d: block %d differs", w, r.cookie)
				}
			}
		}()
	}
	wg.Wait()
}

// A client that stalls in the handshake is dropped after the timeout, and
// a handshake under way does not hold up Shutdown.
func TestHandshakeTimeoutAndShutdown(t *testing.T) {
	m := newModel(1<<16, 4096)
	s, sock := startServer(t, m, Options{HandshakeTimeout: 200 * time.Millisecond})
	c := dialRaw(t, sock)
	start := time.Now()
	if _, err := io.ReadAll(c.br); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("stalled handshake dropped after %v", d)
	}
	live := connect(t, sock, false)
	time.Sleep(300 * time.Millisecond) // past the handshake timeout: transmission has none
	if r := live.do(request{typ: cmdRead, cookie: 1, length: 8}, nil); r.err != 0 {
		t.Fatalf("read after the handshake timeout: %d", r.err)
	}
	stalled := dialRaw(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a handshake under way: %v", err)
	}
	if _, err := io.ReadAll(stalled.br); err != nil {
		t.Error(err)
	}
	if _, err := io.ReadAll(live.br); err != nil {
		t.Error(err)
	}
}
