package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// restError is the JSON body of a REST error.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

// fields are the fields of e's BadRequest violations, in order.
func (e restError) fields() []string {
	var fields []string
	for _, d := range e.Details {
		for _, v := range d.FieldViolations {
			fields = append(fields, v.Field)
		}
	}
	return fields
}

func decodeRESTError(t *testing.T, body []byte) restError {
	t.Helper()
	var e restError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	return e
}

func (e restError) reason() string {
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "google.rpc.ErrorInfo") {
			return d.Reason
		}
	}
	return ""
}

func TestCreateBackupLandsInTheRightAccount(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, b := testenv.UniqueAccountID(t), testenv.UniqueAccountID(t)
	dbA, dbB := asAccount(t, moto, a), asAccount(t, moto, b)
	createTable(t, dbA, "Orders")
	createTable(t, dbB, "Orders")
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{
		Accounts: []account{{ID: a, ExternalID: "ext-" + a}, {ID: b}},
		Env:      motoEnv(rec.URL),
	})
	ctx := context.Background()

	// gRPC, with the generated client.
	before := time.Now()
	resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "over-grpc"})
	if err != nil {
		t.Fatalf("CreateBackup over gRPC: %v", err)
	}
	after := time.Now()
	d := resp.GetBackupDetails()
	if !strings.HasPrefix(d.GetBackupArn(), "arn:aws:dynamodb:us-east-1:"+a+":table/Orders/backup/") ||
		d.GetBackupName() != "over-grpc" || d.GetBackupStatus() != backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE ||
		d.GetBackupType() != backupv1.BackupType_BACKUP_TYPE_USER || d.BackupSizeBytes == nil || d.GetBackupCreationDateTime() == nil {
		t.Errorf("backup details = %v", d)
	}
	if d.GetBackupExpiryDateTime() != nil {
		t.Errorf("expiry = %v; moto gives none, so it must be absent", d.GetBackupExpiryDateTime())
	}
	inc, exc := resp.GetConsistency().GetIncludesWritesBefore().AsTime(), resp.GetConsistency().GetExcludesWritesAfter().AsTime()
	if exc.Sub(inc) != 2*time.Minute || inc.Before(before.Add(-time.Minute)) || exc.After(after.Add(time.Minute)) {
		t.Errorf("consistency window [%s, %s] for a call between %s and %s", inc, exc, before, after)
	}

	// REST, same account: lowerCamelCase JSON with enum names.
	code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"over-rest"}`)
	if code != http.StatusOK {
		t.Fatalf("REST CreateBackup: %d %s", code, body)
	}
	var restResp struct {
		BackupDetails struct {
			BackupArn    string `json:"backupArn"`
			BackupName   string `json:"backupName"`
			BackupStatus string `json:"backupStatus"`
			BackupType   string `json:"backupType"`
		} `json:"backupDetails"`
		Consistency struct {
			IncludesWritesBefore time.Time `json:"includesWritesBefore"`
			ExcludesWritesAfter  time.Time `json:"excludesWritesAfter"`
		} `json:"consistency"`
	}
	if err := json.Unmarshal(body, &restResp); err != nil {
		t.Fatalf("REST body: %v: %s", err, body)
	}
	if restResp.BackupDetails.BackupName != "over-rest" || restResp.BackupDetails.BackupStatus != "BACKUP_STATUS_AVAILABLE" ||
		restResp.BackupDetails.BackupType != "BACKUP_TYPE_USER" || restResp.Consistency.ExcludesWritesAfter.Sub(restResp.Consistency.IncludesWritesBefore) != 2*time.Minute {
		t.Errorf("REST response = %s", body)
	}

	// One backup in B, by table ARN.
	if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{
		AccountId: b, TableName: "arn:aws:dynamodb:us-east-1:" + b + ":table/Orders", BackupName: "in-b",
	}); err != nil {
		t.Fatalf("CreateBackup in B: %v", err)
	}

	// Each backup is in its account, seen with that account's own credentials.
	inA, inB := backupNames(t, dbA, "Orders"), backupNames(t, dbB, "Orders")
	if inA["over-grpc"] != d.GetBackupArn() || inA["over-rest"] != restResp.BackupDetails.BackupArn || len(inA) != 2 {
		t.Errorf("account A backups = %v", inA)
	}
	if _, ok := inB["in-b"]; !ok || len(inB) != 1 {
		t.Errorf("account B backups = %v", inB)
	}

	// Each DynamoDB call was signed with credentials of its own account.
	calls := rec.Calls("CreateBackup")
	if len(calls) != 3 {
		t.Fatalf("moto saw %d CreateBackup calls, want 3", len(calls))
	}
	want := []string{a, a, b}
	for i, c := range calls {
		if got := rec.AccountOf(c.AccessKey); got != want[i] {
			t.Errorf("CreateBackup %d signed by %s (account %q), want account %s", i, c.AccessKey, got, want[i])
		}
	}
	if calls[0].AccessKey == calls[2].AccessKey {
		t.Error("accounts A and B were called with the same access key")
	}
	if n := len(rec.Calls("AssumeRole")); n != 2 {
		t.Errorf("AssumeRole calls = %d, want 2 (one per account)", n)
	}
	if strings.Contains(inst.logs.String(), "ext-"+a) {
		t.Error("the log contains the ExternalId")
	}
}

// badInput is one request that must be refused before any AWS call.
type badInput struct {
	name  string
	req   *backupv1.CreateBackupRequest
	field string
}

func badInputs(a, b string) []badInput {
	ok := func(mod func(r *backupv1.CreateBackupRequest)) *backupv1.CreateBackupRequest {
		r := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "valid-name"}
		mod(r)
		return r
	}
	return []badInput{
		{"backup name missing", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "" }), "backup_name"},
		{"backup name 2 chars", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "ab" }), "backup_name"},
		{"backup name 256 chars", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = strings.Repeat("n", 256) }), "backup_name"},
		{"backup name with space", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "my backup" }), "backup_name"},
		{"backup name with slash", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "a/b/c" }), "backup_name"},
		{"backup name unicode", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "sauvegardé" }), "backup_name"},
		{"backup name dotdot", ok(func(r *backupv1.CreateBackupRequest) { r.BackupName = "../x" }), "backup_name"},
		{"table name 2 chars", ok(func(r *backupv1.CreateBackupRequest) { r.TableName = "ab" }), "table_name"},
		{"table name 256 chars", ok(func(r *backupv1.CreateBackupRequest) { r.TableName = strings.Repeat("t", 256) }), "table_name"},
		{"table name with space", ok(func(r *backupv1.CreateBackupRequest) { r.TableName = "my table" }), "table_name"},
		{"table name unicode", ok(func(r *backupv1.CreateBackupRequest) { r.TableName = "tablé" }), "table_name"},
		{"table ARN of another account", ok(func(r *backupv1.CreateBackupRequest) {
			r.TableName = "arn:aws:dynamodb:us-east-1:" + b + ":table/Orders"
		}), "table_name"},
		// No region: the account's default, which the ARN must be in too.
		{"table ARN of another region than the default", ok(func(r *backupv1.CreateBackupRequest) {
			r.TableName = "arn:aws:dynamodb:us-west-2:" + a + ":table/Orders"
		}), "table_name"},
		{"account 11 digits", ok(func(r *backupv1.CreateBackupRequest) { r.AccountId = "12345678901" }), "account_id"},
		{"account 13 digits", ok(func(r *backupv1.CreateBackupRequest) { r.AccountId = "1234567890123" }), "account_id"},
		{"account with letters", ok(func(r *backupv1.CreateBackupRequest) { r.AccountId = "12345678901x" }), "account_id"},
		{"region not allowed", ok(func(r *backupv1.CreateBackupRequest) { r.Region = "eu-west-1" }), "region"},
		{"malformed region", ok(func(r *backupv1.CreateBackupRequest) { r.Region = "EU_WEST" }), "region"},
		{"request id 129 chars", ok(func(r *backupv1.CreateBackupRequest) { r.RequestId = strings.Repeat("r", 129) }), "request_id"},
	}
}

func TestCreateBackupRefusesBadInputWithoutCallingAWS(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, b := testenv.UniqueAccountID(t), testenv.UniqueAccountID(t)
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, Env: motoEnv(rec.URL)})

	for _, tt := range badInputs(a, b) {
		t.Run("grpc/"+tt.name, func(t *testing.T) {
			_, err := inst.client.CreateBackup(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %s (%v), want InvalidArgument", st.Code(), err)
			}
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						fields = append(fields, v.GetField())
					}
				}
			}
			if len(fields) != 1 || fields[0] != tt.field || !strings.Contains(st.Message(), tt.field) {
				t.Errorf("field violations %v, message %q; want one on %s", fields, st.Message(), tt.field)
			}
		})
		t.Run("rest/"+tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"backupName": tt.req.GetBackupName(), "region": tt.req.GetRegion(), "requestId": tt.req.GetRequestId()})
			path := "/v1/accounts/" + tt.req.GetAccountId() + "/tables/" + pathEscape(tt.req.GetTableName()) + "/backups"
			code, _, resp := inst.rest(t, "POST", path, string(body))
			if code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400: %s", code, resp)
			}
			want := "INVALID_ARGUMENT"
			if tt.field == "region" && tt.req.GetRegion() == "eu-west-1" {
				want = "REGION_NOT_ALLOWED"
			}
			if e := decodeRESTError(t, resp); !strings.Contains(e.Message, tt.field) || e.reason() != want {
				t.Errorf("body = %s; want a message naming %s and reason %s", resp, tt.field, want)
			}
		})
	}

	restOnly := []struct {
		name, path, body string
		status           int
		msgHas           string
	}{
		{"unknown JSON field", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":"valid-name","colour":"blue"}`, 400, "colour is not a field of the request body"},
		{"wrong JSON type", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":42}`, 400, "backup_name must be a string"},
		{"query parameter", "/v1/accounts/" + a + "/tables/Orders/backups?region=us-east-1", `{"backupName":"valid-name"}`, 400, "region is not a query parameter"},
		{"body names another account", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":"valid-name","accountId":"123456789012"}`, 400, "in the path but"},
		{"trailing garbage", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":"valid-name"} trailing`, 400, "malformed request"},
		{"not JSON", "/v1/accounts/" + a + "/tables/Orders/backups", `backupName=valid`, 400, "malformed request"},
		{"empty body", "/v1/accounts/" + a + "/tables/Orders/backups", ``, 400, "backup_name is required"},
		{"1 MiB body", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "at most 65536 bytes"},
		{"slash in table name", "/v1/accounts/" + a + "/tables/a%2Fb/backups", `{"backupName":"valid-name"}`, 400, "table_name"},
	}
	for _, tt := range restOnly {
		t.Run("rest/"+tt.name, func(t *testing.T) {
			code, _, resp := inst.rest(t, "POST", tt.path, tt.body)
			if code != tt.status {
				t.Fatalf("status = %d, want %d: %.300s", code, tt.status, resp)
			}
			if e := decodeRESTError(t, resp); !strings.Contains(e.Message, tt.msgHas) || e.reason() == "" {
				t.Errorf("body = %.300s; want a message containing %q and an ErrorInfo reason", resp, tt.msgHas)
			}
		})
	}

	// Every bad field at once, a region the account does not allow among
	// them, though the body or query could not be read whole; and nothing
	// judged by a region that could not be read.
	euTable := "arn:aws:dynamodb:eu-west-1:" + a + ":table/Orders"
	euBackup := euTable + "/backup/01700000000000-abcdef12"
	create := "/v1/accounts/" + a + "/tables/Orders/backups"
	together := []struct {
		name, method, path, body string
		fields                   []string
	}{
		{"wrong JSON type and a region not allowed", "POST", create, `{"backupName":42,"region":"eu-west-1"}`, []string{"backup_name", "region"}},
		{"query parameter and a region not allowed", "POST", create + "?colour=blue", `{"backupName":"valid-name","region":"eu-west-1"}`, []string{"colour", "region"}},
		{"unreadable region beside a table ARN of that region", "POST", "/v1/accounts/" + a + "/tables/" + pathEscape(euTable) + "/backups",
			`{"backupName":"valid-name","region":5}`, []string{"region"}},
		{"list: unreadable page size and a region not allowed", "GET", "/v1/accounts/" + a + "/backups?pageSize=abc&region=eu-west-1", "", []string{"page_size", "region"}},
		{"list: region given twice beside a table ARN of that region", "GET",
			"/v1/accounts/" + a + "/backups?region=eu-west-1&region=eu-west-1&tableName=" + url.QueryEscape(euTable), "", []string{"region"}},
		{"get: query parameter and a backup ARN in a region not allowed", "GET", "/v1/backups/" + pathEscape(euBackup) + "?x=1", "", []string{"x", "backup_arn"}},
	}
	for _, tt := range together {
		t.Run("rest/"+tt.name, func(t *testing.T) {
			code, _, resp := inst.rest(t, tt.method, tt.path, tt.body)
			if e := decodeRESTError(t, resp); code != http.StatusBadRequest || !slices.Equal(e.fields(), tt.fields) {
				t.Errorf("status %d, field violations %v: %.400s; want 400 and %v", code, e.fields(), resp, tt.fields)
			}
		})
	}

	if calls := rec.Calls(""); len(calls) != 0 {
		t.Errorf("bad input reached AWS: %d calls, first %+v", len(calls), calls[0])
	}
}

func pathEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "/", "%2F"), " ", "%20")
}

