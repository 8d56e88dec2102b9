package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/sandbox"
	"github.com/backupd/backupd/testenv"
)

// escapeARN escapes a backup ARN as one path segment.
func escapeARN(arn string) string { return strings.ReplaceAll(arn, "/", "%2F") }

func TestBackupLifecycleOnMoto(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, b := testenv.UniqueAccountID(t), testenv.UniqueAccountID(t)
	dbA, dbB := asAccount(t, moto, a), asAccount(t, moto, b)
	createTable(t, dbA, "Life")
	createTable(t, dbB, "Life")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, Env: motoEnv(moto)})
	ctx := context.Background()

	created, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Life", BackupName: "life-1"})
	if err != nil {
		t.Fatal(err)
	}
	arn := created.GetBackupDetails().GetBackupArn()

	t.Run("get returns the created details and the source table", func(t *testing.T) {
		got, err := inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: arn})
		if err != nil {
			t.Fatal(err)
		}
		d, c := got.GetBackupDescription().GetBackupDetails(), created.GetBackupDetails()
		if d.GetBackupArn() != c.GetBackupArn() || d.GetBackupName() != c.GetBackupName() || d.GetBackupStatus() != c.GetBackupStatus() ||
			d.GetBackupType() != c.GetBackupType() || d.GetBackupSizeBytes() != c.GetBackupSizeBytes() ||
			absDur(d.GetBackupCreationDateTime().AsTime().Sub(c.GetBackupCreationDateTime().AsTime())) > time.Millisecond {
			t.Errorf("GetBackup details %v, CreateBackup details %v", d, c)
		}
		src := got.GetBackupDescription().GetSourceTableDetails()
		if src.GetTableName() != "Life" || src.GetTableArn() != "arn:aws:dynamodb:us-east-1:"+a+":table/Life" || len(src.GetKeySchema()) != 2 ||
			src.GetKeySchema()[0].GetKeyType() != backupv1.KeyType_KEY_TYPE_HASH || src.GetKeySchema()[1].GetAttributeName() != "sk" {
			t.Errorf("source table = %v", src)
		}
		// REST, with the ARN escaped as one segment, with : plain and as %3A.
		for _, p := range []string{escapeARN(arn), strings.ReplaceAll(escapeARN(arn), ":", "%3A")} {
			code, _, body := inst.rest(t, "GET", "/v1/backups/"+p, "")
			var resp struct {
				BackupDescription struct {
					BackupDetails struct{ BackupArn string } `json:"backupDetails"`
				} `json:"backupDescription"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &resp) != nil || resp.BackupDescription.BackupDetails.BackupArn != arn {
				t.Errorf("GET /v1/backups/%s: %d %s", p, code, body)
			}
		}
	})

	t.Run("list filters by table and stays in the account", func(t *testing.T) {
		createTable(t, dbA, "Other")
		if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Other", BackupName: "other-1"}); err != nil {
			t.Fatal(err)
		}
		got, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Life"})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.GetBackupSummaries(); len(s) != 1 || s[0].GetBackupArn() != arn || s[0].GetBackupName() != "life-1" ||
			s[0].GetTableName() != "Life" || s[0].GetBackupStatus() != backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE {
			t.Errorf("ListBackups(Life) = %v", s)
		}
		all, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL})
		if err != nil || len(all.GetBackupSummaries()) != 2 {
			t.Errorf("ListBackups(all of A) = %v, %v; want 2", all, err)
		}
		inB, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: b})
		if err != nil || len(inB.GetBackupSummaries()) != 0 {
			t.Errorf("ListBackups(B) = %v, %v; want none", inB, err)
		}
		code, _, body := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups?tableName=Life&pageSize=10", "")
		if code != http.StatusOK || !strings.Contains(string(body), `"backupArn":"`+arn+`"`) || strings.Contains(string(body), "other-1") {
			t.Errorf("REST list: %d %s", code, body)
		}
	})

	t.Run("restore creates the table in the backup's account only", func(t *testing.T) {
		got, err := inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "LifeRestored"})
		if err != nil {
			t.Fatal(err)
		}
		td := got.GetTableDescription()
		if td.GetTableName() != "LifeRestored" || td.GetTableStatus() == backupv1.TableStatus_TABLE_STATUS_UNSPECIFIED ||
			td.GetRestoreSummary().GetSourceBackupArn() != arn || !strings.Contains(td.GetTableArn(), ":"+a+":table/LifeRestored") {
			t.Errorf("restore = %v", td)
		}
		if _, err := dbA.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("LifeRestored")}); err != nil {
			t.Errorf("restored table not in account A: %v", err)
		}
		if _, err := dbB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("LifeRestored")}); err == nil {
			t.Error("restored table appeared in account B")
		}
		_, err = inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "LifeRestored"})
		if st := status.Convert(err); st.Code() != codes.AlreadyExists || reasonOf(st) != "TABLE_ALREADY_EXISTS" {
			t.Errorf("restore onto an existing table: %v", err)
		}
		code, _, body := inst.rest(t, "POST", "/v1/backups/"+escapeARN(arn)+":restore", `{"targetTableName":"LifeRestored"}`)
		if code != http.StatusConflict {
			t.Errorf("REST restore onto an existing table: %d %s", code, body)
		}
		code, _, body = inst.rest(t, "POST", "/v1/backups/"+escapeARN(arn)+":restore", `{"targetTableName":"LifeRestoredRest"}`)
		if code != http.StatusOK || !strings.Contains(string(body), `"tableName":"LifeRestoredRest"`) {
			t.Errorf("REST restore: %d %s", code, body)
		}
	})

	t.Run("delete then get is not found", func(t *testing.T) {
		got, err := inst.client.DeleteBackup(ctx, &backupv1.DeleteBackupRequest{BackupArn: arn})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.GetBackupDescription().GetBackupDetails().GetBackupStatus(); s != backupv1.BackupStatus_BACKUP_STATUS_DELETED {
			t.Errorf("deleted backup status = %s", s)
		}
		_, err = inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: arn})
		if st := status.Convert(err); st.Code() != codes.NotFound || reasonOf(st) != "BACKUP_NOT_FOUND" {
			t.Errorf("get after delete: %v", err)
		}
		_, err = inst.client.DeleteBackup(ctx, &backupv1.DeleteBackupRequest{BackupArn: arn})
		if status.Code(err) != codes.NotFound {
			t.Errorf("delete twice: %v", err)
		}
		other, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Life", BackupName: "life-2"})
		if err != nil {
			t.Fatal(err)
		}
		p := "/v1/backups/" + escapeARN(other.GetBackupDetails().GetBackupArn())
		if code, _, body := inst.rest(t, "DELETE", p, ""); code != http.StatusOK || !strings.Contains(string(body), "BACKUP_STATUS_DELETED") {
			t.Errorf("REST delete: %d %s", code, body)
		}
		if code, _, body := inst.rest(t, "GET", p, ""); code != http.StatusNotFound {
			t.Errorf("REST get after delete: %d %s", code, body)
		}
	})

	t.Run("an ARN of an unconfigured account is not found", func(t *testing.T) {
		foreign := strings.Replace(arn, ":"+a+":", ":"+testenv.UniqueAccountID(t)+":", 1)
		_, err := inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: foreign})
		if st := status.Convert(err); st.Code() != codes.NotFound || reasonOf(st) != "ACCOUNT_NOT_CONFIGURED" {
			t.Errorf("GetBackup: %v", err)
		}
		_, err = inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: foreign, TargetTableName: "Nope1"})
		if st := status.Convert(err); st.Code() != codes.NotFound || reasonOf(st) != "ACCOUNT_NOT_CONFIGURED" {
			t.Errorf("RestoreTableFromBackup: %v", err)
		}
		if code, _, body := inst.rest(t, "DELETE", "/v1/backups/"+escapeARN(foreign), ""); code != http.StatusNotFound {
			t.Errorf("REST delete: %d %s", code, body)
		}
	})
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestLifecycleRefusesBadInputWithoutCallingAWS(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(rec.URL)})
	ctx := context.Background()
	good := "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders/backup/01700000000000-abcdef12"
	badARNs := []struct{ name, arn, msgHas string }{
		{"empty", "", "is required"},
		{"another service", strings.Replace(good, ":dynamodb:", ":s3:", 1), "service"},
		{"a table ARN", "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders", "is a table ARN"},
		{"wrong partition", strings.Replace(good, "arn:aws:", "arn:aws-mars:", 1), "partition"},
		{"region outside partition", strings.Replace(good, "arn:aws:", "arn:aws-cn:", 1), "not in partition"},
		{"bad region", strings.Replace(good, "us-east-1", "useast", 1), "region"},
		{"short account", strings.Replace(good, a, a[:11], 1), "account id"},
		{"long account", strings.Replace(good, a, a+"1", 1), "account id"},
		{"extra segments", good + "/extra", "want table/TABLE/backup/BACKUP_ID"},
	}
	for _, tt := range badARNs {
		t.Run("arn/"+tt.name, func(t *testing.T) {
			for name, call := range map[string]func() error{
				"get": func() error {
					_, err := inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: tt.arn})
					return err
				},
				"delete": func() error {
					_, err := inst.client.DeleteBackup(ctx, &backupv1.DeleteBackupRequest{BackupArn: tt.arn})
					return err
				},
				"restore": func() error {
					_, err := inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: tt.arn, TargetTableName: "Target"})
					return err
				},
			} {
				st := status.Convert(call())
				if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "backup_arn") || !strings.Contains(st.Message(), tt.msgHas) {
					t.Errorf("%s: %s %q; want InvalidArgument naming backup_arn and %q", name, st.Code(), st.Message(), tt.msgHas)
				}
			}
			if tt.arn != "" {
				if code, _, body := inst.rest(t, "GET", "/v1/backups/"+url.PathEscape(tt.arn), ""); code != http.StatusBadRequest {
					t.Errorf("REST GET: %d %s", code, body)
				}
			}
		})
	}

	lower := timestamppb.New(time.Now())
	upper := timestamppb.New(time.Now().Add(-time.Hour))
	badLists := []struct {
		name  string
		req   *backupv1.ListBackupsRequest
		field string
	}{
		{"page size 101", &backupv1.ListBackupsRequest{AccountId: a, PageSize: proto32(101)}, "page_size"},
		{"page size negative", &backupv1.ListBackupsRequest{AccountId: a, PageSize: proto32(-5)}, "page_size"},
		{"time bounds reversed", &backupv1.ListBackupsRequest{AccountId: a, TimeRangeLowerBound: lower, TimeRangeUpperBound: upper}, "time_range_upper_bound"},
		{"unknown backup type", &backupv1.ListBackupsRequest{AccountId: a, BackupType: 99}, "backup_type"},
		{"tampered page token", &backupv1.ListBackupsRequest{AccountId: a, PageToken: "bm90LWEtdG9rZW4"}, "page_token"},
		{"bad account", &backupv1.ListBackupsRequest{AccountId: "12"}, "account_id"},
	}
	for _, tt := range badLists {
		t.Run("list/"+tt.name, func(t *testing.T) {
			_, err := inst.client.ListBackups(ctx, tt.req)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.field) {
				t.Errorf("%v; want InvalidArgument naming %s", err, tt.field)
			}
		})
	}
	for _, q := range []string{"pageSize=101", "pageSize=-1", "backupType=FOO", "pageSize=ten",
		"timeRangeLowerBound=2026-01-02T00:00:00Z&timeRangeUpperBound=2026-01-01T00:00:00Z"} {
		t.Run("list/rest/"+q, func(t *testing.T) {
			if code, _, body := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups?"+q, ""); code != http.StatusBadRequest {
				t.Errorf("%d %s; want 400", code, body)
			}
		})
	}
	for _, target := range []string{"", "ab", "bad name", strings.Repeat("x", 256)} {
		t.Run("restore target "+strconv.Quote(target), func(t *testing.T) {
			_, err := inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: good, TargetTableName: target})
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "target_table_name") {
				t.Errorf("%v; want InvalidArgument naming target_table_name", err)
			}
		})
	}
	if calls := rec.Calls(""); len(calls) != 0 {
		t.Errorf("bad input reached AWS: %d calls", len(calls))
	}
}

func proto32(v int32) *int32 { return &v }

// moto ignores ListBackups' Limit, ExclusiveStartBackupArn, time range and
// type filters, and leaves SourceTableFeatureDetails out of DescribeBackup.
// Paging as DynamoDB does it, those filters and the index details are
// therefore proven against the sandbox fake, still through the real binary
// and the real SDK over HTTP; TestListBackupsOnMotoHoldsItsPages shows
// backupd holding moto's answers to the request itself.
func startOnSandbox(t *testing.T, accounts ...sandbox.Account) (*instance, *sandbox.Fake) {
	t.Helper()
	fake := sandbox.New(sandbox.Options{Accounts: accounts})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	creds := fake.BaseCredentials()
	var cfg []account
	for _, a := range accounts {
		cfg = append(cfg, account{ID: a.ID, ExternalID: a.ExternalID})
	}
	inst := startBackupd(t, instanceOptions{Accounts: cfg, Env: []string{
		"AWS_ENDPOINT_URL=" + srv.URL, "AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
	}})
	return inst, fake
}

func TestListBackupsPagesWithoutGapOrRepeat(t *testing.T) {
	a, b := "100000000001", "100000000002"
	table := func(name string) sandbox.TableSpec {
		return sandbox.TableSpec{Name: name, HashKey: "pk", RangeKey: "sk", GSIs: []string{"ByCustomer"}, ItemCount: 3, SizeBytes: 300}
	}
	inst, _ := startOnSandbox(t,
		sandbox.Account{ID: a, RoleName: "backupd", ExternalID: "ext-a", Region: "us-east-1", Tables: []sandbox.TableSpec{table("Paged"), table("Other")}},
		sandbox.Account{ID: b, RoleName: "backupd", Region: "us-east-1", Tables: []sandbox.TableSpec{table("Paged")}},
	)
	ctx := context.Background()
	const n = 230
	want := map[string]bool{}
	var middle time.Time
	for i := range n {
		resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Paged", BackupName: "p-" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		want[resp.GetBackupDetails().GetBackupArn()] = true
		if i == n/2 {
			middle = resp.GetBackupDetails().GetBackupCreationDateTime().AsTime()
		}
	}
	for _, acct := range []string{a, b} {
		tbl := "Other"
		if acct == b {
			tbl = "Paged"
		}
		if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: acct, TableName: tbl, BackupName: "noise"}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("grpc", func(t *testing.T) {
		seen, pages, token := map[string]bool{}, 0, ""
		for {
			resp, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(50), PageToken: token})
			if err != nil {
				t.Fatalf("page %d: %v", pages, err)
			}
			pages++
			if len(resp.GetBackupSummaries()) > 50 {
				t.Fatalf("page of %d", len(resp.GetBackupSummaries()))
			}
			for _, s := range resp.GetBackupSummaries() {
				if seen[s.GetBackupArn()] {
					t.Errorf("repeated %s", s.GetBackupArn())
				}
				seen[s.GetBackupArn()] = true
				if !want[s.GetBackupArn()] {
					t.Errorf("unexpected %s (%s)", s.GetBackupArn(), s.GetBackupName())
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(seen) != n || pages != 5 {
			t.Errorf("%d backups in %d pages; want %d in 5", len(seen), pages, n)
		}
	})

	t.Run("rest", func(t *testing.T) {
		seen, token := map[string]bool{}, ""
		for range 20 {
			q := url.Values{"tableName": {"Paged"}, "pageSize": {"100"}}
			if token != "" {
				q.Set("pageToken", token)
			}
			code, _, body := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups?"+q.Encode(), "")
			var resp struct {
				BackupSummaries []struct{ BackupArn string } `json:"backupSummaries"`
				NextPageToken   string                       `json:"nextPageToken"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &resp) != nil {
				t.Fatalf("%d %s", code, body)
			}
			for _, s := range resp.BackupSummaries {
				if seen[s.BackupArn] || !want[s.BackupArn] {
					t.Errorf("repeated or unexpected %s", s.BackupArn)
				}
				seen[s.BackupArn] = true
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if len(seen) != n {
			t.Errorf("REST paging saw %d backups, want %d", len(seen), n)
		}
	})

	t.Run("page size 0 or absent means 50", func(t *testing.T) {
		for name, size := range map[string]*int32{"absent": nil, "0": proto32(0)} {
			resp, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: size})
			if err != nil || len(resp.GetBackupSummaries()) != 50 || resp.GetNextPageToken() == "" {
				t.Errorf("page size %s: %d summaries, token %q, %v; want 50 and a token", name, len(resp.GetBackupSummaries()), resp.GetNextPageToken(), err)
			}
		}
		for _, q := range []string{"", "&pageSize=0"} {
			code, _, body := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups?tableName=Paged"+q, "")
			var page struct {
				BackupSummaries []json.RawMessage `json:"backupSummaries"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.BackupSummaries) != 50 {
				t.Errorf("REST %q: %d, %d summaries; want 200 and 50", q, code, len(page.BackupSummaries))
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		all, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL, PageSize: proto32(100)})
		if err != nil || len(all.GetBackupSummaries()) != 100 {
			t.Fatalf("ALL, first page: %d, %v", len(all.GetBackupSummaries()), err)
		}
		system, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_SYSTEM})
		if err != nil || len(system.GetBackupSummaries()) != 0 {
			t.Errorf("SYSTEM: %v, %v; want none", system, err)
		}
		other, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Other"})
		if err != nil || len(other.GetBackupSummaries()) != 1 || other.GetBackupSummaries()[0].GetBackupName() != "noise" {
			t.Errorf("table Other: %v, %v", other, err)
		}
		later, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(100),
			TimeRangeLowerBound: timestamppb.New(middle)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range later.GetBackupSummaries() {
			if s.GetBackupCreationDateTime().AsTime().Before(middle.Add(-time.Millisecond)) {
				t.Errorf("%s created %s, before the lower bound %s", s.GetBackupName(), s.GetBackupCreationDateTime().AsTime(), middle)
			}
		}
		if k := len(later.GetBackupSummaries()); k == 0 || k >= n {
			t.Errorf("time range kept %d of %d", k, n)
		}
	})

	t.Run("a token only works with its own listing", func(t *testing.T) {
		first, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(10)})
		if err != nil || first.GetNextPageToken() == "" {
			t.Fatalf("%v %v", first, err)
		}
		tok := first.GetNextPageToken()
		for name, req := range map[string]*backupv1.ListBackupsRequest{
			"other account": {AccountId: b, TableName: "Paged", PageSize: proto32(10), PageToken: tok},
			"other table":   {AccountId: a, TableName: "Other", PageSize: proto32(10), PageToken: tok},
			"other type":    {AccountId: a, TableName: "Paged", PageSize: proto32(10), PageToken: tok, BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL},
			"altered":       {AccountId: a, TableName: "Paged", PageSize: proto32(10), PageToken: tok[:len(tok)-2] + "AA"},
		} {
			_, err := inst.client.ListBackups(ctx, req)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "page_token") {
				t.Errorf("%s: %v; want InvalidArgument naming page_token", name, err)
			}
		}
		// A different page size is the same listing: the token still works.
		if _, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(20), PageToken: tok}); err != nil {
			t.Errorf("same listing, other page size: %v", err)
		}
		// So is the table named by its ARN.
		byARN := "arn:aws:dynamodb:us-east-1:" + a + ":table/Paged"
		if _, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: byARN, PageSize: proto32(10), PageToken: tok}); err != nil {
			t.Errorf("same listing, the table by its ARN: %v", err)
		}
	})
}

func TestGetBackupCarriesSourceTableFeatures(t *testing.T) {
	a := "100000000003"
	inst, _ := startOnSandbox(t, sandbox.Account{ID: a, RoleName: "backupd", Region: "us-east-1", Tables: []sandbox.TableSpec{
		{Name: "Indexed", HashKey: "pk", RangeKey: "sk", GSIs: []string{"ByCustomer", "ByDate"}, ItemCount: 7, SizeBytes: 700},
	}})
	ctx := context.Background()
	created, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Indexed", BackupName: "idx"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: created.GetBackupDetails().GetBackupArn()})
	if err != nil {
		t.Fatal(err)
	}
	src, feat := got.GetBackupDescription().GetSourceTableDetails(), got.GetBackupDescription().GetSourceTableFeatureDetails()
	if src.GetItemCount() != 7 || src.GetTableSizeBytes() != 700 || src.GetBillingMode() != backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST || src.GetTableId() == "" {
		t.Errorf("source table = %v", src)
	}
	gsis := feat.GetGlobalSecondaryIndexes()
	if len(gsis) != 2 || gsis[0].GetIndexName() != "ByCustomer" || gsis[1].GetIndexName() != "ByDate" ||
		gsis[0].GetKeySchema()[0].GetKeyType() != backupv1.KeyType_KEY_TYPE_HASH ||
		gsis[0].GetProjection().GetProjectionType() != backupv1.ProjectionType_PROJECTION_TYPE_ALL {
		t.Errorf("global secondary indexes = %v", gsis)
	}
	// Restore keeping one index only, and on provisioned billing: the copied
	// index of an on-demand table has 0/0 throughput, which means none.
	keep := gsis[0]
	keep.ProvisionedThroughput = &backupv1.ProvisionedThroughput{ReadCapacityUnits: 2, WriteCapacityUnits: 3}
	restored, err := inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{
		BackupArn: created.GetBackupDetails().GetBackupArn(), TargetTableName: "IndexedCopy",
		BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PROVISIONED,
		ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 5},
		GlobalSecondaryIndexOverride:  &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{keep}},
	})
	if err != nil {
		t.Fatal(err)
	}
	td := restored.GetTableDescription()
	if td.GetBillingMode() != backupv1.BillingMode_BILLING_MODE_PROVISIONED || td.GetProvisionedThroughput().GetReadCapacityUnits() != 5 ||
		len(td.GetGlobalSecondaryIndexes()) != 1 || td.GetGlobalSecondaryIndexes()[0].GetIndexName() != "ByCustomer" {
		t.Errorf("restored table = %v", td)
	}
}

func TestEachOperationHasItsOwnLimit(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto)})
	ctx := context.Background()
	// ListBackups is limited to 5/s: of 30 at once, about 6 pass within the 1s wait.
	const n = 30
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a})
			errs <- err
		}()
	}
	passed, limited := 0, 0
	for range n {
		err := <-errs
		st := status.Convert(err)
		switch {
		case err == nil:
			passed++
		case st.Code() == codes.ResourceExhausted && reasonOf(st) == "RATE_LIMITED" && strings.Contains(st.Message(), "ListBackups"):
			limited++
		default:
			t.Errorf("ListBackups: %v", err)
		}
	}
	if passed < 4 || passed > 8 || limited != n-passed {
		t.Errorf("ListBackups at 5/s: %d passed, %d limited of %d at once", passed, limited, n)
	}
	// CreateBackup has its own limiter: it is not held up by ListBackups'.
	if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Missing", BackupName: "x-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("CreateBackup after the ListBackups flood: %v", err)
	}
}

// TestListBackupsOnMotoAfterADeletedStart: moto answers every backup of
// a table at once, ignoring paging; when the backup a page token reads on
// after was deleted, the next page goes on from where it was, rather than
// from the table's first backup again.
func TestListBackupsOnMotoAfterADeletedStart(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	createTable(t, asAccount(t, moto, a), "Paged")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto)})
	ctx := context.Background()
	var made []string
	for i := range 6 {
		time.Sleep(2 * time.Millisecond) // each in a millisecond of its own, as its ARN tells
		resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Paged", BackupName: fmt.Sprintf("paged-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, resp.GetBackupDetails().GetBackupArn())
	}
	first, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(2)})
	if err != nil || len(first.GetBackupSummaries()) != 2 || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, %v", first, err)
	}
	if _, err := inst.client.DeleteBackup(ctx, &backupv1.DeleteBackupRequest{BackupArn: first.GetBackupSummaries()[1].GetBackupArn()}); err != nil {
		t.Fatal(err)
	}
	next, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(2), PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range next.GetBackupSummaries() {
		got = append(got, s.GetBackupArn())
	}
	if want := made[2:4]; !slices.Equal(got, want) {
		t.Errorf("the page after a deleted start holds %q; want %q, the two after it", got, want)
	}
	// A page large enough for what is left: moto's answer is within the
	// limit, and holds the backup made before the start as well.
	rest, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Paged", PageSize: proto32(5), PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range rest.GetBackupSummaries() {
		got = append(got, s.GetBackupArn())
	}
	if want := made[2:]; !slices.Equal(got, want) || rest.GetNextPageToken() != "" {
		t.Errorf("the last page after a deleted start holds %q, next %q; want %q, the four after it, and no next page", got, rest.GetNextPageToken(), want)
	}
}

// moto answers ListBackups with every backup of the table, whatever the
// Limit, start and filters: backupd still answers at most page_size
// summaries, pages on from the last one without gap or repeat, and keeps
// to the filters.
func TestListBackupsOnMotoHoldsItsPages(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	createTable(t, asAccount(t, moto, a), "Many")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto)})
	ctx := context.Background()
	const backups = 25
	made := map[string]bool{}
	var first, eleventh time.Time
	for i := range backups {
		if i == 10 {
			// Well clear of the tenth, whose time the SDK may read up to
			// a millisecond early.
			time.Sleep(20 * time.Millisecond)
		}
		resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Many", BackupName: fmt.Sprintf("many-%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
		made[resp.GetBackupDetails().GetBackupArn()] = true
		switch i {
		case 0:
			first = resp.GetBackupDetails().GetBackupCreationDateTime().AsTime()
		case 10:
			eleventh = resp.GetBackupDetails().GetBackupCreationDateTime().AsTime()
		}
	}

	seen := map[string]bool{}
	var sizes []int
	token := ""
	for range backups {
		resp, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a, TableName: "Many", PageSize: proto32(10), PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(resp.GetBackupSummaries()))
		for _, s := range resp.GetBackupSummaries() {
			if seen[s.GetBackupArn()] || !made[s.GetBackupArn()] {
				t.Errorf("page %d: %s repeated or not made here", len(sizes), s.GetBackupArn())
			}
			seen[s.GetBackupArn()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) || len(seen) != backups {
		t.Errorf("pages of %v holding %d backups; want pages of [10 10 5] holding all %d", sizes, len(seen), backups)
	}

	code, _, body := inst.rest(t, "GET", "/v1/accounts/"+a+"/backups?tableName=Many&pageSize=7", "")
	var page struct {
		BackupSummaries []json.RawMessage `json:"backupSummaries"`
		NextPageToken   string            `json:"nextPageToken"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.BackupSummaries) != 7 || page.NextPageToken == "" {
		t.Errorf("REST pageSize=7: %d, %d summaries, token %q", code, len(page.BackupSummaries), page.NextPageToken)
	}

	for _, tt := range []struct {
		name string
		req  *backupv1.ListBackupsRequest
		want int
	}{
		{"system backups", &backupv1.ListBackupsRequest{AccountId: a, BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_SYSTEM}, 0},
		{"made before the first", &backupv1.ListBackupsRequest{AccountId: a, TimeRangeUpperBound: timestamppb.New(first)}, 0},
		{"made from the first on", &backupv1.ListBackupsRequest{AccountId: a, TimeRangeLowerBound: timestamppb.New(first), PageSize: proto32(100)}, backups},
		{"made from the eleventh on", &backupv1.ListBackupsRequest{AccountId: a, TimeRangeLowerBound: timestamppb.New(eleventh)}, backups - 10},
		{"made before the eleventh", &backupv1.ListBackupsRequest{AccountId: a, TimeRangeUpperBound: timestamppb.New(eleventh)}, 10},
		{"another table", &backupv1.ListBackupsRequest{AccountId: a, TableName: "None"}, 0},
	} {
		resp, err := inst.client.ListBackups(ctx, tt.req)
		if err != nil || len(resp.GetBackupSummaries()) != tt.want {
			t.Errorf("%s: %d summaries, %v; want %d", tt.name, len(resp.GetBackupSummaries()), err, tt.want)
		}
	}
}
