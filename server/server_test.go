package server

import (
	"bufio"
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
	"reflect"
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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/internal/calltest"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/testenv"
)

// The stub service, the observer and the REST error's shape both
// transports' tests use.
type (
	stub           = calltest.Stub
	observed       = calltest.Observed
	fieldViolation = calltest.FieldViolation
	restStatus     = calltest.RESTStatus
)

const (
	arn          = calltest.ARN
	slowARN      = calltest.SlowARN
	lingeringARN = calltest.LingeringARN
)

var (
	compactJSON = calltest.CompactJSON
	dialRaw     = calltest.DialRaw
)

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
	h, err := NewHTTPHandler(context.Background(), opts, f.health,
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
	req, err := http.NewRequest(method, f.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, compactJSON(b)
}

// sendForStatus sends req and reads its answer as an error status.
func sendForStatus(t *testing.T, req *http.Request) (*http.Response, restStatus) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st restStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return resp, st
}

func TestGatewayCapturesEscapedARN(t *testing.T) {
	f := newFixture(t)
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	tests := []struct {
		name, method, path, body string
	}{
		{"get", "GET", "/v1/backups/" + escaped, ""},
		{"get with escaped colons", "GET", "/v1/backups/" + strings.ReplaceAll(escaped, ":", "%3A"), ""},
		{"restore", "POST", "/v1/backups/" + escaped + ":restore", `{"targetTableName":"Copy"}`},
		{"restore with escaped colons", "POST", "/v1/backups/" + strings.ReplaceAll(escaped, ":", "%3A") + ":restore", `{"targetTableName":"Copy"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, strings.NewReader(tt.body))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			f.stub.Mu.Lock()
			defer f.stub.Mu.Unlock()
			got := f.stub.Last.(interface{ GetBackupArn() string }).GetBackupArn()
			if got != arn {
				t.Errorf("service got backup_arn %q, want %q", got, arn)
			}
			if r, ok := f.stub.Last.(*backupv1.RestoreTableFromBackupRequest); ok && r.GetTargetTableName() != "Copy" {
				t.Errorf("restore target = %q", r.GetTargetTableName())
			}
		})
	}
}

func TestGatewayErrors(t *testing.T) {
	f := newFixture(t)
	limited, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	tests := []struct {
		name       string
		serviceErr error
		path, body string
		chunked    bool
		status     int
		retryAfter string
		reason     string
		message    string // a part of the message, when set
	}{
		{"rate limited", limited.Err(), "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, false, 429, "2", "", ""},
		{"not found", status.Error(codes.NotFound, "no"), "/v1/accounts/111111111111/tables/Orders/backups", `{}`, false, 404, "", "", ""},
		{"precondition", status.Error(codes.FailedPrecondition, "in use"), "/v1/accounts/111111111111/tables/Orders/backups", `{}`, false, 400, "", "", ""},
		{"unknown field", nil, "/v1/accounts/111111111111/tables/Orders/backups", `{"nope":1}`, false, 400, "", "INVALID_ARGUMENT", "nope is not a field"},
		{"trailing data", nil, "/v1/accounts/111111111111/tables/Orders/backups", `{} {}`, false, 400, "", "MALFORMED_REQUEST", "is not one JSON object of the request's fields (syntax error (line 1:4): unexpected token {); send one JSON object"},
		{"byte order mark", nil, "/v1/accounts/111111111111/tables/Orders/backups", "\uFEFF{\"backupName\":\"x\"}", false, 400, "", "MALFORMED_REQUEST",
			"the body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it"},
		// What Windows PowerShell 5's Out-File writes: UTF-16 with its mark.
		{"UTF-16LE body", nil, "/v1/accounts/111111111111/tables/Orders/backups", "\xFF\xFE{\x00}\x00", false, 400, "", "MALFORMED_REQUEST",
			"the body starts with a UTF-16 byte order mark (bytes FF FE): it is not UTF-8, which JSON must be; send it as UTF-8, without a mark"},
		{"UTF-16BE body", nil, "/v1/accounts/111111111111/tables/Orders/backups", "\xFE\xFF\x00{\x00}", false, 400, "", "MALFORMED_REQUEST",
			"the body starts with a UTF-16 byte order mark (bytes FE FF): it is not UTF-8, which JSON must be; send it as UTF-8, without a mark"},
		{"byte order mark after spaces", nil, "/v1/accounts/111111111111/tables/Orders/backups", " \n\uFEFF{\"backupName\":\"x\"}", false, 400, "", "MALFORMED_REQUEST",
			"the body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it"},
		{"truncated JSON", nil, "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"`, false, 400, "", "MALFORMED_REQUEST", "(unexpected EOF); send one JSON object"},
		{"declared body too large", nil, "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"` + strings.Repeat("x", 70000) + `"}`, false, 413, "", "BODY_TOO_LARGE", ""},
		{"streamed body too large", nil, "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"` + strings.Repeat("x", 70000) + `"}`, true, 413, "", "BODY_TOO_LARGE", ""},
		{"no route", nil, "/v2/nothing", ``, false, 404, "", "ROUTE_NOT_FOUND", "see the API reference"},
		{"base URL ending in /", nil, "//v1/accounts/111111111111/tables/Orders/backups", `{}`, false, 404, "", "ROUTE_NOT_FOUND",
			"the path has an empty segment (//)"},
		{"unescaped backup ARN", nil, "/v1/backups/" + arn + ":restore", `{}`, false, 404, "", "ROUTE_NOT_FOUND", "each / escaped as %2F"},
		{"unescaped table ARN", nil, "/v1/accounts/111111111111/tables/arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backups", `{}`, false, 404, "", "ROUTE_NOT_FOUND",
			"a table ARN goes in the path as one segment, with each / escaped as %2F"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.stub.Mu.Lock()
			f.stub.Err = tt.serviceErr
			f.stub.Mu.Unlock()
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			resp, b := f.do(t, "POST", tt.path, body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tt.status, b)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			var st struct {
				Message string
				Details []struct{ Reason string }
			}
			if err := json.Unmarshal(b, &st); err != nil || st.Message == "" {
				t.Fatalf("body is not a status: %v %s", err, b)
			}
			if tt.reason != "" && (len(st.Details) == 0 || st.Details[0].Reason != tt.reason) {
				t.Errorf("details %+v, want reason %s", st.Details, tt.reason)
			}
			if !strings.Contains(st.Message, tt.message) {
				t.Errorf("message %q lacks %q", st.Message, tt.message)
			}
		})
	}
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
	f := newFixture(t)
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
}

// TestRESTPassesInterceptor shows every REST route reaching the service
// through the interceptor: each request is logged under its gRPC method
// with the REST caller, and a panic becomes a generic 500.
func TestRESTPassesInterceptor(t *testing.T) {
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	tests := []struct {
		method, path, body, rpc string
	}{
		{"POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"x"}`, "CreateBackup"},
		{"GET", "/v1/backups/" + escaped, "", "GetBackup"},
		{"GET", "/v1/accounts/111111111111/backups", "", "ListBackups"},
		{"DELETE", "/v1/backups/" + escaped, "", "DeleteBackup"},
		{"POST", "/v1/backups/" + escaped + ":restore", `{"targetTableName":"Copy"}`, "RestoreTableFromBackup"},
	}
	for _, tt := range tests {
		t.Run(tt.rpc, func(t *testing.T) {
			f := newFixture(t)
			if resp, body := f.do(t, tt.method, tt.path, strings.NewReader(tt.body)); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			want := `"msg":"request","method":"/backup.v1.BackupService/` + tt.rpc + `","caller":"rest:127.0.0.1","account":"111111111111"`
			if logs := f.logs.String(); !strings.Contains(logs, want) {
				t.Errorf("log lacks %s:\n%s", want, logs)
			}
			f.stub.Boom = true
			resp, body := f.do(t, tt.method, tt.path, strings.NewReader(tt.body))
			if resp.StatusCode != 500 || strings.Contains(string(body), "boom") {
				t.Errorf("panic answered %d %s", resp.StatusCode, body)
			}
			want = `"msg":"panic in handler","method":"/backup.v1.BackupService/` + tt.rpc + `"`
			if logs := f.logs.String(); !strings.Contains(logs, want) {
				t.Errorf("log lacks %s:\n%s", want, logs)
			}
		})
	}
}

// unwritable answers GetBackup with a time protojson cannot write.
type unwritable struct {
	backupv1.UnimplementedBackupServiceServer
}

func (unwritable) GetBackup(context.Context, *backupv1.GetBackupRequest) (*backupv1.GetBackupResponse, error) {
	return &backupv1.GetBackupResponse{BackupDescription: &backupv1.BackupDescription{BackupDetails: &backupv1.BackupDetails{
		BackupArn: arn, BackupExpiryDateTime: &timestamppb.Timestamp{Seconds: 300000000000}}}}, nil
}

// TestRESTAnswerThatCannotBeWritten: an answer grpc-gateway cannot write
// as JSON is answered INTERNAL with the generic message and an ErrorInfo,
// as every unexpected failure is, and logged at ERROR; it was a 500 with
// protojson's words, code UNKNOWN and no detail, logged only as OK.
func TestRESTAnswerThatCannotBeWritten(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.Service = unwritable{} })
	resp, body := f.do(t, "GET", "/v1/backups/"+strings.ReplaceAll(arn, "/", "%2F"), nil)
	var got struct {
		Code    int
		Message string
		Details []struct {
			Reason string
		}
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != 500 || got.Code != int(codes.Internal) || strings.Contains(got.Message, "proto") ||
		len(got.Details) != 1 || got.Details[0].Reason != "INTERNAL" {
		t.Errorf("answered %d %s; want 500, INTERNAL with the generic message and its ErrorInfo", resp.StatusCode, body)
	}
	if lines := f.logs.Lines(`"level":"ERROR"`, "could not be written", "GetBackup", "seconds out of range"); len(lines) != 1 {
		t.Errorf("want one ERROR line naming the method and protojson's error:\n%s", f.logs.String())
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

// TestUnauthorizedChallenge: a REST 401 carries an RFC 6750 challenge in
// WWW-Authenticate, the bare realm without credentials and invalid_token
// with a token backupd does not know, whether the interceptor or the
// gateway refused the request; the body is the status as ever, and neither
// repeats the token.
func TestUnauthorizedChallenge(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	const (
		create  = "/v1/accounts/111111111111/tables/Orders/backups"
		realm   = `Bearer realm="backupd"`
		invalid = `Bearer realm="backupd", error="invalid_token", error_description="the bearer token is not one backupd knows"`
	)
	tests := []struct {
		name, auth, method, path, body string
		challenge, message             string
	}{
		{"no token", "", "POST", create, `{"backupName":"x"}`,
			realm, `no caller credentials: send the header "authorization: Bearer <token>"`},
		{"unknown token", "Bearer secret-guess", "POST", create, `{"backupName":"x"}`,
			invalid, "the caller's bearer token is not one backupd knows"},
		// RFC 6750 3.1: no error code for another scheme.
		{"not a bearer token", "Basic c2VjcmV0LWd1ZXNz", "GET", "/v1/accounts/111111111111/backups", "",
			realm, `the authorization header holds no bearer token backupd can read: send "authorization: Bearer <token>" (printable ASCII)`},
		{"unreadable token", "Bearer secret-caf\xc3\xa9", "GET", "/v1/accounts/111111111111/backups", "",
			realm, `the authorization header holds no bearer token backupd can read: send "authorization: Bearer <token>" (printable ASCII)`},
		// Two headers, one unreadable: neither counts, whichever comes first.
		{"two tokens, the second unreadable", "Bearer orders-token\nBearer secret-caf\xc3\xa9", "GET", "/v1/accounts/111111111111/backups", "",
			realm, `more than one authorization header: send exactly one, "authorization: Bearer <token>"`},
		{"two tokens, the first unreadable", "Bearer secret-caf\xc3\xa9\nBearer orders-token", "GET", "/v1/accounts/111111111111/backups", "",
			realm, `more than one authorization header: send exactly one, "authorization: Bearer <token>"`},
		// Refused by the gateway's error handler, before the interceptor.
		{"no token, bad query", "", "GET", "/v1/accounts/111111111111/backups?bogus=1", "",
			realm, `no caller credentials: send the header "authorization: Bearer <token>"`},
		{"unknown token, bad body", "Bearer secret-guess", "POST", create, `{"backupName":`,
			invalid, "the caller's bearer token is not one backupd knows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(tt.method, f.http.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for v := range strings.SplitSeq(tt.auth, "\n") {
				if v != "" {
					r.Header.Add("Authorization", v)
				}
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%d %s, want 401", resp.StatusCode, body)
			}
			if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			var st restStatus
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("body is not a status: %v %s", err, body)
			}
			if st.Message != tt.message || len(st.Details) != 1 || st.Details[0].Reason != "UNAUTHENTICATED" {
				t.Errorf("body %s, want message %q and reason UNAUTHENTICATED", body, tt.message)
			}
			if strings.Contains(string(body), "secret") || strings.Contains(resp.Header.Get("WWW-Authenticate"), "secret") {
				t.Errorf("the token is repeated: %s %s", resp.Header.Get("WWW-Authenticate"), body)
			}
		})
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

// TestRESTDeadlineHeader: a REST caller sets its deadline with the
// Grpc-Timeout header, and the service sees it; without the header the
// request carries none (the service then applies upstream_timeout).
func TestRESTDeadlineHeader(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration // the handler's, after the time kept to answer; 0: no deadline
	}{
		{"5S", 5*time.Second - 100*time.Millisecond}, // the interceptor keeps back at most 100 ms
		{"1500m", 1400 * time.Millisecond},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			f := newFixture(t)
			req, err := http.NewRequest("POST", f.http.URL+"/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"abc"}`))
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Grpc-Timeout", tt.header)
			}
			sent := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			done := time.Now()
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			f.stub.Mu.Lock()
			dl := f.stub.Deadline
			f.stub.Mu.Unlock()
			switch {
			case tt.want == 0 && !dl.IsZero():
				t.Errorf("deadline %s without a Grpc-Timeout header", dl.Sub(sent))
			case tt.want != 0 && (dl.Before(sent.Add(tt.want)) || dl.After(done.Add(tt.want))):
				t.Errorf("handler's deadline %s after sending, want %s after the server got the request", dl.Sub(sent), tt.want)
			}
		})
	}
}

