package service

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

func TestBackupDetailsConversion(t *testing.T) {
	var logs bytes.Buffer
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	created := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		in         types.BackupDetails
		wantStatus backupv1.BackupStatus
		wantSize   *int64
		logHas     string
	}{
		{"available with size", types.BackupDetails{BackupStatus: types.BackupStatusAvailable, BackupSizeBytes: aws.Int64(42)},
			backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE, aws.Int64(42), ""},
		{"creating, size unknown", types.BackupDetails{BackupStatus: types.BackupStatusCreating},
			backupv1.BackupStatus_BACKUP_STATUS_CREATING, nil, ""},
		// DynamoDB's answer to CreateBackup: a size of 0 while creating.
		{"creating, size 0", types.BackupDetails{BackupStatus: types.BackupStatusCreating, BackupSizeBytes: aws.Int64(0)},
			backupv1.BackupStatus_BACKUP_STATUS_CREATING, nil, ""},
		{"available and empty", types.BackupDetails{BackupStatus: types.BackupStatusAvailable, BackupSizeBytes: aws.Int64(0)},
			backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE, aws.Int64(0), ""},
		{"a status DynamoDB adds later", types.BackupDetails{BackupStatus: "FROZEN"},
			backupv1.BackupStatus_BACKUP_STATUS_UNSPECIFIED, nil, "value=FROZEN"},
		// Not DynamoDB's: logged cut short, not a line of 100 KB.
		{"a status that is no name", types.BackupDetails{BackupStatus: types.BackupStatus(strings.Repeat("X", 100_000))},
			backupv1.BackupStatus_BACKUP_STATUS_UNSPECIFIED, nil, "value=" + strings.Repeat("X", 64) + "...\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			in := tt.in
			in.BackupArn, in.BackupName, in.BackupType, in.BackupCreationDateTime = aws.String("arn"), aws.String("n"), types.BackupTypeUser, &created
			got := backupDetails(s.warner(t.Context()), &in)
			if got.GetBackupStatus() != tt.wantStatus || got.GetBackupType() != backupv1.BackupType_BACKUP_TYPE_USER ||
				!got.GetBackupCreationDateTime().AsTime().Equal(created) || got.GetBackupExpiryDateTime() != nil {
				t.Errorf("got %v", got)
			}
			if (got.BackupSizeBytes == nil) != (tt.wantSize == nil) || (tt.wantSize != nil && *got.BackupSizeBytes != *tt.wantSize) {
				t.Errorf("size = %v, want %v", got.BackupSizeBytes, tt.wantSize)
			}
			if tt.logHas != "" && !strings.Contains(logs.String(), tt.logHas) {
				t.Errorf("log %q lacks %q", logs.String(), tt.logHas)
			}
			if tt.logHas == "" && logs.Len() > 0 {
				t.Errorf("unexpected log: %s", logs.String())
			}
		})
	}
}

// TestBillingMode: DynamoDB leaves the billing mode out for tables that
// have always been provisioned; their capacity tells.
func TestBillingMode(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	provisioned := func(r, w int64) *types.ProvisionedThroughput {
		return &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(r), WriteCapacityUnits: aws.Int64(w)}
	}
	tests := []struct {
		name     string
		mode     types.BillingMode
		capacity *types.ProvisionedThroughput
		want     backupv1.BillingMode
	}{
		{"on demand", types.BillingModePayPerRequest, provisioned(0, 0), backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST},
		{"provisioned, said", types.BillingModeProvisioned, provisioned(5, 5), backupv1.BillingMode_BILLING_MODE_PROVISIONED},
		{"provisioned, not said", "", provisioned(5, 1), backupv1.BillingMode_BILLING_MODE_PROVISIONED},
		{"no mode, no capacity", "", provisioned(0, 0), backupv1.BillingMode_BILLING_MODE_UNSPECIFIED},
		{"nothing at all", "", nil, backupv1.BillingMode_BILLING_MODE_UNSPECIFIED},
	}
	for _, tt := range tests {
		if got := billingMode(s.warner(t.Context()), tt.mode, throughput(tt.capacity)); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		src := sourceTableDetails(s.warner(t.Context()), &types.SourceTableDetails{BillingMode: tt.mode, ProvisionedThroughput: tt.capacity})
		table := &types.TableDescription{}
		if tt.mode != "" {
			table.BillingModeSummary = &types.BillingModeSummary{BillingMode: tt.mode}
		}
		if c := tt.capacity; c != nil {
			table.ProvisionedThroughput = &types.ProvisionedThroughputDescription{ReadCapacityUnits: c.ReadCapacityUnits, WriteCapacityUnits: c.WriteCapacityUnits}
		}
		if src.GetBillingMode() != tt.want || tableDescription(s.warner(t.Context()), table).GetBillingMode() != tt.want {
			t.Errorf("%s: source table %v, restored table %v; want %v", tt.name, src.GetBillingMode(), tableDescription(s.warner(t.Context()), table).GetBillingMode(), tt.want)
		}
	}
}

