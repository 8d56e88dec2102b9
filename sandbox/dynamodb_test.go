package sandbox_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/sandbox"
)

var backupARNPattern = regexp.MustCompile(`^arn:aws:dynamodb:([a-z0-9-]+):(\d{12}):table/([a-zA-Z0-9_.-]{3,255})/backup/(\d{14})-[0-9a-f]{8}$`)

// TestDemoBackupsShowEachPartOfATable: a backup of the demo Events table
// describes its local secondary index and its stream, and one of Orders
// its global secondary index, so that a caller of the sandbox sees each
// part of a backup's description filled.
func TestDemoBackupsShowEachPartOfATable(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	db := e.dynamo(e.assumed("111111111111", ""), "us-east-1")
	describe := func(table string) *types.SourceTableFeatureDetails {
		out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String(table), BackupName: aws.String("parts")})
		if err != nil {
			t.Fatal(err)
		}
		desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: out.BackupDetails.BackupArn})
		if err != nil {
			t.Fatal(err)
		}
		return desc.BackupDescription.SourceTableFeatureDetails
	}
	events := describe("Events")
	if len(events.LocalSecondaryIndexes) != 1 || aws.ToString(events.LocalSecondaryIndexes[0].IndexName) != "ByType" ||
		len(events.LocalSecondaryIndexes[0].KeySchema) != 2 || events.LocalSecondaryIndexes[0].Projection.ProjectionType != types.ProjectionTypeKeysOnly {
		t.Errorf("Events' local indexes: %+v; want ByType on pk and lsi1sk, keys only", events.LocalSecondaryIndexes)
	}
	if s := events.StreamDescription; s == nil || !aws.ToBool(s.StreamEnabled) || s.StreamViewType != types.StreamViewTypeNewAndOldImages {
		t.Errorf("Events' stream: %+v; want new and old images", s)
	}
	if orders := describe("Orders"); len(orders.GlobalSecondaryIndexes) != 1 || orders.StreamDescription == nil || aws.ToBool(orders.StreamDescription.StreamEnabled) {
		t.Errorf("Orders: %+v; want its one global index and no stream", orders)
	}
}

func TestBackupsStayInTheirAccount(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	accounts := []string{"111111111111", "222222222222"}
	creds := map[string]aws.CredentialsProvider{}
	arns := map[string]string{}
	for _, acct := range accounts {
		creds[acct] = e.assumed(acct, "")
		out, err := e.dynamo(creds[acct], "us-east-1").CreateBackup(ctx, &dynamodb.CreateBackupInput{
			TableName:  aws.String("Orders"),
			BackupName: aws.String("nightly"),
		})
		if err != nil {
			t.Fatalf("CreateBackup in %s: %v", acct, err)
		}
		arn := aws.ToString(out.BackupDetails.BackupArn)
		m := backupARNPattern.FindStringSubmatch(arn)
		if m == nil || m[1] != "us-east-1" || m[2] != acct || m[3] != "Orders" {
			t.Fatalf("backup ARN %q is not an Orders backup ARN of account %s in us-east-1", arn, acct)
		}
		arns[acct] = arn
	}

	for i, acct := range accounts {
		other := accounts[1-i]
		t.Run(acct, func(t *testing.T) {
			db := e.dynamo(creds[acct], "us-east-1")
			list, err := db.ListBackups(ctx, &dynamodb.ListBackupsInput{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.BackupSummaries) != 1 || aws.ToString(list.BackupSummaries[0].BackupArn) != arns[acct] {
				t.Errorf("ListBackups = %v, want only %s", summaryARNs(list.BackupSummaries), arns[acct])
			}
			if _, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: aws.String(arns[other])}); errorCode(err) != "AccessDeniedException" {
				t.Errorf("DescribeBackup of %s's backup: %v, want AccessDeniedException", other, err)
			}
			otherTable := "arn:aws:dynamodb:us-east-1:" + other + ":table/Orders"
			if _, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String(otherTable), BackupName: aws.String("steal")}); errorCode(err) != "AccessDeniedException" {
				t.Errorf("CreateBackup of %s: %v, want AccessDeniedException", otherTable, err)
			}
			desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Orders")})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(aws.ToString(desc.Table.TableArn), ":"+acct+":") {
				t.Errorf("DescribeTable ARN %s, want account %s", aws.ToString(desc.Table.TableArn), acct)
			}
		})
	}

	// The same account in another region has nothing.
	west := e.dynamo(creds["111111111111"], "eu-west-1")
	if list, err := west.ListBackups(ctx, &dynamodb.ListBackupsInput{}); err != nil || len(list.BackupSummaries) != 0 {
		t.Errorf("ListBackups in eu-west-1 = %v, %v; want none", list, err)
	}
	var rnf *types.ResourceNotFoundException
	if _, err := west.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Orders")}); !errors.As(err, &rnf) {
		t.Errorf("DescribeTable Orders in eu-west-1: %v, want ResourceNotFoundException", err)
	}
	if got := e.fake.AssumeRoleCalls(); got != 2 {
		t.Errorf("AssumeRoleCalls() = %d, want 2: the credentials cache should assume each role once", got)
	}
}

func summaryARNs(s []types.BackupSummary) []string {
	out := make([]string, len(s))
	for i, b := range s {
		out[i] = aws.ToString(b.BackupArn)
	}
	return out
}

