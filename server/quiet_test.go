package server

import (
	"net"
	"testing"
)

// TestQuietConnsForgetConnectionsThatEnded: a connection leaves the
// tracker with its first byte, or with a failed read (grpc-go may close
// the raw connection under the tracked one), so that none is kept until
// shutdown.
func TestQuietConnsForgetConnectionsThatEnded(t *testing.T) {
	q := newQuietConns()
	for _, send := range []bool{true, false} {
		server, client := net.Pipe()
		c := q.track(server)
		go func() {
			if send {
				_, _ = client.Write([]byte("x"))
			}
			client.Close()
		}()
		_, _ = c.Read(make([]byte, 1))
		server.Close() // the raw connection, as grpc-go may close it
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := len(q.quiet); n != 0 {
		t.Errorf("%d connections still tracked; want none", n)
	}
}
