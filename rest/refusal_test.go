package rest

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// TestRESTRefusals shows the REST requests that grpc-gateway would take in
// its own way refused with the shape of every other error: an ErrorInfo
// that names the path's account and, where a field is to blame, a field
// violation naming it; and the service never called.
func TestRESTRefusals(t *testing.T) {
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	const create = "/v1/accounts/111111111111/tables/Orders/backups"
	restore := "/v1/backups/" + escaped + ":restore"
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		chunked                  bool // send the body without a length
		status                   int
		reason                   string
		account                  string // the ErrorInfo's account_id; "" for none
		fields                   []string
		rules                    []string // each description after its field: its start, or all of it when ending in $
		msgHas                   string   // in the message, when set
	}{
		{name: "unknown body field", method: "POST", path: create, body: `{"backupName":"nightly","bogus":1}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"bogus"}, rules: []string{"is not a field of the request body; it takes region, backupName, requestId"}},
		// gRPC refuses a string that is not UTF-8 as malformed; so does REST.
		{name: "a path value not UTF-8", method: "GET", path: "/v1/backups/%80",
			status: 400, reason: "INVALID_ARGUMENT",
			fields: []string{"backup_arn"}, rules: []string{`must be UTF-8 text once unescaped; got "\x80"`}},
		{name: "a query value not UTF-8", method: "GET", path: "/v1/accounts/111111111111/backups?tableName=%80",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"table_name"}, rules: []string{`must be UTF-8 text once unescaped; got "\x80"`}},
		// Named once, as the field's other violations name it, whatever
		// the parameter's spelling: not also as "tableName".
		{name: "a query value not UTF-8 beside another bad parameter", method: "GET", path: "/v1/accounts/111111111111/backups?tableName=%80&pageSize=abc",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"page_size", "table_name"}, rules: []string{`must be an integer; got "abc"`, "must be"}},
		{name: "a query value not UTF-8 beside an unknown parameter", method: "GET", path: "/v1/accounts/111111111111/backups?table_name=%80&colour=red",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"colour", "table_name"}, rules: []string{"is not a query parameter of this route", "must be"}},
		// A key not UTF-8 is named with its bytes escaped, not as U+FFFD.
		{name: "a query key not UTF-8", method: "GET", path: "/v1/accounts/111111111111/backups?%80=x",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{`"\x80"`}, rules: []string{`is not a query parameter of this route; it takes region`}},
		{name: "a query key not UTF-8 on a route that takes none", method: "DELETE", path: "/v1/backups/" + escaped + "?%80=1",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{`"\x80"`}, rules: []string{"is not a query parameter of this route; it takes none"}},
		// Refused once, as a parameter the route does not take.
		{name: "a query value not UTF-8 on a route that takes none", method: "DELETE", path: "/v1/backups/" + escaped + "?force=%80",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"force"}, rules: []string{"is not a query parameter of this route; it takes none"}},
		{name: "empty body key", method: "POST", path: create, body: `{"backupName":"nightly","":1}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{`""`}, rules: []string{"is not a field of the request body; it takes region, backupName, requestId"}},
		{name: "wrong type", method: "POST", path: create, body: `{"backupName":123}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"backup_name"}, rules: []string{`must be a string; got 123`}},
		{name: "one field in two spellings", method: "POST", path: create, body: `{"backupName":"a-b-c","backup_name":"a-b-c"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"backup_name"}, rules: []string{"is given twice, as backupName and backup_name"}},
		{name: "null in a list of objects", method: "POST", path: restore, body: `{"targetTableName":"Copy","globalSecondaryIndexOverride":{"indexes":[null]}}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"global_secondary_index_override.indexes[0]"}, rules: []string{"must be an object; got null"}},
		{name: "a path field in the body spelled with escapes", method: "POST", path: create, body: `{"backupName":"nightly","account\u0049d":"222222222222"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"account_id"}, rules: []string{`is "111111111111" in the path but "222222222222" in the body`}},
		{name: "nested wrong type and unknown field in a list", method: "POST", path: restore,
			body: `{"targetTableName":"Copy","provisionedThroughputOverride":{"readCapacityUnits":"x","writeCapacityUnits":5},"globalSecondaryIndexOverride":{"indexes":[` +
				`{"indexName":"ByA","keySchema":[{"attributeName":"a","keyType":"KEY_TYPE_HASH"}],"projection":{"projectionType":"PROJECTION_TYPE_ALL"}},` +
				`{"indexName":"ByB","keySchema":[{"attributeName":"b","keyType":"KEY_TYPE_HASH"}],"projection":{"projectionType":"PROJECTION_TYPE_ALL"},"colour":"red"}]}}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"global_secondary_index_override.indexes[1].colour", "provisioned_throughput_override.read_capacity_units"},
			rules:  []string{"is not a field of global_secondary_index_override.indexes[1]", `must be an integer; got "x"`}},
		{name: "an integer out of its field's range, as a number and as a string", method: "POST", path: restore,
			body:   `{"targetTableName":"Copy","provisionedThroughputOverride":{"readCapacityUnits":99999999999999999999,"writeCapacityUnits":"-99999999999999999999"}}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"provisioned_throughput_override.read_capacity_units", "provisioned_throughput_override.write_capacity_units"},
			rules:  []string{"is out of range for a 64-bit integer; got 99999999999999999999", `is out of range for a 64-bit integer; got "-99999999999999999999"`}},
		{name: "whole numbers out of range with an exponent, and a fraction", method: "POST", path: restore,
			body:   `{"targetTableName":"Copy","provisionedThroughputOverride":{"readCapacityUnits":1e20,"writeCapacityUnits":"1.5"}}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"provisioned_throughput_override.read_capacity_units", "provisioned_throughput_override.write_capacity_units"},
			rules:  []string{"is out of range for a 64-bit integer; got 1e20", `must be an integer; got "1.5"`}},
		{name: "malformed JSON", method: "POST", path: create, body: `{"backupName":`,
			status: 400, reason: "MALFORMED_REQUEST", account: "111111111111"},
		{name: "compressed body", method: "POST", path: create, body: "\x1f\x8b\x08\x00\x00\x00\x00\x00", header: http.Header{"Content-Encoding": {"gzip"}},
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"Content-Encoding"}, rules: []string{`header is not taken: send the body uncompressed, without it; got "gzip"`}},
		// Refused whatever the body holds: it says it is other than it is.
		{name: "plain body said to be compressed", method: "POST", path: restore, body: `{"targetTableName":"Copy"}`, header: http.Header{"Content-Encoding": {"identity, br"}},
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"Content-Encoding"}, rules: []string{`header is not taken: send the body uncompressed, without it; got "identity, br"`}},
		{name: "body too large", method: "POST", path: create, body: `{"backupName":"` + strings.Repeat("x", MaxBodyBytes) + `"}`,
			status: 413, reason: "BODY_TOO_LARGE", account: "111111111111"},
		{name: "bad deadline header", method: "POST", path: create, body: `{"backupName":"nightly"}`, header: http.Header{"Grpc-Timeout": {"5s"}},
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"Grpc-Timeout"}, rules: []string{`header must be given once, as 1-8 digits, not all 0, and a unit, H M S m u or n (5S is five seconds); got "5s"`}},
		// grpc-gateway would take it for no deadline at all.
		{name: "zero deadline header", method: "POST", path: create, body: `{"backupName":"nightly"}`, header: http.Header{"Grpc-Timeout": {"000S"}},
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"Grpc-Timeout"}, rules: []string{`header must be given once, as 1-8 digits, not all 0, and a unit, H M S m u or n (5S is five seconds); got "000S"`}},
		// grpc-gateway would read only the first.
		{name: "deadline header given twice", method: "POST", path: create, body: `{"backupName":"nightly"}`, header: http.Header{"Grpc-Timeout": {"5S", "xx"}},
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"Grpc-Timeout"}, rules: []string{`header must be given once, as 1-8 digits, not all 0, and a unit, H M S m u or n (5S is five seconds); got "5S, xx"`}},
		{name: "query on create", method: "POST", path: create + "?region=eu-west-1", body: `{"backupName":"nightly"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"region"}, rules: []string{"is not a query parameter of this route; it takes none"}},
		{name: "query on delete", method: "DELETE", path: "/v1/backups/" + escaped + "?force=1",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"force"}, rules: []string{"is not a query parameter of this route"}},
		{name: "body names another account and table", method: "POST", path: create,
			body:   `{"backupName":"nightly","accountId":"222222222222","table_name":"Customers"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"account_id", "table_name"},
			rules:  []string{`is "111111111111" in the path but "222222222222" in the body`, `is "Orders" in the path but "Customers" in the body`}},
		{name: "restore body names another backup", method: "POST", path: restore,
			body:   `{"targetTableName":"Copy","backupArn":"arn:aws:dynamodb:us-east-1:222222222222:table/Orders/backup/01700000000000-abcdef12"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"backup_arn"}, rules: []string{"is " + `"` + arn + `" in the path but`}},
		{name: "a body on delete", method: "DELETE", path: "/v1/backups/" + escaped, body: `{"backupArn":"x"}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"body"}, rules: []string{"is not taken by this route"}},
		{name: "a chunked body on get", method: "GET", path: "/v1/backups/" + escaped, body: `{"backupArn":"x"}`, chunked: true,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"body"}, rules: []string{"is not taken by this route"}},
		{name: "a query parameter without a name", method: "GET", path: "/v1/accounts/111111111111/backups?=x",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{`""`}, rules: []string{"is not a query parameter of this route"}},
		{name: "a timestamp whose + became a space", method: "GET", path: "/v1/accounts/111111111111/backups?timeRangeLowerBound=2026-01-02T15:04:05+01:00",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"time_range_lower_bound"}, rules: []string{"must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z; got \"2026-01-02T15:04:05 01:00\" (a + in a URL query reads as a space: send it as %2B)"}},
		{name: "a timestamp with a trailing space: no word of a +", method: "GET", path: "/v1/accounts/111111111111/backups?timeRangeLowerBound=2026-01-02T15:04:05Z%20",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"time_range_lower_bound"}, rules: []string{"must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z; got \"2026-01-02T15:04:05Z \"$"}},
		{name: "invalid UTF-8 in a value", method: "POST", path: create, body: "{\"backupName\":\"\xff\xfe\"}",
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{"backup_name"}, rules: []string{"must be valid UTF-8"}},
		{name: "a long unknown key of many-byte characters", method: "POST", path: create, body: `{"backupName":"abc","` + strings.Repeat("€", 30) + `":1}`,
			status: 400, reason: "INVALID_ARGUMENT", account: "111111111111",
			fields: []string{strings.Repeat("€", 21) + "..."}, rules: []string{"is not a field of the request body"}},
		{name: "an account that is not one", method: "POST", path: "/v1/accounts/%ff%fe/tables/Orders/backups", body: `{"backupName":`,
			status: 400, reason: "MALFORMED_REQUEST", account: ""},
		{name: "form POST does not become GET", method: "POST", path: "/v1/backups/" + escaped, body: "x=1",
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			status: 405, reason: "METHOD_NOT_ALLOWED", account: "111111111111"},
		{name: "method override does not become DELETE", method: "POST", path: "/v1/backups/" + escaped, body: "x=1",
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Http-Method-Override": {"DELETE"}},
			status: 405, reason: "METHOD_NOT_ALLOWED", account: "111111111111"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body)
			}
			req, err := http.NewRequest(tt.method, f.http.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, st := sendForStatus(t, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %+v", resp.StatusCode, tt.status, st)
			}
			if last := f.stub.Called(); last != nil {
				t.Errorf("the service was called with %v", last)
			}
			if len(st.Details) == 0 || st.Details[0].Reason != tt.reason || st.Details[0].Metadata["account_id"] != tt.account {
				t.Fatalf("details %+v, want reason %s and account_id %q", st.Details, tt.reason, tt.account)
			}
			if !strings.Contains(st.Message, tt.msgHas) {
				t.Errorf("message %q, want it to say %q", st.Message, tt.msgHas)
			}
			if len(tt.fields) == 0 {
				if len(st.Details) != 1 {
					t.Errorf("details %+v, want only the ErrorInfo", st.Details)
				}
				return
			}
			if len(st.Details) != 2 || len(st.Details[1].FieldViolations) != len(tt.fields) {
				t.Fatalf("details %+v, want violations of %v", st.Details, tt.fields)
			}
			for i, v := range st.Details[1].FieldViolations {
				rule, whole := strings.CutSuffix(tt.rules[i], "$")
				if v.Field != tt.fields[i] || !strings.HasPrefix(v.Description, v.Field+" "+rule) || whole && v.Description != v.Field+" "+rule {
					t.Errorf("violation %d = %+v, want field %s: %s", i, v, tt.fields[i], tt.rules[i])
				}
			}
		})
	}
}

// TestRESTBodiesTaken shows bodies that are taken: one naming the same
// account and table as the path, as a client that sends the whole request
// message does (escaped or not), and one of only white space, which is an
// empty request.
func TestRESTBodiesTaken(t *testing.T) {
	for _, body := range []string{
		`{"backupName":"nightly","accountId":"111111111111","tableName":"Orders"}`,
		`{"backupName":"nightly","account_id":"111111111111","table\u004eame":"Orders"}`,
		"\n \t",
	} {
		f := newFixture(t)
		// An empty query is no query.
		resp, got := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups?&", strings.NewReader(body))
		if resp.StatusCode != 200 {
			t.Errorf("body %q: %d %s", body, resp.StatusCode, got)
		}
	}
	// A body said to be identity-encoded is a plain body.
	f := newFixture(t)
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"nightly"}`))
	req.Header.Set("Content-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("Content-Encoding identity: %d, want 200", resp.StatusCode)
	}
}

