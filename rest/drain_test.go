package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// holdingService answers CreateBackup after hold, or with its context's
// error should the call's context end first.
type holdingService struct {
	stub
	hold time.Duration
}

func (s *holdingService) CreateBackup(ctx context.Context, req *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	select {
	case <-time.After(s.hold):
		return s.stub.CreateBackup(ctx, req)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSlowBodyIsCutShortAtShutdown: when the HTTP server shuts down, a
// REST body still arriving has the grace period left to arrive; one that
// does not is answered 503 SHUTTING_DOWN with Retry-After, logged, and the
// shutdown ends well within its timeout rather than waiting for the read
// timeout. A body that arrives within the grace period, and a request
// whose body was in before, are served to the end, however long their
// handling takes.
func TestSlowBodyIsCutShortAtShutdown(t *testing.T) {
	const grace, hold = 500 * time.Millisecond, 1200 * time.Millisecond
	svc := &holdingService{hold: hold}
	f := newFixtureWith(t, func(o *Options) { o.Service = svc })
	srv := newHTTPServer(f.http.Config.Handler, 20*time.Second, 10*time.Second, nil, nil, nil)
	reads := newBodyReads(grace)
	reads.watch(srv)
	addr := serveHTTP(t, srv)

	const path = "/v1/accounts/111111111111/tables/Orders/backups"
	send := func(body string, declared int) (net.Conn, *bufio.Reader) {
		t.Helper()
		conn := dialRaw(t, addr)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", path, declared, body)
		return conn, bufio.NewReader(conn)
	}
	reading := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			reads.mu.Lock()
			got := len(reads.reading)
			reads.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d bodies being read, want %d", got, n)
			}
		}
	}

	const whole = `{"backupName":"whole"}`
	_, wholeAnswer := send(whole, len(whole)) // in before the shutdown, handled through it
	const late = `{"backupName":"late"}`
	lateConn, lateAnswer := send(late[:5], len(late)) // the rest comes within the grace period
	_, slowAnswer := send(`{"backupName":`, 100)      // the rest never comes
	reading(2)

	start := time.Now()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	time.Sleep(grace / 5) // the rest of the late body, well within the grace period
	if _, err := io.WriteString(lateConn, late[5:]); err != nil {
		t.Fatal(err)
	}

	resp, err := http.ReadResponse(slowAnswer, nil)
	if err != nil {
		t.Fatalf("slow body: no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	var got struct {
		Code    int
		Message string
		Details []struct {
			Type   string `json:"@type"`
			Reason string
		}
	}
	_ = json.Unmarshal(body, &got)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" ||
		len(got.Details) == 0 || got.Details[0].Reason != "SHUTTING_DOWN" || !strings.Contains(got.Message, "nothing was done") {
		t.Errorf("slow body: %d, Retry-After %q, %s; want 503, Retry-After 1, SHUTTING_DOWN", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if d := time.Since(start); d > grace+time.Second {
		t.Errorf("slow body answered %s after the shutdown began; want about %s", d, grace)
	}

	for name, answer := range map[string]*bufio.Reader{"whole": wholeAnswer, "late": lateAnswer} {
		resp, err := http.ReadResponse(answer, nil)
		if err != nil {
			t.Errorf("%s: no answer: %v", name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s; want 200 after the %s handling", name, resp.StatusCode, body, hold)
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > hold+2*time.Second {
		t.Errorf("shutdown took %s; want about %s, the handling's", d, hold)
	}
	if lines := f.logs.Lines(`"level":"INFO"`, `"code":"Unavailable"`); len(lines) != 1 {
		t.Errorf("the cut request was not logged once as Unavailable, at INFO (the shutdown's, not a fault):\n%s", f.logs.String())
	}
}

// deadlineRecorder is a ResponseWriter that records the read deadlines set
// on its connection.
type deadlineRecorder struct {
	http.ResponseWriter
	set []time.Time
}

func (w *deadlineRecorder) SetReadDeadline(t time.Time) error {
	w.set = append(w.set, t)
	return nil
}

// drainingBody reads as body does, but the server begins to drain during
// its read that returns err, as it may between net/http's last read of a
// body and limitedBody seeing it.
type drainingBody struct {
	reads *bodyReads
	err   error
}

func (b *drainingBody) Read([]byte) (int, error) {
	b.reads.drain()
	return 0, b.err
}

func (*drainingBody) Close() error { return nil }

// TestBodyReadsLeaveTheDeadlineRight: a body whose read ended at its end
// once the drain began has its deadline taken off (net/http's read after
// it would otherwise time out and cancel the request); one that timed out
// is marked cut short; one answered before its end keeps its deadline.
func TestBodyReadsLeaveTheDeadlineRight(t *testing.T) {
	tests := []struct {
		name     string
		err      error // what the read that sees the drain returns
		answered bool  // the request is answered after that read
		wantLast string
		wantCut  bool
	}{
		{"read to its end", io.EOF, false, "none", false},
		{"timed out", os.ErrDeadlineExceeded, true, "grace", true},
		{"answered before its end", nil, true, "grace", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := newBodyReads(time.Minute)
			w := &deadlineRecorder{}
			lb := &limitedBody{ReadCloser: &drainingBody{reads: reads, err: tt.err}, call: &restCall{}, reads: reads, w: w}
			before := time.Now()
			_, _ = lb.Read(make([]byte, 8))
			if tt.answered {
				lb.answered()
			}
			if len(w.set) == 0 {
				t.Fatal("no deadline was set at the drain")
			}
			last := "grace"
			if w.set[len(w.set)-1].IsZero() {
				last = "none"
			} else if w.set[len(w.set)-1].Before(before.Add(time.Minute)) {
				last = w.set[len(w.set)-1].String()
			}
			if last != tt.wantLast || lb.call.cutShort != tt.wantCut {
				t.Errorf("deadlines %v (last: %s), cut short %v; want last %s, cut short %v", w.set, last, lb.call.cutShort, tt.wantLast, tt.wantCut)
			}
			if len(reads.reading) != 0 {
				t.Errorf("%d bodies still watched after the request's end", len(reads.reading))
			}
		})
	}
}
