package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/reqlog"
	"github.com/backupd/backupd/testenv"
)

// answering resolves every account to a DynamoDB client of one fake that
// answers each operation as answers says: with status 400 when the answer
// names an error (__type), as DynamoDB's do, else 200.
type answering struct{ c *dynamodb.Client }

func (a answering) Resolve(account, region string) (accounts.Target, error) {
	return accounts.Target{AccountID: account, Region: "us-east-1", DynamoDB: a.c}, nil
}

func answeringServer(t *testing.T, answers map[string]string) *Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if strings.Contains(answers[op], `"__type"`) {
			w.WriteHeader(http.StatusBadRequest)
		}
		_, _ = w.Write([]byte(answers[op]))
	}))
	t.Cleanup(srv.Close)
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: aws.AnonymousCredentials{}})
	return New(Options{Accounts: answering{c}})
}

// An answer of success without the backup's description (not DynamoDB's,
// a proxy's) is an error, not a response that describes nothing: for a
// GetBackup one that names the call (INTERNAL), for a DeleteBackup, which
// the answer says was done, an unknown outcome (OUTCOME_UNKNOWN), as for
// a CreateBackup or a restore.
func TestAnswerWithoutADescription(t *testing.T) {
	s := answeringServer(t, map[string]string{"DeleteBackup": `{}`, "DescribeBackup": `{}`})
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	resp, err := s.GetBackup(context.Background(), &backupv1.GetBackupRequest{BackupArn: arn})
	if _, unknown := errors.AsType[*accounts.OutcomeUnknownError](err); err == nil || unknown ||
		err.Error() != "DescribeBackup in account 111111111111, region us-east-1: DynamoDB's answer of success lacks the backup's description" {
		t.Errorf("GetBackup = %v, %v; want an error that names the call", resp, err)
	}
	deleted, err := s.DeleteBackup(context.Background(), &backupv1.DeleteBackupRequest{BackupArn: arn})
	if unknown, ok := errors.AsType[*accounts.OutcomeUnknownError](err); !ok || unknown.Operation != "DeleteBackup" || unknown.AccountID != "111111111111" {
		t.Errorf("DeleteBackup = %v, %v; want an unknown outcome of DeleteBackup in account 111111111111", deleted, err)
	}
}

// A page token that is no token is named beside the other bad fields;
// one from another listing, once the region is known (TestPageToken).
func TestValidateListNamesEveryField(t *testing.T) {
	_, _, _, err := validateList(&backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: aws.Int32(-1), PageToken: "garbage"})
	var fields []string
	if br, ok := err.(*badrequest.Error); ok {
		for _, v := range br.Violations {
			fields = append(fields, v.Field)
		}
	}
	if !slices.Equal(fields, []string{"page_size", "page_token"}) {
		t.Errorf("violations of %v (%v); want page_size and page_token", fields, err)
	}
	scope := listScope{account: "111111111111", region: "eu-west-1", backupType: "USER"}
	token := encodePageToken(scope, "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12")
	if _, _, _, err := validateList(&backupv1.ListBackupsRequest{AccountId: "111111111111", PageToken: token}); err != nil {
		t.Errorf("a token of a listing: %v", err)
	}
}

// A table ARN outside the account's default region, in a request that
// names no region, is refused by CreateBackup and ListBackups alike once
// that region is known, before any DynamoDB call.
func TestTableARNOutsideTheDefaultRegion(t *testing.T) {
	s := answeringServer(t, nil)
	const table = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
	_, errCreate := s.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: table, BackupName: "nightly"})
	_, errList := s.ListBackups(context.Background(), &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: table})
	for op, err := range map[string]error{"CreateBackup": errCreate, "ListBackups": errList} {
		bad, ok := errors.AsType[*badrequest.Error](err)
		if !ok || len(bad.Violations) != 1 || bad.Violations[0].Field != "table_name" ||
			!strings.Contains(bad.Violations[0].Description, "it must be in region us-east-1, the account's default") {
			t.Errorf("%s: %v; want a table_name violation naming the default region", op, err)
		}
	}
}