// TestMethodNotAllowedSaysWhich shows a route's wrong method answered 405
// with the Allow header naming the methods the path takes.
func TestMethodNotAllowedSaysWhich(t *testing.T) {
	f := newFixture(t)
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	tests := []struct{ method, path, allow string }{
		{"GET", "/v1/accounts/111111111111/tables/Orders/backups", "POST"},
		{"DELETE", "/v1/accounts/111111111111/backups", "GET"},
		{"POST", "/v1/backups/" + escaped, "GET, DELETE"},
	}
	for _, tt := range tests {
		resp, body := f.do(t, tt.method, tt.path, strings.NewReader(`{}`))
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405 and %q: %s", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.allow, body)
		}
	}
	if resp, body := f.do(t, "GET", "/v2/nothing", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v2/nothing: %d %s", resp.StatusCode, body)
	}
	if last := f.stub.Called(); last != nil {
		t.Errorf("a probe reached the service: %v", last)
	}
	// Logged and counted once each, under "unknown".
	counted := f.observed.Counted()
	want := []string{"unknown Unimplemented", "unknown Unimplemented", "unknown Unimplemented", "unknown NotFound"}
	if !slices.Equal(counted, want) {
		t.Errorf("counted %q, want %q", counted, want)
	}
	f.observed.Mu.Lock()
	reasons := slices.Clone(f.observed.Reasons)
	f.observed.Mu.Unlock()
	if want := []string{"METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED", "ROUTE_NOT_FOUND"}; !slices.Equal(reasons, want) {
		t.Errorf("counted reasons %q, want %q", reasons, want)
	}
	logs := f.logs.String()
	for _, line := range []string{`"route":"DELETE /v1/accounts/111111111111/backups","caller":"rest:127.0.0.1","account":"111111111111"`, `"route":"GET /v2/nothing"`} {
		if !strings.Contains(logs, line) {
			t.Errorf("log lacks %s:\n%s", line, logs)
		}
	}
}

