package rest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/testenv"
)

// Fuzz tests of the REST front: the whole HTTP handler, and the helpers
// that read a request's path, query, headers and body. Each also runs as
// a unit test over its seeds (go test ./server/).

// Bounds of what an error repeats: a status message (up to 20 joined
// violations) and one field violation (two ARNs quoted whole, at most).
const (
	maxFuzzMessage     = 8 << 10
	maxFuzzDescription = 2304
	maxFuzzLogLine     = 16 << 10
)

// notConfigured resolves no account: the real service then validates a
// request and answers NOT_FOUND, without AWS.
type notConfigured struct{}

func (notConfigured) Resolve(account, _ string) (accounts.Target, error) {
	return accounts.Target{}, &accounts.NotConfiguredError{AccountID: account}
}

// fuzzHandler is one HTTP handler under test and what it calls.
type fuzzHandler struct {
	h        http.Handler
	stub     *stub // nil for the real service
	observed *observed
	logs     *testenv.Buffer
}

const fuzzToken = "orders-token"

func newFuzzHandler(tb testing.TB, mode int) *fuzzHandler {
	tb.Helper()
	fh := &fuzzHandler{observed: &observed{}, logs: &testenv.Buffer{}}
	opts := Options{Logger: slog.New(slog.NewJSONHandler(fh.logs, nil)), Metrics: fh.observed}
	switch mode {
	case 0:
		fh.stub = &stub{}
		opts.Service = fh.stub
	case 1:
		fh.stub = &stub{}
		opts.Service = fh.stub
		opts.Authorizer = callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken(fuzzToken),
			Accounts: []string{"111111111111"}, Operations: []string{"CreateBackup", "GetBackup", "ListBackups", "RestoreTableFromBackup"}}})
	default:
		svc := service.New(service.Options{Accounts: notConfigured{}, DefaultTimeout: time.Second})
		opts.Service, opts.Violations = svc, svc.Violations
	}
	health := &health{}
	health.SetReady(true)
	h, err := NewHandler(context.Background(), opts, health,
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics here\n") }))
	if err != nil {
		tb.Fatal(err)
	}
	fh.h = h
	return fh
}

// rawRequest builds the bytes of an HTTP/1.1 request, and reports false
// when net/http's server would not hand it to a handler.
func rawRequest(method, target string, headers [][2]string, body []byte, chunked bool) (*http.Request, bool) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: backupd.test\r\n", method, target)
	for _, h := range headers {
		if h[1] == "" {
			continue
		}
		if !httpguts.ValidHeaderFieldName(h[0]) || !httpguts.ValidHeaderFieldValue(h[1]) {
			return nil, false
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	switch {
	case chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		if len(body) > 0 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
		}
		b.WriteString("0\r\n\r\n")
	case len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	default:
		b.WriteString("\r\n")
	}
	r, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil || r.Method == http.MethodConnect || r.ProtoMajor != 1 {
		return nil, false
	}
	// What net/http's server refuses before any handler runs.
	for k, vs := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, false
			}
		}
	}
	r.RemoteAddr = "192.0.2.7:50000"
	return r, true
}