// Tokens made before a time bound at the epoch was told from none still
// decode: the digest spells every other scope as it did (account, region,
// table, type and each bound in nanos, or 0 for none, each ended by a NUL).
func TestPageTokenOfEarlierBuilds(t *testing.T) {
	const last = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	lower := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC).UnixNano()
	earlier := sha256.Sum256([]byte("111111111111\x00us-east-1\x00Orders\x00USER\x00" + strconv.FormatInt(lower, 10) + "\x000\x00"))
	// Written out, not pageTokenVersion: the version earlier builds wrote.
	token := handMadeToken(1, earlier[:8], last)
	scope := listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER", lower: timeBoundScope{set: true, nanos: lower}}
	if got, err := decodePageToken(scope, token); err != nil || got != last {
		t.Errorf("a token of an earlier build, with a lower bound: %q, %v; want it decoded", got, err)
	}
	// And one of a build that tells a bound at the epoch ("=0") from none
	// ("0"), which another replica of this version may have written.
	epoch := sha256.Sum256([]byte("111111111111\x00us-east-1\x00Orders\x00USER\x000\x00=0\x00"))
	scope = listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER", upper: timeBoundScope{set: true}}
	if got, err := decodePageToken(scope, handMadeToken(1, epoch[:8], last)); err != nil || got != last {
		t.Errorf("a token with an upper bound at the epoch: %q, %v; want it decoded", got, err)
	}
}

// handMadeToken is a page token as encodePageToken's format lays it out:
// the version byte, the scope digest's 8 bytes, the ARN, and 8 bytes of
// the SHA-256 of all of that.
func handMadeToken(version byte, digest []byte, arn string) string {
	body := append([]byte{version}, digest...)
	body = append(body, arn...)
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.EncodeToString(append(body, sum[:8]...))
}

// TestShortPageTokens: a token too short to hold a digest, an ARN and a
// checksum is refused, whatever its length, its version byte right and
// its checksum good where it has room for one; it never panics.
func TestShortPageTokens(t *testing.T) {
	scope := listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER"}
	for n := 1; n <= 1+8+8; n++ {
		buf := make([]byte, n)
		buf[0] = pageTokenVersion
		if n > 8 { // room for a checksum of what comes before it
			sum := sha256.Sum256(buf[:n-8])
			copy(buf[n-8:], sum[:8])
		}
		token := base64.RawURLEncoding.EncodeToString(buf)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("a token of %d bytes: panic %v", n, p)
				}
			}()
			if _, err := pageTokenBody(token); err == nil {
				t.Errorf("a token of %d bytes: its body accepted", n)
			}
			if _, err := decodePageToken(scope, token); err == nil {
				t.Errorf("a token of %d bytes: accepted", n)
			}
		}()
	}
}