// A REST response's shape does not depend on its values: fields without
// presence are always written, fields with presence only when set.
func TestResponseShape(t *testing.T) {
	tests := []struct {
		name       string
		msg        any
		want, omit []string
	}{
		{"empty list", &backupv1.ListBackupsResponse{}, []string{`"backupSummaries":[]`, `"nextPageToken":""`}, nil},
		{"unknown size and expiry", &backupv1.BackupDetails{BackupArn: "a", BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_CREATING},
			[]string{`"backupStatus":"BACKUP_STATUS_CREATING"`}, []string{"backupSizeBytes", "backupExpiryDateTime", "null"}},
		{"known zero size", &backupv1.BackupDetails{BackupSizeBytes: new(int64(0))}, []string{`"backupSizeBytes":"0"`}, nil},
		{"restore done", &backupv1.RestoreSummary{}, []string{`"restoreInProgress":false`}, []string{"restoreDateTime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := newStrictJSON().Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			b := string(compactJSON(out))
			for _, w := range tt.want {
				if !strings.Contains(b, w) {
					t.Errorf("%s: want %s", b, w)
				}
			}
			for _, o := range tt.omit {
				if strings.Contains(b, o) {
					t.Errorf("%s: want no %s", b, o)
				}
			}
		})
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

// A REST request's log line names its caller by the connection's peer, not
// by the X-Forwarded-For any client can write, which is shown beside it,
// bounded: a 20 KB header neither picks the caller nor bloats the line.
func TestRESTCallerIsTheConnectionsPeer(t *testing.T) {
	for _, path := range []string{"/v1/accounts/111111111111/backups", "/v2/nothing"} {
		t.Run(path, func(t *testing.T) {
			f := newFixture(t)
			req, err := http.NewRequest("GET", f.http.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-For", "6.6.6.6, "+strings.Repeat("7", 20<<10))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			logs := f.logs.String()
			if !strings.Contains(logs, `"caller":"rest:127.0.0.1"`) || strings.Contains(logs, `"caller":"rest:6.6.6.6`) {
				t.Errorf("caller not the connection's peer:\n%.400s", logs)
			}
			if !strings.Contains(logs, `"forwarded_for":"6.6.6.6, 777`) || len(logs) > 2000 {
				t.Errorf("forwarded_for missing or unbounded (%d bytes of log):\n%.400s", len(logs), logs)
			}
		})
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

func TestEscapeHint(t *testing.T) {
	const table = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
	tests := []struct {
		path, want string
	}{
		{"/v1/backups/" + table + "/backup/01700000000000-abcdef12", "a backup ARN"},
		{"/v1/backups/" + strings.ReplaceAll(table, "/", "%2F") + "%2Fbackup%2F01700000000000-abcdef12", ""},
		{"/v1/accounts/111111111111/tables/" + table + "/backups", "a table ARN"},
		{"/v1/accounts/111111111111/tables/" + strings.ReplaceAll(table, ":", "%3A") + "/backups", "a table ARN"},
		{"/v1/accounts/111111111111/tables/" + strings.ReplaceAll(table, "/", "%2F") + "/backups", ""},
		{"/v1/accounts/111111111111/tables/Orders/backups/extra", ""},
		{"/v2/nothing", ""},
	}
	for _, tt := range tests {
		if got := escapeHint(tt.path); got != tt.want {
			t.Errorf("escapeHint(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// serveHTTP serves srv on a loopback port until the test ends, and
// returns its address.
func serveHTTP(t *testing.T, srv *http.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = Serve(srv, lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// net/http starts the write deadline once the headers are read: a body
// that arrives slowly, within the read timeout, still gets its answer
// when its handling takes the whole handling time after it.
func TestSlowBodyStillGetsItsAnswer(t *testing.T) {
	const read, handling = time.Second, 600 * time.Millisecond
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(handling - 100*time.Millisecond)
		_, _ = io.WriteString(w, "done")
	}), read, handling, nil, nil)
	conn := dialRaw(t, serveHTTP(t, srv))
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(read - 300*time.Millisecond) // the body's last byte comes late, within the read timeout
	if _, err := io.WriteString(conn, "}"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "done" {
		t.Errorf("answer %d %q, want 200 done", resp.StatusCode, body)
	}
}

// TestLateBodyIsNamed: a REST body that has not arrived by the read
// timeout is refused with a message that says so, rather than with the
// connection's "i/o timeout" and its addresses.
func TestLateBodyIsNamed(t *testing.T) {
	f := newFixture(t)
	srv := newHTTPServer(f.http.Config.Handler, 300*time.Millisecond, time.Second, nil, nil)
	conn := dialRaw(t, serveHTTP(t, srv))
	if _, err := io.WriteString(conn, "POST /v1/accounts/111111111111/tables/Orders/backups HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("did not arrive within")) || bytes.Contains(body, []byte("127.0.0.1")) {
		t.Errorf("late body: %d %s; want 400 saying the body did not arrive in time", resp.StatusCode, body)
	}
	if f.stub.Called() != nil {
		t.Errorf("a request without its body reached the service: %v", f.stub.Called())
	}
}

// TestUnendedBodyOfARouteWithoutOneIsRefused: a GET or DELETE whose
// chunked body has not ended by the read timeout is refused as a body the
// route does not take, before the service: not sent on as a call without
// a body, whose context the timeout happened to have ended.
func TestUnendedBodyOfARouteWithoutOneIsRefused(t *testing.T) {
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	for _, method := range []string{"GET", "DELETE"} {
		t.Run(method, func(t *testing.T) {
			f := newFixture(t)
			srv := newHTTPServer(f.http.Config.Handler, 300*time.Millisecond, time.Second, nil, nil)
			conn := dialRaw(t, serveHTTP(t, srv))
			if _, err := io.WriteString(conn, method+" /v1/backups/"+escaped+" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || f.stub.Called() != nil {
				t.Errorf("%d %s, service called with %v; want 400 and no call", resp.StatusCode, body, f.stub.Called())
			}
			if strings.Contains(f.logs.String(), `"code":"Canceled"`) {
				t.Errorf("the log says Canceled where the answer is 400:\n%s", f.logs.String())
			}
		})
	}
}

// TestBodyTextRefusals: bodies protojson refuses for reasons
// encoding/json, which names the violations, does not see.
func TestBodyTextRefusals(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		// Not JSON's whitespace: not an empty body.
		{"vertical tab", "\v", "MALFORMED_REQUEST"},
		{"form feed", "\f", "MALFORMED_REQUEST"},
		{"no-break space", "\u00a0", "MALFORMED_REQUEST"},
		{"next line", "\u0085", "MALFORMED_REQUEST"},
		{"lone surrogate", `{"backupName":"abc\ud800"}`, "backup_name must be valid UTF-8: a \\\\uD800-\\\\uDFFF escape must be one half of a surrogate pair"},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(tt.body))
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tt.want) {
				t.Errorf("%d %s; want 400 with %s", resp.StatusCode, body, tt.want)
			}
		})
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused body reached the service: %v", f.stub.Called())
	}
}

// TestBodyOnARouteWithoutOneIsRefusedUnread: a GET or DELETE with a body
// is refused without reading the body, and its connection closed: net/http
// would otherwise read the rest before the answer, for as long as it
// takes to come (the test server has no read timeout: forever), and hold
// a shutdown's drain that long.
func TestBodyOnARouteWithoutOneIsRefusedUnread(t *testing.T) {
	f := newFixture(t)
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	for _, method := range []string{"GET", "DELETE"} {
		t.Run(method, func(t *testing.T) {
			conn := dialRaw(t, f.http.Listener.Addr().String())
			if _, err := io.WriteString(conn, method+" /v1/backups/"+escaped+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body's end: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !resp.Close || !bytes.Contains(body, []byte("body is not taken by this route")) {
				t.Errorf("%d (close %v) %s; want 400 refusing the body, connection closed", resp.StatusCode, resp.Close, body)
			}
		})
	}
	if f.stub.Called() != nil {
		t.Errorf("a request with a body reached the service: %v", f.stub.Called())
	}
}

// TestBodyEndedEarlyIsCountedAsCanceled: a REST body that ends before all
// of it arrived (its client closed the connection mid-body, or sent less
// than it announced) is logged and counted as a call its caller left,
// CANCELLED, not as a malformed request: a dashboard of callers' mistakes
// must not count clients that went away. A client still listening hears
// the same.
func TestBodyEndedEarlyIsCountedAsCanceled(t *testing.T) {
	f := newFixture(t)
	const create = "/v1/accounts/111111111111/tables/Orders/backups"
	for _, tt := range []struct{ name, request string }{
		{"short of its Content-Length", "POST " + create + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"backupName\":\"abc\""},
		{"a chunked body without its last chunk", "POST " + create + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"bac\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.observed.Take()
			conn := dialRaw(t, f.http.Listener.Addr().String())
			if _, err := io.WriteString(conn, tt.request); err != nil {
				t.Fatal(err)
			}
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			var st restStatus
			if err := json.Unmarshal(body, &st); err != nil || len(st.Details) == 0 || st.Details[0].Reason != rpcerror.ReasonCanceled ||
				!strings.Contains(st.Message, "the request body ended before all of it arrived") {
				t.Errorf("%d %s; want the body's early end, reason %s", resp.StatusCode, body, rpcerror.ReasonCanceled)
			}
			if got := f.observed.Take(); !slices.Equal(got, []string{backupv1.BackupService_CreateBackup_FullMethodName + " Canceled"}) {
				t.Errorf("counted %q; want the call counted as Canceled", got)
			}
			if f.stub.Called() != nil {
				t.Errorf("the request reached the service: %v", f.stub.Called())
			}
		})
	}
}

// TestHealthAnswersWithoutABodyTheyDoNotTake: /healthz, /readyz and
// /metrics, which take no token, answer a GET with a body that never ends
// at once, and close its connection, rather than read the body first.
func TestHealthAnswersWithoutABodyTheyDoNotTake(t *testing.T) {
	f := newFixture(t)
	f.health.SetReady(true)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		t.Run(path, func(t *testing.T) {
			conn := dialRaw(t, f.http.Listener.Addr().String())
			if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body's end: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !resp.Close {
				t.Errorf("%d (close %v); want 200, connection closed", resp.StatusCode, resp.Close)
			}
		})
	}
}

// TestUnknownCallerIsRefusedBeforeItsBody: a REST request from a caller
// backupd does not know is answered from its headers, without waiting for
// a body that may come slowly or never, and its connection is closed
// rather than read to the body's end; the refusal is logged and counted as
// ever. A known caller's body is waited for, and a route that does not
// exist is answered without its body too.
func TestUnknownCallerIsRefusedBeforeItsBody(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	const create = "/v1/accounts/111111111111/tables/Orders/backups"
	tests := []struct {
		name, method, path, headers string
		want                        int
		counted                     string // the request's one count, as "method code"
	}{
		{"unknown token", "POST", create, "Authorization: Bearer wrong\r\n", 401, backupv1.BackupService_CreateBackup_FullMethodName + " Unauthenticated"},
		{"no token", "POST", create, "", 401, backupv1.BackupService_CreateBackup_FullMethodName + " Unauthenticated"},
		{"unknown token, waiting for 100-continue", "POST", create, "Authorization: Bearer wrong\r\nExpect: 100-continue\r\n", 401,
			backupv1.BackupService_CreateBackup_FullMethodName + " Unauthenticated"},
		{"unknown token, chunked GET", "GET", "/v1/accounts/111111111111/backups", "Authorization: Bearer wrong\r\n", 401,
			backupv1.BackupService_ListBackups_FullMethodName + " Unauthenticated"},
		{"no such route", "POST", "/v1/nothing", "Authorization: Bearer orders-token\r\n", 404, "unknown NotFound"},
		{"a method health does not take", "POST", "/healthz", "", 405, "unknown Unimplemented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counted, lines := len(f.observed.Counted()), strings.Count(f.logs.String(), `"msg":"request"`)
			conn, err := net.Dial("tcp", f.http.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The test server has no read timeout: without the refusal
			// from the headers, the answer would never come.
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			length := "Content-Length: 100\r\n"
			if tt.method == "GET" {
				length = "Transfer-Encoding: chunked\r\n"
			}
			if _, err := io.WriteString(conn, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: x\r\n"+tt.headers+length+"\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			_, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || !resp.Close {
				t.Errorf("answer %d, Connection %q; want %d and close", resp.StatusCode, resp.Header.Get("Connection"), tt.want)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("connection still open after the answer: %v", err)
			}
			// Counted and logged before the answer was written: once.
			if got := f.observed.Counted()[counted:]; len(got) != 1 || got[0] != tt.counted {
				t.Errorf("counted %q; want once, %q", got, tt.counted)
			}
			if n := strings.Count(f.logs.String(), `"msg":"request"`) - lines; n != 1 {
				t.Errorf("%d request lines logged; want 1", n)
			}
		})
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused request reached the service: %v", f.stub.Called())
	}

	// Over HTTP/2 the refusal comes before a body that never ends, too.
	h2 := httptest.NewUnstartedServer(f.http.Config.Handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", h2.URL+create, pr)
	req.Header.Set("Authorization", "Bearer wrong")
	client := h2.Client()
	client.Timeout = 10 * time.Second
	if resp, err := client.Do(req); err != nil {
		t.Errorf("HTTP/2: no answer before the body: %v", err)
	} else {
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 401 {
			t.Errorf("HTTP/2: %s %d, want HTTP/2 401", resp.Proto, resp.StatusCode)
		}
	}

	// A known caller's body is waited for.
	conn, err := net.Dial("tcp", f.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	const body = `{"backupName":"late"}`
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer orders-token\r\nContent-Length: %d\r\n\r\n", create, len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the body in a later packet
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got, _ := f.stub.Called().(*backupv1.CreateBackupRequest)
	if resp.StatusCode != 200 || resp.Close || got.GetBackupName() != "late" {
		t.Errorf("known caller: %d (close %v), service got %v; want 200 with the body's name, connection kept", resp.StatusCode, resp.Close, got)
	}
}

// TestInProcessServesEveryMethod: the REST gateway's in-process server
// passes every BackupService method to the service. One it lacked would be
// served by the embedded UnimplementedBackupServiceServer, and its REST
// route would answer UNIMPLEMENTED while gRPC works.
func TestInProcessServesEveryMethod(t *testing.T) {
	st := &stub{}
	srv := reflect.ValueOf(inProcess(st, newGateway(Options{Logger: slog.New(slog.DiscardHandler)}, nil)))
	for _, m := range backupv1.BackupService_ServiceDesc.Methods {
		method := srv.MethodByName(m.MethodName)
		req := reflect.New(method.Type().In(1).Elem())
		out := method.Call([]reflect.Value{reflect.ValueOf(context.Background()), req})
		if err, _ := out[1].Interface().(error); err != nil {
			t.Errorf("%s: %v", m.MethodName, err)
		}
		if got := st.Called(); got != req.Interface() {
			t.Errorf("%s: the service got %v, not the request", m.MethodName, got)
		}
	}
}

// TestLongMethodIsNotRepeatedWhole: an HTTP method may be as long as the
// headers allow; a 404 or 405 names it cut short, as the log does.
func TestLongMethodIsNotRepeatedWhole(t *testing.T) {
	f := newFixture(t)
	method := strings.Repeat("M", 20000)
	for _, path := range []string{"/nope", "/healthz", "/v1/backups/x"} {
		resp, body := f.do(t, method, path, nil)
		if resp.StatusCode != 404 && resp.StatusCode != 405 || len(body) > 2048 {
			t.Errorf("%s: %d with a %d-byte body; want 404 or 405, short", path, resp.StatusCode, len(body))
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
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
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
		reason                       string
	}{
		{"no token", "", create, create + " Unauthenticated", "UNAUTHENTICATED"},
		{"an unknown token", "nobody", create, create + " Unauthenticated", "UNAUTHENTICATED"},
		{"a method backupd does not serve", "nobody", "/backup.v1.BackupService/Nope", "unknown Unauthenticated", "UNAUTHENTICATED"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.observed.Take()
			err := open(tt.token, tt.method)
			st := status.Convert(err)
			if st.Code() != codes.Unauthenticated || rpcerror.ReasonOf(st) != tt.reason {
				t.Fatalf("got %v; want Unauthenticated with reason %s, before any request", err, tt.reason)
			}
			if counted := f.observed.Take(); !slices.Equal(counted, []string{tt.counted}) {
				t.Errorf("counted %q, want %q once", counted, tt.counted)
			}
		})
	}
	if f.stub.Called() != nil {
		t.Errorf("a refused call reached the service: %v", f.stub.Called())
	}
	if logs := f.logs.String(); strings.Count(logs, `"code":"Unauthenticated"`) != 3 {
		t.Errorf("want 3 Unauthenticated request lines:\n%s", logs)
	}

	// A known caller's stream is not refused: it waits for the request.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer orders-token")
	stream, err := f.conn.NewStream(ctx, desc, create)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(&backupv1.CreateBackupResponse{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a known caller's unsent request: %v; want it waited for until the deadline", err)
	}
}

// reasonOf is the reason of st's ErrorInfo, or "".

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
