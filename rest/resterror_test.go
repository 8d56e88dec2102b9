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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestHandleError pins what the gateway's error handler answers, logs and
// counts for each refusal it makes on its own (a body too large, cut
// short by the shutdown or late, and grpc-gateway's decoding errors),
// whether the caller may make the call or not, and for errors that
// passed through the interceptor, which the handler only writes.
func TestHandleError(t *testing.T) {
	const (
		create  = backupv1.BackupService_CreateBackup_FullMethodName
		mine    = "111111111111" // the caller's account
		another = "222222222222"
		realm   = `Bearer realm="backupd"`
		invalid = `Bearer realm="backupd", error="invalid_token", error_description="the bearer token is not one backupd knows"`
	)
	limited, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	decoding := status.Error(codes.InvalidArgument, "type mismatch, parameter: page_size")
	detailed, _ := status.New(codes.InvalidArgument, "bad").WithDetails(&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "backupd"})
	tests := []struct {
		name    string
		call    restCall // its flags, challenge and intercepted
		account string   // the path's account_id
		token   string   // the caller's bearer token; "" for none
		noRPC   bool     // the context names no RPC method
		err     error    // what grpc-gateway hands the handler
		status  int
		reason  string // the body's ErrorInfo reason
		// retryAfter and challenge are the Retry-After and
		// WWW-Authenticate headers; "" for none.
		retryAfter, challenge string
		// logged is the request's log line as "code level", and counted
		// its count; "" when it is left to the interceptor.
		logged, counted string
	}{
		{name: "too large", call: restCall{tooLarge: true}, account: mine, token: "mine", err: decoding,
			status: 413, reason: "BODY_TOO_LARGE", logged: "InvalidArgument INFO", counted: create + " InvalidArgument"},
		{name: "too large, caller of another account", call: restCall{tooLarge: true}, account: another, token: "mine", err: decoding,
			status: 403, reason: "CALLER_NOT_ALLOWED", logged: "PermissionDenied INFO", counted: create + " PermissionDenied"},
		{name: "too large, unknown caller", call: restCall{tooLarge: true}, account: mine, token: "wrong", err: decoding,
			status: 401, reason: "UNAUTHENTICATED", challenge: invalid, logged: "Unauthenticated INFO", counted: create + " Unauthenticated"},
		{name: "too large, no RPC", call: restCall{tooLarge: true}, account: mine, token: "mine", noRPC: true, err: decoding,
			status: 413, reason: "BODY_TOO_LARGE"},
		{name: "cut short", call: restCall{cutShort: true}, account: mine, token: "mine", err: decoding,
			status: 503, reason: "SHUTTING_DOWN", retryAfter: "1", logged: "Unavailable INFO", counted: create + " Unavailable"},
		{name: "cut short, caller of another account", call: restCall{cutShort: true}, account: another, token: "mine", err: decoding,
			status: 403, reason: "CALLER_NOT_ALLOWED", logged: "PermissionDenied INFO", counted: create + " PermissionDenied"},
		{name: "too large and cut short", call: restCall{tooLarge: true, cutShort: true}, account: mine, token: "mine", err: decoding,
			status: 413, reason: "BODY_TOO_LARGE", logged: "Unavailable INFO", counted: create + " Unavailable"},
		{name: "late", call: restCall{bodyLate: true}, account: mine, token: "mine", err: decoding,
			status: 400, reason: "MALFORMED_REQUEST", logged: "InvalidArgument INFO", counted: create + " InvalidArgument"},
		{name: "late, caller of another account", call: restCall{bodyLate: true}, account: another, token: "mine", err: decoding,
			status: 403, reason: "CALLER_NOT_ALLOWED", logged: "PermissionDenied INFO", counted: create + " PermissionDenied"},
		{name: "decoding error", account: mine, token: "mine", err: decoding,
			status: 400, reason: "MALFORMED_REQUEST", logged: "InvalidArgument INFO", counted: create + " InvalidArgument"},
		{name: "decoding error, no token", account: mine, err: decoding,
			status: 401, reason: "UNAUTHENTICATED", challenge: realm, logged: "Unauthenticated INFO", counted: create + " Unauthenticated"},
		{name: "decoding error, no RPC", account: mine, token: "mine", noRPC: true, err: decoding,
			status: 400, reason: "MALFORMED_REQUEST"},
		{name: "an error with details", account: mine, token: "mine", err: detailed.Err(),
			status: 400, reason: "INVALID_ARGUMENT", logged: "InvalidArgument INFO", counted: create + " InvalidArgument"},
		{name: "intercepted, rate limited", call: restCall{intercepted: true}, account: mine, token: "mine", err: limited.Err(),
			status: 429, retryAfter: "2"},
		{name: "intercepted, decoding error", call: restCall{intercepted: true}, account: mine, token: "mine", err: decoding,
			status: 400, reason: "MALFORMED_REQUEST"},
		{name: "intercepted, unauthenticated", call: restCall{intercepted: true, challenge: invalid}, account: mine,
			err: status.Error(codes.Unauthenticated, "who?"), status: 401, challenge: invalid},
		{name: "intercepted, unauthenticated without a challenge", call: restCall{intercepted: true}, account: mine,
			err: status.Error(codes.Unauthenticated, "who?"), status: 401, challenge: realm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, observed := &testenv.Buffer{}, &observed{}
			opts := Options{Service: &stub{}, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: observed,
				Authorizer: callers.New([]config.Caller{{Name: "mine", TokenSHA256: callers.HashToken("mine"),
					Accounts: []string{mine}, Operations: []string{config.Any}}})}
			g := newGateway(opts, nil)
			strict := newStrictJSON()
			mux, err := g.newMux(context.Background(), opts, strict)
			if err != nil {
				t.Fatal(err)
			}
			g.mux = mux

			call := tt.call
			call.origin.Start, call.origin.Caller = time.Now(), "rest:192.0.2.1"
			call.params = map[string]string{"account_id": tt.account, "table_name": "Orders"}
			r := httptest.NewRequest("POST", "/v1/accounts/"+tt.account+"/tables/Orders/backups", nil)
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			r = r.WithContext(withRestCall(r.Context(), &call))
			ctx := r.Context()
			if !tt.noRPC {
				ctx, err = runtime.AnnotateIncomingContext(ctx, mux, r, create,
					runtime.WithHTTPPathPattern("/v1/accounts/{account_id}/tables/{table_name}/backups"))
				if err != nil {
					t.Fatal(err)
				}
			}
			w := httptest.NewRecorder()
			g.handleError(ctx, mux, strict, w, r, tt.err)

			if w.Code != tt.status {
				t.Errorf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if got := w.Header().Values("WWW-Authenticate"); len(got) > 1 || w.Header().Get("WWW-Authenticate") != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			var st restStatus
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Message == "" {
				t.Fatalf("body is not a status (%v): %s", err, w.Body)
			}
			var reason string
			if len(st.Details) > 0 {
				reason = st.Details[0].Reason
			}
			if reason != tt.reason {
				t.Errorf("reason %q, want %q: %s", reason, tt.reason, w.Body)
			}
			var lines []string
			for _, l := range logs.Lines(`"msg":"request"`) {
				var line struct{ Code, Level string }
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, line.Code+" "+line.Level)
			}
			if want := nonEmpty(tt.logged); !slices.Equal(lines, want) {
				t.Errorf("logged %q, want %q:\n%s", lines, want, logs)
			}
			if counted, want := observed.Counted(), nonEmpty(tt.counted); !slices.Equal(counted, want) {
				t.Errorf("counted %q, want %q", counted, want)
			}
		})
	}
}