func TestPageToken(t *testing.T) {
	scope := listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER"}
	const last = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	tok := encodePageToken(scope, last)
	if got, err := decodePageToken(scope, tok); err != nil || got != last {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	other := scope
	other.lower = timeBoundScope{set: true, nanos: 1}
	epoch := scope // a bound at the epoch is a bound
	epoch.upper = timeBoundScope{set: true}
	noTable := scope
	noTable.table = ""
	awsBackup := scope // a listing of AWS Backup's backups, which it may list by recovery point
	awsBackup.backupType = "AWS_BACKUP"
	const recoveryPoint = "arn:aws:backup:us-east-1:111111111111:recovery-point:e7a1ae2a-3a40-4a9b-8f4e-7c2d1b1c9f00"
	tests := map[string]struct {
		scope listScope
		token string
	}{
		"other filters":        {other, tok},
		"a bound at the epoch": {epoch, tok},
		"other account":        {listScope{account: "222222222222", region: "us-east-1", table: "Orders", backupType: "USER"}, tok},
		"flipped byte":         {scope, tok[:10] + string(tok[10]^1) + tok[11:]},
		"truncated":            {scope, tok[:len(tok)-4]},
		"not base64":           {scope, "!!!"},
		"empty-ish":            {scope, "AA"},
		// Anyone can build a token: its ARN must be one the listing returns.
		"built with another account's ARN":         {scope, encodePageToken(scope, "arn:aws:dynamodb:us-east-1:222222222222:table/Orders/backup/01700000000000-abcdef12")},
		"built with another region's ARN":          {scope, encodePageToken(scope, "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12")},
		"built with another table's ARN":           {scope, encodePageToken(scope, "arn:aws:dynamodb:us-east-1:111111111111:table/Customers/backup/01700000000000-abcdef12")},
		"built with the table's ARN":               {scope, encodePageToken(scope, "arn:aws:dynamodb:us-east-1:111111111111:table/Orders")},
		"built with another service's ARN":         {scope, encodePageToken(scope, "arn:aws:s3:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12")},
		"built with a table ARN, no table named":   {noTable, encodePageToken(noTable, "arn:aws:dynamodb:us-east-1:111111111111:table/Orders")},
		"built with no ARN":                        {scope, encodePageToken(scope, "x")},
		"built with a path out of another account": {noTable, encodePageToken(noTable, "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/x/../../222222222222")},
		"built with a bad backup id":               {scope, encodePageToken(scope, "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/\u0000")},
		"built with a recovery point, USER listed": {scope, encodePageToken(scope, recoveryPoint)},
		"built with a long recovery point":         {awsBackup, encodePageToken(awsBackup, recoveryPoint+strings.Repeat("a", 1024))},
		"built with a recovery point's odd bytes":  {awsBackup, encodePageToken(awsBackup, recoveryPoint+"/../\n")},
		"built with a recovery point of no id":     {awsBackup, encodePageToken(awsBackup, "arn:aws:backup:us-east-1:111111111111:recovery-point:")},
		"built with a recovery point elsewhere":    {awsBackup, encodePageToken(awsBackup, strings.Replace(recoveryPoint, "arn:aws:", "arn:aws-cn:", 1))},
	}
	// Other spellings of the same bytes, which base64's decoder takes.
	tests["with a line break"] = struct {
		scope listScope
		token string
	}{scope, tok[:10] + "\n" + tok[10:]}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(tok)%4 != 0 { // the last character has bits the bytes do not use
		last := strings.IndexByte(alphabet, tok[len(tok)-1])
		tests["other unused bits"] = struct {
			scope listScope
			token string
		}{scope, tok[:len(tok)-1] + string(alphabet[last^1])}
	} else {
		t.Fatalf("token %q has no unused bits to vary; make the ARN one byte longer", tok)
	}
	for name, tt := range tests {
		if _, err := decodePageToken(tt.scope, tt.token); err == nil {
			t.Errorf("%s: token accepted", name)
		}
	}
	// AWS Backup's recovery points name no table.
	if got, err := decodePageToken(awsBackup, encodePageToken(awsBackup, recoveryPoint)); err != nil || got != recoveryPoint {
		t.Errorf("AWS Backup recovery point: %q, %v", got, err)
	}
	// A listing of every table's backups pages through them all.
	if got, err := decodePageToken(noTable, encodePageToken(noTable, last)); err != nil || got != last {
		t.Errorf("a listing without a table: %q, %v; want the token decoded", got, err)
	}
	// A recovery point's ARN may be as long as DynamoDB's API allows a BackupArn.
	longest := recoveryPoint + strings.Repeat("a", 1024-len(recoveryPoint)) // the API reference's bound
	if got, err := decodePageToken(awsBackup, encodePageToken(awsBackup, longest)); err != nil || got != longest {
		t.Errorf("a recovery point of %d bytes: %v; want it decoded", len(longest), err)
	}
	if _, err := decodePageToken(awsBackup, encodePageToken(awsBackup, longest+"a")); err == nil {
		t.Errorf("a recovery point of %d bytes accepted", len(longest)+1)
	}
}

// TestPageTokenBindsTheTable: a page token is bound to the table a
// listing names, however it is spelled: a table's name and its ARN list
// the same backups and share tokens; another table does not.
func TestPageTokenBindsTheTable(t *testing.T) {
	const last = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	list := func(table, region string) *backupv1.ListBackupsRequest {
		return &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: region, TableName: table}
	}
	tests := []struct {
		name        string
		first, next *backupv1.ListBackupsRequest
		shared      bool
	}{
		{"name, then ARN", list("Orders", ""), list("arn:aws:dynamodb:us-east-1:111111111111:table/Orders", ""), true},
		{"ARN, then name", list("arn:aws:dynamodb:us-east-1:111111111111:table/Orders", ""), list("Orders", ""), true},
		{"name and region, then ARN", list("Orders", "us-east-1"), list("arn:aws:dynamodb:us-east-1:111111111111:table/Orders", ""), true},
		{"name, then another table's ARN", list("Orders", ""), list("arn:aws:dynamodb:us-east-1:111111111111:table/Customers", ""), false},
		{"name, then the name in other case", list("Orders", ""), list("orders", ""), false},
		{"name, then no table", list("Orders", ""), list("", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scope := func(req *backupv1.ListBackupsRequest) listScope {
				_, s, _, err := validateList(req)
				if err != nil {
					t.Fatal(err)
				}
				s.region = "us-east-1" // as ListBackups resolves it: the account's default, or the ARN's
				return s
			}
			_, err := decodePageToken(scope(tt.next), encodePageToken(scope(tt.first), last))
			if (err == nil) != tt.shared {
				t.Errorf("token from %q with %q: %v; want shared %v", tt.first.GetTableName(), tt.next.GetTableName(), err, tt.shared)
			}
		})
	}
}

func TestValidateList(t *testing.T) {
	size := func(v int32) *int32 { return &v }
	tests := []struct {
		name     string
		req      *backupv1.ListBackupsRequest
		field    string
		wantSize int32
	}{
		{"defaults", &backupv1.ListBackupsRequest{AccountId: "111111111111"}, "", 50},
		{"page size 100", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: size(100)}, "", 100},
		{"page size 0, the default", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: size(0)}, "", 50},
		{"page size -1", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: size(-1)}, "page_size", 0},
		{"page size 101", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageSize: size(101)}, "page_size", 0},
		{"unknown type", &backupv1.ListBackupsRequest{AccountId: "111111111111", BackupType: 7}, "backup_type", 0},
		{"table ARN of other account", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "arn:aws:dynamodb:us-east-1:222222222222:table/T"}, "table_name", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _, _, err := validateList(tt.req)
			if tt.field == "" {
				if err != nil || aws.ToInt32(in.Limit) != tt.wantSize || in.BackupType != types.BackupTypeFilterUser {
					t.Errorf("input %+v, err %v", in, err)
				}
				return
			}
			ia, ok := err.(*badrequest.Error)
			if !ok || ia.Violations[0].Field != tt.field {
				t.Errorf("err = %v, want a violation of %s", err, tt.field)
			}
		})
	}
}

