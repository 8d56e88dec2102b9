package server

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// QuietListener is a gRPC listener whose connections that have sent
// nothing yet are closed at shutdown (CloseQuiet). grpc-go's GracefulStop,
// and Stop, wait for every connection still in its handshake, up to the
// handshake timeout: one a client opened and sent nothing on (a pool's
// spare, a port probe) held the drain that long, past a shorter
// shutdown_timeout, which then reported calls cut off that did not exist.
// Such a connection carries no call (grpc-go would close it once its
// handshake was done, the server stopping), and its client sees it closed
// before it sent a byte.
type QuietListener struct {
	net.Listener
	mu     sync.Mutex
	quiet  map[*quietConn]struct{}
	closed bool
}

// NewQuietListener wraps lis.
func NewQuietListener(lis net.Listener) *QuietListener {
	return &QuietListener{Listener: lis, quiet: map[*quietConn]struct{}{}}
}

// Accept accepts a connection, closed at once once CloseQuiet has run.
func (l *QuietListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	qc := &quietConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
	} else {
		l.quiet[qc] = struct{}{}
	}
	return qc, nil
}

// CloseQuiet closes the connections that have sent nothing yet, and every
// one accepted from now on.
func (l *QuietListener) CloseQuiet() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.quiet {
		c.Conn.Close()
	}
	clear(l.quiet)
}

func (l *QuietListener) forget(c *quietConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.quiet, c)
}

// quietConn leaves its listener's quiet set with its first byte read.
type quietConn struct {
	net.Conn
	l     *QuietListener
	heard atomic.Bool
}

func (c *quietConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.heard.Load() {
		c.heard.Store(true)
		c.l.forget(c)
	}
	return n, err
}

func (c *quietConn) Close() error {
	if !c.heard.Load() {
		c.l.forget(c)
	}
	return c.Conn.Close()
}

// closeNewOnShutdown closes, when srv shuts down, the connections that
// have not begun a request, or whose request has not all arrived
// (http.StateNew), and those that come after: net/http's Shutdown takes
// such a connection for idle only once it is 5 s old, and until then it
// held the drain, past a shorter shutdown_timeout. net/http would not
// serve its request anyway: one read once the shutdown has begun is
// dropped.
func closeNewOnShutdown(srv *http.Server) {
	var (
		mu       sync.Mutex
		fresh    = map[net.Conn]struct{}{}
		stopping bool
	)
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case st == http.StateNew && stopping:
			c.Close()
		case st == http.StateNew:
			fresh[c] = struct{}{}
		default:
			delete(fresh, c)
		}
	}
	srv.RegisterOnShutdown(func() {
		mu.Lock()
		defer mu.Unlock()
		stopping = true
		for c := range fresh {
			c.Close()
		}
		clear(fresh)
	})
}