// created is a backup as CreateBackup returned it, with the creation time in
// milliseconds read from its ARN.
type created struct {
	arn, table string
	ms         int64
}

func TestListBackupsPaging(t *testing.T) {
	// The clock ticks 200µs per reading and a request reads it twice, so
	// several backups share a millisecond and the ARN must break ties.
	clk := newClock(time.Now().Truncate(time.Second), 200*time.Microsecond)
	e := start(t, sandbox.Options{Now: clk.Now, Accounts: []sandbox.Account{{
		ID: "111111111111", RoleName: "backupd-sandbox", Region: "us-east-1",
		Tables: []sandbox.TableSpec{{Name: "Alpha", HashKey: "pk"}, {Name: "Beta", HashKey: "pk"}},
	}}})
	ctx := t.Context()
	db := e.in("111111111111")
	var all []created
	for i := range 230 {
		table := "Alpha"
		if i%3 == 2 {
			table = "Beta"
		}
		out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String(table), BackupName: aws.String(fmt.Sprintf("b-%03d", i))})
		if err != nil {
			t.Fatal(err)
		}
		arn := aws.ToString(out.BackupDetails.BackupArn)
		m := backupARNPattern.FindStringSubmatch(arn)
		if m == nil {
			t.Fatalf("bad backup ARN %q", arn)
		}
		ms, _ := strconv.ParseInt(m[4], 10, 64)
		all = append(all, created{arn: arn, table: table, ms: ms})
	}
	slices.SortFunc(all, func(a, b created) int { return cmp.Or(cmp.Compare(a.ms, b.ms), cmp.Compare(a.arn, b.arn)) })
	ties := 0
	for i := 1; i < len(all); i++ {
		if all[i].ms == all[i-1].ms {
			ties++
		}
	}
	if ties == 0 {
		t.Fatal("no two backups share a millisecond; the test would not exercise ARN tie-breaking")
	}
	pick := func(keep func(created) bool) []string {
		var out []string
		for _, c := range all {
			if keep(c) {
				out = append(out, c.arn)
			}
		}
		return out
	}
	lower, upper := all[50].ms, all[120].ms

	tests := []struct {
		name  string
		input dynamodb.ListBackupsInput
		want  []string
	}{
		{name: "all, 7 per page", input: dynamodb.ListBackupsInput{Limit: aws.Int32(7)}, want: pick(func(created) bool { return true })},
		{name: "all, default page", input: dynamodb.ListBackupsInput{}, want: pick(func(created) bool { return true })},
		{name: "all types, 100 per page", input: dynamodb.ListBackupsInput{Limit: aws.Int32(100), BackupType: types.BackupTypeFilterAll}, want: pick(func(created) bool { return true })},
		{name: "user backups, 1 per page", input: dynamodb.ListBackupsInput{Limit: aws.Int32(1), BackupType: types.BackupTypeFilterUser}, want: pick(func(created) bool { return true })},
		{name: "system backups", input: dynamodb.ListBackupsInput{BackupType: types.BackupTypeFilterSystem}, want: nil},
		{name: "aws backup backups", input: dynamodb.ListBackupsInput{BackupType: types.BackupTypeFilterAwsBackup}, want: nil},
		{name: "table by name", input: dynamodb.ListBackupsInput{TableName: aws.String("Alpha"), Limit: aws.Int32(13)}, want: pick(func(c created) bool { return c.table == "Alpha" })},
		{name: "table by ARN", input: dynamodb.ListBackupsInput{TableName: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Beta"), Limit: aws.Int32(9)}, want: pick(func(c created) bool { return c.table == "Beta" })},
		{name: "missing table", input: dynamodb.ListBackupsInput{TableName: aws.String("Gamma")}, want: nil},
		{
			name:  "time range",
			input: dynamodb.ListBackupsInput{TimeRangeLowerBound: aws.Time(time.UnixMilli(lower)), TimeRangeUpperBound: aws.Time(time.UnixMilli(upper)), Limit: aws.Int32(11)},
			want:  pick(func(c created) bool { return c.ms >= lower && c.ms < upper }),
		},
		{
			name:  "time range and table",
			input: dynamodb.ListBackupsInput{TableName: aws.String("Beta"), TimeRangeLowerBound: aws.Time(time.UnixMilli(lower)), Limit: aws.Int32(5)},
			want:  pick(func(c created) bool { return c.table == "Beta" && c.ms >= lower }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := listAll(t, db, tc.input, nil)
			if !slices.Equal(got, tc.want) {
				t.Errorf("paged through %d backups, want %d; first difference at %d", len(got), len(tc.want), firstDiff(got, tc.want))
			}
		})
	}

	// Deleting backups between pages, the page's last one included, leaves
	// no gap and no repeat among the rest.
	t.Run("deletions while paging", func(t *testing.T) {
		deleted := map[string]bool{}
		got := listAll(t, db, dynamodb.ListBackupsInput{Limit: aws.Int32(10)}, func(last string, page int) {
			if page%3 != 0 {
				return
			}
			for _, arn := range []string{last, nextAfter(all, last)} {
				if arn == "" {
					continue
				}
				if _, err := db.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: aws.String(arn)}); err != nil {
					t.Fatalf("DeleteBackup: %v", err)
				}
				deleted[arn] = true
			}
		})
		var want []string
		for _, c := range all {
			if !deleted[c.arn] || slices.Contains(got, c.arn) {
				want = append(want, c.arn)
			}
		}
		if !slices.Equal(got, want) || len(deleted) == 0 {
			t.Errorf("paged through %d backups with %d deleted, want %d; first difference at %d", len(got), len(deleted), len(want), firstDiff(got, want))
		}
	})
}

