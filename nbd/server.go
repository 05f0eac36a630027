package nbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Errors of the package, for errors.Is.
var (
	// ErrProtocol reports a client that broke the protocol (a wrong magic
	// number, malformed option data, ...). The server answers what the
	// protocol lets it answer, or drops that connection; it never affects
	// another one.
	ErrProtocol = errors.New("nbd protocol violation")
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("nbd server closed")
)

// Defaults of Options.
const (
	DefaultName             = "era"
	DefaultMaxConnections   = 64
	DefaultMaxPayload       = defaultMaxPayload
	DefaultMaxInFlight      = 64
	DefaultHandshakeTimeout = 30 * time.Second
)

// Options configure a Server. The zero value serves the export "era" with
// the defaults above.
type Options struct {
	// Name is the export name; "" is DefaultName. The empty name a client
	// asks for (the default export) also selects it.
	Name string
	// Description is sent to clients that ask (NBD_INFO_DESCRIPTION).
	Description string
	// ReadOnly refuses every write with EPERM and says so to clients.
	ReadOnly bool
	// MaxConnections bounds the connections served at once, handshaking
	// or transmitting; one more is closed on accept. 0: DefaultMaxConnections.
	MaxConnections int
	// MaxPayload is the largest READ or WRITE (bytes), advertised to
	// clients as the maximum block size; a larger one fails with EINVAL
	// (a WRITE's payload is read and dropped). 0: DefaultMaxPayload (32 MiB).
	MaxPayload uint32
	// MaxInFlight bounds the requests of one connection handled at once;
	// the connection reads no further request until one is answered.
	// 0: DefaultMaxInFlight.
	MaxInFlight int
	// HandshakeTimeout bounds the handshake of a connection. 0:
	// DefaultHandshakeTimeout; negative: none.
	HandshakeTimeout time.Duration
	// Logf, if set, receives a line for each connection that ends in an
	// error.
	Logf func(format string, args ...any)
}

// Server serves an export of a Backend over NBD (and any added with
// AddExport), to any number of
// connections at once (up to MaxConnections), each handling its requests
// concurrently and answering them in any order.
type Server struct {
	b     *backend
	opts  Options
	main  *export            // the export of b and opts
	extra map[string]*export // added with AddExport; under mu

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup // connections
}

// NewServer returns a server of b.
func NewServer(b Backend, opts Options) *Server {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	opts.MaxPayload = max(opts.MaxPayload, defaultPreferred)
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	s := &Server{
		b:         resolve(b),
		opts:      opts,
		extra:     map[string]*export{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	s.main = &export{name: opts.Name, description: opts.Description, readOnly: opts.ReadOnly, b: s.b}
	return s
}

// Name returns the export name.
func (s *Server) Name() string { return s.opts.Name }

// Connections returns the number of connections being served.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve accepts connections on l and serves each in its own goroutine,
// until Shutdown or Close (ErrServerClosed) or an accept error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.ServeConn(nc)
	}
}

// ServeConn serves one connection in a new goroutine; it returns at once.
// The server closes nc when done.
func (s *Server) ServeConn(nc net.Conn) {
	c := newConn(s, nc)
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.opts.MaxConnections {
		n := len(s.conns)
		s.mu.Unlock()
		nc.Close()
		s.logf("nbd: %s: refused: %d connections already (limit %d)", nc.RemoteAddr(), n, s.opts.MaxConnections)
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		err := c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if err != nil {
			s.logf("nbd: %s: %v", nc.RemoteAddr(), err)
		}
	}()
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Shutdown stops accepting, ends the handshakes under way, stops reading
// new requests and waits until every request already read is answered and
// its connection closed, or until ctx ends (then it closes what is left
// and returns ctx's error). It does not close the backend.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return fmt.Errorf("nbd shutdown: %w", ctx.Err())
	}
}

// Close closes the listeners and every connection at once, without waiting
// for requests under way, and waits for the connection goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