// DynamoDB keeps backup times to the millisecond and the SDK cuts a bound
// to the millisecond, so bounds are rounded up to keep "at or after the
// lower bound" and "before the upper bound" exact.
func TestValidateListTimeBounds(t *testing.T) {
	at := func(s string) *timestamppb.Timestamp {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return timestamppb.New(ts)
	}
	tests := []struct {
		name         string
		lower, upper *timestamppb.Timestamp
		wantLower    string // what DynamoDB is sent; "" for none
		wantUpper    string
		violation    string // the one violation's description, or ""
	}{
		{name: "none"},
		{name: "whole milliseconds kept", lower: at("2026-11-26T07:35:03.844Z"), upper: at("2026-11-26T07:35:04Z"),
			wantLower: "2026-11-26T07:35:03.844Z", wantUpper: "2026-11-26T07:35:04Z"},
		{name: "lower inside a millisecond rounds up", lower: at("2026-11-26T07:35:03.8441Z"),
			wantLower: "2026-11-26T07:35:03.845Z"},
		{name: "upper inside a millisecond rounds up", upper: at("2026-11-26T07:35:03.844000001Z"),
			wantUpper: "2026-11-26T07:35:03.845Z"},
		{name: "the first instant taken", lower: at("1970-01-01T00:00:00Z"), upper: at("2200-01-01T00:00:00Z"),
			wantLower: "1970-01-01T00:00:00Z", wantUpper: "2200-01-01T00:00:00Z"},
		{name: "straddling a millisecond", lower: at("2026-11-26T07:35:03.8449Z"), upper: at("2026-11-26T07:35:03.8451Z"),
			wantLower: "2026-11-26T07:35:03.845Z", wantUpper: "2026-11-26T07:35:03.846Z"},
		{name: "one millisecond apart", lower: at("2026-11-26T07:35:03.8441Z"), upper: at("2026-11-26T07:35:03.8451Z"),
			wantLower: "2026-11-26T07:35:03.845Z", wantUpper: "2026-11-26T07:35:03.846Z"},
		{name: "apart within one millisecond", lower: at("2026-11-26T07:35:03.8441Z"), upper: at("2026-11-26T07:35:03.8449Z"),
			violation: "time_range_upper_bound must fall in a later millisecond than time_range_lower_bound (DynamoDB keeps backup times to the millisecond); got 2026-11-26T07:35:03.8441Z and 2026-11-26T07:35:03.8449Z"},
		{name: "before 1970", lower: at("1969-12-31T23:59:59.9995Z"),
			violation: "time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got 1969-12-31T23:59:59.9995Z"},
		{name: "past the nanoseconds' range", upper: at("3000-01-01T00:00:00Z"),
			violation: "time_range_upper_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got 3000-01-01T00:00:00Z"},
		{name: "reversed", lower: at("2026-11-26T08:00:00Z"), upper: at("2026-11-26T07:00:00Z"),
			violation: "time_range_upper_bound must fall in a later millisecond than time_range_lower_bound (DynamoDB keeps backup times to the millisecond); got 2026-11-26T08:00:00Z and 2026-11-26T07:00:00Z"},
	}
	format := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _, _, err := validateList(&backupv1.ListBackupsRequest{AccountId: "111111111111",
				TimeRangeLowerBound: tt.lower, TimeRangeUpperBound: tt.upper})
			if tt.violation != "" {
				ia, ok := err.(*badrequest.Error)
				if !ok || len(ia.Violations) != 1 || !strings.HasPrefix(tt.violation, ia.Violations[0].Field+" ") || ia.Violations[0].Description != tt.violation {
					t.Fatalf("err = %v, want the one violation %q", err, tt.violation)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := format(in.TimeRangeLowerBound); got != tt.wantLower {
				t.Errorf("lower bound sent %q, want %q", got, tt.wantLower)
			}
			if got := format(in.TimeRangeUpperBound); got != tt.wantUpper {
				t.Errorf("upper bound sent %q, want %q", got, tt.wantUpper)
			}
		})
	}
	// A Timestamp out of its own range is refused, not normalized into
	// another time, in backupd's words (protobuf's vary from build to
	// build, with a no-break space at random, and name no remedy).
	for _, tt := range []struct {
		ts   *timestamppb.Timestamp
		want string
	}{
		{&timestamppb.Timestamp{Seconds: 1_800_000_000, Nanos: 1_000_000_000},
			"time_range_lower_bound is not a valid timestamp: nanos must be 0-999999999 (a count within its second; carry whole seconds into seconds); got 1000000000"},
		{&timestamppb.Timestamp{Seconds: 1_800_000_000, Nanos: -1},
			"time_range_lower_bound is not a valid timestamp: nanos must be 0-999999999 (a count within its second; carry whole seconds into seconds); got -1"},
		{&timestamppb.Timestamp{Seconds: 1 << 40},
			"time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got seconds 1099511627776, outside a Timestamp's range (0001-01-01 to 9999-12-31)"},
		{&timestamppb.Timestamp{Seconds: -1 << 40},
			"time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got seconds -1099511627776, outside a Timestamp's range (0001-01-01 to 9999-12-31)"},
		// Not as a time 292 billion years ahead, where time's arithmetic
		// wraps.
		{&timestamppb.Timestamp{Seconds: math.MinInt64},
			"time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got seconds -9223372036854775808, outside a Timestamp's range (0001-01-01 to 9999-12-31)"},
		{&timestamppb.Timestamp{Seconds: math.MaxInt64},
			"time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got seconds 9223372036854775807, outside a Timestamp's range (0001-01-01 to 9999-12-31)"},
		{&timestamppb.Timestamp{Seconds: 7258118400, Nanos: 1},
			"time_range_lower_bound must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; got 2200-01-01T00:00:00.000000001Z"},
	} {
		in, _, _, err := validateList(&backupv1.ListBackupsRequest{AccountId: "111111111111", TimeRangeLowerBound: tt.ts})
		if ia, ok := err.(*badrequest.Error); !ok || len(ia.Violations) != 1 || ia.Violations[0].Description != tt.want || in.TimeRangeLowerBound != nil {
			t.Errorf("%v: %v, lower bound sent %v; want the one violation %q", tt.ts, err, in.TimeRangeLowerBound, tt.want)
		}
	}
}

