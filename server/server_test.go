package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/internal/calltest"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/testenv"
)

// The stub service and the observer both transports' tests use.
type (
	stub     = calltest.Stub
	observed = calltest.Observed
)

const (
	arn          = calltest.ARN
	slowARN      = calltest.SlowARN
	lingeringARN = calltest.LingeringARN
)

var dialRaw = calltest.DialRaw

type fixture struct {
	stub   *stub
	health *Health
	http   *httptest.Server
	logs   *testenv.Buffer
	client backupv1.BackupServiceClient
	conn   *grpc.ClientConn
	// observed is the server's RequestObserver.
	observed *observed
}

// restOptions are the REST handler's options beside the gRPC server's
// opts, as package wiring makes them.
func restOptions(opts Options) rest.Options {
	ro := rest.Options{Service: opts.Service, Logger: opts.Logger, Metrics: opts.Metrics, Authorizer: opts.Authorizer}
	if t, ok := opts.Tracing.(rest.Tracing); ok {
		ro.Tracing = t
	}
	return ro
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, func(*Options) {})
}

// newFixtureWith lets set change the server's options before it starts.
func newFixtureWith(t *testing.T, set func(*Options)) *fixture {
	t.Helper()
	f := &fixture{stub: &stub{}, health: NewHealth(), logs: &testenv.Buffer{}, observed: &observed{}}
	logger := slog.New(slog.NewJSONHandler(f.logs, nil))
	opts := Options{Service: f.stub, Logger: logger, Metrics: f.observed}
	set(&opts)
	srv := NewGRPC(opts, f.health)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.conn.Close() })
	f.client = backupv1.NewBackupServiceClient(f.conn)
	h, err := rest.NewHandler(context.Background(), restOptions(opts), f.health,
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics here\n") }))
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(h)
	t.Cleanup(f.http.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	return calltest.Do(t, method, f.http.URL+path, body)
}

func TestInterceptorLogsAndRecovers(t *testing.T) {
	f := newFixture(t)
	f.stub.Err = &ratelimit.LimitedError{Key: ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}, RetryAfter: time.Second}
	_, err := f.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "us-east-1", BackupName: "x"})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted {
		t.Fatalf("domain error mapped to %v", err)
	}
	f.stub.Boom = true
	_, err = f.client.GetBackup(context.Background(), &backupv1.GetBackupRequest{BackupArn: arn})
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "boom") {
		t.Fatalf("panic mapped to %v", err)
	}
	f.stub.Boom = false
	if resp, body := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"x"}`)); resp.StatusCode != 429 {
		t.Fatalf("REST: %d %s", resp.StatusCode, body)
	}
	wantObserved := []string{
		"/backup.v1.BackupService/CreateBackup ResourceExhausted",
		"/backup.v1.BackupService/GetBackup Internal",
		"/backup.v1.BackupService/CreateBackup ResourceExhausted",
	}
	if got := f.observed.Calls; strings.Join(got, "|") != strings.Join(wantObserved, "|") {
		t.Errorf("metrics observed %q, want %q", got, wantObserved)
	}
	// The reason tells causes of one code apart, on dashboards too.
	if got, want := f.observed.Reasons, []string{"RATE_LIMITED", "INTERNAL", "RATE_LIMITED"}; !slices.Equal(got, want) {
		t.Errorf("metrics observed reasons %q, want %q", got, want)
	}
	if resp, body := f.do(t, "GET", "/metrics", nil); resp.StatusCode != 200 || string(body) != "metrics here\n" {
		t.Errorf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	logs := f.logs.String()
	for _, want := range []string{
		`"caller":"rest:127.0.0.1"`,
		`"msg":"request","method":"/backup.v1.BackupService/CreateBackup","caller":"127.0.0.1:`,
		`"account":"111111111111","region":"us-east-1","code":"ResourceExhausted","duration":`,
		`"reason":"RATE_LIMITED"`,
		`"msg":"panic in handler","method":"/backup.v1.BackupService/GetBackup","panic":"boom"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestPushBackTellsGRPCRetries: grpc-go's own retry (a service config's
// retryPolicy) reads the pushback trailer, not RetryInfo: it is set to
// RetryInfo's delay, rounded up to the millisecond, and for an outcome
// that may have been done to -1, which forbids the retry.
func TestPushBackTellsGRPCRetries(t *testing.T) {
	key := ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	for _, tt := range []struct {
		name string
		err  error
		want []string
	}{
		{"rate limited", &ratelimit.LimitedError{Key: key, RetryAfter: 1500 * time.Millisecond}, []string{"1500"}},
		{"rate limited, rounded up", &ratelimit.LimitedError{Key: key, RetryAfter: 1000*time.Millisecond + 400*time.Microsecond}, []string{"1001"}},
		{"outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "us-east-1", Err: errors.New("500")}, []string{"-1"}},
		{"sent, unanswered at the deadline", &service.UnansweredError{Operation: "CreateBackup", Err: context.DeadlineExceeded}, []string{"-1"}},
		// A repeat with the same request_id gets the run's result.
		{"still running under its request_id", &service.StillRunningError{Operation: "CreateBackup", Err: context.DeadlineExceeded}, nil},
		{"table not found", &smithy.GenericAPIError{Code: "TableNotFoundException"}, nil},
		{"DynamoDB throttled", &smithy.GenericAPIError{Code: "LimitExceededException", Message: "Only 10 tables can be created, updated, or deleted simultaneously"}, []string{"1000"}},
		// Refused the same way until the account is under its quota.
		{"over the account's DynamoDB quota", &smithy.GenericAPIError{Code: "LimitExceededException", Message: "There is a limit of 2500 tables per subscriber"}, []string{"-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.stub.Err = tt.err
			var trailer metadata.MD
			_, err := f.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}, grpc.Trailer(&trailer))
			if err == nil {
				t.Fatal("CreateBackup succeeded")
			}
			if got := trailer.Get(pushBackTrailer); !slices.Equal(got, tt.want) {
				t.Errorf("%s = %q, want %q (%v)", pushBackTrailer, got, tt.want, err)
			}
		})
	}

	// A client whose policy retries UNAVAILABLE sends an unknown outcome
	// once, and a rate-limited call again.
	f := newFixtureWith(t, func(o *Options) { o.SendLeads = accounts.Leads() })
	conn, err := grpc.NewClient(f.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"methodConfig": [{"name": [{"service": "backup.v1.BackupService"}], "retryPolicy": {
			"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1,
			"retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := backupv1.NewBackupServiceClient(conn)
	for _, tt := range []struct {
		err   error
		calls int
	}{
		{&accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "us-east-1", Err: errors.New("500")}, 1},
		{&ratelimit.LimitedError{Key: key, RetryAfter: 300 * time.Millisecond}, 3},
	} {
		f.stub.Mu.Lock()
		f.stub.Err, f.stub.Calls = tt.err, 0
		f.stub.Mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		_, err := client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"})
		took := time.Since(start)
		cancel()
		f.stub.Mu.Lock()
		calls := f.stub.Calls
		f.stub.Mu.Unlock()
		if calls != tt.calls {
			t.Errorf("%v: the service got %d calls, want %d", err, calls, tt.calls)
		}
		// Each retry waited for the turn, not the policy's 10 ms.
		if limited, ok := tt.err.(*ratelimit.LimitedError); ok && took < time.Duration(tt.calls-1)*limited.RetryAfter {
			t.Errorf("%d attempts in %s; want each retry after the %s pushback", calls, took, limited.RetryAfter)
		}
	}

	// A turn that comes after the call's deadline: a retry could not be
	// made in time, so the client is told to make none, and gets
	// RESOURCE_EXHAUSTED with its RetryInfo at once rather than
	// DEADLINE_EXCEEDED, without a reason, at its deadline.
	f.stub.Mu.Lock()
	f.stub.Err, f.stub.Calls = &ratelimit.LimitedError{Key: key, RetryAfter: 5 * time.Second}, 0
	f.stub.Mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var trailer metadata.MD
	start := time.Now()
	_, err = client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}, grpc.Trailer(&trailer))
	if took := time.Since(start); status.Code(err) != codes.ResourceExhausted || took > time.Second {
		t.Errorf("a turn past the deadline: %v after %s; want RESOURCE_EXHAUSTED at once", err, took)
	}
	if got := trailer.Get(pushBackTrailer); !slices.Equal(got, []string{"-1"}) {
		t.Errorf("a turn past the deadline: %s = %q, want [-1]", pushBackTrailer, got)
	}

	// A CreateBackup whose turn comes before its deadline, but within
	// accounts.SendLead of it: its next attempt would arrive too late to
	// be sent (the rate limiter refuses it DEADLINE_EXCEEDED, without a
	// reason to come back or RetryInfo), so it is told to make none.
	f.stub.Mu.Lock()
	f.stub.Err, f.stub.Calls = &ratelimit.LimitedError{Key: key, RetryAfter: 1960 * time.Millisecond}, 0
	f.stub.Mu.Unlock()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	trailer = nil
	start = time.Now()
	_, err = client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}, grpc.Trailer(&trailer))
	f.stub.Mu.Lock()
	calls := f.stub.Calls
	f.stub.Mu.Unlock()
	if took := time.Since(start); status.Code(err) != codes.ResourceExhausted || took > time.Second || calls != 1 {
		t.Errorf("a turn within the send lead of the deadline: %v after %s and %d attempts; want RESOURCE_EXHAUSTED at once, after one", err, took, calls)
	}
	if got := trailer.Get(pushBackTrailer); !slices.Equal(got, []string{"-1"}) {
		t.Errorf("a turn within the send lead of the deadline: %s = %q, want [-1]", pushBackTrailer, got)
	}
}

// TestPushBackLeavesTimeForTheTrip: a delay after which the next attempt
// would arrive with barely more than its send lead left is -1: the
// attempt takes some milliseconds more than the delay to reach the rate
// limiter (the trailer's way back, the client's timer, the new stream), and
// arriving within the lead it would be refused DEADLINE_EXCEEDED, unsent,
// rather than the client getting RESOURCE_EXHAUSTED and its RetryInfo at
// once.
func TestPushBackLeavesTimeForTheTrip(t *testing.T) {
	key := ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	f := newFixtureWith(t, func(o *Options) { o.SendLeads = accounts.Leads() })
	const deadline = 2 * time.Second
	// A tenth of what is left is kept back to answer in: the next attempt
	// needs 55.6 ms left on arrival for the 50 ms lead; this delay leaves
	// it about 58 ms when it arrives at once, and less a moment later.
	f.stub.Err = &ratelimit.LimitedError{Key: key, RetryAfter: deadline - 58*time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var trailer metadata.MD
	_, err := f.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("CreateBackup: %v", err)
	}
	if got := trailer.Get(pushBackTrailer); !slices.Equal(got, []string{"-1"}) {
		t.Errorf("a turn that leaves the next attempt a few ms over its send lead: %s = %q, want [-1]", pushBackTrailer, got)
	}
}

// TestCallersAreCheckedFirst: with callers configured, a request without a
// known token or outside its caller's rights never reaches the service,
// over gRPC and REST alike.
func TestCallersAreCheckedFirst(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{"111111111111"}, Operations: []string{"CreateBackup", "GetBackup"}}})
	})
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}
	_, err := f.client.CreateBackup(context.Background(), req)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC without a token: %v", err)
	}
	withToken := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer orders-token")
	if _, err := f.client.DeleteBackup(withToken, &backupv1.DeleteBackupRequest{BackupArn: arn}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC operation not allowed: %v", err)
	}
	if f.stub.Last != nil {
		t.Fatalf("a refused request reached the service: %v", f.stub.Last)
	}
	if _, err := f.client.CreateBackup(withToken, req); err != nil {
		t.Errorf("gRPC allowed: %v", err)
	}

	rest := func(auth, method, path, body string) int {
		r, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	other := strings.ReplaceAll(strings.ReplaceAll(arn, "111111111111", "222222222222"), "/", "%2F")
	for _, tt := range []struct {
		auth, method, path, body string
		want                     int
	}{
		{"", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, 401},
		{"Bearer wrong", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, 401},
		{"Bearer orders-token", "GET", "/v1/backups/" + other, "", 403},
		{"Bearer orders-token", "GET", "/v1/accounts/111111111111/backups", "", 403},
		{"Bearer orders-token", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, 200},
		// Refusals the gateway finds before the interceptor are made
		// after the caller check too.
		{"Bearer wrong", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x","bogus":1}`, 401},
		{"Bearer wrong", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":`, 401},
		{"", "GET", "/v1/accounts/111111111111/backups?bogus=1", "", 401},
		{"Bearer orders-token", "GET", "/v1/accounts/111111111111/backups?pageSize=x", "", 403},
		{"Bearer orders-token", "POST", "/v1/accounts/222222222222/tables/Orders/backups", `{"backupName":"x","bogus":1}`, 403},
		{"Bearer orders-token", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x","bogus":1}`, 400},
		// A token that cannot be gRPC metadata is an unknown one, not none.
		{"Bearer caf\xc3\xa9", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, 401},
		{"Bearer\torders-token", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, 401},
	} {
		if got := rest(tt.auth, tt.method, tt.path, tt.body); got != tt.want {
			t.Errorf("REST %s %s with %q: %d, want %d", tt.method, tt.path, tt.auth, got, tt.want)
		}
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"principal":"orders"`) || strings.Contains(logs, "orders-token") {
		t.Errorf("log lacks the principal, or holds the token:\n%s", logs)
	}
	// A caller refused is its own mistake, at INFO, whether or not the
	// gateway found the request malformed first; ERROR is for AWS
	// refusing backupd.
	if logs := f.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a caller's refusal logged at ERROR:\n%s", logs)
	}

	// A gRPC request that cannot be decoded names no account: a known
	// caller is told it is malformed, an unknown one is refused.
	var out []byte
	undecodable := []byte{0x0a, 0x20, 'x'}
	err = f.conn.Invoke(withToken, backupv1.BackupService_GetBackup_FullMethodName, undecodable, &out, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("undecodable request of a known caller: %v, want InvalidArgument", err)
	}
	err = f.conn.Invoke(context.Background(), backupv1.BackupService_GetBackup_FullMethodName, undecodable, &out, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("undecodable request without a token: %v, want Unauthenticated", err)
	}
	// Refused the operation in every account, the caller is refused
	// whatever its request holds, as over REST.
	err = f.conn.Invoke(withToken, backupv1.BackupService_DeleteBackup_FullMethodName, undecodable, &out, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("undecodable request of an operation the caller may not call: %v, want PermissionDenied", err)
	}
	if got := rest("Bearer orders-token", "DELETE", "/v1/backups/"+strings.ReplaceAll(arn, "/", "%2F")+"?bogus=1", ""); got != http.StatusForbidden {
		t.Errorf("REST: malformed request of an operation the caller may not call: %d, want 403", got)
	}
}

func TestHealth(t *testing.T) {
	f := newFixture(t)
	hc := healthpb.NewHealthClient(f.conn)
	check := func() (int, healthpb.HealthCheckResponse_ServingStatus) {
		resp, _ := f.do(t, "GET", "/readyz", nil)
		h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: backupv1.BackupService_ServiceDesc.ServiceName})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h.GetStatus()
	}
	if code, st := check(); code != 503 || st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("before ready: %d %s", code, st)
	}
	f.health.SetReady(true)
	if code, st := check(); code != 200 || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("ready: %d %s", code, st)
	}
	f.health.SetReady(false)
	if code, st := check(); code != 503 || st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("draining: %d %s", code, st)
	}
	if resp, _ := f.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}
	// List, the health service's other unary call, is a health check too.
	if _, err := hc.List(context.Background(), &healthpb.HealthListRequest{}); err != nil {
		t.Fatal(err)
	}
	// Health checks, which a load balancer makes every few seconds, are
	// neither logged nor counted.
	if lines, counted := f.logs.Lines("Health"), f.observed.Counted(); len(lines) != 0 || len(counted) != 0 {
		t.Errorf("health checks logged %q, counted %q; want neither", lines, counted)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := f.do(t, "HEAD", p, nil); resp.StatusCode == 405 || resp.StatusCode == 404 {
			t.Errorf("HEAD %s = %d", p, resp.StatusCode)
		}
		resp, body := f.do(t, "POST", p, nil)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(string(body), "takes GET, HEAD") ||
			!strings.Contains(string(body), "METHOD_NOT_ALLOWED") {
			t.Errorf("POST %s = %d, Allow %q, %s; want 405 naming GET, with reason METHOD_NOT_ALLOWED", p, resp.StatusCode, resp.Header.Get("Allow"), body)
		}
	}
}

// The request's log line names what a support ticket asks about: its
// request_id, the backup it made, and the caller's X-Request-Id.
func TestRequestLineNamesTheRequest(t *testing.T) {
	f := newFixture(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "corr-grpc")
	if _, err := f.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b1", RequestId: "rid-grpc"}); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", f.http.URL+"/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"b2","requestId":"rid-rest"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "corr-rest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("GET", f.http.URL+"/v1/nowhere", nil)
	req.Header.Set("X-Request-Id", "corr-404")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	named := strings.Replace(arn, "abcdef12", "12345678", 1)
	if _, err := f.client.GetBackup(context.Background(), &backupv1.GetBackupRequest{BackupArn: named}); err != nil {
		t.Fatal(err)
	}
	// Over gRPC as over REST, an id that is not printable ASCII (here a
	// right-to-left override, which disguises a line on a terminal) is
	// left out of the line.
	// grpc-go's client sends no such value, so this call is made by hand.
	if st := rawGRPC(t, f.conn.Target(), "/backup.v1.BackupService/GetBackup",
		http.Header{"X-Request-Id": {"corr-\u202eevil"}}, &backupv1.GetBackupRequest{BackupArn: named}); st != "0" {
		t.Fatalf("grpc-status %q, want 0", st)
	}
	logs := f.logs.String()
	if strings.Contains(logs, "evil") {
		t.Errorf("log holds an unreadable x-request-id:\n%s", logs)
	}
	for _, want := range []string{
		`"backup_arn":"` + named + `"`,
		`"request_id":"rid-grpc"`, `"x_request_id":"corr-grpc"`,
		`"request_id":"rid-rest"`, `"x_request_id":"corr-rest"`, `"x_request_id":"corr-404"`,
		`"backup_arn":"` + arn + `"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestCanceledAfterSendIsLoggedAsMaybeDone: a CreateBackup whose caller
// left after it was sent, or while its request_id run goes on, gets no
// answer: its WARN line, with the error, is what says that DynamoDB may
// have acted, or may yet.
func TestCanceledAfterSendIsLoggedAsMaybeDone(t *testing.T) {
	for _, tt := range []struct {
		err  error
		says string
	}{
		{&service.UnansweredError{Operation: "CreateBackup", Err: context.Canceled}, "may or may not have been done"},
		{&service.StillRunningError{Operation: "CreateBackup", Err: context.Canceled}, "still running under its request_id when its caller canceled"},
	} {
		f := newFixture(t)
		f.stub.Err = tt.err
		_, err := f.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"})
		if status.Code(err) != codes.Canceled {
			t.Errorf("%v: want Canceled", err)
		}
		if lines := f.logs.Lines(`"level":"WARN"`, `"code":"Canceled"`, tt.says); len(lines) != 1 {
			t.Errorf("want one WARN line saying %q; log:\n%s", tt.says, f.logs.String())
		}
	}
}

// A gRPC caller whose deadline passes is logged and counted as
// DeadlineExceeded, though grpc-go sees the client cancel the stream a
// moment before the server's own timer fires.
func TestCallerDeadlineIsLoggedAsADeadline(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := f.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: slowARN})
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("client got %v, want DeadlineExceeded", err)
		}
	}
	// The server's lines may lag the client's error a little.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(f.logs.String(), `"code":"DeadlineExceeded"`) < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	logs := f.logs.String()
	if n := strings.Count(logs, `"code":"DeadlineExceeded"`); n != 5 || strings.Contains(logs, `"code":"Canceled"`) {
		t.Errorf("%d of 5 lines say DeadlineExceeded:\n%s", n, logs)
	}
	// A line whose server saw the client cancel says why in its error;
	// one whose own timer fired first says the deadline was exceeded.
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "canceled") && !strings.Contains(line, "the caller's deadline passed; its client canceled the call") {
			t.Errorf("a deadline logged as a bare cancellation: %s", line)
		}
	}
	if got := f.observed.Counted(); !slices.Contains(got, "/backup.v1.BackupService/GetBackup DeadlineExceeded") || slices.Contains(got, "/backup.v1.BackupService/GetBackup Canceled") {
		t.Errorf("counted %v; want DeadlineExceeded, never Canceled", got)
	}
}