func TestCreateBackupNotFound(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto)})
	unconfigured := testenv.UniqueAccountID(t)
	tests := []struct {
		name, account, table, reason string
	}{
		{"missing table", a, "NoSuchTable", "TABLE_NOT_FOUND"},
		{"unconfigured account", unconfigured, "Orders", "ACCOUNT_NOT_CONFIGURED"},
	}
	for _, tt := range tests {
		t.Run("grpc/"+tt.name, func(t *testing.T) {
			_, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: tt.account, TableName: tt.table, BackupName: "b-1"})
			if st := status.Convert(err); st.Code() != codes.NotFound || reasonOf(st) != tt.reason {
				t.Errorf("err = %v (reason %q), want NotFound %s", err, reasonOf(st), tt.reason)
			}
		})
		t.Run("rest/"+tt.name, func(t *testing.T) {
			code, _, body := inst.rest(t, "POST", "/v1/accounts/"+tt.account+"/tables/"+tt.table+"/backups", `{"backupName":"b-1"}`)
			if code != http.StatusNotFound || decodeRESTError(t, body).reason() != tt.reason {
				t.Errorf("status %d body %s, want 404 %s", code, body, tt.reason)
			}
		})
	}
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// stsAnswering is an STS that answers every call with the given error.
func stsAnswering(t *testing.T, status int, code, msg string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code>`+
			`<Message>%s</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>`, code, msg)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSTSRefusals: STS refusing the role (the trust policy or ExternalId
// does not match) is PERMISSION_DENIED naming the account; refusing the
// AssumeRole call as invalid is a fault of backupd's configuration that a
// retry meets again: INTERNAL with DESIGN's generic message, STS's code in
// the log, no RetryInfo; throttling is worth a retry: STS_UNAVAILABLE with
// RetryInfo. No error or log line reveals the ExternalId or the role.
func TestSTSRefusals(t *testing.T) {
	moto := testenv.MotoURL(t)
	for _, tt := range []struct {
		status     int
		code, msg  string
		want       codes.Code
		reason     string
		httpStatus int
		retry      bool
		named      bool   // the message names the account
		fix        string // what the message says to check
	}{
		{http.StatusForbidden, "AccessDenied", "User: arn:aws:iam::000000000000:user/backupd is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::x:role/backupd",
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", http.StatusForbidden, false, true, "trust policy"},
		{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.",
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", http.StatusForbidden, false, true, "backupd's own AWS credentials"},
		{http.StatusBadRequest, "ValidationError", "1 validation error detected",
			codes.Internal, "INTERNAL", http.StatusInternalServerError, false, false, ""},
		{http.StatusBadRequest, "Throttling", "Rate exceeded",
			codes.Unavailable, "STS_UNAVAILABLE", http.StatusServiceUnavailable, true, true, ""},
	} {
		t.Run(tt.code, func(t *testing.T) {
			a := testenv.UniqueAccountID(t)
			inst := startBackupd(t, instanceOptions{
				Accounts: []account{{ID: a, ExternalID: "very-secret-external-id"}},
				Env:      []string{"AWS_ENDPOINT_URL_DYNAMODB=" + moto, "AWS_ENDPOINT_URL_STS=" + stsAnswering(t, tt.status, tt.code, tt.msg)},
			})
			_, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "b-1"})
			st := status.Convert(err)
			if st.Code() != tt.want || reasonOf(st) != tt.reason || strings.Contains(st.Message(), a) != tt.named {
				t.Errorf("gRPC err = %v; want %v %s, naming %s: %v", err, tt.want, tt.reason, a, tt.named)
			}
			if !strings.Contains(st.Message(), tt.fix) {
				t.Errorf("gRPC message %q does not say to check %q", st.Message(), tt.fix)
			}
			if got := retryDelay(st) > 0; got != tt.retry {
				t.Errorf("RetryInfo given: %v, want %v", got, tt.retry)
			}
			code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"b-1"}`)
			if code != tt.httpStatus || decodeRESTError(t, body).reason() != tt.reason {
				t.Errorf("REST: %d %s; want %d %s", code, body, tt.httpStatus, tt.reason)
			}
			if lines := inst.logs.Lines(`"account":"`+a+`"`, tt.code); len(lines) == 0 {
				t.Errorf("no log line names the account and STS's %s:\n%s", tt.code, inst.logs.String())
			}
			for _, secret := range []string{"very-secret-external-id", "testing", "role/backupd"} {
				if strings.Contains(st.Message(), secret) || strings.Contains(string(body), secret) {
					t.Errorf("the error reveals %q: %q / %s", secret, st.Message(), body)
				}
			}
			if strings.Contains(inst.logs.String(), "very-secret-external-id") {
				t.Error("the log reveals the ExternalId")
			}
		})
	}
}