// listAll pages through ListBackups and returns the ARNs in order. It fails
// on a page over the limit or a repeated ARN. between runs after each page
// that has a successor.
func listAll(t *testing.T, db *dynamodb.Client, in dynamodb.ListBackupsInput, between func(last string, page int)) []string {
	t.Helper()
	var got []string
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if page > 1000 {
			t.Fatal("paging does not end")
		}
		out, err := db.ListBackups(t.Context(), &in)
		if err != nil {
			t.Fatalf("ListBackups page %d: %v", page, err)
		}
		if limit := aws.ToInt32(in.Limit); limit > 0 && len(out.BackupSummaries) > int(limit) {
			t.Fatalf("page %d has %d backups, over the limit %d", page, len(out.BackupSummaries), limit)
		}
		for _, s := range out.BackupSummaries {
			arn := aws.ToString(s.BackupArn)
			if seen[arn] {
				t.Fatalf("backup %s listed twice", arn)
			}
			seen[arn] = true
			got = append(got, arn)
		}
		if out.LastEvaluatedBackupArn == nil {
			return got
		}
		if between != nil {
			between(*out.LastEvaluatedBackupArn, page)
		}
		in.ExclusiveStartBackupArn = out.LastEvaluatedBackupArn
	}
}

func nextAfter(all []created, arn string) string {
	i := slices.IndexFunc(all, func(c created) bool { return c.arn == arn })
	if i < 0 || i+1 >= len(all) {
		return ""
	}
	return all[i+1].arn
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestBackupRoundTrip(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts(), Now: newClock(t0, 0).Now})
	ctx := t.Context()
	db := e.in("111111111111")

	orders, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Orders")})
	if err != nil {
		t.Fatal(err)
	}
	tableID := aws.ToString(orders.Table.TableId)

	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: orders.Table.TableArn, BackupName: aws.String("before-migration")})
	if err != nil {
		t.Fatal(err)
	}
	d := out.BackupDetails
	if d.BackupStatus != types.BackupStatusAvailable || d.BackupType != types.BackupTypeUser || aws.ToInt64(d.BackupSizeBytes) != 480_000 ||
		aws.ToString(d.BackupName) != "before-migration" || !near(aws.ToTime(d.BackupCreationDateTime), t0) || d.BackupExpiryDateTime != nil {
		t.Errorf("CreateBackup details = %+v", d)
	}
	arn := d.BackupArn

	desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	src := desc.BackupDescription.SourceTableDetails
	wantKeys := []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}}
	if aws.ToString(src.TableName) != "Orders" || aws.ToString(src.TableId) != tableID || aws.ToString(src.TableArn) != aws.ToString(orders.Table.TableArn) ||
		aws.ToInt64(src.TableSizeBytes) != 480_000 || aws.ToInt64(src.ItemCount) != 1200 || src.BillingMode != types.BillingModePayPerRequest ||
		!keysEqual(src.KeySchema, wantKeys) || !near(aws.ToTime(src.TableCreationDateTime), t0) || src.ProvisionedThroughput == nil {
		t.Errorf("SourceTableDetails = %+v", src)
	}
	feat := desc.BackupDescription.SourceTableFeatureDetails
	if len(feat.GlobalSecondaryIndexes) != 1 || aws.ToString(feat.GlobalSecondaryIndexes[0].IndexName) != "ByCustomer" ||
		aws.ToString(feat.GlobalSecondaryIndexes[0].KeySchema[0].AttributeName) != "gsi1pk" ||
		feat.GlobalSecondaryIndexes[0].Projection.ProjectionType != types.ProjectionTypeAll ||
		feat.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusDisabled ||
		aws.ToBool(feat.StreamDescription.StreamEnabled) || len(feat.LocalSecondaryIndexes) != 0 || feat.SSEDescription != nil {
		t.Errorf("SourceTableFeatureDetails = %+v", feat)
	}
	if *desc.BackupDescription.BackupDetails.BackupArn != *arn {
		t.Errorf("DescribeBackup ARN %s, want %s", *desc.BackupDescription.BackupDetails.BackupArn, *arn)
	}

	restored, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
		BackupArn:                     arn,
		TargetTableName:               aws.String("Orders-restored"),
		BillingModeOverride:           types.BillingModeProvisioned,
		ProvisionedThroughputOverride: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(10), WriteCapacityUnits: aws.Int64(5)},
		GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{{
			IndexName:             aws.String("ByCustomer"),
			KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String("gsi1pk"), KeyType: types.KeyTypeHash}},
			Projection:            &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
			ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(3), WriteCapacityUnits: aws.Int64(2)},
		}},
		SSESpecificationOverride: &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String("alias/backups")},
	})
	if err != nil {
		t.Fatal(err)
	}
	td := restored.TableDescription
	rs := td.RestoreSummary
	// Answered as DynamoDB answers a restore it has taken: CREATING, empty,
	// the restore in progress, of the backup's time, its key by the key's
	// ARN, not the alias's.
	if td.TableStatus != types.TableStatusCreating || aws.ToString(td.TableName) != "Orders-restored" || aws.ToInt64(td.ItemCount) != 0 ||
		aws.ToInt64(td.TableSizeBytes) != 0 || td.GlobalSecondaryIndexes[0].IndexStatus != types.IndexStatusCreating ||
		td.BillingModeSummary.BillingMode != types.BillingModeProvisioned ||
		aws.ToInt64(td.ProvisionedThroughput.ReadCapacityUnits) != 10 || aws.ToInt64(td.ProvisionedThroughput.WriteCapacityUnits) != 5 ||
		len(td.GlobalSecondaryIndexes) != 1 || aws.ToInt64(td.GlobalSecondaryIndexes[0].ProvisionedThroughput.ReadCapacityUnits) != 3 ||
		td.GlobalSecondaryIndexes[0].Projection.ProjectionType != types.ProjectionTypeKeysOnly ||
		td.SSEDescription == nil || !strings.HasPrefix(aws.ToString(td.SSEDescription.KMSMasterKeyArn), "arn:aws:kms:us-east-1:111111111111:key/") ||
		rs == nil || aws.ToString(rs.SourceBackupArn) != *arn || aws.ToString(rs.SourceTableArn) != aws.ToString(orders.Table.TableArn) ||
		!aws.ToBool(rs.RestoreInProgress) || !aws.ToTime(rs.RestoreDateTime).Equal(aws.ToTime(desc.BackupDescription.BackupDetails.BackupCreationDateTime)) ||
		aws.ToString(td.TableId) == tableID {
		t.Errorf("restored TableDescription = %+v, RestoreSummary = %+v", td, rs)
	}
	// The fake restores at once.
	again, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Orders-restored")})
	if err != nil || again.Table.TableStatus != types.TableStatusActive || aws.ToInt64(again.Table.ItemCount) != 1200 ||
		again.Table.RestoreSummary == nil || aws.ToString(again.Table.RestoreSummary.SourceBackupArn) != *arn || aws.ToBool(again.Table.RestoreSummary.RestoreInProgress) {
		t.Errorf("DescribeTable of the restored table = %+v, %v", again, err)
	}
	// The alias's ARN names the same key as the alias.
	byARN, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{BackupArn: arn, TargetTableName: aws.String("Orders-restored-2"),
		SSESpecificationOverride: &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String("arn:aws:kms:us-east-1:111111111111:alias/backups")}})
	if err != nil || aws.ToString(byARN.TableDescription.SSEDescription.KMSMasterKeyArn) != aws.ToString(td.SSEDescription.KMSMasterKeyArn) {
		t.Errorf("restore with the alias's ARN: %v; key %v, want %s", err, byARN, aws.ToString(td.SSEDescription.KMSMasterKeyArn))
	}

	// Dropping every index drops their key attributes too.
	bare, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
		BackupArn: arn, TargetTableName: aws.String("Orders-bare"), GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bare.TableDescription.GlobalSecondaryIndexes) != 0 || len(bare.TableDescription.AttributeDefinitions) != 2 ||
		bare.TableDescription.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("restore without indexes = %+v", bare.TableDescription)
	}

	deleted, err := db.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	if deleted.BackupDescription.BackupDetails.BackupStatus != types.BackupStatusDeleted || aws.ToString(deleted.BackupDescription.SourceTableDetails.TableName) != "Orders" {
		t.Errorf("DeleteBackup = %+v", deleted.BackupDescription.BackupDetails)
	}
	var bnf *types.BackupNotFoundException
	if _, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: arn}); !errors.As(err, &bnf) {
		t.Errorf("DescribeBackup after delete: %v, want BackupNotFoundException", err)
	}
	if _, err := db.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn}); !errors.As(err, &bnf) {
		t.Errorf("DeleteBackup twice: %v, want BackupNotFoundException", err)
	}
}