// TestVerbPathTakesOnlyItsMethod: …{backup_arn}:restore is the restore's
// path, though GET and DELETE /v1/backups/{backup_arn} match it too with
// an ARN ending in ":restore": its other methods are 405 with Allow: POST
// and the service is not called. An escaped colon is part of the ARN, so
// the service judges it (INVALID_ARGUMENT for backup_arn), and POST with it
// is GET and DELETE's wrong method.
func TestVerbPathTakesOnlyItsMethod(t *testing.T) {
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	tests := []struct {
		name, method, path string
		status             int
		allow              string
		message            string // a part of the message
		reached            string // the backup_arn the service got; "" for none
	}{
		{"GET restore", "GET", "/v1/backups/" + escaped + ":restore", 405, "POST",
			"it takes POST; a restore is POST …{backup_arn}:restore, and GET and DELETE take …{backup_arn} without :restore", ""},
		{"DELETE restore", "DELETE", "/v1/backups/" + escaped + ":restore", 405, "POST", "method DELETE is not allowed", ""},
		{"PUT restore", "PUT", "/v1/backups/" + escaped + ":restore", 405, "POST", "a restore is POST", ""},
		{"POST escaped restore", "POST", "/v1/backups/" + escaped + "%3Arestore", 405, "GET, DELETE", "with the colon before restore unescaped", ""},
		{"GET escaped restore", "GET", "/v1/backups/" + escaped + "%3Arestore", 200, "", "", arn + ":restore"},
		{"GET another verb", "GET", "/v1/backups/" + escaped + ":other", 200, "", "", arn + ":other"},
		{"DELETE", "DELETE", "/v1/backups/" + escaped, 200, "", "", arn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			resp, body := f.do(t, tt.method, tt.path, nil)
			if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("%d, Allow %q; want %d and %q: %s", resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow, body)
			}
			var reached string
			if last, ok := f.stub.Called().(interface{ GetBackupArn() string }); ok {
				reached = last.GetBackupArn()
			}
			if reached != tt.reached {
				t.Errorf("service got backup_arn %q, want %q", reached, tt.reached)
			}
			if tt.status != 405 {
				return
			}
			var st restStatus
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("body is not a status: %v %s", err, body)
			}
			if !strings.Contains(st.Message, tt.message) || len(st.Details) != 1 || st.Details[0].Reason != "METHOD_NOT_ALLOWED" ||
				st.Details[0].Metadata["account_id"] != "111111111111" {
				t.Errorf("body %s; want reason METHOD_NOT_ALLOWED, account_id 111111111111 and a message with %q", body, tt.message)
			}
			if counted := f.observed.Counted(); !slices.Equal(counted, []string{"unknown Unimplemented"}) {
				t.Errorf("counted %q, want once under unknown", counted)
			}
		})
	}
}