// The server answers a little before the caller's deadline, so that a
// gRPC client, which ends the call at its deadline, reads backupd's
// answer (its ErrorInfo and message) rather than making up its own.
func TestDeadlineAnswerReachesTheCaller(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // 100 ms kept to answer
		_, err := f.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: slowARN})
		cancel()
		st := status.Convert(err)
		if st.Code() != codes.DeadlineExceeded || len(st.Details()) == 0 {
			t.Fatalf("client got %v with details %v; want backupd's DEADLINE_EXCEEDED with its ErrorInfo", st, st.Details())
		}
		if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "DEADLINE_EXCEEDED" {
			t.Errorf("details %v; want ErrorInfo DEADLINE_EXCEEDED", st.Details())
		}
	}
}

// TestLogRedactsSignedSecrets: an AWS error that quotes the signed request
// reaches the log without its session token.
func TestLogRedactsSignedSecrets(t *testing.T) {
	f := newFixture(t)
	f.stub.Mu.Lock()
	f.stub.Err = errors.New("api error InvalidSignatureException: The Canonical String for this request should have been\n" +
		"'POST\n/\nx-amz-security-token:SESSIONTOKENSECRET\n'")
	f.stub.Mu.Unlock()
	_, err := f.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly"})
	if status.Code(err) != codes.Internal {
		t.Fatalf("CreateBackup: %v, want INTERNAL", err)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `x-amz-security-token:[redacted]`) || strings.Contains(logs, "SESSIONTOKENSECRET") {
		t.Errorf("log %s: want the error with its session token redacted", logs)
	}
}