// DynamoDB's refusal of a GetBackup, DeleteBackup or ListBackups comes
// back naming the operation, account and region, for the log, and
// wrapping DynamoDB's error, which rpcerror maps.
func TestDynamoDBErrorsNameTheCall(t *testing.T) {
	const notFound = `{"__type":"com.amazonaws.dynamodb.v20120810#BackupNotFoundException","message":"Backup not found"}`
	s := answeringServer(t, map[string]string{"DescribeBackup": notFound, "DeleteBackup": notFound,
		"ListBackups": `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}`})
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	ctx := context.Background()
	_, errGet := s.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: arn})
	_, errDelete := s.DeleteBackup(ctx, &backupv1.DeleteBackupRequest{BackupArn: arn})
	_, errList := s.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: aws.Int32(1)})
	tests := []struct {
		op      string
		err     error
		wrapsOK bool
	}{
		{"DescribeBackup", errGet, errors.As(errGet, new(*types.BackupNotFoundException))},
		{"DeleteBackup", errDelete, errors.As(errDelete, new(*types.BackupNotFoundException))},
		{"ListBackups", errList, errors.As(errList, new(*types.InternalServerError))},
	}
	for _, tt := range tests {
		if want := tt.op + " in account 111111111111, region us-east-1: "; tt.err == nil || !strings.HasPrefix(tt.err.Error(), want) || !tt.wrapsOK {
			t.Errorf("%s: %v; want it to start %q and wrap DynamoDB's error", tt.op, tt.err, want)
		}
	}
}

// regional configures account 111111111111 with default region us-east-1
// and us-east-1 and eu-west-1 allowed, as accounts.Registry would.
type regional struct{}

func (regional) Resolve(account, region string) (accounts.Target, error) {
	if account != "111111111111" {
		return accounts.Target{}, &accounts.NotConfiguredError{AccountID: account}
	}
	switch region {
	case "":
		region = "us-east-1"
	case "us-east-1", "eu-west-1":
	default:
		return accounts.Target{}, &accounts.RegionNotAllowedError{AccountID: account, Region: region, Allowed: []string{"us-east-1", "eu-west-1"}}
	}
	return accounts.Target{AccountID: account, Region: region}, nil
}

// A page_token from another listing is named beside a bad page_size, the
// one field outside the listing, as gRPC's BadRequest promises; beside a
// bad account, region, table or filter it is left unjudged, as it may be
// of the listing meant.
func TestPageTokenBesideTheOthers(t *testing.T) {
	const last = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	orders := encodePageToken(listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER"}, last)
	every := encodePageToken(listScope{account: "111111111111", region: "us-east-1", backupType: "USER"}, last)
	tests := []struct {
		name string
		req  *backupv1.ListBackupsRequest
		want []string
	}{
		{"another listing's token", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: aws.Int32(-1), PageToken: orders},
			[]string{"page_size", "page_token"}},
		{"this listing's token, in the default region", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders", PageSize: aws.Int32(-1), PageToken: orders},
			[]string{"page_size"}},
		{"this listing's token, its region named", &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "us-east-1", TableName: "Orders", PageSize: aws.Int32(-1), PageToken: orders},
			[]string{"page_size"}},
		{"another region's token", &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "eu-west-1", TableName: "Orders", PageSize: aws.Int32(-1), PageToken: orders},
			[]string{"page_size", "page_token"}},
		{"beside a bad table", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "a b", PageSize: aws.Int32(-1), PageToken: every},
			[]string{"table_name", "page_size"}},
		{"beside a bad filter", &backupv1.ListBackupsRequest{AccountId: "111111111111", BackupType: 9, PageSize: aws.Int32(-1), PageToken: orders},
			[]string{"backup_type", "page_size"}},
		{"beside a region not allowed", &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "us-west-2", PageSize: aws.Int32(-1), PageToken: every},
			[]string{"page_size", "region"}},
		{"in an account not configured", &backupv1.ListBackupsRequest{AccountId: "333333333333", PageSize: aws.Int32(-1), PageToken: every},
			[]string{"page_size"}},
		{"no token", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders", PageSize: aws.Int32(-1)},
			[]string{"page_size"}},
	}
	s := New(Options{Accounts: regional{}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields []string
			for _, v := range handlerViolations(t, s, tt.req) {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.want) {
				t.Errorf("violations of %v; want %v", fields, tt.want)
			}
		})
	}
}