// nonEmpty is []string{s}, or nil for "".
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// checking is field rules (Options.Violations) that name the region of
// every request, as service.Server's name one its account does not
// allow, and record the fields the gateway told them it could not read.
type checking struct {
	mu     sync.Mutex
	unread [][]string
}

func (c *checking) Violations(_ proto.Message, unread ...badrequest.Violation) []badrequest.Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	var fields []string
	for _, v := range unread {
		fields = append(fields, v.Field)
	}
	c.unread = append(c.unread, fields)
	return []badrequest.Violation{{Field: "region", Description: "region is not allowed for this account"}}
}

func (c *checking) asked() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.unread)
}

// A REST request the gateway can read only in part is judged by the
// server's field rules (Options.Violations: the service's, its account's
// configuration included), whatever the service it calls, with
// the fields it could not read named to them, so that every bad field is
// told at once; but only once its caller may act in the account: a
// caller refused it learns nothing of the account.
func TestGatewayAsksTheServiceRules(t *testing.T) {
	rules := &checking{}
	f := newFixtureWith(t, func(o *Options) {
		o.Violations = rules.Violations // beside the fixture's stub service
		o.Authorizer = callers.New([]config.Caller{
			{Name: "mine", TokenSHA256: callers.HashToken("mine"), Accounts: []string{"111111111111"}, Operations: []string{config.Any}},
		})
	})
	create := "/v1/accounts/111111111111/tables/Orders/backups"
	tests := []struct {
		name, token, method, path, body string
		status                          int
		fields, unread                  []string
	}{
		{"wrong JSON type", "mine", "POST", create, `{"backupName":42}`, 400, []string{"backup_name", "region"}, []string{"backup_name"}},
		{"query on a route that takes none", "mine", "POST", create + "?colour=blue", `{"backupName":"valid-name"}`, 400,
			[]string{"colour", "region"}, []string{"colour"}},
		{"unreadable query", "mine", "GET", "/v1/accounts/111111111111/backups?pageSize=abc", "", 400, []string{"page_size", "region"}, []string{"page_size"}},
		{"no token", "", "POST", "/v1/accounts/222222222222/tables/Orders/backups?colour=blue", `{"backupName":42}`, 401, nil, nil},
		{"a caller not allowed the account", "mine", "POST", "/v1/accounts/222222222222/tables/Orders/backups", `{"backupName":42}`, 403, nil, nil},
		{"a caller not allowed the account, with a query", "mine", "GET", "/v1/accounts/222222222222/backups?pageSize=abc", "", 403, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rules.asked())
			req, err := http.NewRequest(tt.method, f.http.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, st := sendForStatus(t, req)
			var fields []string
			for _, d := range st.Details {
				for _, v := range d.FieldViolations {
					fields = append(fields, v.Field)
				}
			}
			if resp.StatusCode != tt.status || !slices.Equal(fields, tt.fields) {
				t.Errorf("status %d, field violations %v (%s); want %d and %v", resp.StatusCode, fields, st.Message, tt.status, tt.fields)
			}
			asked := rules.asked()[before:]
			switch {
			case tt.unread == nil && len(asked) > 0:
				t.Errorf("the service's rules were asked %v for a refused caller", asked)
			case tt.unread != nil && (len(asked) != 1 || !slices.Equal(asked[0], tt.unread)):
				t.Errorf("the service's rules were asked with unread fields %v; want once, with %v", asked, tt.unread)
			}
		})
	}
}