// TestMetadataIsBounded: the server tells clients its limit on a call's
// metadata (64 KiB, as the HTTP listener's headers), so a call past it is
// refused before it is sent; one within it goes through.
func TestMetadataIsBounded(t *testing.T) {
	f := newFixture(t)
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly"}
	for _, tt := range []struct {
		pad  int
		code codes.Code
	}{{60 << 10, codes.OK}, {70 << 10, codes.Internal}, {1 << 20, codes.Internal}} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-pad", strings.Repeat("a", tt.pad))
		_, err := f.client.CreateBackup(ctx, req)
		if status.Code(err) != tt.code || (err != nil && !strings.Contains(err.Error(), "maximum size (65536 bytes) set by server")) {
			t.Errorf("%d bytes of metadata: %v, want %s", tt.pad, err, tt.code)
		}
	}
}

// TestUnknownGRPCCallerIsRefusedBeforeItsMessage: a gRPC call from a caller
// backupd does not know is refused when its stream opens, without waiting
// for a request that may come slowly or never, and logged and counted
// once; a method backupd does not serve is counted as "unknown". A known
// caller's stream waits for its request.
func TestUnknownGRPCCallerIsRefusedBeforeItsMessage(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}},
			{Name: "scraper", TokenSHA256: callers.HashToken("scraper-token"), Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}},
			{Name: "one", TokenSHA256: callers.HashToken("one-token"), Accounts: []string{"111111111111"}, Operations: []string{"CreateBackup"}}})
	})
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	// open starts a call and sends no request: it blocks for its answer,
	// which comes only from a refusal made before the request is read.
	open := func(token, method string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		stream, err := f.conn.NewStream(ctx, desc, method)
		if err != nil {
			return err
		}
		return stream.RecvMsg(&backupv1.CreateBackupResponse{})
	}
	const create = "/backup.v1.BackupService/CreateBackup"
	for _, tt := range []struct {
		name, token, method, counted string
		code                         codes.Code
		reason                       string
	}{
		{"no token", "", create, create + " Unauthenticated", codes.Unauthenticated, "UNAUTHENTICATED"},
		{"an unknown token", "nobody", create, create + " Unauthenticated", codes.Unauthenticated, "UNAUTHENTICATED"},
		{"a method backupd does not serve", "nobody", "/backup.v1.BackupService/Nope", "unknown Unauthenticated", codes.Unauthenticated, "UNAUTHENTICATED"},
		// Refused the operation in every account, whatever its request
		// would name.
		{"a caller refused the operation", "scraper-token", create, create + " PermissionDenied", codes.PermissionDenied, "CALLER_NOT_ALLOWED"},
		// Not refused an operation there is not: told there is none, as
		// a caller allowed every operation is.
		{"a method backupd does not serve, from a known caller", "scraper-token", "/backup.v1.BackupService/Nope", "unknown Unimplemented", codes.Unimplemented, "UNKNOWN_METHOD"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.observed.Take()
			err := open(tt.token, tt.method)
			st := status.Convert(err)
			if st.Code() != tt.code || rpcerror.ReasonOf(st) != tt.reason {
				t.Fatalf("got %v; want %v with reason %s, before any request", err, tt.code, tt.reason)
			}
			if counted := f.observed.Take(); !slices.Equal(counted, []string{tt.counted}) {
				t.Errorf("counted %q, want %q once", counted, tt.counted)
			}
		})
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused call reached the service: %v", f.stub.Called())
	}
	if logs := f.logs.String(); strings.Count(logs, `"code":"Unauthenticated"`) != 3 || len(f.logs.Lines(`"code":"PermissionDenied"`, `"principal":"scraper"`)) != 1 {
		t.Errorf("want 3 Unauthenticated request lines and scraper's refusal:\n%s", logs)
	}

	// A known caller allowed the operation somewhere is not refused, in
	// every account or in one: its stream waits for the request, which
	// names the account.
	for _, token := range []string{"orders-token", "one-token"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		stream, err := f.conn.NewStream(ctx, desc, create)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(&backupv1.CreateBackupResponse{}); status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("%s: a known caller's unsent request: %v; want it waited for until the deadline", token, err)
		}
	}
}