// TestDemoTableWithManagedKey: Customers is encrypted with the account's
// AWS managed key, so its description and its backups' say so.
func TestDemoTableWithManagedKey(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	db := e.in("222222222222")
	table, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Customers")})
	if err != nil {
		t.Fatal(err)
	}
	// A key's ARN, as DynamoDB names the AWS managed key, not its alias's.
	key := aws.ToString(table.Table.SSEDescription.KMSMasterKeyArn)
	if !strings.HasPrefix(key, "arn:aws:kms:us-east-1:222222222222:key/") || len(key) != len("arn:aws:kms:us-east-1:222222222222:key/")+36 {
		t.Errorf("Customers' key %q; want the ARN of a key", key)
	}
	sseOK := func(d *types.SSEDescription) bool {
		return d != nil && d.Status == types.SSEStatusEnabled && d.SSEType == types.SSETypeKms && aws.ToString(d.KMSMasterKeyArn) == key
	}
	if !sseOK(table.Table.SSEDescription) {
		t.Errorf("Customers' SSEDescription = %+v; want KMS with %s", table.Table.SSEDescription, key)
	}
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Customers"), BackupName: aws.String("keys")})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: out.BackupDetails.BackupArn})
	if err != nil {
		t.Fatal(err)
	}
	if sse := desc.BackupDescription.SourceTableFeatureDetails.SSEDescription; !sseOK(sse) {
		t.Errorf("backup of Customers: SSEDescription = %+v; want KMS with %s", sse, key)
	}
}