// ListBackups' summaries leave a CREATING backup's size of 0 out, as
// GetBackup's details do.
func TestBackupSummarySize(t *testing.T) {
	s := New(Options{})
	tests := []struct {
		name   string
		status types.BackupStatus
		size   *int64
		want   *int64
	}{
		{"creating, size 0", types.BackupStatusCreating, aws.Int64(0), nil},
		{"creating, no size", types.BackupStatusCreating, nil, nil},
		{"available and empty", types.BackupStatusAvailable, aws.Int64(0), aws.Int64(0)},
		{"available", types.BackupStatusAvailable, aws.Int64(42), aws.Int64(42)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := backupSummary(s.warner(t.Context()), &types.BackupSummary{BackupStatus: tt.status, BackupSizeBytes: tt.size, BackupType: types.BackupTypeUser}).BackupSizeBytes
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("size = %v, want %v", got, tt.want)
			}
		})
	}
}

// A restored table's item count and size of 0 while it is created or
// restored are left out, as DynamoDB has not counted it yet.
func TestRestoredTableCounts(t *testing.T) {
	s := New(Options{})
	restoring := &types.RestoreSummary{RestoreInProgress: aws.Bool(true)}
	restored := &types.RestoreSummary{RestoreInProgress: aws.Bool(false)}
	tests := []struct {
		name    string
		status  types.TableStatus
		restore *types.RestoreSummary
		n       *int64
		want    *int64
	}{
		{"creating, 0", types.TableStatusCreating, nil, aws.Int64(0), nil},
		{"active, restore in progress, 0", types.TableStatusActive, restoring, aws.Int64(0), nil},
		{"creating, counted", types.TableStatusCreating, restoring, aws.Int64(7), aws.Int64(7)},
		{"active and restored, empty", types.TableStatusActive, restored, aws.Int64(0), aws.Int64(0)},
		{"active, none reported", types.TableStatusActive, nil, nil, nil},
		{"active", types.TableStatusActive, nil, aws.Int64(42), aws.Int64(42)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tableDescription(s.warner(t.Context()), &types.TableDescription{TableStatus: tt.status, RestoreSummary: tt.restore, ItemCount: tt.n, TableSizeBytes: tt.n})
			for field, got := range map[string]*int64{"item_count": d.ItemCount, "table_size_bytes": d.TableSizeBytes} {
				if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
					t.Errorf("%s = %v, want %v", field, got, tt.want)
				}
			}
		})
	}
}