func TestConcurrentFirstRequestsAssumeRoleOnce(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, b := testenv.UniqueAccountID(t), testenv.UniqueAccountID(t)
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{
		Accounts: []account{{ID: a, CreateRate: 10000}, {ID: b, CreateRate: 10000}},
		MaxWait:  30 * time.Second,
		Env:      motoEnv(rec.URL),
	})
	// 500 concurrent first requests at A, and 100 at B beside them.
	const nA, nB = 500, 100
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, nA+nB)
	for i := range nA + nB {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := a
			if i >= nA {
				acct = b
			}
			// A missing table: every call needs credentials, and moto answers fast.
			_, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: acct, TableName: "Missing", BackupName: "b-" + strconv.Itoa(i)})
			codesSeen[i] = status.Code(err)
		}()
	}
	wg.Wait()
	for i, c := range codesSeen {
		if c != codes.NotFound {
			t.Fatalf("request %d: %s, want NotFound", i, c)
		}
	}
	assumed := map[string]int{}
	for _, c := range rec.Calls("AssumeRole") {
		assumed[c.Role]++
	}
	roleA, roleB := "arn:aws:iam::"+a+":role/backupd", "arn:aws:iam::"+b+":role/backupd"
	if len(assumed) != 2 || assumed[roleA] != 1 || assumed[roleB] != 1 {
		t.Errorf("AssumeRole calls per role = %v; want exactly one for each of %s and %s", assumed, roleA, roleB)
	}
	perAccount := map[string]int{}
	for _, c := range rec.Calls("CreateBackup") {
		perAccount[rec.AccountOf(c.AccessKey)]++
	}
	if perAccount[a] != nA || perAccount[b] != nB {
		t.Errorf("CreateBackup calls per account = %v; want %d for %s and %d for %s", perAccount, nA, a, nB, b)
	}
}