var upperSnake = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// FuzzHTTPHandler drives the whole REST handler with any method, path,
// query, headers and body, against a stub service (with and without
// callers configured) and against the real service with no account
// configured. It checks that:
//   - nothing panics, and no answer is a 5xx;
//   - every status is one DESIGN.md documents (or 405/413 for a method
//     or a body the route does not take);
//   - every error is a JSON google.rpc.Status whose code maps to its HTTP
//     status, with a backupd ErrorInfo, a message and violations of
//     bounded length in valid UTF-8, and at most 20 violations;
//   - a refused request never reached the stub, and one that reached it
//     was answered 200, with the path's values, not the body's;
//   - a 401 carries WWW-Authenticate, and only a 429/503 Retry-After;
//   - every request but a health or metrics GET is counted once and
//     logged on one line of bounded length.
func FuzzHTTPHandler(f *testing.F) {
	const escARN = "arn:aws:dynamodb:us-east-1:111111111111:table%2FOrders%2Fbackup%2F01700000000000-abcdef12"
	seeds := []struct {
		mode                          uint8
		method, target, auth, timeout string
		hname, hval                   string
		body                          string
		chunked                       bool
	}{
		{0, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "", "", "", "", `{"backupName":"nightly"}`, false},
		{0, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "", "5S", "X-Request-Id", "abc", `{"backupName":"n","accountId":"222222222222"}`, true},
		{0, "GET", "/v1/backups/" + escARN, "", "", "", "", "", false},
		{0, "DELETE", "/v1/backups/" + strings.ReplaceAll(escARN, ":", "%3A"), "", "", "", "", "", false},
		{0, "POST", "/v1/backups/" + escARN + ":restore", "", "", "Content-Type", "application/json", `{"targetTableName":"Copy","globalSecondaryIndexOverride":{"indexes":[{"indexName":"i","x":1}]}}`, false},
		{0, "GET", "/v1/backups/" + escARN + ":restore", "", "", "", "", "", false},
		{0, "GET", "/v1/accounts/111111111111/backups?pageSize=3&tableName=Orders&timeRangeLowerBound=2026-01-02T15:04:05%2B0000", "", "", "", "", "", false},
		{0, "GET", "/v1/accounts/111111111111/backups?pageSize=x&page_size=2&colour=red&accountId=1", "", "1H", "", "", "", false},
		{0, "GET", "/v1/backups/" + escARN + "?x=1", "", "99999999H", "", "", "{}", false},
		{0, "PUT", "/v1/backups/" + escARN, "", "", "", "", "", false},
		{0, "POST", "/healthz", "", "", "", "", "x", false},
		{0, "GET", "/readyz", "", "", "", "", "", false},
		{0, "GET", "//v1/./backups/..", "", "", "", "", "", false},
		{0, "POST", "/v1/accounts/111111111111/tables/Orders%2F/backups", "", "", "", "", `{"backupName":"nightly"}`, false},
		{0, "GET", "/v1/backups/arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/1-a", "", "", "", "", "", false},
		{0, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "", "", "", "", `{"backupName":"\u00e9", "requestId": 5}`, false},
		{1, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "Bearer " + fuzzToken, "", "", "", `{"backupName":"nightly"}`, false},
		{1, "DELETE", "/v1/backups/" + escARN, "Bearer " + fuzzToken, "", "", "", "", false},
		{1, "GET", "/v1/accounts/222222222222/backups", "Bearer nope", "", "", "", "", false},
		{1, "GET", "/v1/accounts/111111111111/backups", "Basic abc", "", "Authorization", "Bearer x", "", false},
		{2, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "", "", "", "", `{"backupName":"ab","requestId":"\u0001"}`, false},
		{2, "GET", "/v1/accounts/111111111111/backups?pageToken=AAAA&timeRangeLowerBound=1970-01-01T00:00:00Z", "", "", "", "", "", false},
		{2, "POST", "/v1/backups/" + escARN + ":restore", "", "", "", "", `{"targetTableName":"Copy","localSecondaryIndexOverride":{"indexes":[{"indexName":"i","keySchema":[{"attributeName":"a","keyType":"KEY_TYPE_RANGE"}]}]}}`, false},
		{2, "GET", "/v1/backups/%FF%FE", "", "", "", "", "", false},
	}
	for _, s := range seeds {
		f.Add(s.mode, s.method, s.target, s.auth, s.timeout, s.hname, s.hval, []byte(s.body), s.chunked)
	}
	handlers := [3]*fuzzHandler{newFuzzHandler(f, 0), newFuzzHandler(f, 1), newFuzzHandler(f, 2)}
	f.Fuzz(func(t *testing.T, mode uint8, method, target, auth, timeout, hname, hval string, body []byte, chunked bool) {
		fh := handlers[int(mode)%len(handlers)]
		r, ok := rawRequest(method, target, [][2]string{{"Authorization", auth}, {"Grpc-Timeout", timeout}, {hname, hval}}, body, chunked)
		if !ok {
			return
		}
		if fh.stub != nil {
			fh.stub.Mu.Lock()
			fh.stub.Last = nil
			fh.stub.Mu.Unlock()
		}
		fh.observed.Take()
		fh.logs.Reset()

		// The path as the gateway routes it (UnescapingModeAllExceptSlash):
		// RawPath, which EscapedPath gives up when it holds a character
		// such as " that is not valid escaped.
		escaped := r.URL.RawPath
		if escaped == "" {
			escaped = r.URL.Path
		}
		rec := httptest.NewRecorder()
		fh.h.ServeHTTP(rec, r)
		resp := rec.Result()
		out, _ := io.ReadAll(resp.Body)
		code := resp.StatusCode
		desc := fmt.Sprintf("%s %q (mode %d): %d %.600s", r.Method, r.URL.RequestURI(), mode%3, code, out)

		var called any
		if fh.stub != nil {
			fh.stub.Mu.Lock()
			called = fh.stub.Last
			fh.stub.Mu.Unlock()
		}
		plain := (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			(r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics")

		if os.Getenv("FUZZ_DEBUG") != "" {
			t.Log(desc)
		}
		if code >= 500 {
			t.Fatalf("5xx: %s", desc)
		}
		switch code {
		case 200, 400, 401, 403, 404, 405, 413:
		default:
			t.Fatalf("undocumented status: %s", desc)
		}
		if plain {
			if code != 200 {
				t.Fatalf("health/metrics GET not 200: %s", desc)
			}
			if n := fh.observed.Take(); len(n) != 0 {
				t.Errorf("health/metrics GET counted: %v", n)
			}
			return
		}
		if n := fh.observed.Take(); len(n) != 1 {
			t.Errorf("counted %d times (%v), want once: %s", len(n), n, desc)
		}
		checkLogLines(t, fh, desc)

		if code == 200 {
			if fh.stub != nil && called == nil {
				t.Fatalf("200 without reaching the service: %s", desc)
			}
			if called != nil {
				checkPathReachedService(t, escaped, called, desc)
			}
			return
		}
		if called != nil {
			t.Fatalf("refused, yet the service was called with %v: %s", called, desc)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("error with Content-Type %q: %s", ct, desc)
		}
		st := &spb.Status{}
		if err := protojson.Unmarshal(out, st); err != nil {
			t.Fatalf("error body is not a google.rpc.Status (%v): %s", err, desc)
		}
		grpcCode := codes.Code(st.GetCode())
		want := runtime.HTTPStatusFromCode(grpcCode)
		switch {
		case code == 413 && grpcCode == codes.InvalidArgument:
		case code == 405 && grpcCode == codes.Unimplemented:
		case code != want:
			t.Errorf("code %v answered %d, want %d: %s", grpcCode, code, want, desc)
		}
		if (code == 401) != (resp.Header.Get("WWW-Authenticate") != "") {
			t.Errorf("WWW-Authenticate %q: %s", resp.Header.Get("WWW-Authenticate"), desc)
		}
		if resp.Header.Get("Retry-After") != "" {
			t.Errorf("Retry-After on %d: %s", code, desc)
		}
		if code == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("405 without Allow: %s", desc)
		}
		if m := st.GetMessage(); m == "" || len(m) > maxFuzzMessage || !utf8.ValidString(m) {
			t.Errorf("message of %d bytes (bound %d): %.300q; %s", len(m), maxFuzzMessage, m, desc)
		}
		var info *errdetails.ErrorInfo
		for _, a := range st.GetDetails() {
			d, err := a.UnmarshalNew()
			if err != nil {
				t.Fatalf("detail %s: %v", a.GetTypeUrl(), err)
			}
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				info = d
			case *errdetails.BadRequest:
				if len(d.GetFieldViolations()) > 20 {
					t.Errorf("%d field violations: %s", len(d.GetFieldViolations()), desc)
				}
				for _, v := range d.GetFieldViolations() {
					if v.GetField() == "" || len(v.GetField()) > 128 || len(v.GetDescription()) > maxFuzzDescription {
						t.Errorf("violation %.100q of %d bytes: %.300q; %s", v.GetField(), len(v.GetDescription()), v.GetDescription(), desc)
					}
				}
			}
		}
		if info == nil || info.GetDomain() != "backupd" || !upperSnake.MatchString(info.GetReason()) {
			t.Errorf("ErrorInfo %v: %s", info, desc)
		}
	})
}