// TestCallerRefusedAnOperationGetsOneAnswer: a caller not allowed an RPC
// in any account is refused before its request is read, or after, when
// its deadline lies past the bound on waiting for it: the answer is the
// same either way, with no account_id, which only the request names.
func TestCallerRefusedAnOperationGetsOneAnswer(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "scraper", TokenSHA256: callers.HashToken("scraper-token"),
			Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}}})
	})
	answer := func(timeout time.Duration) *status.Status {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer scraper-token")
		_, err := f.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly"})
		return status.Convert(err)
	}
	before, after := answer(10*time.Second), answer(time.Hour)
	// The details compared unpacked: an ErrorInfo's metadata map is
	// encoded in no set order, so the Any's bytes of two equal answers
	// may differ.
	same := before.Code() == after.Code() && before.Message() == after.Message() && len(before.Details()) == len(after.Details())
	for i := 0; same && i < len(before.Details()); i++ {
		b, ok1 := before.Details()[i].(proto.Message)
		a, ok2 := after.Details()[i].(proto.Message)
		same = ok1 && ok2 && proto.Equal(b, a)
	}
	if before.Code() != codes.PermissionDenied || !same {
		t.Errorf("refused before its request is read:\n%v\nafter:\n%v\nwant the same PERMISSION_DENIED", before.Proto(), after.Proto())
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused call reached the service: %v", f.stub.Called())
	}
}