// TestNothingBeforeTheVerb: /v1/backups/:restore is the restore's path
// with an empty backup_arn (a script whose $ARN came out empty): POST is
// the restore with backup_arn empty, its caller checked first as over
// gRPC, then told backup_arn is required; GET and DELETE are told that the
// path is the restore's. Not POST told that the path takes only GET and
// DELETE, nor GET and DELETE handing the service the ARN ":restore".
func TestNothingBeforeTheVerb(t *testing.T) {
	restore := backupv1.BackupService_RestoreTableFromBackup_FullMethodName
	tests := []struct {
		name, method, token string
		status              int
		allow               string
		message             string
		counted             string
	}{
		{"POST", "POST", "", 400, "", "backup_arn is required: it goes in the path, before :restore", restore + " InvalidArgument"},
		{"GET", "GET", "", 405, "POST", "it takes POST; a restore is POST", "unknown Unimplemented"},
		{"DELETE", "DELETE", "", 405, "POST", "it takes POST; a restore is POST", "unknown Unimplemented"},
		{"POST, callers configured, no token", "POST", "-", 401, "", "", restore + " Unauthenticated"},
		{"POST, a caller of one account", "POST", "one-account", 403, "", "", restore + " PermissionDenied"},
		{"POST, a caller of every account", "POST", "any-account", 400, "", "backup_arn is required", restore + " InvalidArgument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureWith(t, func(o *Options) {
				if tt.token != "" {
					o.Authorizer = callers.New([]config.Caller{
						{Name: "one", TokenSHA256: callers.HashToken("one-account"), Accounts: []string{"111111111111"},
							Operations: []string{"RestoreTableFromBackup"}},
						{Name: "any", TokenSHA256: callers.HashToken("any-account"), Accounts: []string{config.Any}, Operations: []string{"RestoreTableFromBackup"}},
					})
				}
			})
			req, err := http.NewRequest(tt.method, f.http.URL+"/v1/backups/:restore", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" && tt.token != "-" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			req.Header.Set("X-Request-Id", "corr-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("%d, Allow %q; want %d and %q: %s", resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow, body)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
			if called := f.stub.Called(); called != nil {
				t.Errorf("the service was called with %v", called)
			}
			var st restStatus
			if err := json.Unmarshal(body, &st); err != nil || !strings.Contains(st.Message, tt.message) {
				t.Fatalf("body %s (%v); want a message with %q", body, err, tt.message)
			}
			if tt.status == 400 && (len(st.Details) != 2 || len(st.Details[1].FieldViolations) != 1 || st.Details[1].FieldViolations[0].Field != "backup_arn") {
				t.Errorf("body %s; want one field violation, of backup_arn", body)
			}
			if counted := f.observed.Counted(); !slices.Equal(counted, []string{tt.counted}) {
				t.Errorf("counted %q, want %q", counted, tt.counted)
			}
			if lines := f.logs.Lines(`"x_request_id":"corr-1"`); len(lines) != 1 {
				t.Errorf("want the request's line with its X-Request-Id; log:\n%s", f.logs.String())
			}
		})
	}
}

