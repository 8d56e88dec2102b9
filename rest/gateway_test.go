package rest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/internal/calltest"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/testenv"
)

// The stub service and the observer both transports' tests use.
type (
	stub     = calltest.Stub
	observed = calltest.Observed
)

// fieldViolation is a google.rpc.BadRequest field violation in JSON.
type fieldViolation struct{ Field, Description string }

// restStatus is the JSON body of a REST error.
type restStatus struct {
	Message string
	Details []struct {
		Reason          string
		Metadata        map[string]string
		FieldViolations []fieldViolation
	}
}

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
	health *health
	http   *httptest.Server
	logs   *testenv.Buffer
	// observed is the handler's RequestObserver.
	observed *observed
}

// health is the Health the handler is given: ready or not as set, with
// the requests in their handlers counted.
type health struct {
	ready    atomic.Bool
	handling atomic.Int64
}

func (h *health) Ready(context.Context) bool     { return h.ready.Load() }
func (h *health) SetReady(ready bool)            { h.ready.Store(ready) }
func (h *health) Handling(delta int)             { h.handling.Add(int64(delta)) }
func (h *health) CutOffContext() context.Context { return context.Background() }

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, func(*Options) {})
}

// newFixtureWith lets set change the handler's options before it starts.
func newFixtureWith(t *testing.T, set func(*Options)) *fixture {
	t.Helper()
	f := &fixture{stub: &stub{}, health: &health{}, logs: &testenv.Buffer{}, observed: &observed{}}
	logger := slog.New(slog.NewJSONHandler(f.logs, nil))
	opts := Options{Service: f.stub, Logger: logger, Metrics: f.observed}
	set(&opts)
	h, err := NewHandler(context.Background(), opts, f.health,
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
		// A client that escaped the ARN is told, too, that a proxy on the
		// way may have decoded its %2F (nginx's proxy_pass with a URI does).
		{"ARN decoded by a proxy", nil, "/v1/backups/" + arn, ``, false, 404, "", "ROUTE_NOT_FOUND",
			"if the client sent %2F, a proxy on the way decoded it"},
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
	}), read, handling, nil, nil, nil)
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
	srv := newHTTPServer(f.http.Config.Handler, 300*time.Millisecond, time.Second, nil, nil, nil)
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
			srv := newHTTPServer(f.http.Config.Handler, 300*time.Millisecond, time.Second, nil, nil, nil)
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
// /metrics (no callers here), which take no token, answer a GET with a body that never ends
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
			Accounts: []string{config.Any}, Operations: []string{config.Any}},
			{Name: "scraper", TokenSHA256: callers.HashToken("scraper-token"), Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}}})
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
		// Refused CreateBackup in every account, whatever the body names.
		{"a caller refused the operation", "POST", create, "Authorization: Bearer scraper-token\r\n", 403,
			backupv1.BackupService_CreateBackup_FullMethodName + " PermissionDenied"},
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

// TestMetricsTakeACallerAllowedThem: with callers configured, GET
// /metrics, which names every account and its rates, is served to the
// callers allowed Metrics in every account, and refused to the others as
// a BackupService call would be: 401 with its challenge, 403 naming what
// is missing, each logged and counted under "/metrics". Scrapes are
// neither. In the sandbox a request without a token passes, as there for
// every call.
func TestMetricsTakeACallerAllowedThem(t *testing.T) {
	cs := []config.Caller{
		{Name: "scraper", TokenSHA256: callers.HashToken("scraper-token"), Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}},
		{Name: "admin", TokenSHA256: callers.HashToken("admin-token"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
		{Name: "orders", TokenSHA256: callers.HashToken("orders-token"), Accounts: []string{"111111111111"}, Operations: []string{config.Any}},
		{Name: "backups", TokenSHA256: callers.HashToken("backups-token"), Accounts: []string{config.Any}, Operations: []string{"CreateBackup"}},
	}
	tests := []struct {
		name, method, auth   string
		anonymous            bool
		want                 int
		challenge, message   string
		counted, loggedPrinc string
	}{
		{"allowed", "GET", "Bearer scraper-token", false, 200, "", "", "", ""},
		{"allowed, HEAD", "HEAD", "Bearer scraper-token", false, 200, "", "", "", ""},
		{"every operation in every account", "GET", "Bearer admin-token", false, 200, "", "", "", ""},
		{"no token", "GET", "", false, 401, `Bearer realm="backupd"`, "no caller credentials", "/metrics Unauthenticated", ""},
		{"unknown token", "GET", "Bearer guess", false, 401, `error="invalid_token"`, "not one backupd knows", "/metrics Unauthenticated", ""},
		{"every operation in one account", "GET", "Bearer orders-token", false, 403, "",
			`caller orders may call Metrics only if it is allowed every account (accounts [\"*\"])`, "/metrics PermissionDenied", "orders"},
		{"another operation", "GET", "Bearer backups-token", false, 403, "", "caller backups may not call Metrics", "/metrics PermissionDenied", "backups"},
		{"sandbox, no token", "GET", "", true, 200, "", "", "", ""},
		{"sandbox, unknown token", "GET", "Bearer guess", true, 401, `error="invalid_token"`, "not one backupd knows", "/metrics Unauthenticated", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureWith(t, func(o *Options) {
				o.Authorizer = callers.New(cs)
				if tt.anonymous {
					o.Authorizer = callers.NewAllowingAnonymous(cs)
				}
			})
			req, err := http.NewRequest(tt.method, f.http.URL+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			req.Header.Set("X-Request-Id", "scrape-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s /metrics with %q: %d %s; want %d", tt.method, tt.auth, resp.StatusCode, body, tt.want)
			}
			lines, counted := f.logs.Lines(`"method":"/metrics"`), f.observed.Counted()
			if tt.want == 200 {
				if tt.method == "GET" && string(body) != "metrics here\n" {
					t.Errorf("body %q; want the metrics", body)
				}
				if len(lines) != 0 || len(counted) != 0 {
					t.Errorf("a scrape logged %q, counted %q; want neither", lines, counted)
				}
				return
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q; want %q", got, tt.challenge)
			}
			if !strings.Contains(string(body), tt.message) || strings.Contains(string(body), "guess") {
				t.Errorf("body %s; want %q, and no token", body, tt.message)
			}
			if !slices.Equal(counted, []string{tt.counted}) || len(lines) != 1 || !strings.Contains(lines[0], `"x_request_id":"scrape-1"`) ||
				strings.Contains(lines[0], `"principal":`) != (tt.loggedPrinc != "") ||
				!strings.Contains(lines[0], `"principal":"`+tt.loggedPrinc+`"`) && tt.loggedPrinc != "" {
				t.Errorf("counted %q, logged %q; want %q once, principal %q, the X-Request-Id", counted, lines, tt.counted, tt.loggedPrinc)
			}
		})
	}
}