// checkLogLines: the request's line, and only one, each line JSON and
// of bounded length.
func checkLogLines(t *testing.T, fh *fuzzHandler, desc string) {
	t.Helper()
	text := fh.logs.String()
	requests := 0
	for line := range strings.Lines(text) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON (%v): %.300q", err, line)
			continue
		}
		if len(line) > maxFuzzLogLine {
			t.Errorf("log line of %d bytes: %.300q; %s", len(line), line, desc)
		}
		if m["msg"] == "request" {
			requests++
		} else {
			t.Errorf("unexpected log line %.500q; %s", line, desc)
		}
	}
	if requests != 1 {
		t.Errorf("%d request lines, want 1: %s\n%s", requests, desc, text)
	}
}

var (
	createPath = regexp.MustCompile(`^/v1/accounts/([^/]+)/tables/([^/]+)/backups$`)
	listPath   = regexp.MustCompile(`^/v1/accounts/([^/]+)/backups$`)
	backupPath = regexp.MustCompile(`^/v1/backups/([^/]*)$`)
)

// checkPathReachedService: the service got the path's values, unescaped,
// whatever the body said.
func checkPathReachedService(t *testing.T, escaped string, called any, desc string) {
	t.Helper()
	seg := func(s string) string {
		u, err := url.PathUnescape(s)
		if err != nil {
			t.Fatalf("a route matched the path %q, which does not unescape: %v; %s", escaped, err, desc)
		}
		return u
	}
	switch req := called.(type) {
	case *backupv1.CreateBackupRequest:
		m := createPath.FindStringSubmatch(escaped)
		if m == nil || req.GetAccountId() != seg(m[1]) || req.GetTableName() != seg(m[2]) {
			t.Errorf("CreateBackup got %v from path %q; %s", req, escaped, desc)
		}
	case *backupv1.ListBackupsRequest:
		m := listPath.FindStringSubmatch(escaped)
		if m == nil || req.GetAccountId() != seg(m[1]) {
			t.Errorf("ListBackups got %v from path %q; %s", req, escaped, desc)
		}
	case interface{ GetBackupArn() string }:
		m := backupPath.FindStringSubmatch(escaped)
		if m == nil {
			t.Errorf("%T from path %q; %s", req, escaped, desc)
			return
		}
		want := m[1]
		if _, ok := req.(*backupv1.RestoreTableFromBackupRequest); ok {
			var cut bool
			if want, cut = strings.CutSuffix(want, ":restore"); !cut {
				t.Errorf("restore from path %q; %s", escaped, desc)
			}
		}
		if got := req.GetBackupArn(); got != seg(want) {
			t.Errorf("%T got backup_arn %q from path %q; %s", req, got, escaped, desc)
		}
	}
	if m, ok := called.(proto.Message); ok {
		if _, err := proto.Marshal(m); err != nil {
			t.Errorf("the service got a request gRPC could not carry (%v): %v; %s", err, m, desc)
		}
	}
}