// A backup's source table and a restored table describe their indexes in
// types of their own; the same index converts alike from either, and no
// index converts to none.
func TestIndexesConvertAlikeFromEitherDescription(t *testing.T) {
	s := New(Options{})
	name, pk := aws.String("ByCustomer"), []types.KeySchemaElement{{AttributeName: aws.String("customer"), KeyType: types.KeyTypeHash}}
	projection := &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}
	source := sourceTableFeatures(s.warner(t.Context()), &types.SourceTableFeatureDetails{
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndexInfo{{IndexName: name, KeySchema: pk, Projection: projection,
			ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(6)}}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndexInfo{{IndexName: name, KeySchema: pk, Projection: projection}},
	})
	restored := tableDescription(s.warner(t.Context()), &types.TableDescription{
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{{IndexName: name, KeySchema: pk, Projection: projection, IndexSizeBytes: aws.Int64(1),
			ProvisionedThroughput: &types.ProvisionedThroughputDescription{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(6)}}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndexDescription{{IndexName: name, KeySchema: pk, Projection: projection, ItemCount: aws.Int64(1)}},
	})
	wantGSI := &backupv1.GlobalSecondaryIndex{IndexName: "ByCustomer",
		KeySchema:             []*backupv1.KeySchemaElement{{AttributeName: "customer", KeyType: backupv1.KeyType_KEY_TYPE_HASH}},
		Projection:            &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_KEYS_ONLY},
		ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 6}}
	wantLSI := &backupv1.LocalSecondaryIndex{IndexName: wantGSI.IndexName, KeySchema: wantGSI.KeySchema, Projection: wantGSI.Projection}
	for what, got := range map[string][]*backupv1.GlobalSecondaryIndex{"source": source.GetGlobalSecondaryIndexes(), "restored": restored.GetGlobalSecondaryIndexes()} {
		if len(got) != 1 || !proto.Equal(got[0], wantGSI) {
			t.Errorf("%s table's GSIs %v; want [%v]", what, got, wantGSI)
		}
	}
	for what, got := range map[string][]*backupv1.LocalSecondaryIndex{"source": source.GetLocalSecondaryIndexes(), "restored": restored.GetLocalSecondaryIndexes()} {
		if len(got) != 1 || !proto.Equal(got[0], wantLSI) {
			t.Errorf("%s table's LSIs %v; want [%v]", what, got, wantLSI)
		}
	}
	if none := tableDescription(s.warner(t.Context()), &types.TableDescription{}); none.GlobalSecondaryIndexes != nil || none.LocalSecondaryIndexes != nil {
		t.Errorf("a table without indexes has %v and %v", none.GlobalSecondaryIndexes, none.LocalSecondaryIndexes)
	}
}

// A time a Timestamp cannot hold is left out, with a warning, rather than
// making an answer REST cannot write.
func TestTimeOutOfRange(t *testing.T) {
	logs := &testenv.Buffer{}
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	in, far := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	got := backupSummary(s.warner(t.Context()), &types.BackupSummary{BackupCreationDateTime: &in, BackupExpiryDateTime: &far})
	if !got.GetBackupCreationDateTime().AsTime().Equal(in) || got.BackupExpiryDateTime != nil {
		t.Errorf("creation %v, expiry %v; want %v and none", got.GetBackupCreationDateTime(), got.BackupExpiryDateTime, in)
	}
	if n := len(logs.Lines(`"level":"WARN"`, "out of range", `"error":"proto:`)); n != 1 {
		t.Errorf("%d warnings; want 1:\n%s", n, logs.String())
	}
}