// TestDemoProvisionedTable: Inventory is provisioned, its global index
// too, and a backup of it and a restore from that backup carry the
// capacity, as DynamoDB's do; a restore can make it on-demand.
func TestDemoProvisionedTable(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	db := e.in("111111111111")
	provisioned := func(what string, mode *types.BillingModeSummary, pt *types.ProvisionedThroughputDescription, gsis []types.GlobalSecondaryIndexDescription) {
		t.Helper()
		if mode == nil || mode.BillingMode != types.BillingModeProvisioned || aws.ToInt64(pt.ReadCapacityUnits) != 5 || aws.ToInt64(pt.WriteCapacityUnits) != 5 {
			t.Errorf("%s: billing %+v, throughput %+v; want PROVISIONED 5/5", what, mode, pt)
		}
		if len(gsis) != 1 || aws.ToInt64(gsis[0].ProvisionedThroughput.ReadCapacityUnits) != 5 || aws.ToInt64(gsis[0].ProvisionedThroughput.WriteCapacityUnits) != 5 {
			t.Errorf("%s: global indexes %+v; want ByWarehouse at 5/5", what, gsis)
		}
	}
	table, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Inventory")})
	if err != nil {
		t.Fatal(err)
	}
	provisioned("Inventory", table.Table.BillingModeSummary, table.Table.ProvisionedThroughput, table.Table.GlobalSecondaryIndexes)
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Inventory"), BackupName: aws.String("stock")})
	if err != nil {
		t.Fatal(err)
	}
	restored, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{BackupArn: out.BackupDetails.BackupArn,
		TargetTableName: aws.String("InventoryRestored")})
	if err != nil {
		t.Fatal(err)
	}
	r := restored.TableDescription
	provisioned("the restored table", r.BillingModeSummary, r.ProvisionedThroughput, r.GlobalSecondaryIndexes)
	onDemand, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{BackupArn: out.BackupDetails.BackupArn,
		TargetTableName: aws.String("InventoryOnDemand"), BillingModeOverride: types.BillingModePayPerRequest})
	if err != nil {
		t.Fatal(err)
	}
	if m := onDemand.TableDescription.BillingModeSummary; m == nil || m.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("restored with PAY_PER_REQUEST: billing %+v", m)
	}
}

// A table created through the API with every feature a backup carries; its
// backup outlives it and restores.
func TestCreatedTableBackupOutlivesTable(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	db := e.in("222222222222")
	_, err := db.CreateTable(ctx, ledgerTable("Ledger"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Ledger"), BackupName: aws.String("keep")})
	if err != nil {
		t.Fatal(err)
	}
	del, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("Ledger")})
	if err != nil || del.TableDescription.TableStatus != types.TableStatusDeleting {
		t.Fatalf("DeleteTable = %+v, %v", del, err)
	}
	desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: out.BackupDetails.BackupArn})
	if err != nil {
		t.Fatalf("DescribeBackup of a deleted table's backup: %v", err)
	}
	src, feat := desc.BackupDescription.SourceTableDetails, desc.BackupDescription.SourceTableFeatureDetails
	if src.BillingMode != types.BillingModeProvisioned || aws.ToInt64(src.ProvisionedThroughput.ReadCapacityUnits) != 5 ||
		len(feat.LocalSecondaryIndexes) != 1 || aws.ToString(feat.LocalSecondaryIndexes[0].IndexName) != "ByAmount" ||
		len(feat.GlobalSecondaryIndexes) != 1 || aws.ToInt64(feat.GlobalSecondaryIndexes[0].ProvisionedThroughput.WriteCapacityUnits) != 2 ||
		!aws.ToBool(feat.StreamDescription.StreamEnabled) || feat.StreamDescription.StreamViewType != types.StreamViewTypeNewImage ||
		feat.SSEDescription == nil || feat.SSEDescription.SSEType != types.SSETypeKms {
		t.Errorf("backup of Ledger: %+v / %+v", src, feat)
	}
	restored, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
		BackupArn: out.BackupDetails.BackupArn, TargetTableName: aws.String("Ledger"),
		LocalSecondaryIndexOverride: []types.LocalSecondaryIndex{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if td := restored.TableDescription; len(td.LocalSecondaryIndexes) != 0 || len(td.GlobalSecondaryIndexes) != 1 || td.StreamSpecification != nil ||
		td.SSEDescription == nil || aws.ToInt64(td.ProvisionedThroughput.ReadCapacityUnits) != 5 {
		t.Errorf("restored Ledger = %+v", td)
	}
}

func ledgerTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("account"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("entry"), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String("amount"), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String("day"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("account"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("entry"), KeyType: types.KeyTypeRange},
		},
		BillingMode:           types.BillingModeProvisioned,
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(5)},
		LocalSecondaryIndexes: []types.LocalSecondaryIndex{{
			IndexName:  aws.String("ByAmount"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("account"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("amount"), KeyType: types.KeyTypeRange}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:             aws.String("ByDay"),
			KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String("day"), KeyType: types.KeyTypeHash}},
			Projection:            &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"amount"}},
			ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(1), WriteCapacityUnits: aws.Int64(2)},
		}},
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage},
		SSESpecification:    &types.SSESpecification{Enabled: aws.Bool(true)},
	}
}