func TestRateLimitKeepsEveryWindowAtFifty(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, b := testenv.UniqueAccountID(t), testenv.UniqueAccountID(t)
	createTable(t, asAccount(t, moto, a), "Flood")
	createTable(t, asAccount(t, moto, b), "Quiet")
	rec := newRecorder(t, moto)
	// A long max_wait so every request waits its turn: the flood then
	// tests the spacing over 400 calls, not the refusals.
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, MaxWait: time.Minute, Env: motoEnv(rec.URL)})
	ctx := context.Background()
	// Warm the credentials so the flood measures the limiter alone.
	for _, acct := range []string{a, b} {
		if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: acct, TableName: "Missing", BackupName: "warm"}); status.Code(err) != codes.NotFound {
			t.Fatalf("warm-up: %v", err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // let the warm-up leave the window
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "f-" + strconv.Itoa(i)
			_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Flood", BackupName: name, RequestId: name})
			if err != nil {
				errs <- err
			}
		}()
	}
	// The flood is queued: all of it is in backupd (each request has a
	// request_id of its own, held from its arrival), and A's turns are
	// being handed out.
	inst.waitMetric(t, "backupd_request_ids_held", nil, n)
	inst.waitMetric(t, "backupd_ratelimit_decisions_total", map[string]string{"account": a, "operation": "CreateBackup", "decision": "waited"}, 1)
	var bDone time.Time
	if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: b, TableName: "Quiet", BackupName: "q-1"}); err != nil {
		t.Errorf("account B during A's flood: %v", err)
	}
	bDone = time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("flood request failed: %v", err)
	}

	var times []time.Time
	for _, c := range rec.Calls("CreateBackup") {
		if rec.AccountOf(c.AccessKey) == a {
			times = append(times, c.At)
		}
	}
	times = times[1:] // the warm-up call
	if len(times) != n {
		t.Fatalf("moto saw %d flood calls, want %d", len(times), n)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	worst := busiestSecond(times)
	if worst > 50 {
		t.Errorf("moto saw %d CreateBackup calls for one account within one second; the limit is 50", worst)
	}
	gaps := make([]time.Duration, 0, n)
	for i := 1; i < n; i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	t.Logf("400 calls over %s; busiest one-second window: %d calls; gaps min %s p50 %s max %s",
		times[n-1].Sub(times[0]), worst, gaps[0], gaps[len(gaps)/2], gaps[len(gaps)-1])
	// Account B was not queued behind A: its call finished while most of
	// A's flood was still waiting.
	if done := sort.Search(len(times), func(i int) bool { return times[i].After(bDone) }); done > n/2 {
		t.Errorf("account B's call finished after %d of A's %d calls: B waited behind A", done, n)
	}
}