// TestSilentConnectionDoesNotHoldTheStop: a connection that never sends
// its HTTP/2 preface (a port scanner's, say) is dropped after the
// handshake timeout, so a graceful stop does not wait grpc-go's default of
// 120 s for it, past any shutdown_timeout.
func TestSilentConnectionDoesNotHoldTheStop(t *testing.T) {
	srv := NewGRPC(Options{Service: &stub{}, Logger: discard(), testKnobs: testKnobs{handshake: 200 * time.Millisecond}}, NewHealth())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := &acceptSignal{Listener: lis, accepted: make(chan struct{})}
	go func() { _ = srv.Serve(accepted) }()
	silent, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	<-accepted.accepted // the server holds the connection in its handshake
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second): // grpc-go's own default is 120 s
		srv.Stop()
		t.Fatal("GracefulStop still waits for a connection that sent nothing")
	}
}

// acceptSignal closes accepted once it has accepted a connection.
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
	once     sync.Once
}

func (l *acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.once.Do(func() { close(l.accepted) })
	}
	return c, err
}

// TestTokenlessCallsMustSendTheirRequest: a call that takes no caller token
// (a health check, a health watch, reflection) whose request does not
// arrive within the arrival bound is canceled, so what grpc-go read of it
// is let go; one whose request came in time goes on, a watch for as long
// as it likes.
func TestTokenlessCallsMustSendTheirRequest(t *testing.T) {
	const arrival = 200 * time.Millisecond
	f := newFixtureWith(t, func(o *Options) { o.requestArrival = arrival })
	f.health.SetReady(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, method := range []string{healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		stream, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
		if err != nil {
			t.Fatal(err)
		}
		// No request is sent: only the arrival bound ends the call.
		if err := stream.RecvMsg(&healthpb.HealthCheckResponse{}); status.Code(err) != codes.Canceled {
			t.Errorf("%s without its request: %v; want Canceled by the arrival bound", method, err)
		}
	}
	if _, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a health check with its request: %v", err)
	}
	watch, err := healthpb.NewHealthClient(f.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", resp, err)
	}
	time.Sleep(2 * arrival) // past the bound: the watch goes on
	f.health.SetReady(false)
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("watch past the arrival bound: %v, %v; want it still serving changes", resp, err)
	}
}