// TestEmptyPathVariables: a path whose variable is an empty segment
// (a script whose $TABLE came out empty) is the route's RPC with that
// field empty: its caller checked first, as over gRPC, then told which
// fields are required; not a path no route takes. So is one whose
// variable is a dot segment (. or .., sent as is by a client that does
// not remove them), with that value, which its field's rule refuses.
func TestEmptyPathVariables(t *testing.T) {
	create, list := backupv1.BackupService_CreateBackup_FullMethodName, backupv1.BackupService_ListBackups_FullMethodName
	tests := []struct {
		name, method, path, token string
		status                    int
		fields                    []string
		counted                   string
	}{
		{"empty table", "POST", "/v1/accounts/111111111111/tables//backups", "", 400, []string{"table_name"}, create + " InvalidArgument"},
		{"empty account", "GET", "/v1/accounts//backups", "", 400, []string{"account_id"}, list + " InvalidArgument"},
		{"both empty", "POST", "/v1/accounts//tables//backups", "", 400, []string{"account_id", "table_name"}, create + " InvalidArgument"},
		{"empty table, no token", "POST", "/v1/accounts/111111111111/tables//backups", "-", 401, nil, create + " Unauthenticated"},
		{"empty table, a caller of that account", "POST", "/v1/accounts/111111111111/tables//backups", "one-account", 400, []string{"table_name"}, create + " InvalidArgument"},
		{"empty table, a caller of another account", "POST", "/v1/accounts/222222222222/tables//backups", "one-account", 403, nil, create + " PermissionDenied"},
		{"no route even so", "GET", "/v1//backups", "", 404, nil, "unknown NotFound"},
		{"another method", "DELETE", "/v1/accounts/111111111111/tables//backups", "", 405, nil, "unknown Unimplemented"},
		{"a bad path parameter beside the empty one", "POST", "/v1/accounts/abc/tables//backups", "", 400, []string{"table_name", "account_id"}, create + " InvalidArgument"},
		{"a NUL path parameter is not an empty one", "POST", "/v1/accounts/%00/tables//backups", "", 400, []string{"table_name", "account_id"}, create + " InvalidArgument"},
		{"a table of ..", "POST", "/v1/accounts/111111111111/tables/../backups", "", 400, []string{"table_name"}, create + " InvalidArgument"},
		{"a table of .", "POST", "/v1/accounts/111111111111/tables/./backups", "", 400, []string{"table_name"}, create + " InvalidArgument"},
		{"an account of .. and an empty table", "POST", "/v1/accounts/../tables//backups", "", 400, []string{"table_name", "account_id"}, create + " InvalidArgument"},
		{"a table of .., a caller of another account", "POST", "/v1/accounts/222222222222/tables/../backups", "one-account", 403, nil, create + " PermissionDenied"},
		{"a backup ARN of ..", "GET", "/v1/backups/..", "", 400, []string{"backup_arn"}, backupv1.BackupService_GetBackup_FullMethodName + " InvalidArgument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureWith(t, func(o *Options) {
				if tt.token != "" {
					o.Authorizer = callers.New([]config.Caller{{Name: "one", TokenSHA256: callers.HashToken("one-account"),
						Accounts: []string{"111111111111"}, Operations: []string{config.Any}}})
				}
			})
			req, err := http.NewRequest(tt.method, f.http.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" && tt.token != "-" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, v := range refusedViolations(t, f, resp, tt.status) {
				fields = append(fields, v.Field)
				if strings.Contains(v.Description, "is required") && !strings.Contains(v.Description, "is required: it goes in the path") {
					t.Errorf("violation %q does not say where the field goes", v.Description)
				}
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("field violations of %q; want %q", fields, tt.fields)
			}
			if counted := f.observed.Counted(); !slices.Equal(counted, []string{tt.counted}) {
				t.Errorf("counted %q, want %q", counted, tt.counted)
			}
		})
	}
}