func TestRateLimitRefusalOverGRPCAndREST(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(rec.URL)})
	const n = 120
	type result struct {
		code       codes.Code
		retryAfter time.Duration
		httpStatus int
		header     string
	}
	results := make([]result, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Missing", BackupName: "g-" + strconv.Itoa(i)})
			st := status.Convert(err)
			results[i] = result{code: st.Code(), retryAfter: retryDelay(st)}
		}()
		go func() {
			defer wg.Done()
			code, h, _ := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Missing/backups", `{"backupName":"r-`+strconv.Itoa(i)+`"}`)
			results[n+i] = result{httpStatus: code, header: h.Get("Retry-After")}
		}()
	}
	wg.Wait()
	var grpcLimited, restLimited, admitted int
	for i, r := range results {
		switch {
		case i < n && r.code == codes.ResourceExhausted:
			grpcLimited++
			if r.retryAfter <= 0 {
				t.Errorf("gRPC refusal without RetryInfo")
			}
		case i >= n && r.httpStatus == http.StatusTooManyRequests:
			restLimited++
			if secs, err := strconv.Atoi(r.header); err != nil || secs < 1 {
				t.Errorf("429 with Retry-After %q", r.header)
			}
		case r.code == codes.NotFound || r.httpStatus == http.StatusNotFound:
			admitted++
		default:
			t.Errorf("request %d: unexpected result %+v", i, r)
		}
	}
	t.Logf("of %d requests at once: %d admitted, %d refused over gRPC, %d over REST", 2*n, admitted, grpcLimited, restLimited)
	// 240 requests at 50/s with a 1s wait: about 46 admitted, the rest
	// refused; more when they arrive spread out (a loaded machine), but
	// never more than 50 in a second at DynamoDB.
	var times []time.Time
	for _, c := range rec.Calls("CreateBackup") {
		times = append(times, c.At)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	if grpcLimited == 0 || restLimited == 0 || admitted < 40 || len(times) != admitted || busiestSecond(times) > 50 {
		t.Errorf("admitted %d (%d calls reached DynamoDB, at most %d in one second), refused %d over gRPC and %d over REST",
			admitted, len(times), busiestSecond(times), grpcLimited, restLimited)
	}
	// REST requests are logged by the same interceptor as gRPC ones.
	if lines := inst.logs.Lines(`"method":"/backup.v1.BackupService/CreateBackup"`, `"caller":"rest:`, `"code":"ResourceExhausted"`, `"account":"`+a+`","region":"us-east-1"`); len(lines) != restLimited {
		t.Errorf("%d log lines for refused REST requests, want %d", len(lines), restLimited)
	}
	if lines := inst.logs.Lines(`"caller":"127.0.0.1:`, `"code":"ResourceExhausted"`); len(lines) != grpcLimited {
		t.Errorf("%d log lines for refused gRPC requests, want %d", len(lines), grpcLimited)
	}
}

