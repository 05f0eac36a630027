package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(appendRequest(nil, request{typ: cmdRead, cookie: 1, offset: 4096, length: 512}))
	f.Add(appendRequest(nil, request{typ: cmdBlockStatus, flags: cflagReqOne, offset: 1 << 40, length: 1<<32 - 1}))
	f.Add([]byte("not a request"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if got := appendRequest(nil, r); !bytes.Equal(got, b) {
			t.Fatalf("round trip: %x -> %+v -> %x", b, r, got)
		}
	})
}

func FuzzParseOptions(f *testing.F) {
	f.Add(goData("era", infoBlockSize, infoName))
	f.Add(metaContextRequest("era", "base:allocation", "x-era:written-since:3", "qemu:dirty-bitmap:era-1"))
	f.Add(metaContextRequest("", "x-era:"))
	f.Add([]byte{0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	m := resolve(newModel(1<<20, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := parseGoRequest(b); err == nil {
			if len(g.name) > maxStringLen || len(g.infos) > maxInfoRequestCount {
				t.Fatalf("accepted %+v", g)
			}
		} else if !errors.Is(err, ErrProtocol) {
			t.Fatal(err)
		}
		mr, err := parseMetaRequest(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatal(err)
			}
			return
		}
		for _, q := range mr.queries {
			if !validQuery(q) || len(q) > maxStringLen {
				t.Fatalf("accepted query %q", q)
			}
		}
		for _, name := range m.listContexts(mr.queries) {
			if !validQuery(name) {
				t.Fatalf("listed %q", name)
			}
		}
		for _, c := range m.selectContexts(mr.queries) {
			if _, ok := m.lookupContext(c.name); !ok {
				t.Fatalf("selected %q", c.name)
			}
		}
	})
}

// FuzzSession feeds a whole client byte stream (handshake, options and
// requests) to a server connection: it must never panic or hang, and the
// backend must only be written inside the export.
func FuzzSession(f *testing.F) {
	hello := binary.BigEndian.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	opt := func(b []byte, o uint32, data []byte) []byte {
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	s := opt(append([]byte(nil), hello...), optStructuredReply, nil)
	s = opt(s, optSetMetaContext, metaContextRequest("era", "base:allocation", "x-era:era", "x-era:written-since:1"))
	s = opt(s, optGo, goData("era"))
	s = appendRequest(s, request{typ: cmdWrite, offset: 100, length: 3})
	s = append(s, 1, 2, 3)
	s = appendRequest(s, request{typ: cmdBlockStatus, offset: 0, length: 1 << 16})
	s = appendRequest(s, request{typ: cmdRead, offset: 0, length: 1 << 16})
	s = appendRequest(s, request{typ: cmdWriteZeroes, flags: cflagFastZero, offset: 0, length: 1 << 16})
	s = appendRequest(s, request{typ: cmdDisc})
	f.Add(s)
	f.Add(opt(append([]byte(nil), hello...), optExportName, []byte("era")))
	f.Add(opt(opt(append([]byte(nil), hello...), optList, nil), optAbort, nil))
	f.Fuzz(func(t *testing.T, stream []byte) {
		m := newModel(1<<16, 4096)
		srv := NewServer(m, Options{MaxPayload: 1 << 16, HandshakeTimeout: 5 * time.Second})
		client, server := net.Pipe()
		srv.ServeConn(server)
		go io.Copy(io.Discard, client)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		client.Write(stream)
		client.Close()
		done := make(chan struct{})
		go func() {
			srv.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection did not end")
		}
		if len(m.data) != 1<<16 {
			t.Fatal("backend resized")
		}
	})
}
