package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
)

// quietConns tracks the gRPC server's connections that have sent nothing
// yet, to close them when the servers stop taking work. grpc-go's
// GracefulStop, and Stop, wait for every connection still in its
// handshake, up to the handshake timeout: one a client opened and sent
// nothing on (a pool's spare, a port probe) held the drain that long, past
// a shorter shutdown_timeout, which then reported calls cut off that did
// not exist. Such a connection carries no call (grpc-go would close it
// once its handshake was done, the server stopping): its client sees it
// closed before backupd read a byte of it.
type quietConns struct {
	mu     sync.Mutex
	quiet  map[*quietConn]struct{}
	closed bool
}

func newQuietConns() *quietConns {
	return &quietConns{quiet: map[*quietConn]struct{}{}}
}

// track returns raw to read through, tracked until its first byte; closed
// at once once closeQuiet has run.
func (q *quietConns) track(raw net.Conn) net.Conn {
	c := &quietConn{Conn: raw, q: q}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		raw.Close()
	} else {
		q.quiet[c] = struct{}{}
	}
	return c
}

// closeQuiet closes the connections that have sent nothing yet, and every
// one tracked from now on.
func (q *quietConns) closeQuiet() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for c := range q.quiet {
		c.Conn.Close()
	}
	clear(q.quiet)
}

func (q *quietConns) forget(c *quietConn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.quiet, c)
}

// quietConn leaves its tracker with its first byte read, or its first
// failed read (grpc-go may close the raw connection under it, not this
// one).
type quietConn struct {
	net.Conn
	q     *quietConns
	heard atomic.Bool
}

func (c *quietConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if (n > 0 || err != nil) && !c.heard.Load() {
		c.heard.Store(true)
		c.q.forget(c)
	}
	return n, err
}

func (c *quietConn) Close() error {
	if !c.heard.Load() {
		c.q.forget(c)
	}
	return c.Conn.Close()
}

// quietCredentials tracks each connection from its handshake on: the
// handshake (TLS, or none) reads through the tracked connection, while
// grpc-go keeps the raw one for its socket options (TCP_USER_TIMEOUT),
// which a listener handing out wrapped connections would lose.
type quietCredentials struct {
	credentials.TransportCredentials
	q *quietConns
}

func (c quietCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ServerHandshake(c.q.track(raw))
}

func (c quietCredentials) Clone() credentials.TransportCredentials {
	return quietCredentials{c.TransportCredentials.Clone(), c.q}
}

// closeQuietWhenStopped closes q's quiet connections once stopped ends.
func closeQuietWhenStopped(stopped context.Context, q *quietConns) {
	context.AfterFunc(stopped, q.closeQuiet)
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