// TestRoutesFollowTheHTTPRules keeps takesBody and routeMethods equal to
// the HTTP rules that grpc-gateway is generated from: the methods whose
// rule has a body, and each rule's method and path.
func TestRoutesFollowTheHTTPRules(t *testing.T) {
	raw, err := os.ReadFile("../proto/backup/v1/backup_service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Every key known, so that a rule of another kind (put, patch,
	// additional_bindings) fails here rather than going unchecked.
	var svc struct {
		Type          string `yaml:"type"`
		ConfigVersion int    `yaml:"config_version"`
		HTTP          struct {
			Rules []struct {
				Selector string `yaml:"selector"`
				Body     string `yaml:"body"`
				Get      string `yaml:"get"`
				Post     string `yaml:"post"`
				Delete   string `yaml:"delete"`
			} `yaml:"rules"`
		} `yaml:"http"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.HTTP.Rules) != len(backupv1.BackupService_ServiceDesc.Methods) {
		t.Fatalf("%d HTTP rules for %d methods", len(svc.HTTP.Rules), len(backupv1.BackupService_ServiceDesc.Methods))
	}
	routes := map[string]string{}
	for _, r := range svc.HTTP.Rules {
		method := "/" + strings.Replace(r.Selector, ".BackupService.", ".BackupService/", 1)
		if takesBody[method] != (r.Body != "") {
			t.Errorf("%s: takesBody %v, but its rule's body is %q", method, takesBody[method], r.Body)
		}
		for verb, path := range map[string]string{"GET": r.Get, "POST": r.Post, "DELETE": r.Delete} {
			if path != "" {
				routes[verb+" "+path] = method
			}
		}
	}
	if !maps.Equal(routes, routeMethods) {
		t.Errorf("routeMethods = %v; the HTTP rules say %v", routeMethods, routes)
	}
}

// TestUnreadableTokenIsNotNoToken: where a request without a token may
// pass (the sandbox), one whose token cannot be gRPC metadata is still
// refused as an unknown token.
func TestUnreadableTokenIsNotNoToken(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.NewAllowingAnonymous([]config.Caller{{Name: "reader", TokenSHA256: strings.Repeat("0", 64),
			Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	})
	for _, auth := range []string{"", "Bearer caf\xc3\xa9", "Bearer\tsomething"} {
		req, err := http.NewRequest("GET", f.http.URL+"/v1/accounts/111111111111/backups", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if auth == "" {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("Authorization %q: %d, want %d", auth, resp.StatusCode, want)
		}
	}
}

// Escaped characters that would make a decoded path unclean (a %2F at a
// segment's end, an escaped "..") stay inside their segment: the segment
// reaches the service as its path parameter, which judges it (400 naming
// the field), as it does "Ord%2Fers". They are neither a missing route nor
// a redirect.
func TestEscapedCharactersStayInTheirSegment(t *testing.T) {
	for _, tt := range []struct {
		method, path string
		field        func(any) string
		want         string
	}{
		{"POST", "/v1/accounts/111111111111/tables/Orders%2F/backups", tableName, "Orders/"},
		{"POST", "/v1/accounts/111111111111/tables/%2FOrders/backups", tableName, "/Orders"},
		{"POST", "/v1/accounts/111111111111/tables/%2E%2E/backups", tableName, ".."},
		{"GET", "/v1/backups/%2Farn", backupARN, "/arn"},
		{"DELETE", "/v1/backups/%2E%2E", backupARN, ".."},
		{"POST", "/v1/backups/x%2F%2Fy:restore", backupARN, "x//y"},
		// Sent as is: Go's client would escape the "|", and net/url keeps
		// no RawPath for it, so EscapedPath gives "%2F" up for "/".
		{"GET", "/v1/backups/%2Fa|", backupARN, "/a|"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			f := newFixture(t)
			var body []byte
			if tt.method == "POST" {
				body = []byte(`{}`)
			}
			r, ok := rawRequest(tt.method, tt.path, nil, body, false)
			if !ok {
				t.Fatal("net/http would not serve the request")
			}
			w := httptest.NewRecorder()
			f.http.Config.Handler.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("%d %s; want the service's answer", w.Code, w.Body)
			}
			if reached := tt.field(f.stub.Called()); reached != tt.want {
				t.Errorf("service got %q, want %q", reached, tt.want)
			}
		})
	}
}

// calledField reads the named string field of the request the service
// got, if it got one.
func calledField(name protoreflect.Name) func(any) string {
	return func(req any) string {
		m, ok := req.(proto.Message)
		if !ok || m == nil {
			return "(not called)"
		}
		r := m.ProtoReflect()
		return r.Get(r.Descriptor().Fields().ByName(name)).String()
	}
}

var (
	tableName = calledField("table_name")
	backupARN = calledField("backup_arn")
)

// TestErrorBodiesLeaveOutEmptyFields: an error's JSON body writes no empty
// field of its details: a field newer than the caller's copy of
// google/rpc (BadRequest's FieldViolation.reason, empty here) would make
// a strict parser (protobuf's json_format with googleapis-common-protos
// before 1.67) refuse the whole body. Responses still write theirs.
func TestErrorBodiesLeaveOutEmptyFields(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"nightly","colour":"red"}`))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"fieldViolations":[{"field":"colour"`) {
		t.Fatalf("%d %s; want 400 with a violation of colour", resp.StatusCode, body)
	}
	for _, empty := range []string{`""`, `{}`, `[]`, `"localizedMessage"`} {
		if strings.Contains(string(body), empty) {
			t.Errorf("the body writes an empty field (%s): %s", empty, body)
		}
	}
	_, body = f.do(t, "GET", "/v1/accounts/111111111111/backups", nil)
	if !strings.Contains(string(body), `"nextPageToken":""`) {
		t.Errorf("a response leaves out an empty field: %s", body)
	}
}

// A path that is not clean ("//", "/./", "/../") where no variable is,
// is a route the API does not have: 404 ROUTE_NOT_FOUND, logged and
// counted, where http.ServeMux would answer an unlogged redirect that a
// client follows with its POST. (A variable of . or .. is the route's:
// TestEmptyPathVariables.)
func TestUncleanPathsAreNotRedirected(t *testing.T) {
	for _, tt := range []struct{ method, path string }{
		{"POST", "//v1/accounts/111111111111/tables/Orders/backups"},
		{"POST", "/v1/./accounts/111111111111/tables/Orders/backups"},
		{"GET", "/./healthz"},
		{"GET", "/v1/accounts/111111111111/../111111111111/backups"},
		{"DELETE", "/v1/backups/%2E/.."},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			f := newFixture(t)
			resp, body := f.do(t, tt.method, tt.path, strings.NewReader(`{"backupName":"unclean"}`))
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"reason":"ROUTE_NOT_FOUND"`) {
				t.Errorf("%d %s; want 404 ROUTE_NOT_FOUND", resp.StatusCode, body)
			}
			if got := f.stub.Called(); got != nil {
				t.Errorf("the service was called with %v", got)
			}
			decoded, _ := url.PathUnescape(tt.path)
			if logs := f.logs.String(); !strings.Contains(logs, `"route":"`+tt.method+" "+decoded+`"`) {
				t.Errorf("not logged:\n%s", logs)
			}
		})
	}
}