// TestIdleConnectionIsSentAway: a gRPC connection with no call for the
// idle time is sent GOAWAY, and its client reconnects for its next call.
func TestIdleConnectionIsSentAway(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.connectionIdle = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}
	if _, err := f.client.CreateBackup(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The server's GOAWAY turns the client's connection IDLE.
	for st := f.conn.GetState(); st == connectivity.Ready; st = f.conn.GetState() {
		if !f.conn.WaitForStateChange(ctx, st) {
			t.Fatal("the idle connection was not sent away")
		}
	}
	if _, err := f.client.CreateBackup(ctx, req); err != nil {
		t.Errorf("the call after: %v", err)
	}
}

// TestOldConnectionIsSentAway: a gRPC connection kept busy is still sent
// GOAWAY at its age, and its client's calls go on over a new one, none
// failing.
func TestOldConnectionIsSentAway(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.connectionAge = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}
	if _, err := f.client.CreateBackup(ctx, req); err != nil {
		t.Fatal(err)
	}
	left := make(chan struct{})
	go func() {
		if f.conn.WaitForStateChange(ctx, connectivity.Ready) {
			close(left)
		}
	}()
	for sent := false; !sent; {
		select {
		case <-left:
			sent = true
		case <-ctx.Done():
			t.Fatal("a busy connection was not sent away at its age")
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := f.client.CreateBackup(ctx, req); err != nil {
			t.Fatalf("a call while the connection aged: %v", err)
		}
	}
}

