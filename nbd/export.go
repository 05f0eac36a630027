package nbd

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Errors of AddExport and RemoveExport.
var (
	// ErrExportExists is returned by AddExport for a name in use.
	ErrExportExists = errors.New("nbd export exists")
	// ErrNoExport is returned by RemoveExport for a name that was not
	// added.
	ErrNoExport = errors.New("no such nbd export")
)

// ExportOptions configure an export added with AddExport.
type ExportOptions struct {
	// Description is sent to clients that ask (NBD_INFO_DESCRIPTION).
	Description string
	// ReadOnly refuses every write with EPERM and says so to clients.
	ReadOnly bool
}

// export is one export of a Server: the one it was made with (Options),
// or one added later.
type export struct {
	name, description string
	readOnly          bool
	b                 *backend
	removed           atomic.Bool
}

// AddExport offers a further export, name, of b, to the connections that
// negotiate from now on. Its meta contexts are those of b. The name must
// be 1 to 4096 bytes and not in use (ErrExportExists).
func (s *Server) AddExport(name string, b Backend, opts ExportOptions) error {
	if name == "" || len(name) > maxStringLen {
		return fmt.Errorf("export name of %d bytes: want 1 to %d", len(name), maxStringLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == s.main.name || s.extra[name] != nil {
		return fmt.Errorf("%q: %w", name, ErrExportExists)
	}
	s.extra[name] = &export{name: name, description: opts.Description, readOnly: opts.ReadOnly, b: resolve(b)}
	return nil
}

// RemoveExport withdraws an export added with AddExport: clients can no
// longer select it, and its connections stop as Shutdown stops them (the
// requests already read are answered). It does not wait for them to end.
func (s *Server) RemoveExport(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := s.extra[name]
	if ex == nil {
		return fmt.Errorf("%q: %w", name, ErrNoExport)
	}
	delete(s.extra, name)
	ex.removed.Store(true)
	for c := range s.conns {
		c.mu.Lock()
		on := c.ex == ex
		c.mu.Unlock()
		if on {
			c.stop()
		}
	}
	return nil
}

// Exports returns the names of the exports offered, the first one first.
func (s *Server) Exports() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{s.main.name}
	for n := range s.extra {
		names = append(names, n)
	}
	return names
}

// lookup returns the export a client's name selects ("" selects the first
// one), or nil.
func (s *Server) lookup(name string) *export {
	if name == "" || name == s.main.name {
		return s.main
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extra[name]
}

// exports returns every export, the first one first.
func (s *Server) exports() []*export {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*export{s.main}
	for _, ex := range s.extra {
		out = append(out, ex)
	}
	return out
}
