package integration

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// collector is an OTLP/HTTP trace receiver: it keeps every span it is
// sent, with the resource it came with.
type collector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	*tracepb.Span
	resource []*commonpb.KeyValue
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || err != nil || proto.Unmarshal(body, req) != nil {
			t.Errorf("collector: %s %s: not an OTLP trace export (%v)", r.Method, r.URL.Path, err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, receivedSpan{Span: s, resource: rs.GetResource().GetAttributes()})
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

// trace waits until the collector holds a span named each of names in
// the trace, and returns the trace's spans.
func (c *collector) trace(t *testing.T, traceID []byte, names ...string) []receivedSpan {
	t.Helper()
	var got []receivedSpan
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got = got[:0]
		c.mu.Lock()
		for _, s := range c.spans {
			if string(s.GetTraceId()) == string(traceID) {
				got = append(got, s)
			}
		}
		c.mu.Unlock()
		if missing := missingNames(got, names); len(missing) == 0 {
			return got
		}
	}
	t.Fatalf("trace %x: spans %v missing; have %s", traceID, missingNames(got, names), spanNames(got))
	return nil
}

func missingNames(spans []receivedSpan, names []string) []string {
	var missing []string
	for _, n := range names {
		if one(spans, n) == nil {
			missing = append(missing, n)
		}
	}
	return missing
}

func spanNames(spans []receivedSpan) string {
	var names []string
	for _, s := range spans {
		names = append(names, s.GetName())
	}
	return strings.Join(names, ", ")
}

// one is the first span named name, or nil.
func one(spans []receivedSpan, name string) *receivedSpan {
	for i := range spans {
		if spans[i].GetName() == name {
			return &spans[i]
		}
	}
	return nil
}

func attr(attrs []*commonpb.KeyValue, key string) string {
	for _, a := range attrs {
		if a.GetKey() == key {
			if s, ok := a.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
				return s.StringValue
			}
			return a.GetValue().String()
		}
	}
	return ""
}