func TestTablesListAndLifecycle(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	db := e.in("111111111111")
	for _, name := range []string{"t-one", "t-two", "t-three"} {
		if _, err := db.CreateTable(ctx, ledgerTable(name)); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for p := dynamodb.NewListTablesPaginator(db, &dynamodb.ListTablesInput{Limit: aws.Int32(2)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, page.TableNames...)
	}
	want := []string{"Busy", "Customers", "Events", "Inventory", "Orders", "Slow", "t-one", "t-three", "t-two"}
	if !slices.Equal(names, want) {
		t.Errorf("ListTables = %v, want %v", names, want)
	}
	if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("t-two")}); err != nil {
		t.Fatal(err)
	}
	var rnf *types.ResourceNotFoundException
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("t-two")}); !errors.As(err, &rnf) {
		t.Errorf("DescribeTable after delete: %v, want ResourceNotFoundException", err)
	}
	// The SDK's waiter sees the fake's tables as ACTIVE at once.
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("t-one")}, time.Second); err != nil {
		t.Errorf("TableExistsWaiter: %v", err)
	}
}

// Each error reaches the SDK as DynamoDB sends it: modelled errors as their
// typed values, the rest with their codes.
func TestErrorsAsTheSDKTypesThem(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()}) // Busy is UPDATING
	ctx := t.Context()
	db := e.in("111111111111")
	backup, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("err-test")})
	if err != nil {
		t.Fatal(err)
	}
	missingBackup := strings.Replace(*backup.BackupDetails.BackupArn, "/Orders/", "/Gone/", 1)

	tests := []struct {
		name   string
		call   func(context.Context, *dynamodb.Client) error
		code   string
		target any // a pointer to the typed error, or nil for an unmodelled one
	}{
		{
			name: "CreateBackup of a missing table",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Nope"), BackupName: aws.String("x-1")})
				return err
			},
			code: "TableNotFoundException", target: new(*types.TableNotFoundException),
		},
		{
			name: "CreateBackup of a table in use",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Busy"), BackupName: aws.String("x-1")})
				return err
			},
			code: "TableInUseException", target: new(*types.TableInUseException),
		},
		{
			name: "DescribeBackup of a missing backup",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: aws.String(missingBackup)})
				return err
			},
			code: "BackupNotFoundException", target: new(*types.BackupNotFoundException),
		},
		{
			// An id backupd takes (any digits, hex in either case): not
			// found, as moto answers, rather than refused.
			name: "DescribeBackup of an unusual id",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{
					BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/123-ABCDEF12")})
				return err
			},
			code: "BackupNotFoundException", target: new(*types.BackupNotFoundException),
		},
		{
			// backupd takes any number of digits, more than an int64
			// holds too.
			name: "DescribeBackup of an id of 20 digits",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{
					BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/99999999999999999999-abcdef12")})
				return err
			},
			code: "BackupNotFoundException", target: new(*types.BackupNotFoundException),
		},
		{
			// A page token backupd takes may carry such an id too: the
			// page after it is empty.
			name: "ListBackups after an id of 20 digits",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				out, err := c.ListBackups(ctx, &dynamodb.ListBackupsInput{
					ExclusiveStartBackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/99999999999999999999-abcdef12")})
				if err == nil && len(out.BackupSummaries) > 0 {
					return fmt.Errorf("%d backups after the largest id", len(out.BackupSummaries))
				}
				return err
			},
		},
		{
			name: "RestoreTableFromBackup onto an existing table",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{BackupArn: backup.BackupDetails.BackupArn, TargetTableName: aws.String("Customers")})
				return err
			},
			code: "TableAlreadyExistsException", target: new(*types.TableAlreadyExistsException),
		},
		{
			name: "DescribeTable of a missing table",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("Nope")})
				return err
			},
			code: "ResourceNotFoundException", target: new(*types.ResourceNotFoundException),
		},
		{
			name: "CreateTable of an existing table",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.CreateTable(ctx, ledgerTable("Orders"))
				return err
			},
			code: "ResourceInUseException", target: new(*types.ResourceInUseException),
		},
		{
			name: "CreateBackup with a short name",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("ab")})
				return err
			},
			code: "ValidationException",
		},
		{
			name: "CreateBackup with a bad table name",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Orders!"), BackupName: aws.String("fine")})
				return err
			},
			code: "ValidationException",
		},
		{
			name: "DescribeBackup with a malformed ARN",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders")})
				return err
			},
			code: "ValidationException",
		},
		{
			name: "ListBackups over the limit",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.ListBackups(ctx, &dynamodb.ListBackupsInput{Limit: aws.Int32(101)})
				return err
			},
			code: "ValidationException",
		},
		{
			name: "RestoreTableFromBackup inventing an index",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
					BackupArn: backup.BackupDetails.BackupArn, TargetTableName: aws.String("Orders-x"),
					GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{{IndexName: aws.String("New"), KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("x"), KeyType: types.KeyTypeHash}}, Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}}},
				})
				return err
			},
			code: "ValidationException",
		},
		{
			name: "CreateTable on demand with throughput",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				in := ledgerTable("NewOne")
				in.BillingMode = types.BillingModePayPerRequest
				_, err := c.CreateTable(ctx, in)
				return err
			},
			code: "ValidationException",
		},
		{
			name: "CreateTable with an undefined key attribute",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				in := ledgerTable("NewOne")
				in.AttributeDefinitions = in.AttributeDefinitions[:3]
				_, err := c.CreateTable(ctx, in)
				return err
			},
			code: "ValidationException",
		},
		{
			name: "an operation the sandbox does not implement",
			call: func(ctx context.Context, c *dynamodb.Client) error {
				_, err := c.DescribeLimits(ctx, &dynamodb.DescribeLimitsInput{})
				return err
			},
			code: "UnknownOperationException",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(ctx, db)
			if got := errorCode(err); got != tc.code {
				t.Fatalf("error code = %q (%v), want %q", got, err, tc.code)
			}
			if tc.target != nil && !errors.As(err, tc.target) {
				t.Errorf("errors.As(%T) failed for %v", tc.target, err)
			}
		})
	}
}

