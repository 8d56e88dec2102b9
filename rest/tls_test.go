package rest

import (
	"context"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/backupd/backupd/certreload"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/testenv"
)

// serveTLS serves NotFound over HTTPS with a self-signed certificate on a
// loopback port, its log written as JSON to logs.
func serveTLS(t *testing.T) (hs *http.Server, hl net.Listener, logs *testenv.Buffer) {
	t.Helper()
	files := testenv.SelfSignedTLS(t)
	cfg, err := certreload.TLSConfig(files.CertFile, files.KeyFile, "", discard())
	if err != nil {
		t.Fatal(err)
	}
	logs = &testenv.Buffer{}
	hs = NewServer(http.NotFoundHandler(), time.Minute, cfg, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	hl, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = Serve(hs, hl) }()
	t.Cleanup(func() { hs.Close() })
	return hs, hl, logs
}

// TestHTTPServerLogsInBackupdsFormat: net/http's own messages, such as a
// failed TLS handshake, are lines of backupd's log, not plain text.
func TestHTTPServerLogsInBackupdsFormat(t *testing.T) {
	_, hl, logs := serveTLS(t)
	if resp, err := http.Get("http://" + hl.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close() // plain HTTP to an HTTPS listener: the server answers 400 and logs the handshake
	}
	want := `"level":"WARN","msg":"http: TLS handshake error from 127.0.0.1:`
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := logs.String()
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q: want a JSON line %s", got, want)
		}
	}
}

// TestFailedHandshakesAreCapped: a failed TLS handshake is logged at most
// once every 10 s, with how many were left out since; net/http's other
// messages are all logged.
func TestFailedHandshakesAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		c := stdlog.New(cappedLog{log: slog.New(slog.NewJSONHandler(logs, nil)), cap: logcap.New(10 * time.Second)}, "", 0)
		for i := range 5 {
			c.Printf("http: TLS handshake error from 127.0.0.1:%d: EOF", 1000+i)
		}
		c.Printf("http: Accept error: too many open files; retrying in 5ms")
		c.Printf("http: Accept error: too many open files; retrying in 10ms")
		time.Sleep(10 * time.Second)
		c.Printf("http: TLS handshake error from 127.0.0.1:2000: EOF")
		handshakes := logs.Lines(`"level":"WARN"`, "TLS handshake error")
		if len(handshakes) != 2 || strings.Contains(handshakes[0], "left_out") || !strings.Contains(handshakes[1], `"left_out":4`) {
			t.Errorf("handshake lines %q; want the first, then one with left_out 4", handshakes)
		}
		if n := len(logs.Lines(`"level":"WARN"`, "Accept error")); n != 2 {
			t.Errorf("%d other lines; want both", n)
		}
	})
}

// TestHandshakesClosedAtTheDrainAreNotLogged: a connection still in its
// TLS handshake when the drain begins is closed by backupd, which is no
// failed handshake of the client's: it is not logged as one (as on the
// gRPC listener), while a client's own failure still is.
func TestHandshakesClosedAtTheDrainAreNotLogged(t *testing.T) {
	hs, hl, logs := serveTLS(t)
	silent, err := net.Dial("tcp", hl.Addr().String()) // opens, sends nothing: still in its handshake
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(100 * time.Millisecond) // accepted, its handshake begun
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection in its handshake was not closed at the drain")
	}
	time.Sleep(200 * time.Millisecond) // for the server's line, were it written
	if lines := logs.Lines("TLS handshake error"); len(lines) != 0 {
		t.Errorf("the drain's own close of a connection in its handshake was logged as a failed handshake: %q", lines)
	}
	c := stdlog.New(cappedLog{log: slog.New(slog.NewJSONHandler(logs, nil)), cap: logcap.New(10 * time.Second)}, "", 0)
	c.Printf("http: TLS handshake error from 127.0.0.1:1000: EOF")
	if lines := logs.Lines(`"level":"WARN"`, "TLS handshake error"); len(lines) != 1 {
		t.Errorf("a client's failed handshake: %q; want it logged", lines)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