// TestTracesReachTheCollector runs backupd against moto with an OTLP
// endpoint in its environment and follows two CreateBackups, one over
// gRPC and one over REST, each sent inside a caller's trace: each is a
// server span that is the child of the caller's, with a DynamoDB span
// under it and an attempt under that; the first request's AssumeRole is
// in its trace too; the log line names the trace; nothing secret is in
// any span.
func TestTracesReachTheCollector(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	col := newCollector(t)
	const token = "tracing-caller-token"
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
		Env:     append(motoEnv(moto), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+col.URL+"/v1/traces", "OTEL_BSP_SCHEDULE_DELAY=50"),
		Callers: "callers:\n  - {name: tracer, token_sha256: " + callers.HashToken(token) + `, accounts: ["*"], operations: ["*"]}` + "\n"})

	// Health checks and the operators' endpoints are not traced, as they
	// are not logged.
	if _, err := healthpb.NewHealthClient(inst.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, _ := inst.restWith(t, "GET", path, "", http.Header{"Authorization": {"Bearer " + token}}); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
	}

	grpcTrace, grpcParent := mustHex(t, "4bf92f3577b34da6a3ce929d0e0e4736"), mustHex(t, "00f067aa0ba902b7")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token,
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "traced"})
	if err != nil {
		t.Fatal(err)
	}
	const method = "backup.v1.BackupService/CreateBackup"
	spans := col.trace(t, grpcTrace, method, "DynamoDB.CreateBackup", "attempt", "STS.AssumeRole")
	server := one(spans, method)
	checkParent(t, server, grpcParent)
	if got := attr(server.GetAttributes(), "backupd.account"); got != a {
		t.Errorf("server span's backupd.account = %q, want %q", got, a)
	}
	if got := attr(server.GetAttributes(), "backupd.principal"); got != "tracer" {
		t.Errorf("server span's backupd.principal = %q, want tracer", got)
	}
	if got := attr(server.GetAttributes(), "backupd.backup_arn"); got != resp.GetBackupDetails().GetBackupArn() {
		t.Errorf("server span's backupd.backup_arn = %q, want %q", got, resp.GetBackupDetails().GetBackupArn())
	}
	if got := attr(server.resource, "service.name"); got != "backupd" {
		t.Errorf("resource service.name = %q, want backupd", got)
	}
	checkAWSSpans(t, spans, server)

	restTrace, restParent := mustHex(t, "0af7651916cd43dd8448eb211c80319c"), mustHex(t, "b7ad6b7169203331")
	code, _, body := inst.restWith(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"traced-rest"}`, http.Header{
		"Authorization": {"Bearer " + token}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if code != http.StatusOK {
		t.Fatalf("REST: %d %s", code, body)
	}
	const route = "POST /v1/accounts/{account_id}/tables/{table_name}/backups"
	spans = col.trace(t, restTrace, route, "DynamoDB.CreateBackup", "attempt")
	server = one(spans, route)
	checkParent(t, server, restParent)
	if got := attr(server.GetAttributes(), "backupd.account"); got != a {
		t.Errorf("REST span's backupd.account = %q, want %q", got, a)
	}
	checkAWSSpans(t, spans, server)

	for _, id := range []string{"4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"} {
		if !strings.Contains(inst.logs.String(), `"trace_id":"`+id+`"`) {
			t.Errorf("no log line names trace %s:\n%s", id, inst.logs.String())
		}
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, s := range col.spans {
		if strings.HasPrefix(s.GetName(), "grpc.health") || s.GetName() == "GET" {
			t.Errorf("span %s: health checks and operators' endpoints are traced", s.GetName())
		}
		text := prototext.Format(s.Span)
		for _, secret := range []string{token, "Bearer", "Credential=", "Signature=", "X-Amz-Security-Token"} {
			if strings.Contains(text, secret) {
				t.Errorf("span %s holds %q:\n%s", s.GetName(), secret, text)
			}
		}
	}
}

// checkAWSSpans checks that the trace's DynamoDB span is a client span
// under server, with an attempt under it that the rate limit admitted.
func checkAWSSpans(t *testing.T, spans []receivedSpan, server *receivedSpan) {
	t.Helper()
	ddb := one(spans, "DynamoDB.CreateBackup")
	checkParent(t, ddb, server.GetSpanId())
	var attempt *receivedSpan
	for i, s := range spans {
		if s.GetName() == "attempt" && string(s.GetParentSpanId()) == string(ddb.GetSpanId()) {
			attempt = &spans[i]
		}
	}
	if attempt == nil {
		t.Fatalf("no attempt span under the DynamoDB span; have %s", spanNames(spans))
	}
	if ddb.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("DynamoDB span kind = %v, want client", ddb.GetKind())
	}
	if got := attr(ddb.GetAttributes(), "aws.attempts"); got != "int_value:1" {
		t.Errorf("DynamoDB span's aws.attempts = %q, want one", got)
	}
	admitted := false
	for _, e := range attempt.GetEvents() {
		admitted = admitted || e.GetName() == "admitted by the rate limit"
	}
	if !admitted {
		t.Errorf("attempt span has no rate limit event: %v", attempt.GetEvents())
	}
	if got := attr(attempt.GetAttributes(), "http.response.status_code"); got != "int_value:200" {
		t.Errorf("attempt's http.response.status_code = %q, want 200", got)
	}
}

func checkParent(t *testing.T, s *receivedSpan, parent []byte) {
	t.Helper()
	if string(s.GetParentSpanId()) != string(parent) {
		t.Errorf("span %s: parent %x, want %x", s.GetName(), s.GetParentSpanId(), parent)
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNoTracesWithoutAnEndpoint checks that tracing is off by default: a
// call sent inside a caller's trace is served, and its log line names no
// trace, as backupd made no span of it.
func TestNoTracesWithoutAnEndpoint(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto)})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "untraced"}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); len(lines) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		lines = inst.logs.Lines(`"backup_arn"`)
	}
	if len(lines) != 1 || strings.Contains(lines[0], "trace_id") || strings.Contains(inst.logs.String(), "tracing:") {
		t.Fatalf("tracing without an endpoint:\n%s", inst.logs.String())
	}
}

// TestTracedBodyTooLargeIsAnsweredAtOnce: with tracing on, a REST body
// sent chunked that passes 64 KiB is answered 413 as it does, its
// connection closed, as without tracing: not once backupd's read timeout
// has ended a body that does not end. The request is in the caller's
// trace, named by its route.
func TestTracedBodyTooLargeIsAnsweredAtOnce(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	col := newCollector(t)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
		Env: append(motoEnv(moto), "OTEL_EXPORTER_OTLP_ENDPOINT="+col.URL, "OTEL_BSP_SCHEDULE_DELAY=50")})
	conn, err := net.Dial("tcp", strings.TrimPrefix(inst.httpURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Well within the read timeout (30 s), which would end the body.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	chunk := `{"backupName":"` + strings.Repeat("x", 70000) + `"}`
	go func() {
		// The body's first chunk, and no last one.
		_, _ = fmt.Fprintf(conn, "POST /v1/accounts/%s/tables/Orders/backups HTTP/1.1\r\nHost: backupd\r\nTransfer-Encoding: chunked\r\n"+
			"Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n%x\r\n%s\r\n", a, len(chunk), chunk)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body's end: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("answer %d (close %v); want 413, connection closed", resp.StatusCode, resp.Close)
	}
	const route = "POST /v1/accounts/{account_id}/tables/{table_name}/backups"
	spans := col.trace(t, mustHex(t, "0af7651916cd43dd8448eb211c80319c"), route)
	if got := attr(one(spans, route).GetAttributes(), "http.response.status_code"); got != "int_value:413" {
		t.Errorf("span's http.response.status_code = %q, want 413", got)
	}
}