// Many callers in two accounts at once, through one credentials cache per
// account, as backupd runs; -race checks the fake's locking.
func TestConcurrentCallers(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	ctx := t.Context()
	clients := map[string]*dynamodb.Client{"111111111111": e.in("111111111111"), "222222222222": e.in("222222222222")}
	const workers, perWorker = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		acct := "111111111111"
		if w%2 == 1 {
			acct = "222222222222"
		}
		wg.Go(func() {
			db := clients[acct]
			for i := range perWorker {
				if _, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Events"), BackupName: aws.String(fmt.Sprintf("w%d-%d", w, i))}); err != nil {
					errs <- err
					return
				}
				if _, err := db.ListBackups(ctx, &dynamodb.ListBackupsInput{Limit: aws.Int32(5)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for acct, db := range clients {
		got := listAll(t, db, dynamodb.ListBackupsInput{}, nil)
		if want := workers / 2 * perWorker; len(got) != want {
			t.Errorf("account %s has %d backups, want %d", acct, len(got), want)
		}
	}
	if got := e.fake.AssumeRoleCalls(); got != 2 {
		t.Errorf("AssumeRoleCalls() = %d, want 2", got)
	}
}

func keysEqual(a, b []types.KeySchemaElement) bool {
	return slices.EqualFunc(a, b, func(x, y types.KeySchemaElement) bool {
		return aws.ToString(x.AttributeName) == aws.ToString(y.AttributeName) && x.KeyType == y.KeyType
	})
}

// near compares a time that went through the SDK's epoch-seconds parsing,
// which can lose the last millisecond to float rounding.
func near(got, want time.Time) bool {
	d := got.Sub(want)
	return d > -2*time.Millisecond && d < 2*time.Millisecond
}

// TestBackupTakesTime: a backup of the demo table Slow is CREATING, with
// no size, for DemoBackupTakes, in CreateBackup's, DescribeBackup's and
// ListBackups' answers; deleting it or restoring from it meanwhile fails
// with BackupInUseException, as in DynamoDB; then it is AVAILABLE with
// its size, and can be restored and deleted.
func TestBackupTakesTime(t *testing.T) {
	clock := newClock(time.Now().UTC().Truncate(time.Millisecond), 0)
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts(), Now: clock.Now})
	ctx := t.Context()
	db := e.in("111111111111")
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Slow"), BackupName: aws.String("slow")})
	if err != nil {
		t.Fatal(err)
	}
	arn := out.BackupDetails.BackupArn
	if d := out.BackupDetails; d.BackupStatus != types.BackupStatusCreating || d.BackupSizeBytes != nil {
		t.Errorf("CreateBackup of Slow: %s, size %v; want CREATING with no size", d.BackupStatus, d.BackupSizeBytes)
	}
	status := func() (types.BackupStatus, *int64, types.BackupStatus, *int64) {
		t.Helper()
		desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: arn})
		if err != nil {
			t.Fatal(err)
		}
		list, err := db.ListBackups(ctx, &dynamodb.ListBackupsInput{TableName: aws.String("Slow")})
		if err != nil || len(list.BackupSummaries) != 1 {
			t.Fatalf("ListBackups: %v, %v", list, err)
		}
		d, s := desc.BackupDescription.BackupDetails, list.BackupSummaries[0]
		return d.BackupStatus, d.BackupSizeBytes, s.BackupStatus, s.BackupSizeBytes
	}
	if ds, dsize, ls, lsize := status(); ds != types.BackupStatusCreating || dsize != nil || ls != types.BackupStatusCreating || lsize != nil {
		t.Errorf("while being made: described %s (size %v), listed %s (size %v); want CREATING, no size", ds, dsize, ls, lsize)
	}
	var inUse *types.BackupInUseException
	if _, err := db.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn}); !errors.As(err, &inUse) {
		t.Errorf("DeleteBackup while being made: %v; want BackupInUseException", err)
	}
	restore := &dynamodb.RestoreTableFromBackupInput{BackupArn: arn, TargetTableName: aws.String("SlowCopy")}
	if _, err := db.RestoreTableFromBackup(ctx, restore); !errors.As(err, &inUse) {
		t.Errorf("RestoreTableFromBackup while being made: %v; want BackupInUseException", err)
	}

	clock.Advance(sandbox.DemoBackupTakes)
	if ds, dsize, ls, lsize := status(); ds != types.BackupStatusAvailable || aws.ToInt64(dsize) != 20_000 || ls != types.BackupStatusAvailable || aws.ToInt64(lsize) != 20_000 {
		t.Errorf("once made: described %s (size %v), listed %s (size %v); want AVAILABLE, 20000 bytes", ds, dsize, ls, lsize)
	}
	if _, err := db.RestoreTableFromBackup(ctx, restore); err != nil {
		t.Errorf("RestoreTableFromBackup once made: %v", err)
	}
	if _, err := db.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn}); err != nil {
		t.Errorf("DeleteBackup once made: %v", err)
	}
}