// A request with a bad field and a region the account does not allow (in
// region, in a backup ARN, or a table ARN outside the default region) is
// told of each bad field at once, as google.rpc.BadRequest promises, not
// of the region only once the other fields are right; an account that is
// not configured, or a region field that is itself bad, leaves the
// violations as validation found them.
func TestRegionViolationsBesideTheOthers(t *testing.T) {
	const (
		farBackup = "arn:aws:dynamodb:us-west-2:111111111111:table/Orders/backup/01700000000000-abcdef12"
		euTable   = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
		euTable2  = "arn:aws:dynamodb:eu-west-1:222222222222:table/Orders"
	)
	tests := []struct {
		name string
		req  proto.Message
		want []string // fields, in order
		also string   // a description's part
	}{
		{"create: region not allowed", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "us-west-2", TableName: "Orders", BackupName: "x"},
			[]string{"backup_name", "region"}, `region "us-west-2" is not allowed for account 111111111111`},
		{"create: table ARN outside the default region", &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: euTable, BackupName: "x"},
			[]string{"backup_name", "table_name"}, "it must be in region us-east-1, the account's default"},
		{"create: table ARN of another account, outside the default region", &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: euTable2, BackupName: "x"},
			[]string{"table_name", "backup_name"}, "; and it is a table ARN in region eu-west-1"},
		{"create: table ARN in the region named", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "eu-west-1", TableName: euTable, BackupName: "x"},
			[]string{"backup_name"}, ""},
		{"create: account not configured", &backupv1.CreateBackupRequest{AccountId: "333333333333", Region: "us-west-2", TableName: "Orders", BackupName: "x"},
			[]string{"backup_name"}, ""},
		{"create: bad region shape", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "moon", TableName: "Orders", BackupName: "x"},
			[]string{"region", "backup_name"}, ""},
		{"list: region not allowed", &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "us-west-2", PageSize: aws.Int32(-1)},
			[]string{"page_size", "region"}, `region "us-west-2" is not allowed`},
		{"list: table ARN outside the default region", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: euTable, PageSize: aws.Int32(-1)},
			[]string{"page_size", "table_name"}, "the account's default"},
		{"restore: backup ARN's region not allowed", &backupv1.RestoreTableFromBackupRequest{BackupArn: farBackup, TargetTableName: "x"},
			[]string{"target_table_name", "backup_arn"}, `backup_arn names region "us-west-2", which is not allowed`},
	}
	s := New(Options{Accounts: regional{}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := handlerViolations(t, s, tt.req)
			var fields []string
			for _, v := range vs {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.want) {
				t.Errorf("violations of %v (%v); want %v", fields, vs, tt.want)
			}
			if tt.also != "" && !slices.ContainsFunc(vs, func(v badrequest.Violation) bool { return strings.Contains(v.Description, tt.also) }) {
				t.Errorf("violations %v; want one that says %q", vs, tt.also)
			}
		})
	}
}

// A warning from converting DynamoDB's answer is logged on the request's
// context and names the request as the request's own line does: its
// method, account, region and trace. Logged on a context of its own, it
// named none of them, and could not be told apart from the warnings of
// the requests beside it.
func TestConversionWarningNamesItsRequest(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	s := answeringServer(t, map[string]string{"DescribeBackup": `{"BackupDescription":{"BackupDetails":{"BackupArn":"` + arn +
		`","BackupName":"b","BackupStatus":"FROZEN","BackupType":"USER","BackupCreationDateTime":1700000000}}}`})
	logs := &testenv.Buffer{}
	s.log = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, _ := reqlog.New(t.Context(), backupv1.BackupService_GetBackup_FullMethodName)
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID,
		SpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled}))
	if _, err := s.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: arn}); err != nil {
		t.Fatal(err)
	}
	lines := logs.Lines("unknown DynamoDB enum value")
	if len(lines) != 1 {
		t.Fatalf("%d warnings of the unknown status; want 1:\n%s", len(lines), logs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"level": "WARN", "method": backupv1.BackupService_GetBackup_FullMethodName, "account": "111111111111",
		"region": "us-east-1", "trace_id": traceID.String(), "enum": "BackupStatus", "value": "FROZEN"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("the warning's %s is %v; want %q:\n%s", k, got[k], v, lines[0])
		}
	}
}