// TestArrivalBoundEndsWithItsCall: a call that ends before its request
// arrives, or that its bound ends, stops its arrival timer and its watch
// on the stop, which would otherwise hold the call's context (its metadata
// included) until the timer fired, or until the server stops.
func TestArrivalBoundEndsWithItsCall(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("ended by its bound %v", late), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stopping, stop := context.WithCancel(context.Background())
				defer stop()
				i := newInterceptor(Options{testKnobs: testKnobs{requestArrival: time.Hour}}, nil)
				i.stopping = stopping
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				a := i.boundArrival(ctx, nil).Value(arrivalKey{}).(*arrival)
				if late {
					time.Sleep(time.Hour + time.Millisecond)
				} else {
					cancel() // the call ends: reset, refused, or its request undecodable
				}
				synctest.Wait()
				if a.timer.Stop() || a.stopDrain() {
					t.Error("the arrival timer, or its watch on the stop, is still armed after its call ended")
				}
			})
		})
	}
}

// TestArrivalBoundShortensAtTheStop: when the server stops taking work, a
// call still waiting for its request (one that takes no token: a health
// check) has drainGrace left, rather than the 30 s that would hold the
// graceful stop past shutdown_timeout; one whose request arrived goes on.
func TestArrivalBoundShortensAtTheStop(t *testing.T) {
	for _, arrived := range []bool{false, true} {
		t.Run(fmt.Sprintf("arrived %v", arrived), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stopping, stop := context.WithCancel(context.Background())
				i := newInterceptor(Options{}, nil)
				i.stopping = stopping
				ctx := i.boundArrival(context.Background(), nil)
				if arrived {
					i.requestArrived(ctx)
				}
				time.Sleep(time.Second)
				stop()
				time.Sleep(drainGrace + time.Millisecond)
				if canceled := ctx.Err() != nil; canceled == arrived {
					t.Errorf("%s after the stop: canceled %v; want %v", drainGrace, canceled, !arrived)
				}
				if !arrived && !errors.Is(context.Cause(ctx), errRequestLate) {
					t.Errorf("canceled by %v; want errRequestLate", context.Cause(ctx))
				}
			})
		})
	}
}

// TestArrivalBoundIsNotLengthenedByTheStop: the drain gives a request not
// yet arrived drainGrace, or what is left of its bound if that is less (a
// call over maxUnvouched has unvouchedArrival).
func TestArrivalBoundIsNotLengthenedByTheStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stopping, stop := context.WithCancel(context.Background())
		i := newInterceptor(Options{testKnobs: testKnobs{requestArrival: 300 * time.Millisecond}}, nil)
		i.stopping = stopping
		ctx := i.boundArrival(context.Background(), nil)
		time.Sleep(100 * time.Millisecond)
		stop()
		time.Sleep(250 * time.Millisecond)
		if !errors.Is(context.Cause(ctx), errRequestLate) {
			t.Errorf("350 ms into a 300 ms bound, the stop 100 ms in: %v; want errRequestLate", context.Cause(ctx))
		}
	})
}

// TestUnknownCallerWithAFarDeadlineIsRefusedOnceItsRequestIsIn: grpc-go
// keeps a stream refused when it opens until its deadline, so an unknown
// caller whose deadline lies past the arrival bound is refused by the
// interceptor instead, and its call is canceled if its request does not
// arrive within the bound.
func TestUnknownCallerWithAFarDeadlineIsRefusedOnceItsRequestIsIn(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.requestArrival = 200 * time.Millisecond
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nobody")
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "x"}
	if _, err := f.client.CreateBackup(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with its request: %v; want Unauthenticated", err)
	}
	stream, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/backup.v1.BackupService/CreateBackup")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(&backupv1.CreateBackupResponse{}); status.Code(err) != codes.Canceled {
		t.Errorf("without its request: %v; want Canceled by the arrival bound", err)
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused call reached the service: %v", f.stub.Called())
	}
}