// TestCreateBackupWhileOneIsBeingMade: DynamoDB refuses a CreateBackup of
// a table whose backup is still CREATING with BackupInUseException ("another
// ongoing conflicting backup control plane operation on the table"), so
// the fake's Slow must too, or a client tried against the sandbox never
// meets it; once the first is AVAILABLE, another backup is taken.
func TestCreateBackupWhileOneIsBeingMade(t *testing.T) {
	clock := newClock(time.Now().UTC().Truncate(time.Millisecond), 0)
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts(), Now: clock.Now})
	ctx := t.Context()
	db := e.in("111111111111")
	in := &dynamodb.CreateBackupInput{TableName: aws.String("Slow"), BackupName: aws.String("slow")}
	if _, err := db.CreateBackup(ctx, in); err != nil {
		t.Fatal(err)
	}
	clock.Advance(sandbox.DemoBackupTakes - time.Millisecond)
	var inUse *types.BackupInUseException
	if _, err := db.CreateBackup(ctx, in); !errors.As(err, &inUse) {
		t.Errorf("CreateBackup while another is being made: %v; want BackupInUseException", err)
	}
	clock.Advance(time.Millisecond)
	if _, err := db.CreateBackup(ctx, in); err != nil {
		t.Errorf("CreateBackup once the first is made: %v", err)
	}
}

// TestRestoreOntoTableInUse: DynamoDB answers a restore onto the name of a
// table being created or deleted with TableInUseException ("A target
// table with the specified name is either being created or deleted"),
// which backupd answers FAILED_PRECONDITION TABLE_IN_USE, and onto any
// other existing table with TableAlreadyExistsException (ALREADY_EXISTS).
func TestRestoreOntoTableInUse(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: []sandbox.Account{{
		ID: "111111111111", RoleName: "backupd-sandbox", Region: "us-east-1",
		Tables: []sandbox.TableSpec{
			{Name: "Source", HashKey: "pk"},
			{Name: "Creating", HashKey: "pk", Status: "CREATING"},
			{Name: "Deleting", HashKey: "pk", Status: "DELETING"},
			{Name: "Updating", HashKey: "pk", Status: "UPDATING"},
		},
	}}})
	ctx := t.Context()
	db := e.in("111111111111")
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Source"), BackupName: aws.String("src")})
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"Creating": "TableInUseException",
		"Deleting": "TableInUseException",
		"Updating": "TableAlreadyExistsException",
		"Source":   "TableAlreadyExistsException",
		"Fresh":    "",
	} {
		_, err := db.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
			BackupArn: out.BackupDetails.BackupArn, TargetTableName: aws.String(target)})
		if got := errorCode(err); got != want {
			t.Errorf("restore onto %s: %v (code %q); want %q", target, err, got, want)
		}
	}
}

// TestDeleteTableWhileBackedUp: DynamoDB does not delete the source table
// of a backup in progress ("While a backup is in progress, you can't ...
// delete the source table of the backup"); once the backup is made, the
// table goes and the backup stays.
func TestDeleteTableWhileBackedUp(t *testing.T) {
	clock := newClock(time.Now().UTC().Truncate(time.Millisecond), 0)
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts(), Now: clock.Now})
	ctx := t.Context()
	db := e.in("111111111111")
	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Slow"), BackupName: aws.String("slow")})
	if err != nil {
		t.Fatal(err)
	}
	var inUse *types.ResourceInUseException
	if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("Slow")}); !errors.As(err, &inUse) {
		t.Errorf("DeleteTable while its backup is being made: %v; want ResourceInUseException", err)
	}
	clock.Advance(sandbox.DemoBackupTakes)
	if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("Slow")}); err != nil {
		t.Errorf("DeleteTable once the backup is made: %v", err)
	}
	desc, err := db.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: out.BackupDetails.BackupArn})
	if err != nil || desc.BackupDescription.BackupDetails.BackupStatus != types.BackupStatusAvailable {
		t.Errorf("the backup after its table went: %v, %v; want it AVAILABLE", desc, err)
	}
}

// TestBackupNotFoundMessage: DynamoDB words a missing backup "Backup not
// found: <ARN>" (as moto does), and backupd passes DynamoDB's message on
// to its caller: the sandbox's must read the same.
func TestBackupNotFoundMessage(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	arn := "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	_, err := e.in("111111111111").DescribeBackup(t.Context(), &dynamodb.DescribeBackupInput{BackupArn: aws.String(arn)})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorMessage() != "Backup not found: "+arn {
		t.Errorf("DescribeBackup of a missing backup: %v; want the message %q", err, "Backup not found: "+arn)
	}
}
