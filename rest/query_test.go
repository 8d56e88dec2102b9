package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// TestListQuery shows ListBackups' query string over REST: good values
// reach the service, and each bad parameter is refused with a field
// violation that names the field and what it takes, before the service is
// called.
func TestListQuery(t *testing.T) {
	const path = "/v1/accounts/111111111111/backups?"
	tests := []struct {
		name  string
		query string
		want  *backupv1.ListBackupsRequest // nil: refused
		// fields and rules name the violations a refusal must carry, in order.
		fields, rules []string
	}{
		{name: "none", query: "",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111"}},
		{name: "every filter, JSON names", query: "region=us-west-2&tableName=Orders&backupType=BACKUP_TYPE_FILTER_ALL&timeRangeLowerBound=2026-01-02T15:04:05Z&pageSize=7&pageToken=abc",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "us-west-2", TableName: "Orders",
				BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL, TimeRangeLowerBound: ts(t, "2026-01-02T15:04:05Z"),
				PageSize: proto.Int32(7), PageToken: "abc"}},
		{name: "proto names", query: "table_name=Orders&backup_type=BACKUP_TYPE_FILTER_SYSTEM&page_size=3",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders",
				BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_SYSTEM, PageSize: proto.Int32(3)}},
		{name: "enum number", query: "backupType=4",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111", BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL}},
		{name: "the path's account in the query", query: "accountId=222222222222",
			fields: []string{"account_id"}, rules: []string{"comes from the path; leave it out of the query"}},
		{name: "short enum name", query: "backupType=ALL",
			fields: []string{"backup_type"}, rules: []string{"must be one of BACKUP_TYPE_FILTER_USER, BACKUP_TYPE_FILTER_SYSTEM, BACKUP_TYPE_FILTER_AWS_BACKUP, BACKUP_TYPE_FILTER_ALL; got \"ALL\""}},
		{name: "unknown parameter", query: "tablename=Orders",
			fields: []string{"tablename"}, rules: []string{"is not a query parameter of this route; it takes region, tableName, backupType"}},
		{name: "not an integer", query: "pageSize=ten",
			fields: []string{"page_size"}, rules: []string{"must be an integer; got \"ten\""}},
		{name: "digits then more", query: "pageSize=99999999999abc",
			fields: []string{"page_size"}, rules: []string{"must be an integer; got \"99999999999abc\""}},
		{name: "a whole number with a fraction's form, which the query does not take", query: "pageSize=99999999999.0",
			fields: []string{"page_size"}, rules: []string{"must be an integer; got \"99999999999.0\""}},
		{name: "a fraction", query: "pageSize=1.5",
			fields: []string{"page_size"}, rules: []string{"must be an integer; got \"1.5\""}},
		{name: "a negative integer out of the field's range", query: "pageSize=-99999999999",
			fields: []string{"page_size"}, rules: []string{"is out of range for a 32-bit integer; got \"-99999999999\""}},
		{name: "an integer out of the field's range", query: "pageSize=99999999999",
			fields: []string{"page_size"}, rules: []string{"is out of range for a 32-bit integer; got \"99999999999\""}},
		{name: "offsets without a colon, as generated Python clients send them", query: "timeRangeLowerBound=2026-01-02T15:04:05.353798%2B0000&time_range_upper_bound=2026-01-02T17:04:05-0200",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111",
				TimeRangeLowerBound: ts(t, "2026-01-02T15:04:05.353798Z"), TimeRangeUpperBound: ts(t, "2026-01-02T19:04:05Z")}},
		{name: "a colonless offset beside a bad parameter is not blamed", query: "timeRangeLowerBound=2026-01-02T15:04:05%2B0100&pageSize=abc",
			fields: []string{"page_size"}, rules: []string{"must be an integer; got \"abc\""}},
		{name: "a colonless offset elsewhere is left alone", query: "tableName=Orders-0000",
			want: &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders-0000"}},
		{name: "not a timestamp", query: "timeRangeUpperBound=yesterday",
			fields: []string{"time_range_upper_bound"}, rules: []string{"must be an RFC 3339 timestamp"}},
		{name: "given twice", query: "pageSize=1&pageSize=2",
			fields: []string{"page_size"}, rules: []string{"must be given once; got 2 values"}},
		{name: "given in both spellings", query: "pageSize=1&page_size=2",
			fields: []string{"page_size"}, rules: []string{"must be given once; got 2 values, as pageSize and page_size"}},
		{name: "given in both spellings, one twice", query: "page_size=1&pageSize=1&pageSize=2",
			fields: []string{"page_size"}, rules: []string{"must be given once; got 3 values, as pageSize and page_size"}},
		{name: "a timestamp in both spellings", query: "timeRangeLowerBound=2026-01-02T15:04:05Z&time_range_lower_bound=2026-01-02T15:04:05Z",
			fields: []string{"time_range_lower_bound"}, rules: []string{"must be given once; got 2 values, as timeRangeLowerBound and time_range_lower_bound"}},
		// Set from both in map order, the bound would change from one
		// request to the next.
		{name: "a timestamp and a part of it", query: "timeRangeLowerBound=2026-01-02T15:04:05Z&timeRangeLowerBound.seconds=5",
			fields: []string{"time_range_lower_bound.seconds"}, rules: []string{"is a part of time_range_lower_bound, which takes one RFC 3339 timestamp: give it whole, as timeRangeLowerBound"}},
		{name: "a part of a timestamp alone", query: "time_range_upper_bound.nanos=5",
			fields: []string{"time_range_upper_bound.nanos"}, rules: []string{"is a part of time_range_upper_bound"}},
		{name: "the path's account in both spellings", query: "accountId=111111111111&account_id=111111111111",
			fields: []string{"account_id"}, rules: []string{"comes from the path; leave it out of the query"}},
		{name: "a long unknown name is shortened", query: strings.Repeat("k", 100) + "=1",
			fields: []string{strings.Repeat("k", 64) + "..."}, rules: []string{"is not a query parameter"}},
		{name: "a long bad value is shortened", query: "pageSize=" + strings.Repeat("9", 100),
			fields: []string{"page_size"}, rules: []string{`is out of range for a 32-bit integer; got "` + strings.Repeat("9", 64) + `"... (100 bytes)`}},
		{name: "every problem at once", query: "pageSize=x&backupType=NONE&colour=red",
			fields: []string{"backup_type", "colour", "page_size"}, rules: []string{"must be one of", "is not a query parameter", "must be an integer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			resp, body := f.do(t, "GET", path+tt.query, nil)
			f.stub.Mu.Lock()
			last := f.stub.Last
			f.stub.Mu.Unlock()
			if tt.want != nil {
				if resp.StatusCode != 200 {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				if !proto.Equal(last.(proto.Message), tt.want) {
					t.Errorf("service got %v, want %v", last, tt.want)
				}
				return
			}
			if resp.StatusCode != 400 {
				t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
			}
			if last != nil {
				t.Errorf("the service was called with %v", last)
			}
			var st restStatus
			if err := json.Unmarshal(body, &st); err != nil || len(st.Details) != 2 {
				t.Fatalf("want ErrorInfo and BadRequest: %v %s", err, body)
			}
			if st.Details[0].Reason != "INVALID_ARGUMENT" || st.Details[0].Metadata["account_id"] != "111111111111" {
				t.Errorf("ErrorInfo %+v, want reason INVALID_ARGUMENT and the path's account_id", st.Details[0])
			}
			vs := st.Details[1].FieldViolations
			if len(vs) != len(tt.fields) {
				t.Fatalf("violations %+v, want fields %v", vs, tt.fields)
			}
			for i, v := range vs {
				if v.Field != tt.fields[i] || !strings.HasPrefix(v.Description, v.Field+" "+tt.rules[i]) {
					t.Errorf("violation %d = %+v, want field %s: %s", i, v, tt.fields[i], tt.rules[i])
				}
				if !strings.Contains(st.Message, v.Description) {
					t.Errorf("message %q lacks %q", st.Message, v.Description)
				}
			}
		})
	}
}

// TestGatewayRefusalsAreLoggedAndCounted shows a REST request that the
// gateway refuses before it reaches the interceptor (a bad body or query,
// a body over the limit) logged under its gRPC method and counted once, as
// the interceptor does for the others.
func TestGatewayRefusalsAreLoggedAndCounted(t *testing.T) {
	f := newFixture(t)
	escaped := strings.ReplaceAll(arn, "/", "%2F")
	refused := []struct{ method, path, body string }{
		{"POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":`},
		{"GET", "/v1/accounts/111111111111/backups?pageSize=x", ""},
		{"POST", "/v1/backups/" + escaped + ":restore", `{"nope":1}`},
		{"POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"` + strings.Repeat("x", MaxBodyBytes) + `"}`},
	}
	for _, r := range refused {
		want := 400
		if len(r.body) > MaxBodyBytes {
			want = 413
		}
		if resp, body := f.do(t, r.method, r.path, strings.NewReader(r.body)); resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", r.method, r.path, resp.StatusCode, body)
		}
	}
	if resp, body := f.do(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", strings.NewReader(`{"backupName":"abc"}`)); resp.StatusCode != 200 {
		t.Fatalf("good request: %d %s", resp.StatusCode, body)
	}
	want := []string{
		"/backup.v1.BackupService/CreateBackup InvalidArgument",
		"/backup.v1.BackupService/ListBackups InvalidArgument",
		"/backup.v1.BackupService/RestoreTableFromBackup InvalidArgument",
		"/backup.v1.BackupService/CreateBackup InvalidArgument",
		"/backup.v1.BackupService/CreateBackup OK",
	}
	got := f.observed.Counted()
	if !slices.Equal(got, want) {
		t.Errorf("counted %q, want %q", got, want)
	}
	logs := f.logs.String()
	for _, line := range []string{
		`"method":"/backup.v1.BackupService/CreateBackup","caller":"rest:127.0.0.1","account":"111111111111","region":"","code":"InvalidArgument"`,
		`"method":"/backup.v1.BackupService/ListBackups","caller":"rest:127.0.0.1","account":"111111111111","region":"","code":"InvalidArgument"`,
		`"method":"/backup.v1.BackupService/RestoreTableFromBackup","caller":"rest:127.0.0.1","account":"111111111111","region":"us-east-1","code":"InvalidArgument"`,
	} {
		if !strings.Contains(logs, line) {
			t.Errorf("log lacks %s:\n%s", line, logs)
		}
	}
	if n := strings.Count(logs, `"msg":"request"`); n != len(want) {
		t.Errorf("%d request lines, want %d:\n%s", n, len(want), logs)
	}
}