// TestBodyOfWrongTypesAndWrongValues: a body or query with a field of the
// wrong type is also told what else is wrong with the request, its path
// included, as a request with only wrong values is: one violation per
// bad field, and a field of the wrong type is not also called missing.
func TestBodyOfWrongTypesAndWrongValues(t *testing.T) {
	const restore = "/v1/backups/arn:aws:dynamodb:us-east-1:111111111111:table%2FOrders%2Fbackup%2F01700000000000-abcdef12:restore"
	tests := []struct {
		name, path, body string
		fields           []string
	}{
		{"wrong type and a rule broken", "/v1/accounts/111111111111/tables/Orders/backups",
			`{"backupName":5,"requestId":"` + strings.Repeat("r", 129) + `"}`, []string{"backup_name", "request_id"}},
		{"wrong type alone", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":5}`, []string{"backup_name"}},
		{"unknown field and a missing one", "/v1/accounts/111111111111/tables/Orders/backups", `{"bogus":1}`, []string{"bogus", "backup_name"}},
		{"wrong type and a bad path", "/v1/accounts/1111/tables/a%20b/backups", `{"backupName":[]}`, []string{"backup_name", "account_id", "table_name"}},
		{"restore: nested wrong type and a bad target", restore,
			`{"targetTableName":"x","sseSpecificationOverride":{"enabled":"yes"}}`, []string{"sse_specification_override.enabled", "target_table_name"}},
		{"restore: an unknown key beside a rule broken in the same override", restore,
			`{"targetTableName":"T1x","sseSpecificationOverride":{"sseType":"SSE_TYPE_KMS","kmsMasterKeyId":"alias/k","bogus":1}}`,
			[]string{"sse_specification_override.bogus", "sse_specification_override.enabled"}},
		{"restore: a wrong type beside a rule broken in the same override", restore,
			`{"targetTableName":"T1x","provisionedThroughputOverride":{"readCapacityUnits":"x","writeCapacityUnits":0}}`,
			[]string{"provisioned_throughput_override.read_capacity_units", "provisioned_throughput_override.write_capacity_units"}},
		{"a wrong type beside a body that contradicts the path", "/v1/accounts/111111111111/tables/Orders/backups",
			`{"backupName":"ok1","accountId":"222222222222","region":5}`, []string{"region", "account_id"}},
		{"a key given twice", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"ok1","backupName":"ok2"}`, []string{"backup_name"}},
		{"a key given twice beside a wrong type", "/v1/accounts/111111111111/tables/Orders/backups",
			`{"backupName":"ok1","backupName":"a","region":5}`, []string{"backup_name", "region"}},
		{"a nested key given twice", restore, `{"targetTableName":"Copy","sseSpecificationOverride":{"enabled":true,"enabled":false}}`,
			[]string{"sse_specification_override.enabled"}},
		{"a key given twice and in its other spelling", "/v1/accounts/111111111111/tables/Orders/backups",
			`{"backupName":"ok1","backupName":"ok2","backup_name":"ok3"}`, []string{"backup_name"}},
		{"an unknown key spelled as a nested field's path", restore,
			`{"targetTableName":"Copy","provisionedThroughputOverride":{"readCapacityUnits":0,"writeCapacityUnits":5},"provisioned_throughput_override.read_capacity_units":1}`,
			[]string{`"provisioned_throughput_override.read_capacity_units"`, "provisioned_throughput_override.read_capacity_units"}},
		{"a query on a route that takes none, beside a wrong type", "/v1/accounts/111111111111/tables/Orders/backups?foo=1",
			`{"backupName":5}`, []string{"backup_name", "foo"}},
		// Refused by the REST checks in the interceptor (restRefusal).
		{"a query on a route that takes none, beside a rule broken", "/v1/accounts/111111111111/tables/Orders/backups?foo=1",
			`{"backupName":"a"}`, []string{"foo", "backup_name"}},
		{"a body that contradicts the path, beside a rule broken", "/v1/accounts/111111111111/tables/Orders/backups",
			`{"backupName":"a","accountId":"222222222222"}`, []string{"account_id", "backup_name"}},
		{"a query on GetBackup, beside a bad ARN", "/v1/backups/not-an-arn?foo=1", "", []string{"foo", "backup_arn"}},
		// A query, its body empty.
		{"query: wrong type and a rule broken", "/v1/accounts/111111111111/backups?pageSize=abc&tableName=a%20b", "", []string{"page_size", "table_name"}},
		{"query: unknown parameter and a bad path", "/v1/accounts/1/backups?bogus=1", "", []string{"bogus", "account_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var resp *http.Response
			var err error
			if tt.body == "" {
				resp, err = http.Get(f.http.URL + tt.path)
			} else {
				resp, err = http.Post(f.http.URL+tt.path, "application/json", strings.NewReader(tt.body))
			}
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, v := range refusedViolations(t, f, resp, http.StatusBadRequest) {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("field violations of %q; want %q", fields, tt.fields)
			}
		})
	}
}

// refusedViolations reads a REST answer that must have status and must not
// have reached the service, and returns the field violations of its body,
// in order.
func refusedViolations(t *testing.T, f *fixture, resp *http.Response, status int) []fieldViolation {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%d; want %d: %s", resp.StatusCode, status, body)
	}
	if called := f.stub.Called(); called != nil {
		t.Errorf("the service was called with %v", called)
	}
	var st restStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	var vs []fieldViolation
	for _, d := range st.Details {
		vs = append(vs, d.FieldViolations...)
	}
	return vs
}

// TestRESTDurationCountsTheBody: a REST request's log line and duration
// metric time it from its arrival, the reading of its body included, as
// for one refused before the interceptor; not from when the gateway
// handed it over.
func TestRESTDurationCountsTheBody(t *testing.T) {
	f := newFixture(t)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"backupName":`))
		time.Sleep(300 * time.Millisecond)
		_, _ = pw.Write([]byte(`"trickled"}`))
		pw.Close()
	}()
	resp, err := http.Post(f.http.URL+"/v1/accounts/111111111111/tables/Orders/backups", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; want 200", resp.StatusCode)
	}
	lines := f.logs.Lines(`"method":"/backup.v1.BackupService/CreateBackup"`)
	if len(lines) != 1 {
		t.Fatalf("want the request's one line; log:\n%s", f.logs.String())
	}
	var line struct{ Duration float64 }
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(line.Duration); d < 300*time.Millisecond {
		t.Errorf("duration %v; want at least the 300 ms the body took", d)
	}
}

// TestPathsDeeperThanAnyRouteAreNotFilled: a path of more segments than
// any route's is not filled in (fillEmpty) for the router to be asked of
// it for each method: no route takes it, and a request of thousands of
// empty segments, each filled, cost 50 ms of CPU before its caller was
// known. The deepest route's path is still filled.
func TestPathsDeeperThanAnyRouteAreNotFilled(t *testing.T) {
	if maxRouteSegments != 6 {
		t.Errorf("maxRouteSegments = %d; want 6, the segments of /v1/accounts/{account_id}/tables/{table_name}/backups", maxRouteSegments)
	}
	if _, _, ok := fillEmpty("/v1/accounts//tables//backups"); !ok {
		t.Error("the deepest route's path, with its variables empty, is not filled")
	}
	for _, p := range []string{"/v1/accounts//tables//backups/", "/v1/backups/" + strings.Repeat("//", 5000) + ":restore"} {
		if _, _, ok := fillEmpty(p); ok {
			t.Errorf("fillEmpty filled %.40q..., of %d segments; want it left, deeper than any route", p, strings.Count(p, "/"))
		}
	}
}
