package rest

import (
	"bufio"
	"context"
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

// newTracedFixture is newFixtureWith with tracing on, its spans passed
// on as they end.
func newTracedFixture(t *testing.T, set func(*Options)) (*fixture, spanEnds) {
	t.Helper()
	ends := make(spanEnds, 100)
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ends))
	return newFixtureWith(t, func(o *Options) {
		o.Tracing = tracing.New(provider)
		set(o)
	}), ends
}

// spanEnds is a span processor that passes on each span as it ends.
type spanEnds chan sdktrace.ReadOnlySpan

func (spanEnds) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c spanEnds) OnEnd(s sdktrace.ReadOnlySpan)                 { c <- s }
func (spanEnds) Shutdown(context.Context) error                  { return nil }
func (spanEnds) ForceFlush(context.Context) error                { return nil }

// TestTracedBodyTooLargeIsAnsweredAtOnce: with tracing on, a REST body
// sent chunked that passes MaxBodyBytes is answered 413 as soon as it
// does, and its connection closed, as without: not once the rest of a
// body that never ends has been read.
func TestTracedBodyTooLargeIsAnsweredAtOnce(t *testing.T) {
	f, _ := newTracedFixture(t, func(*Options) {})
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