// TestSIGTERMDrainsInFlightRequests sends SIGTERM once every request of a
// burst is in backupd and most still wait their turn at the limiter: each
// is answered, and made its backup, before backupd exits 0.
// backupd_requests_in_flight, with those answered, tells when all are in. The gRPC requests
// carry a request_id of their own (the drain waits for their runs), the
// REST ones none (it waits for their handlers).
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	db := asAccount(t, moto, a)
	createTable(t, db, "Drain")
	rec := newRecorder(t, moto)
	// 20/s and a long wait: the burst is still queued when SIGTERM comes.
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a, CreateRate: 20}}, MaxWait: time.Minute, Env: motoEnv(rec.URL)})
	const grpcN, restN = 40, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	ok := 0
	record := func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, name+": "+err.Error())
			return
		}
		ok++
	}
	// A REST body that is still arriving when the drain begins is given
	// up on, 503 SHUTTING_DOWN, rather than holding the drain for the
	// 30 s a body may take, past the 25 s shutdown timeout. It is sent
	// first, and the burst once backupd has its connection.
	inst.waitConnections(t, 1)
	trickle := make(chan *http.Response, 1)
	// Bounded, so that a drain that drops the request fails the test
	// rather than leave it waiting for an answer that never comes.
	trickleCtx, cancelTrickle := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancelTrickle()
	// The rest of the body is never sent: the pipe ends once backupd has
	// exited, or the client, which waits for its body's write to end
	// before it returns an error, would wait forever on a connection
	// backupd dropped.
	exited := make(chan struct{})
	go func() {
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(trickleCtx, "POST", inst.httpURL+"/v1/accounts/"+a+"/tables/Drain/backups", pr)
		req.ContentLength = 100
		go func() {
			_, _ = io.WriteString(pw, `{"backupName":"trickle"`)
			select {
			case <-exited:
			case <-trickleCtx.Done():
			}
			pw.CloseWithError(errors.New("backupd has exited"))
		}()
		resp, err := inst.http.Do(req)
		if err != nil {
			t.Errorf("trickling body: %v", err)
		}
		trickle <- resp
	}()
	inst.waitConnections(t, 2)
	for i := range grpcN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "g-" + strconv.Itoa(i)
			_, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Drain", BackupName: name, RequestId: "drain-" + name})
			record(name, err)
		}()
	}
	for i := range restN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "r-" + strconv.Itoa(i)
			// Without a request_id: its handler holds the drain, not a run.
			code, _, body, err := inst.tryREST("POST", "/v1/accounts/"+a+"/tables/Drain/backups", `{"backupName":"`+name+`"}`, nil)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%d %s", code, body)
			}
			record(name, err)
		}()
	}
	// Every request of the burst is in backupd: in its handler, or
	// answered already (the limiter gives the first turn at once, so they
	// are never all in flight together).
	ok200 := map[string]string{"method": backupv1.BackupService_CreateBackup_FullMethodName, "code": "OK"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		in := inst.metric(t, "backupd_requests_in_flight", nil) + inst.metric(t, "backupd_requests_total", ok200)
		if in >= grpcN+restN {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d requests in backupd after 10 s", in, grpcN+restN)
		}
	}
	stopped := time.Now()
	inst.terminate(t)
	// Read after the signal: at most as many had reached DynamoDB when it came.
	if sent := len(rec.Calls("CreateBackup")); sent >= grpcN+restN {
		t.Fatalf("all %d requests had reached DynamoDB at SIGTERM: none was in flight", sent)
	} else {
		t.Logf("at SIGTERM %d of %d requests were still waiting their turn", grpcN+restN-sent, grpcN+restN)
	}
	err := inst.exited(t)
	close(exited)
	if err != nil {
		t.Errorf("backupd exit after SIGTERM: %v; want exit 0", err)
	}
	t.Logf("backupd exited %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests lost to SIGTERM: %v", len(failures), failures)
	}
	if resp := <-trickle; resp != nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte(`"SHUTTING_DOWN"`)) {
			t.Errorf("trickling body: %d, Retry-After %q, %s; want 503 SHUTTING_DOWN with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	names := backupNames(t, db, "Drain")
	if len(names) != ok || ok != grpcN+restN {
		t.Errorf("%d requests succeeded, moto holds %d backups; want %d of each", ok, len(names), grpcN+restN)
	}
	if names["trickle"] != "" {
		t.Error("the request whose body never arrived made a backup")
	}
}

// TestShutdownTimeoutIsLogged: a drain that outlasts shutdown_timeout (here
// a REST body still arriving, which has a second left, against a 300 ms
// timeout) ends the process with exit 1, and says so in the log, in the
// log's format, not in a plain line beside it.
func TestShutdownTimeoutIsLogged(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, ShutdownTimeout: 300 * time.Millisecond, Env: motoEnv(moto)})
	inst.waitConnections(t, 1)
	conn, err := net.Dial("tcp", strings.TrimPrefix(inst.httpURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The request is in, its body being read, once backupd has its connection.
	fmt.Fprintf(conn, "POST /v1/accounts/%s/tables/Orders/backups HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", a)
	inst.waitConnections(t, 2)
	if err := inst.stop(t); err == nil {
		t.Error("backupd exited 0 after its drain timed out; want 1")
	}
	if lines := inst.logs.Lines(`"level":"ERROR"`, `"msg":"backupd stopped"`, `shutdown timed out`); len(lines) != 1 {
		t.Errorf("%d JSON lines saying the shutdown timed out; want 1:\n%s", len(lines), inst.logs.String())
	}
	for line := range strings.Lines(inst.logs.String()) {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a line not in the log's format: %q", line)
		}
	}
}