// FuzzQueryParser: ListBackups' query parser never panics, never
// changes the caller's values, and refuses with violations that name a
// field of the request or (shortened) the unknown key, in bounded valid
// UTF-8; what it takes sets no path field.
func FuzzQueryParser(f *testing.F) {
	for _, q := range []string{
		"", "region=us-west-2&tableName=Orders&backupType=BACKUP_TYPE_FILTER_ALL&timeRangeLowerBound=2026-01-02T15:04:05Z&pageSize=7&pageToken=abc",
		"pageSize=1&page_size=2", "accountId=1", "timeRangeLowerBound=2026-01-02T15:04:05.353798%2B0000&time_range_upper_bound=2026-01-02T17:04:05-0200",
		"time_range_lower_bound.seconds=5", "timeRangeLowerBound=2026-01-02T15:04:05Z&pageSize=5", "timeRangeUpperBound.nanos=-1&timeRangeUpperBound.seconds=1", "backupType=4", "backupType=99",
		"%zz=1", strings.Repeat("k", 100) + "=1", "pageSize=" + strings.Repeat("9", 100), "tableName=%FF%FE", "a.b.c=1&=&&",
	} {
		f.Add(q)
	}
	filter := utilities.NewDoubleArray([][]string{{"account_id"}})
	md := (&backupv1.ListBackupsRequest{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, rawQuery string) {
		values, _ := url.ParseQuery(rawQuery)
		before := fmt.Sprint(values)
		msg := &backupv1.ListBackupsRequest{}
		err := (&queryParser{}).Parse(msg, values, filter)
		if fmt.Sprint(values) != before {
			t.Errorf("Parse changed the caller's values: %s -> %v", before, values)
		}
		for range 3 { // the same query, the same request
			again := &backupv1.ListBackupsRequest{}
			err2 := (&queryParser{}).Parse(again, values, filter)
			if (err == nil) != (err2 == nil) || err == nil && !proto.Equal(msg, again) {
				t.Fatalf("query %q parsed as %v (%v), then as %v (%v)", rawQuery, msg, err, again, err2)
			}
		}
		if ia, ok := errors.AsType[*badrequest.Error](err); ok {
			for _, v := range ia.Violations {
				fd, name := lookupField(md, v.Field)
				known := fd != nil && name == v.Field
				_, given := values[v.Field]
				shortened := strings.HasSuffix(v.Field, "...") || v.Field == `""`
				for k := range values {
					shortened = shortened || v.Field == redact.Cut(k, maxKeyEcho) || // invalid UTF-8 replaced
						v.Field == keyName(k) // quoted, as it reads as a field's path
				}
				if !known && !given && !shortened {
					t.Errorf("violation names %q, neither a field nor a key given; %q", v.Field, rawQuery)
				}
				if len(v.Description) > maxFuzzDescription || !utf8.ValidString(v.Description) || !utf8.ValidString(v.Field) {
					t.Errorf("description of %d bytes: %.300q", len(v.Description), v.Description)
				}
			}
			return
		}
		if err != nil {
			if len(err.Error()) > maxFuzzMessage {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if msg.GetAccountId() != "" {
			t.Errorf("query %q set the path's account_id to %q", rawQuery, msg.GetAccountId())
		}
		for k := range values {
			if fd, _ := lookupField(md, k); fd == nil {
				t.Errorf("unknown key %q taken: %q", k, rawQuery)
			}
		}
	})
}

// FuzzBodyViolations: for any body of the two routes that take one, the
// strict decoder never panics; when protojson refuses the body, the
// violations found name a field (or a shortened unknown key) in bounded
// valid UTF-8; a body it takes contradicting the path is reported.
func FuzzBodyViolations(f *testing.F) {
	for _, b := range []string{
		`{"backupName":"nightly"}`, `{"backupName":"x","backup_name":"y"}`, `{"nope":1,"requestId":5}`,
		`{"targetTableName":"Copy","provisionedThroughputOverride":{"readCapacityUnits":"x"},"globalSecondaryIndexOverride":{"indexes":[1,{"z":2}]}}`,
		`{"accountId":"222222222222","backupName":"n"}`, `{} {}`, `[]`, `{"backupName":"\ud800"}`, "{\"\xff\":1}", `{"sseSpecificationOverride":{"sseType":"SSE_TYPE_KMS","kmsMasterKeyId":7}}`,
	} {
		f.Add([]byte(b), false)
		f.Add([]byte(b), true)
	}
	createMD := (&backupv1.CreateBackupRequest{}).ProtoReflect().Descriptor()
	restoreMD := (&backupv1.RestoreTableFromBackupRequest{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, data []byte, restore bool) {
		var msg proto.Message = &backupv1.CreateBackupRequest{}
		params := map[string]string{"account_id": "111111111111", "table_name": "Orders"}
		md := createMD
		if restore {
			msg, md = &backupv1.RestoreTableFromBackupRequest{}, restoreMD
			params = map[string]string{"backup_arn": "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"}
		}
		call := &restCall{params: params}
		dec := newStrictJSON().NewDecoder(&limitedBody{ReadCloser: io.NopCloser(bytes.NewReader(data)), call: call})
		err := dec.Decode(msg)
		var refused []badrequest.Violation
		if rb := call.refusedBody; rb != nil {
			refused = bodyViolations(rb.msg.ProtoReflect().Descriptor(), rb.data, call.params)
		}
		for _, v := range append(refused, call.pathConflicts...) {
			if v.Field == "" || len(v.Description) > maxFuzzDescription || !utf8.ValidString(v.Description) || !utf8.ValidString(v.Field) {
				t.Errorf("violation %q of %d bytes: %.300q", v.Field, len(v.Description), v.Description)
			}
			if !strings.HasPrefix(v.Description, v.Field+" ") {
				t.Errorf("description %q does not start with %q", v.Description, v.Field)
			}
			if !bodyFieldPath(md, v.Field) && !strings.HasSuffix(v.Field, "...") {
				named := false // an unknown key, as the violation names it after its object's path
				for k := range unknownKeys(data) {
					named = named || strings.HasSuffix(v.Field, keyName(k)) // quoted as the violation quotes it
				}
				if !named {
					t.Errorf("violation names %q, neither a field nor a key of the body %q", v.Field, data)
				}
			}
		}
		if err == nil {
			for p, want := range params {
				fd := md.Fields().ByName(protoreflect.Name(p))
				m := msg.ProtoReflect()
				if m.Has(fd) && m.Get(fd).String() != want && len(call.pathConflicts) == 0 {
					t.Errorf("body sets %s to %q against the path's %q, unreported", p, m.Get(fd).String(), want)
				}
			}
		}
	})
}

// bodyFieldPath reports whether a violation's field ("a.b[1].c") names
// fields of md by proto name.
func bodyFieldPath(md protoreflect.MessageDescriptor, p string) bool {
	for part := range strings.SplitSeq(p, ".") {
		if i := strings.IndexByte(part, '['); i >= 0 {
			part = part[:i]
		}
		if md == nil {
			return false
		}
		fd := md.Fields().ByName(protoreflect.Name(part))
		if fd == nil {
			return false
		}
		md = fd.Message()
	}
	return true
}

// unknownKeys collects every object key anywhere in a JSON document.
func unknownKeys(data []byte) map[string]bool {
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				keys[k] = true
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var v any
	_ = json.Unmarshal(data, &v)
	walk(v)
	return keys
}

// FuzzPathHelpers: cleanPath is idempotent, rooted and clean;
// validTimeout is gRPC's timeout grammar, zero refused; endsInVerb and escapeHint never
// panic; echo and Quote are bounded and valid UTF-8; metadataSafe leaves
// only printable ASCII in what the gateway forwards, as many
// Authorization values as came.
func FuzzPathHelpers(f *testing.F) {
	for _, s := range []string{"", "/", "//a", "/a/./b/../c/", "a", "/v1/backups/x:restore", "/v1/backups/a%2Fb:", "/v1/accounts/1/tables/arn%3Aaws/x/y",
		"5S", "123456789H", "0n", "\xff\xfe", "é", "Bearer caf\xc3\xa9"} {
		f.Add(s, uint8(64))
	}
	timeoutRe := regexp.MustCompile(`^[0-9]{1,8}[HMSmun]$`)
	f.Fuzz(func(t *testing.T, s string, n uint8) {
		c := cleanPath(s)
		if cleanPath(c) != c || !strings.HasPrefix(c, "/") || strings.Contains(c, "//") {
			t.Errorf("cleanPath(%q) = %q, cleanPath of that = %q", s, c, cleanPath(c))
		}
		if trimmed := strings.TrimSuffix(c, "/"); trimmed != "" && path.Clean(trimmed) != trimmed {
			t.Errorf("cleanPath(%q) = %q, not clean", s, c)
		}
		if validTimeout(s) != (timeoutRe.MatchString(s) && strings.Trim(s[:len(s)-1], "0") != "") {
			t.Errorf("validTimeout(%q) = %v", s, validTimeout(s))
		}
		_ = escapeHint(s)
		seg := s[strings.LastIndexByte(s, '/')+1:]
		if want := regexp.MustCompile(`:[A-Za-z0-9_]+$`).MatchString(seg); endsInVerb(s) != want {
			t.Errorf("endsInVerb(%q) = %v", s, endsInVerb(s))
		}
		e := redact.Cut(s, int(n))
		if !utf8.ValidString(e) || len(e) > int(n)+3+len(s) || len(s) > int(n) && len(e) > 3*int(n)+3 {
			t.Errorf("redact.Cut(%q, %d) = %q", s, n, e)
		}
		if q := badrequest.Quote(s); !utf8.ValidString(q) || len(q) > 4*64+40 {
			t.Errorf("Quote(%q) = %q (%d bytes)", s, q, len(q))
		}
		h := http.Header{}
		h.Add("Authorization", s)
		h.Add("Authorization", "Bearer ok")
		h.Add("X-Request-Id", s)
		metadataSafe(h)
		if vs := h.Values("Authorization"); len(vs) != 2 || !callers.PrintableASCII(vs[0]) {
			t.Errorf("metadataSafe left Authorization %q", vs)
		}
		for _, v := range h.Values("X-Request-Id") {
			if !callers.PrintableASCII(v) {
				t.Errorf("metadataSafe left X-Request-Id %q", v)
			}
		}
	})
}