func ts(t *testing.T, s string) *timestamppb.Timestamp {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return timestamppb.New(tm)
}

// TestParseRefusesByTheFirstViolation: the query parser, which runs
// before the caller is known, refuses a query of thousands of unknown
// keys with one violation, not one per key (60 ms of CPU for an unknown
// caller's 64 KiB query); the error handler still names each key, once
// the caller may be told them (requestViolations).
func TestParseRefusesByTheFirstViolation(t *testing.T) {
	values := url.Values{}
	for i := range 1000 {
		values.Set(fmt.Sprintf("k%04d", i), "1")
	}
	values.Set("pageSize", "x") // a value that does not fit, beside them
	filter := utilities.NewDoubleArray([][]string{{"account_id"}})
	err := (&queryParser{}).Parse(&backupv1.ListBackupsRequest{}, values, filter)
	bad, ok := errors.AsType[*badrequest.Error](err)
	if !ok || len(bad.Violations) != 1 || bad.Violations[0].Field != "k0000" {
		t.Fatalf("Parse: %v; want one violation, of k0000", err)
	}
	if vs := queryViolations(&backupv1.ListBackupsRequest{}, values, filter, true, 0); len(vs) != 1001 {
		t.Errorf("queryViolations named %d; want each of the 1001 bad parameters", len(vs))
	}
	only := url.Values{"pageSize": {"x"}}
	if bad, ok := errors.AsType[*badrequest.Error]((&queryParser{}).Parse(&backupv1.ListBackupsRequest{}, only, filter)); !ok ||
		len(bad.Violations) != 1 || bad.Violations[0].Field != "page_size" {
		t.Errorf("Parse of pageSize=x: %v; want it refused, naming page_size", bad)
	}
}