// recordingServer is answeringServer that also hands the body of each
// request DynamoDB got, by operation, to the test, and makes one attempt
// of each call.
func recordingServer(t *testing.T, answers map[string]string) (*Server, map[string][]string) {
	t.Helper()
	var mu sync.Mutex
	got := map[string][]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[op] = append(got[op], string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if strings.Contains(answers[op], `"__type"`) {
			w.WriteHeader(http.StatusBadRequest)
		}
		_, _ = w.Write([]byte(answers[op]))
	}))
	t.Cleanup(srv.Close)
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: aws.AnonymousCredentials{},
		RetryMaxAttempts: 1})
	return New(Options{Accounts: answering{c}}), got
}

// TestListBackupsPages: a listing asks DynamoDB for what the request
// filters, answers each summary DynamoDB gave, and a page token that
// the next page's request sends DynamoDB as its start; the last page has
// none, and a token of another listing is refused before DynamoDB is
// asked.
func TestListBackupsPages(t *testing.T) {
	const (
		first = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
		last  = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000001-abcdef12"
	)
	summary := func(arn string) string {
		return `{"TableName":"Orders","BackupArn":"` + arn + `","BackupName":"b","BackupStatus":"AVAILABLE","BackupType":"USER","BackupSizeBytes":7}`
	}
	s, got := recordingServer(t, map[string]string{
		"ListBackups": `{"BackupSummaries":[` + summary(first) + `,` + summary(last) + `],"LastEvaluatedBackupArn":"` + last + `"}`})
	ctx := context.Background()
	lower := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	req := &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders", PageSize: aws.Int32(2),
		BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_USER, TimeRangeLowerBound: timestamppb.New(lower)}
	resp, err := s.ListBackups(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []*backupv1.BackupSummary{
		{TableName: "Orders", BackupArn: first, BackupName: "b", BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE, BackupType: backupv1.BackupType_BACKUP_TYPE_USER, BackupSizeBytes: aws.Int64(7)},
		{TableName: "Orders", BackupArn: last, BackupName: "b", BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE, BackupType: backupv1.BackupType_BACKUP_TYPE_USER, BackupSizeBytes: aws.Int64(7)},
	}
	if !slices.EqualFunc(resp.GetBackupSummaries(), want, func(a, b *backupv1.BackupSummary) bool { return proto.Equal(a, b) }) {
		t.Errorf("summaries %v; want %v", resp.GetBackupSummaries(), want)
	}
	scope := listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER", lower: timeBoundScope{set: true, nanos: lower.UnixNano()}}
	if start, err := decodePageToken(scope, resp.GetNextPageToken()); err != nil || start != last {
		t.Errorf("next page token %q reads as %q, %v; want the page's last backup", resp.GetNextPageToken(), start, err)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(got["ListBackups"][0]), &sent); err != nil ||
		sent["TableName"] != "Orders" || sent["Limit"] != float64(2) || sent["BackupType"] != "USER" || sent["TimeRangeLowerBound"] != float64(lower.Unix()) ||
		sent["ExclusiveStartBackupArn"] != nil {
		t.Errorf("DynamoDB was asked %s", got["ListBackups"][0])
	}

	next := proto.CloneOf(req)
	next.PageToken = resp.GetNextPageToken()
	if _, err := s.ListBackups(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(got["ListBackups"][1]), &sent); err != nil || sent["ExclusiveStartBackupArn"] != last {
		t.Errorf("the next page asked DynamoDB %s; want it to start after %s", got["ListBackups"][1], last)
	}

	other := proto.CloneOf(next)
	other.TableName = "Other"
	_, err = s.ListBackups(ctx, other)
	if bad, ok := errors.AsType[*badrequest.Error](err); !ok || len(bad.Violations) != 1 || bad.Violations[0].Field != "page_token" || len(got["ListBackups"]) != 2 {
		t.Errorf("another listing's token: %v, DynamoDB asked %d times; want a page_token violation and no call", err, len(got["ListBackups"]))
	}

	s, _ = recordingServer(t, map[string]string{"ListBackups": `{"BackupSummaries":[` + summary(first) + `]}`})
	if resp, err := s.ListBackups(ctx, req); err != nil || resp.GetNextPageToken() != "" || len(resp.GetBackupSummaries()) != 1 {
		t.Errorf("the last page: %v, %v; want its summary and no token", resp, err)
	}
}

