package integration

import (
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/backupd/backupd/testenv"
)

// TestHandshakesLeftOutAreCountedAtExit: of a burst of failed TLS
// handshakes on each listener, the log writes the first and leaves the
// others out for 10 s; a SIGTERM within them does not lose their count:
// at exit the log says how many of each kind it left out.
func TestHandshakesLeftOutAreCountedAtExit(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	files := testenv.SelfSignedTLS(t)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto), TLS: &files})
	const burst = 5
	for _, addr := range []string{inst.grpcAddr, hostOf(t, inst.httpURL)} {
		for range burst {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // plaintext: no TLS handshake
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the server gives up on it
			c.Close()
		}
	}
	if err := inst.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	for _, kind := range []string{"grpc: TLS handshake error", "http: TLS handshake error"} {
		counted := 0
		for _, line := range inst.logs.Lines(kind) {
			var r struct {
				Msg, Kind string
				LeftOut   int `json:"left_out"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if strings.HasPrefix(r.Msg, kind) {
				counted++ // a handshake written
			}
			counted += r.LeftOut
		}
		if counted != burst {
			t.Errorf("%s: the log counts %d; want the %d of the burst\n%s", kind, counted, burst, strings.Join(inst.logs.Lines(kind), "\n"))
		}
	}
}
