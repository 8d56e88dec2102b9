package rest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/backupd/backupd/tracing"
)

// TestTracedBodyTooLargeIsAnsweredAtOnce: with tracing on, a REST body
// sent chunked that passes MaxBodyBytes is answered 413 once what follows
// has been drained for at most drainTimeout, and its connection closed,
// as without: not once the rest of a body that never ends has been read.
func TestTracedBodyTooLargeIsAnsweredAtOnce(t *testing.T) {
	// Spans are recorded (the default sampler samples all), and sent
	// nowhere: what matters is that the handler is traced.
	f := newFixtureWith(t, func(o *Options) { o.Tracing = tracing.New(sdktrace.NewTracerProvider()) })
	conn, err := net.Dial("tcp", f.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The test server has no read timeout: an answer that waits for the
	// body's end would never come.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	chunk := `{"backupName":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	// The body's first chunk, and no last one.
	req := "POST /v1/accounts/111111111111/tables/Orders/backups HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk)
	go func() { _, _ = io.WriteString(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body's end: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("answer %d (close %v); want 413, connection closed", resp.StatusCode, resp.Close)
	}
}