// TestDrainDelayKeepsServing: after SIGTERM, with drain_delay set, backupd
// says not ready on /readyz and grpc.health.v1 but still serves requests
// until the delay is over, then drains and exits 0.
func TestDrainDelayKeepsServing(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, db := newAccount(t, moto, "Orders")
	const delay = 5 * time.Second
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, DrainDelay: delay, Env: motoEnv(moto)})
	if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signaled := time.Now()
	inst.waitReadyz(t, http.StatusServiceUnavailable, delay/2)
	hc, err := healthpb.NewHealthClient(inst.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc.health.v1 during the drain delay: %v, %v; want NOT_SERVING", hc, err)
	}
	if _, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "late-grpc"}); err != nil {
		t.Errorf("gRPC CreateBackup during the drain delay: %v", err)
	}
	if code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"late-rest"}`); code != http.StatusOK {
		t.Errorf("REST CreateBackup during the drain delay: %d %s", code, body)
	}
	if took := time.Since(signaled); took >= delay {
		t.Fatalf("the requests took until %v after SIGTERM, past the %v delay: the test proves nothing", took, delay)
	}
	select {
	case err := <-inst.done:
		if err != nil {
			t.Errorf("backupd exit: %v; want 0", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("backupd did not exit after the drain delay")
	}
	if names := backupNames(t, db, "Orders"); names["late-grpc"] == "" || names["late-rest"] == "" {
		t.Errorf("moto holds %v; want both backups made during the delay", names)
	}
}

// TestSecondSignalEndsTheDrain: a second SIGTERM during the drain delay
// ends backupd at once, by the signal's default action, and says so.
func TestSecondSignalEndsTheDrain(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	for _, tc := range []struct {
		name         string
		sig          syscall.Signal
		ignoreSIGINT bool
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGINT", syscall.SIGINT, false},
		// A job a script starts in the background: SIGINT ignored from
		// the start, with no default action to go back to.
		{"SIGINT ignored at start", syscall.SIGINT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, DrainDelay: time.Minute, Env: motoEnv(moto), IgnoreSIGINT: tc.ignoreSIGINT})
			if err := inst.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			// Wait until the first signal was taken: /readyz turns 503.
			inst.waitReadyz(t, http.StatusServiceUnavailable, 10*time.Second)
			if err := inst.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-inst.done:
				// Killed by the signal, as its default action does; with
				// the signal ignored from the start there is none, and
				// backupd exits with the status a shell would give.
				ws, _ := inst.cmd.ProcessState.Sys().(syscall.WaitStatus)
				if tc.ignoreSIGINT && (ws.Signaled() || ws.ExitStatus() != 128+int(tc.sig)) ||
					!tc.ignoreSIGINT && (!ws.Signaled() || ws.Signal() != tc.sig) {
					t.Errorf("backupd ended with %v on a second %s", err, tc.name)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("a second %s did not end the one-minute drain delay", tc.name)
			}
			// The requests it cut off are not cut off unsaid.
			if lines := inst.logs.Lines("a second " + strings.Fields(tc.name)[0] + " during the drain: exiting at once"); len(lines) != 1 {
				t.Errorf("backupd told %d times of the second signal; want once:\n%s", len(lines), inst.logs.String())
			}
		})
	}
}

// TestOwnCredentialsStayOutOfTheLog: the SDK quotes what a
// credential_process printed when it cannot parse it; a helper that
// prints a notice before its JSON makes that backupd's own secret key
// and session token. The start-up check's line and the request's line
// name the failure without them.
func TestOwnCredentialsStayOutOfTheLog(t *testing.T) {
	moto := testenv.MotoURL(t)
	const secret, token = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYOWNSECRET", "IQoJb3JpZ2luX2VjOWNSESSIONTOKEN"
	dir := t.TempDir()
	script := filepath.Join(dir, "credentials.sh")
	body := "#!/bin/sh\necho 'notice: using a cached session'\n" +
		`echo '{"Version":1,"AccessKeyId":"AKIAOWNEXAMPLE","SecretAccessKey":"` + secret + `","SessionToken":"` + token + `"}'` + "\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config")
	if err := os.WriteFile(config, []byte("[default]\ncredential_process = "+script+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newAccount(t, moto, "Orders")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: append(motoEnv(moto),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_CONFIG_FILE="+config,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"))})
	if code, _, resp := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups", ""); code != http.StatusServiceUnavailable || !strings.Contains(string(resp), "STS_UNAVAILABLE") {
		t.Fatalf("ListBackups without credentials: %d %s; want 503 STS_UNAVAILABLE", code, resp)
	}
	// Both lines come through backupd's stderr, copied into inst.logs as
	// they arrive: waited for, not read at once.
	deadline := time.Now().Add(15 * time.Second)
	for (len(inst.logs.Lines("no AWS credentials for backupd itself")) == 0 || len(inst.logs.Lines("process output", "[redacted]")) < 2) &&
		time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	logs := inst.logs.String()
	if strings.Contains(logs, secret) || strings.Contains(logs, token) {
		t.Errorf("the log holds backupd's own secret key or session token:\n%s", logs)
	}
	if lines := inst.logs.Lines("process output", "[redacted]"); len(lines) < 2 {
		t.Errorf("want the start-up check's line and the request's line, each naming the failure; log:\n%s", logs)
	}
}
