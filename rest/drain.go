package rest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// bodyReads are the REST request bodies an HTTP server is reading. When
// the server shuts down, each must arrive within a grace period: one that
// trickles in would otherwise hold the drain for the whole read timeout,
// past the shutdown timeout, and be cut off with its connection. Cut
// short, it is answered 503 with Retry-After, and nothing was done.
type bodyReads struct {
	grace time.Duration

	mu      sync.Mutex
	reading map[*limitedBody]struct{}
	// draining is set once the server shuts down: a body read from then
	// on gets its grace period when it starts.
	draining bool
}

func newBodyReads(grace time.Duration) *bodyReads {
	return &bodyReads{grace: grace, reading: make(map[*limitedBody]struct{})}
}

type bodyReadsKey struct{}

// bodyReadsOf returns the bodyReads of the server a request came to, nil
// when it came to a server that does not keep them (a test's).
func bodyReadsOf(ctx context.Context) *bodyReads {
	br, _ := ctx.Value(bodyReadsKey{}).(*bodyReads)
	return br
}

// watch serves srv's requests in a context that names b, and gives every
// body read its grace period when srv shuts down.
func (b *bodyReads) watch(srv *http.Server) {
	base := context.WithValue(context.Background(), bodyReadsKey{}, b)
	srv.BaseContext = func(_ net.Listener) context.Context { return base }
	srv.RegisterOnShutdown(b.drain)
}

func (b *bodyReads) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for lb := range b.reading {
		b.cutLocked(lb)
	}
}

// start records that lb's body is being read; a read that starts during
// the drain gets its grace period at once.
func (b *bodyReads) start(lb *limitedBody) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lb.watched = true
	b.reading[lb] = struct{}{}
	if b.draining {
		b.cutLocked(lb)
	}
}

// cutLocked gives lb's body until the grace period's end to arrive.
func (b *bodyReads) cutLocked(lb *limitedBody) {
	if lb.deadline {
		return
	}
	lb.deadline = true
	_ = http.NewResponseController(lb.w).SetReadDeadline(time.Now().Add(b.grace))
}

// end records that lb's body read ended with err: io.EOF at its end, a
// failure, or nil when its request was answered before the body's end. A
// body that arrived whole after its deadline was set has the deadline
// taken off again: net/http reads on, without one, to see the client
// leave, and a read that timed out there would cancel the request being
// handled. One not read to its end keeps it, so that net/http's read of
// what is left, after the answer, ends in time too.
func (b *bodyReads) end(lb *limitedBody, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !lb.watched {
		return
	}
	lb.watched = false
	delete(b.reading, lb)
	switch {
	case !lb.deadline:
	case errors.Is(err, io.EOF):
		_ = http.NewResponseController(lb.w).SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		lb.call.cutShort = true
	}
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