// TestLargeRefusalFitsDefaultClients: a restore whose every index override
// breaks its rules is refused with INVALID_ARGUMENT and its field
// violations, which a client holding gRPC's default limit of 8 KiB on the
// metadata it receives (grpc-java's; grpcio's soft limit) reads. The
// message and the details travel in the trailers; bounded by count alone
// they came to about 11 KB, and such a client got INTERNAL or
// RESOURCE_EXHAUSTED without the violations.
func TestLargeRefusalFitsDefaultClients(t *testing.T) {
	f := newFixture(t)
	req := &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
		GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{}}
	for range 30 {
		req.GlobalSecondaryIndexOverride.Indexes = append(req.GlobalSecondaryIndexOverride.Indexes,
			&backupv1.GlobalSecondaryIndex{IndexName: strings.Repeat("x", 256)})
	}
	vs := service.Violations(req)
	if len(vs) <= rpcerror.MaxViolations {
		t.Fatalf("the request breaks %d rules; want more than an error carries", len(vs))
	}
	f.stub.Mu.Lock()
	f.stub.Err = &badrequest.Error{Violations: vs}
	f.stub.Mu.Unlock()
	conn, err := grpc.NewClient(f.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithMaxHeaderListSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = backupv1.NewBackupServiceClient(conn).RestoreTableFromBackup(t.Context(), req)
	st := status.Convert(err)
	var carried []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			carried = br.GetFieldViolations()
		}
	}
	if st.Code() != codes.InvalidArgument || len(carried) == 0 || !strings.Contains(st.Message(), " more") {
		t.Fatalf("status %s %.200q with %d violations; want INVALID_ARGUMENT with violations, and the rest counted", st.Code(), st.Message(), len(carried))
	}
}

// TestRequestsInFlightAreCounted: a BackupService call over gRPC or REST
// counts as in flight while in its handler, and not once answered; a
// health check does not count.
func TestRequestsInFlightAreCounted(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	held := make(chan error, 2)
	go func() {
		_, err := f.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: slowARN}) // answered when ctx ends
		held <- err
	}()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/v1/backups/"+strings.ReplaceAll(slowARN, "/", "%2F"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); f.observed.Handling() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight; want the 2 held in their handler", f.observed.Handling())
		}
	}
	if _, err := healthpb.NewHealthClient(f.conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := f.observed.Handling(); n != 2 {
		t.Errorf("%d in flight with a health check; want 2", n)
	}
	cancel()
	<-held
	<-held
	for deadline := time.Now().Add(5 * time.Second); f.observed.Handling() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight once answered; want none", f.observed.Handling())
		}
	}
}

// rawGRPC makes a unary gRPC call over HTTP/2 without TLS with net/http,
// which sends header values that grpc-go's client refuses to, and returns
// the call's grpc-status.
func rawGRPC(t *testing.T, addr, method string, h http.Header, msg proto.Message) string {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	req, err := http.NewRequest("POST", "http://"+addr+method, bytes.NewReader(append(frame, b...)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.Trailer.Get("Grpc-Status")
}

// TestUnknownCallerLoggedAlike: a request from a caller backupd does not
// know is logged alike over gRPC, where tap refuses it before its message
// is read, and over REST, whose path names an account: neither line names
// the account or region the unknown caller wrote.
func TestUnknownCallerLoggedAlike(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	// A far deadline: tap lets the call through to have its message read.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := f.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "eu-west-1", TableName: "Orders", BackupName: "x", RequestId: "req-1"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC: %v; want Unauthenticated", err)
	}
	if resp, body := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"x","region":"eu-west-1","requestId":"req-1"}`)); resp.StatusCode != 401 {
		t.Fatalf("REST: %d %s; want 401", resp.StatusCode, body)
	}
	const arn = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	if resp, body := f.do(t, "GET", "/v1/backups/"+url.PathEscape(arn), nil); resp.StatusCode != 401 {
		t.Fatalf("REST GetBackup: %d %s; want 401", resp.StatusCode, body)
	}
	type line struct {
		Method, Account, Region, Code, Principal string
		RequestID                                string `json:"request_id"`
		BackupARN                                string `json:"backup_arn"`
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var got line
		if err := json.Unmarshal([]byte(l), &got); err == nil && strings.Contains(l, `"msg":"request"`) {
			lines = append(lines, got)
		}
	}
	create := line{Method: backupv1.BackupService_CreateBackup_FullMethodName, Code: "Unauthenticated"}
	get := line{Method: backupv1.BackupService_GetBackup_FullMethodName, Code: "Unauthenticated"}
	if want := []line{create, create, get}; !slices.Equal(lines, want) {
		t.Errorf("request lines %+v; want %+v", lines, want)
	}
}

// pushBackTrailer is gRPC's server pushback trailer (gRFC A6), as a
// client reads it.
const pushBackTrailer = "grpc-retry-pushback-ms"