// TestDeclaredTooLargeBodyIsReadBeforeThe413: a client that writes its
// whole body before it reads the answer, as most HTTP/1.1 clients do,
// gets the 413 of a body declared over 64 KiB, not a connection reset
// under its write; one that asks first (Expect: 100-continue) gets the
// 413 without sending the body.
func TestDeclaredTooLargeBodyIsReadBeforeThe413(t *testing.T) {
	f := newFixture(t)
	addr := strings.TrimPrefix(f.http.URL, "http://")
	body := bytes.Repeat([]byte("a"), maxDrainedBytes-64)
	head := fmt.Sprintf("POST /v1/accounts/111111111111/tables/Orders/backups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	wholeBodyGets413(t, addr, head+string(body))
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/accounts/111111111111/tables/Orders/backups", bytes.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("with Expect: 100-continue: status %d, want 413", resp.StatusCode)
	}
}

// TestChunkedTooLargeBodyIsReadBeforeThe413: a chunked body is refused
// as its reading passes MaxBodyBytes, and what is left of it is read
// before the 413, as a declared one's is: a client that writes the whole
// body first gets the 413, not a reset connection.
func TestChunkedTooLargeBodyIsReadBeforeThe413(t *testing.T) {
	f := newFixture(t)
	addr := strings.TrimPrefix(f.http.URL, "http://")
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 16<<10, bytes.Repeat([]byte("a"), 16<<10))
	body := strings.Repeat(chunk, (maxDrainedBytes-MaxBodyBytes)/(16<<10)-1) + "0\r\n\r\n"
	head := "POST /v1/accounts/111111111111/tables/Orders/backups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
	wholeBodyGets413(t, addr, head+body)
}

// wholeBodyGets413 sends request, a body too large among it, five times,
// each on a connection of its own, writing the whole of it before
// reading the answer, and wants each answered 413.
func wholeBodyGets413(t *testing.T, addr, request string) {
	t.Helper()
	for i := range 5 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(request)); err != nil {
			t.Fatalf("round %d: writing the body: %v; want it read, then the 413", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("round %d: reading the answer: %v; want the 413", i, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("round %d: status %d, want 413", i, resp.StatusCode)
		}
		conn.Close()
	}
}

// TestBodyNotWaitedForIsNotDrained: a request answered from its headers
// alone (an unknown caller, a route backupd does not have) is answered at
// once whatever length its body declares, as the README says ("a body
// that comes slowly holds nothing"): the drain of a declared-too-large
// body is not for it. Nor is one over HTTP/2, whose unread body ends only
// its stream.
func TestBodyNotWaitedForIsNotDrained(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	for _, tt := range []struct {
		name, path, headers string
		want                int
	}{
		{"unknown token", "/v1/accounts/111111111111/tables/Orders/backups", "Authorization: Bearer wrong\r\n", 401},
		{"no such route", "/v1/nothing", "Authorization: Bearer orders-token\r\n", 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.http.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n", tt.path, tt.headers, 1<<20)
			if _, err := conn.Write([]byte(head)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if took := time.Since(start); resp.StatusCode != tt.want || took > drainTimeout/2 {
				t.Errorf("status %d after %v; want %d at once, without waiting for the body", resp.StatusCode, took, tt.want)
			}
		})
	}
	t.Run("HTTP/2", func(t *testing.T) {
		h := f.http.Config.Handler
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, _ := http.NewRequest("POST", srv.URL+"/v1/accounts/111111111111/tables/Orders/backups", pr)
		req.Header.Set("Authorization", "Bearer orders-token")
		req.ContentLength = 1 << 20
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestEntityTooLarge || took > drainTimeout/2 {
			t.Errorf("HTTP/%d %d after %v; want HTTP/2 413 at once", resp.ProtoMajor, resp.StatusCode, took)
		}
	})
}