// TestConversionKeepsEveryField: every field of DynamoDB's answer that
// backupd answers with reaches the caller, each in its own field, with no
// warning: a backup's description (its details, source table and
// features), a backup's summary and a restored table's description.
func TestConversionKeepsEveryField(t *testing.T) {
	logs := &testenv.Buffer{}
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	warn := s.warner(t.Context())
	at := func(h int) *time.Time { t := time.Date(2026, 11, 28, h, 0, 0, 0, time.UTC); return &t }
	pb := func(h int) *timestamppb.Timestamp { return timestamppb.New(*at(h)) }
	keys := []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}}
	wantKeys := []*backupv1.KeySchemaElement{{AttributeName: "pk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}, {AttributeName: "sk", KeyType: backupv1.KeyType_KEY_TYPE_RANGE}}
	include := &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"total"}}
	wantInclude := &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{"total"}}
	sse := &types.SSEDescription{Status: types.SSEStatusUpdating, SSEType: types.SSETypeKms, KMSMasterKeyArn: aws.String("arn:aws:kms:us-east-1:111111111111:key/k"),
		InaccessibleEncryptionDateTime: at(9)}
	wantSSE := &backupv1.SseDescription{Status: backupv1.SseStatus_SSE_STATUS_UPDATING, SseType: backupv1.SseType_SSE_TYPE_KMS,
		KmsMasterKeyArn: "arn:aws:kms:us-east-1:111111111111:key/k", InaccessibleEncryptionDateTime: pb(9)}
	const (
		backupARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
		tableARN  = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
	)

	description := backupDescription(warn, &types.BackupDescription{
		BackupDetails: &types.BackupDetails{BackupArn: aws.String(backupARN), BackupName: aws.String("nightly"), BackupSizeBytes: aws.Int64(1),
			BackupStatus: types.BackupStatusDeleted, BackupType: types.BackupTypeAwsBackup, BackupCreationDateTime: at(1), BackupExpiryDateTime: at(2)},
		SourceTableDetails: &types.SourceTableDetails{TableName: aws.String("Orders"), TableId: aws.String("id-1"), TableArn: aws.String(tableARN),
			TableSizeBytes: aws.Int64(2), ItemCount: aws.Int64(3), KeySchema: keys, BillingMode: types.BillingModeProvisioned,
			ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(4), WriteCapacityUnits: aws.Int64(5)}, TableCreationDateTime: at(3)},
		SourceTableFeatureDetails: &types.SourceTableFeatureDetails{
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndexInfo{{IndexName: aws.String("G"), KeySchema: keys, Projection: include,
				ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(6), WriteCapacityUnits: aws.Int64(7)}}},
			LocalSecondaryIndexes: []types.LocalSecondaryIndexInfo{{IndexName: aws.String("L"), KeySchema: keys, Projection: include}},
			StreamDescription:     &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeKeysOnly},
			TimeToLiveDescription: &types.TimeToLiveDescription{TimeToLiveStatus: types.TimeToLiveStatusDisabling, AttributeName: aws.String("expires")},
			SSEDescription:        sse,
		},
	})
	wantDescription := &backupv1.BackupDescription{
		BackupDetails: &backupv1.BackupDetails{BackupArn: backupARN, BackupName: "nightly", BackupSizeBytes: aws.Int64(1),
			BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_DELETED, BackupType: backupv1.BackupType_BACKUP_TYPE_AWS_BACKUP,
			BackupCreationDateTime: pb(1), BackupExpiryDateTime: pb(2)},
		SourceTableDetails: &backupv1.SourceTableDetails{TableName: "Orders", TableId: "id-1", TableArn: tableARN,
			TableSizeBytes: aws.Int64(2), ItemCount: aws.Int64(3), KeySchema: wantKeys, BillingMode: backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 4, WriteCapacityUnits: 5}, TableCreationDateTime: pb(3)},
		SourceTableFeatureDetails: &backupv1.SourceTableFeatureDetails{
			GlobalSecondaryIndexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "G", KeySchema: wantKeys, Projection: wantInclude,
				ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 6, WriteCapacityUnits: 7}}},
			LocalSecondaryIndexes: []*backupv1.LocalSecondaryIndex{{IndexName: "L", KeySchema: wantKeys, Projection: wantInclude}},
			StreamDescription:     &backupv1.StreamSpecification{StreamEnabled: true, StreamViewType: backupv1.StreamViewType_STREAM_VIEW_TYPE_KEYS_ONLY},
			TimeToLiveDescription: &backupv1.TimeToLiveDescription{TimeToLiveStatus: backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_DISABLING, AttributeName: "expires"},
			SseDescription:        wantSSE,
		},
	}
	if !proto.Equal(description, wantDescription) {
		t.Errorf("backup description:\n%v\nwant\n%v", description, wantDescription)
	}

	summary := backupSummary(warn, &types.BackupSummary{TableName: aws.String("Orders"), TableId: aws.String("id-1"), TableArn: aws.String(tableARN),
		BackupArn: aws.String(backupARN), BackupName: aws.String("nightly"), BackupCreationDateTime: at(1), BackupExpiryDateTime: at(2),
		BackupStatus: types.BackupStatusAvailable, BackupType: types.BackupTypeSystem, BackupSizeBytes: aws.Int64(8)})
	wantSummary := &backupv1.BackupSummary{TableName: "Orders", TableId: "id-1", TableArn: tableARN, BackupArn: backupARN, BackupName: "nightly",
		BackupCreationDateTime: pb(1), BackupExpiryDateTime: pb(2), BackupStatus: backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE,
		BackupType: backupv1.BackupType_BACKUP_TYPE_SYSTEM, BackupSizeBytes: aws.Int64(8)}
	if !proto.Equal(summary, wantSummary) {
		t.Errorf("backup summary:\n%v\nwant\n%v", summary, wantSummary)
	}

	table := tableDescription(warn, &types.TableDescription{TableName: aws.String("Copy"), TableArn: aws.String(tableARN + "Copy"), TableId: aws.String("id-2"),
		TableStatus: types.TableStatusArchived, CreationDateTime: at(4), KeySchema: keys,
		ProvisionedThroughput: &types.ProvisionedThroughputDescription{ReadCapacityUnits: aws.Int64(9), WriteCapacityUnits: aws.Int64(10)},
		BillingModeSummary:    &types.BillingModeSummary{BillingMode: types.BillingModePayPerRequest},
		ItemCount:             aws.Int64(11), TableSizeBytes: aws.Int64(12), SSEDescription: sse,
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{{IndexName: aws.String("G"), KeySchema: keys, Projection: include,
			ProvisionedThroughput: &types.ProvisionedThroughputDescription{ReadCapacityUnits: aws.Int64(13), WriteCapacityUnits: aws.Int64(14)}}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndexDescription{{IndexName: aws.String("L"), KeySchema: keys, Projection: include}},
		RestoreSummary: &types.RestoreSummary{SourceBackupArn: aws.String(backupARN), SourceTableArn: aws.String(tableARN), RestoreDateTime: at(5),
			RestoreInProgress: aws.Bool(true)},
	})
	wantTable := &backupv1.TableDescription{TableName: "Copy", TableArn: tableARN + "Copy", TableId: "id-2",
		TableStatus: backupv1.TableStatus_TABLE_STATUS_ARCHIVED, CreationDateTime: pb(4), KeySchema: wantKeys,
		BillingMode:           backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
		ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 9, WriteCapacityUnits: 10},
		ItemCount:             aws.Int64(11), TableSizeBytes: aws.Int64(12), SseDescription: wantSSE,
		GlobalSecondaryIndexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "G", KeySchema: wantKeys, Projection: wantInclude,
			ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 13, WriteCapacityUnits: 14}}},
		LocalSecondaryIndexes: []*backupv1.LocalSecondaryIndex{{IndexName: "L", KeySchema: wantKeys, Projection: wantInclude}},
		RestoreSummary:        &backupv1.RestoreSummary{SourceBackupArn: backupARN, SourceTableArn: tableARN, RestoreDateTime: pb(5), RestoreInProgress: true},
	}
	if !proto.Equal(table, wantTable) {
		t.Errorf("table description:\n%v\nwant\n%v", table, wantTable)
	}
	if logs.String() != "" {
		t.Errorf("warnings for an answer backupd knows all of:\n%s", logs.String())
	}
}

