package server

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
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

// next is the next span to end.
func (c spanEnds) next(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no span ended")
		return nil
	}
}

// attr is the span's attribute key as text, or "".
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestTracedSpanNames: each REST request is a span named by its method
// and route, the route's that its log line names by the RPC too (one
// with a path variable empty among them); one that matches no route by
// its method alone, or HTTP for a method HTTP does not define; a gRPC
// call by its method, or _OTHER for one backupd does not serve. A name
// the caller chose is not repeated whole: a method may run to the
// headers' 64 KiB. Health checks and the operators' endpoints make none.
func TestTracedSpanNames(t *testing.T) {
	f, ends := newTracedFixture(t, func(*Options) {})
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	long := strings.Repeat("M", 20000)
	for _, tt := range []struct{ method, path, body, span string }{
		{"POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"b1"}`, "POST /v1/accounts/{account_id}/tables/{table_name}/backups"},
		{"GET", "/v1/accounts/111111111111/backups", "", "GET /v1/accounts/{account_id}/backups"},
		{"GET", "/v1/backups/" + escaped, "", "GET /v1/backups/{backup_arn}"},
		{"DELETE", "/v1/backups/" + escaped, "", "DELETE /v1/backups/{backup_arn}"},
		{"POST", "/v1/backups/" + escaped + ":restore", `{"targetTableName":"Restored"}`, "POST /v1/backups/{backup_arn}:restore"},
		{"POST", "/v1/backups/:restore", `{}`, "POST /v1/backups/{backup_arn}:restore"},
		{"POST", "/v1/accounts/111111111111/tables//backups", `{}`, "POST /v1/accounts/{account_id}/tables/{table_name}/backups"},
		{"GET", "/healthz", "", ""},
		{"GET", "/v2/nothing", "", "GET"},
		{"PUT", "/v1/backups/" + escaped, "", "PUT"},
		{long, "/nope", "", "HTTP"},
		{"GET", "/metrics", "", ""},
		{long, "/v1/backups/" + escaped, "", "HTTP"},
	} {
		resp, _ := f.do(t, tt.method, tt.path, strings.NewReader(tt.body))
		if tt.span == "" {
			continue // the next request's span is the next to end
		}
		if s := ends.next(t); s.Name() != tt.span {
			t.Errorf("%.20s %s (%d): span %.100q (%d bytes); want %q", tt.method, tt.path, resp.StatusCode, s.Name(), len(s.Name()), tt.span)
		}
	}

	if _, err := healthpb.NewHealthClient(f.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, span, rpcMethod, original string }{
		{backupv1.BackupService_CreateBackup_FullMethodName, "backup.v1.BackupService/CreateBackup", "backup.v1.BackupService/CreateBackup", ""},
		{"/backup.v1.BackupService/Nope", "_OTHER", "_OTHER", "/backup.v1.BackupService/Nope"},
		{"/backup.v1.BackupService/" + long, "_OTHER", "_OTHER", "/backup.v1.BackupService/" + long[:intercept.MaxMethodEcho-len("/backup.v1.BackupService/")] + "..."},
	} {
		err := f.conn.Invoke(context.Background(), tt.method, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b1"},
			&backupv1.CreateBackupResponse{})
		s := ends.next(t)
		if s.Name() != tt.span || attr(s, "rpc.method") != tt.rpcMethod || attr(s, "rpc.method_original") != tt.original {
			t.Errorf("%.60s (%v): span %.100q (%d bytes), rpc.method %.100q, rpc.method_original %.100q; want %q, %q, %q",
				tt.method, status.Code(err), s.Name(), len(s.Name()), attr(s, "rpc.method"), attr(s, "rpc.method_original"), tt.span, tt.rpcMethod, tt.original)
		}
	}
}

// TestTracedRefusalOfAnUnknownGRPCCaller: a gRPC call refused for its
// caller when its stream opens, before grpc-go makes the call's span, is
// a span too, in the caller's trace, as the same refusal over REST is;
// and its log line names the trace.
func TestTracedRefusalOfAnUnknownGRPCCaller(t *testing.T) {
	f, ends := newTracedFixture(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tt := range []struct{ method, span string }{
		{backupv1.BackupService_CreateBackup_FullMethodName, "backup.v1.BackupService/CreateBackup"},
		{"/backup.v1.BackupService/Nope", "_OTHER"},
	} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nobody",
			"traceparent", "00-"+traceID+"-"+parent+"-01")
		err := f.conn.Invoke(ctx, tt.method, &backupv1.CreateBackupRequest{}, &backupv1.CreateBackupResponse{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: %v; want Unauthenticated", tt.method, err)
		}
		s := ends.next(t)
		if s.Name() != tt.span || s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != parent ||
			attr(s, "backupd.code") != "Unauthenticated" || attr(s, "rpc.response.status_code") != "UNAUTHENTICATED" {
			t.Errorf("%s: span %q in trace %s under %s, backupd.code %q, rpc.response.status_code %q; want %q in trace %s under %s, Unauthenticated",
				tt.method, s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), attr(s, "backupd.code"), attr(s, "rpc.response.status_code"),
				tt.span, traceID, parent)
		}
	}
	if lines := f.logs.Lines(`"code":"Unauthenticated"`); len(lines) != 2 || !strings.Contains(lines[0], `"trace_id":"`+traceID+`"`) ||
		!strings.Contains(lines[1], `"trace_id":"`+traceID+`"`) {
		t.Errorf("want 2 refusals logged with the trace:\n%s", f.logs.String())
	}
}
