package server

import (
	"bytes"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// TestQuietConnsTrackUntilTheHTTP2ConnectionIsMade: a connection leaves
// the tracker once its client's preface and first frame have arrived,
// however the reads split them, or with a failed read (grpc-go may close
// the raw connection under the tracked one), or when it closes; one that
// sent part of them, or a TLS handshake's bytes only, stays, to be closed
// at shutdown.
func TestQuietConnsTrackUntilTheHTTP2ConnectionIsMade(t *testing.T) {
	var settings bytes.Buffer
	settings.WriteString(http2.ClientPreface)
	if err := http2.NewFramer(&settings, nil).WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	whole := settings.Bytes()
	tests := []struct {
		name    string
		send    []byte
		readBuf int  // how much each read takes
		close   bool // the client closes after sending
		tracked bool
	}{
		{"preface and SETTINGS in one read", whole, 4096, false, false},
		{"preface and SETTINGS a byte at a time", whole, 1, false, false},
		{"preface and SETTINGS and more", append(bytes.Clone(whole), 0, 0, 4, 8), 4096, false, false},
		{"preface alone", whole[:len(http2.ClientPreface)], 4096, false, true},
		{"SETTINGS cut short", whole[:len(whole)-1], 4096, false, true},
		{"nothing, then closed by the client", nil, 4096, true, false},
		{"part of the preface, then closed by the client", whole[:5], 4096, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuietConns()
			server, client := net.Pipe()
			defer server.Close()
			c := q.track(server)
			w := &prefaceWatch{Conn: c, quiet: c}
			go func() {
				if len(tt.send) > 0 {
					_, _ = client.Write(tt.send)
				}
				if tt.close {
					client.Close()
				}
			}()
			buf := make([]byte, tt.readBuf)
			for got := 0; got < len(tt.send); {
				n, err := w.Read(buf)
				got += n
				if err != nil {
					t.Fatal(err)
				}
			}
			if tt.close {
				if _, err := w.Read(buf); err != io.EOF {
					t.Fatalf("read after the client closed: %v; want EOF", err)
				}
			}
			q.mu.Lock()
			n := len(q.quiet)
			q.mu.Unlock()
			if (n == 1) != tt.tracked {
				t.Errorf("%d connections tracked; want tracked: %v", n, tt.tracked)
			}
			client.Close()
		})
	}
}

// TestQuietConnLeavesWhenClosed: a connection closed by grpc-go leaves the
// tracker, so that none is kept until shutdown.
func TestQuietConnLeavesWhenClosed(t *testing.T) {
	q := newQuietConns()
	server, client := net.Pipe()
	defer client.Close()
	c := q.track(server)
	c.Close()
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := len(q.quiet); n != 0 {
		t.Errorf("%d connections still tracked after Close; want none", n)
	}
}

// bufferedConn stands for a TLS connection that read its client's first
// call into its buffer with the handshake: its reads go on from the
// buffer after its Close. during, when set, runs inside the next read.
type bufferedConn struct {
	net.Conn
	buf    *bytes.Reader
	during func()
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if f := b.during; f != nil {
		b.during = nil
		f()
	}
	return b.buf.Read(p)
}

func (b *bufferedConn) Close() error { return nil }

// TestCutConnectionHandsNoCallOver: once closeQuiet has cut a connection,
// before or while the read that completes its first frame, that read and
// the ones after hand grpc-go nothing: the call behind the preface, in
// TLS's buffer, is not served on a connection whose client would never
// get the answer. One that left its tracker first is served.
func TestCutConnectionHandsNoCallOver(t *testing.T) {
	var stream bytes.Buffer
	stream.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&stream, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		cut    string // "before", "during" the read of the first frame, or "after"
		served bool
	}{
		{"cut before the first frame is read", "before", false},
		{"cut while the first frame is read", "during", false},
		{"cut after the first frame was read", "after", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuietConns()
			server, client := net.Pipe()
			defer client.Close()
			raw := &bufferedConn{Conn: server, buf: bytes.NewReader(stream.Bytes())}
			c := q.track(raw)
			w := &prefaceWatch{Conn: c, quiet: c}
			if _, err := io.ReadFull(w, make([]byte, len(http2.ClientPreface))); err != nil {
				t.Fatal(err)
			}
			switch tt.cut {
			case "before":
				q.closeQuiet()
			case "during":
				raw.during = q.closeQuiet
			}
			n, err := w.Read(make([]byte, 4096))
			if tt.cut == "after" {
				q.closeQuiet()
			}
			if served := n > 0 && err == nil; served != tt.served {
				t.Errorf("read of the first frame: %d bytes, %v; want them handed over: %v", n, err, tt.served)
			}
			if n, err := w.Read(make([]byte, 4096)); !tt.served && (n > 0 || err == nil) {
				t.Errorf("read after the cut: %d bytes, %v; want none, and an error", n, err)
			}
		})
	}
}