// TestUnknownEnumValuesAreNamedInTheLog: a value DynamoDB adds later
// converts to UNSPECIFIED and is logged with the enum it is of, for each
// enum backupd converts.
func TestUnknownEnumValuesAreNamedInTheLog(t *testing.T) {
	logs := &testenv.Buffer{}
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	warn := s.warner(t.Context())
	keys := []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: "NEW"}}
	backupDescription(warn, &types.BackupDescription{
		BackupDetails:      &types.BackupDetails{BackupStatus: "NEW", BackupType: "NEW"},
		SourceTableDetails: &types.SourceTableDetails{BillingMode: "NEW", KeySchema: keys},
		SourceTableFeatureDetails: &types.SourceTableFeatureDetails{
			LocalSecondaryIndexes: []types.LocalSecondaryIndexInfo{{Projection: &types.Projection{ProjectionType: "NEW"}}},
			StreamDescription:     &types.StreamSpecification{StreamViewType: "NEW"},
			TimeToLiveDescription: &types.TimeToLiveDescription{TimeToLiveStatus: "NEW"},
			SSEDescription:        &types.SSEDescription{Status: "NEW", SSEType: "NEW"},
		},
	})
	backupSummary(warn, &types.BackupSummary{BackupStatus: "NEW", BackupType: "NEW"})
	tableDescription(warn, &types.TableDescription{TableStatus: "NEW"})
	for _, enum := range []string{"BackupStatus", "BackupType", "BillingMode", "KeyType", "ProjectionType", "StreamViewType", "TimeToLiveStatus",
		"SSEStatus", "SSEType", "TableStatus"} {
		if len(logs.Lines(`"level":"WARN"`, `"msg":"unknown DynamoDB enum value"`, `"enum":"`+enum+`"`, `"value":"NEW"`)) == 0 {
			t.Errorf("no warning names the enum %s and its value:\n%s", enum, logs.String())
		}
	}
}

// TestConversionOfASparseAnswer: an answer that leaves parts out (not
// DynamoDB's in full, a proxy's or a stand-in's) converts to a response
// that leaves them out too, without a warning for an enum not given.
func TestConversionOfASparseAnswer(t *testing.T) {
	logs := &testenv.Buffer{}
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	warn := s.warner(t.Context())
	if got := backupDescription(warn, &types.BackupDescription{BackupDetails: &types.BackupDetails{BackupArn: aws.String("arn")}}); !proto.Equal(got,
		&backupv1.BackupDescription{BackupDetails: &backupv1.BackupDetails{BackupArn: "arn"}}) {
		t.Errorf("backup description %v; want its ARN alone", got)
	}
	if got, details, table := backupDescription(warn, nil), backupDetails(warn, nil), tableDescription(warn, nil); got != nil || details != nil || table != nil {
		t.Errorf("no backup description converted to %v, no details to %v, no table to %v", got, details, table)
	}
	features := sourceTableFeatures(warn, &types.SourceTableFeatureDetails{
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndexInfo{{IndexName: aws.String("ByCustomer")}},
		LocalSecondaryIndexes:  []types.LocalSecondaryIndexInfo{{IndexName: aws.String("ByDate")}},
		StreamDescription:      &types.StreamSpecification{},
	})
	if want := (&backupv1.SourceTableFeatureDetails{GlobalSecondaryIndexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "ByCustomer"}},
		LocalSecondaryIndexes: []*backupv1.LocalSecondaryIndex{{IndexName: "ByDate"}}, StreamDescription: &backupv1.StreamSpecification{}}); !proto.Equal(features, want) {
		t.Errorf("features %v; want %v", features, want)
	}
	if got := tableDescription(warn, &types.TableDescription{TableName: aws.String("Copy")}); !proto.Equal(got, &backupv1.TableDescription{TableName: "Copy"}) {
		t.Errorf("table description %v; want its name alone", got)
	}
	if got := backupSummary(warn, &types.BackupSummary{}); !proto.Equal(got, &backupv1.BackupSummary{}) {
		t.Errorf("empty summary converted to %v", got)
	}
	if logs.String() != "" {
		t.Errorf("warnings for what an answer left out:\n%s", logs.String())
	}
}