// TestDeleteBackupAnswersTheDescription: a DeleteBackup asks DynamoDB to
// delete the backup named, and answers with the description DynamoDB
// gave (the backup DELETED).
func TestDeleteBackupAnswersTheDescription(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	s, got := recordingServer(t, map[string]string{"DeleteBackup": `{"BackupDescription":{"BackupDetails":{"BackupArn":"` + arn +
		`","BackupName":"b","BackupStatus":"DELETED","BackupType":"USER"}}}`})
	resp, err := s.DeleteBackup(context.Background(), &backupv1.DeleteBackupRequest{BackupArn: arn})
	want := &backupv1.BackupDetails{BackupArn: arn, BackupName: "b", BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_DELETED, BackupType: backupv1.BackupType_BACKUP_TYPE_USER}
	if err != nil || !proto.Equal(resp.GetBackupDescription().GetBackupDetails(), want) {
		t.Errorf("DeleteBackup = %v, %v; want the description DynamoDB gave", resp, err)
	}
	if len(got["DeleteBackup"]) != 1 || !strings.Contains(got["DeleteBackup"][0], `"BackupArn":"`+arn+`"`) {
		t.Errorf("DynamoDB was asked %q", got["DeleteBackup"])
	}
}

// TestRestoreAnswersTheNewTable: a restore, with a request_id or
// without, asks DynamoDB for the table named from the backup named, and
// answers with the new table's description.
func TestRestoreAnswersTheNewTable(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	for _, requestID := range []string{"", "restore-1"} {
		s, got := recordingServer(t, map[string]string{"RestoreTableFromBackup": `{"TableDescription":{"TableName":"Copy",` +
			`"TableArn":"arn:aws:dynamodb:us-east-1:111111111111:table/Copy","TableStatus":"CREATING"}}`})
		resp, err := s.RestoreTableFromBackup(context.Background(), &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy", RequestId: requestID})
		want := &backupv1.TableDescription{TableName: "Copy", TableArn: "arn:aws:dynamodb:us-east-1:111111111111:table/Copy", TableStatus: backupv1.TableStatus_TABLE_STATUS_CREATING}
		if err != nil || !proto.Equal(resp.GetTableDescription(), want) {
			t.Errorf("request_id %q: restore = %v, %v; want the new table's description", requestID, resp, err)
		}
		if len(got["RestoreTableFromBackup"]) != 1 || got["RestoreTableFromBackup"][0] != `{"BackupArn":"`+arn+`","TargetTableName":"Copy"}` {
			t.Errorf("request_id %q: DynamoDB was asked %q", requestID, got["RestoreTableFromBackup"])
		}
	}
}

// TestRestoreFailures: a restore DynamoDB refuses fails with DynamoDB's
// error; one whose answer of success lacks the new table is an unknown
// outcome (the table may have been made), not a response that describes
// nothing.
func TestRestoreFailures(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	for _, tt := range []struct {
		name, answer string
		want         func(error) bool
	}{
		{"refused", `{"__type":"com.amazonaws.dynamodb.v20120810#TableAlreadyExistsException","message":"Table already exists: Copy"}`,
			func(err error) bool { return errors.As(err, new(*types.TableAlreadyExistsException)) }},
		{"no description", `{}`, func(err error) bool { return errors.As(err, new(*accounts.OutcomeUnknownError)) }},
		{"a description without the table's name", `{"TableDescription":{"TableStatus":"CREATING"}}`,
			func(err error) bool { return errors.As(err, new(*accounts.OutcomeUnknownError)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := recordingServer(t, map[string]string{"RestoreTableFromBackup": tt.answer})
			resp, err := s.RestoreTableFromBackup(context.Background(), &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy"})
			if resp != nil || !tt.want(err) {
				t.Errorf("restore = %v, %v", resp, err)
			}
		})
	}
}
