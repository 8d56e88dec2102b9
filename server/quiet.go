package server

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/credentials"
)

// quietConns tracks the gRPC server's connections that carry no HTTP/2
// connection yet (in their TLS handshake, or before their client's
// preface and first frame have all arrived), to close them when the
// servers stop taking work. grpc-go's GracefulStop, and Stop, wait for
// every connection still in its handshake, up to the handshake timeout:
// one a client opened and sent nothing on (a pool's spare, a port probe),
// or stalled in the middle of TLS or of its preface, held the drain that
// long, past a shorter shutdown_timeout, which then reported calls cut off
// that did not exist. Such a connection carries no call (grpc-go would
// close it once its handshake was done, the server stopping): its client
// sees it closed before backupd read a call from it. One whose HTTP/2
// connection is made is drained by grpc-go (GOAWAY), not closed.
type quietConns struct {
	mu     sync.Mutex
	quiet  map[*quietConn]struct{}
	closed bool
}

func newQuietConns() *quietConns {
	return &quietConns{quiet: map[*quietConn]struct{}{}}
}

// track returns raw to read through, tracked until its HTTP/2 connection
// is made (prefaceWatch); closed at once once closeQuiet has run.
func (q *quietConns) track(raw net.Conn) *quietConn {
	c := &quietConn{Conn: raw, q: q}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		c.state.Store(cut)
		raw.Close()
	} else {
		q.quiet[c] = struct{}{}
	}
	return c
}

// closeQuiet closes the connections that carry no HTTP/2 connection yet,
// and every one tracked from now on.
func (q *quietConns) closeQuiet() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for c := range q.quiet {
		if c.state.CompareAndSwap(quiet, cut) {
			c.Conn.Close()
		}
	}
	clear(q.quiet)
}

func (q *quietConns) forget(c *quietConn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.quiet, c)
}

// quietConn leaves its tracker when its HTTP/2 connection is made
// (prefaceWatch), with its first failed read (grpc-go may close the raw
// connection under it, not this one), or when it closes. Its state says
// which came first: that, or closeQuiet cutting it.
type quietConn struct {
	net.Conn
	q     *quietConns
	state atomic.Int32
}

// A quietConn's states.
const (
	quiet int32 = iota // tracked
	heard              // left its tracker: grpc-go serves and drains it
	cut                // closed by closeQuiet
)

func (c *quietConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.leave()
	}
	return n, err
}

func (c *quietConn) Close() error {
	c.leave()
	return c.Conn.Close()
}

// leave takes c out of its tracker, once, and reports whether it left
// before closeQuiet cut it.
func (c *quietConn) leave() bool {
	if c.state.CompareAndSwap(quiet, heard) {
		c.q.forget(c)
		return true
	}
	return c.state.Load() == heard
}

// prefaceWatch reads a gRPC connection above its TLS, and takes it out of
// its tracker once the client's HTTP/2 preface and first frame (its
// SETTINGS) have arrived: then grpc-go has made the HTTP/2 connection, and
// drains it. It is read by grpc-go's one reader goroutine.
//
// A client may send its first call right behind its preface, and TLS may
// have read all of it into its buffer with the handshake: once closeQuiet
// has cut the connection, nothing more is handed to grpc-go, and the read
// that completes the first frame hands it over only if the connection
// left its tracker first. Otherwise grpc-go could serve a call read from
// the buffer on a connection already closed, whose answer its client
// would never get.
type prefaceWatch struct {
	net.Conn
	quiet *quietConn
	head  [len(http2.ClientPreface) + 3]byte // the preface and the first frame's length
	read  int                                // bytes read, counted until the frame's end
}

func (w *prefaceWatch) Read(p []byte) (int, error) {
	if w.quiet == nil {
		return w.Conn.Read(p)
	}
	if w.quiet.state.Load() == cut {
		return 0, net.ErrClosed
	}
	n, err := w.Conn.Read(p)
	if w.made(p[:n]) {
		if !w.quiet.leave() {
			return 0, net.ErrClosed
		}
		w.quiet = nil
	}
	return n, err
}

// made counts b and reports whether the preface and the first frame have
// all been read.
func (w *prefaceWatch) made(b []byte) bool {
	if w.read < len(w.head) {
		copy(w.head[w.read:], b)
	}
	w.read += len(b)
	if w.read < len(w.head) {
		return false
	}
	l := w.head[len(http2.ClientPreface):]
	frameLen := int(l[0])<<16 | int(l[1])<<8 | int(l[2])
	return w.read >= len(http2.ClientPreface)+frameHeaderLen+frameLen
}

// frameHeaderLen is the length of an HTTP/2 frame's header.
const frameHeaderLen = 9

// quietCredentials tracks each connection from its handshake on: the
// handshake (TLS, or none) reads through the tracked connection, while
// grpc-go keeps the raw one for its socket options (TCP_USER_TIMEOUT),
// which a listener handing out wrapped connections would lose.
type quietCredentials struct {
	credentials.TransportCredentials
	q *quietConns
}

func (c quietCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	quiet := c.q.track(raw)
	conn, info, err := c.TransportCredentials.ServerHandshake(quiet)
	if err != nil {
		return nil, nil, err
	}
	return &prefaceWatch{Conn: conn, quiet: quiet}, info, nil
}

func (c quietCredentials) Clone() credentials.TransportCredentials {
	return quietCredentials{c.TransportCredentials.Clone(), c.q}
}

// closeQuietWhenStopped closes q's quiet connections once stopped ends.
func closeQuietWhenStopped(stopped context.Context, q *quietConns) {
	context.AfterFunc(stopped, q.closeQuiet)
}
