package service

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsarn "github.com/aws/aws-sdk-go-v2/aws/arn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// Fuzz tests of what reads a caller's input in this package. Each also
// runs as a unit test over its seeds (go test ./service/).

// maxDescription bounds one field violation's text: the longest echo
// (Quote, or a valid 255-character name) plus the rule it broke.
const maxDescription = 512

const (
	fuzzAccount   = "111111111111"
	fuzzBackupARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	fuzzTableARN  = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
	fuzzRecovery  = "arn:aws:backup:us-east-1:111111111111:recovery-point:e7a1ae2a-3a40-4a9b-8f4e-7c2d1b1c9f00"
)

// checkViolations holds err, when it is one, to what every violation
// must be: a *badrequest.Error whose violations each name a field
// that fieldOK accepts, start with that field's name, and are short,
// valid UTF-8.
func checkViolations(t *testing.T, err error, fieldOK func(string) bool) []badrequest.Violation {
	t.Helper()
	if err == nil {
		return nil
	}
	ia, ok := errors.AsType[*badrequest.Error](err)
	if !ok {
		t.Fatalf("error %T %v is not an *badrequest.Error", err, err)
	}
	if len(ia.Violations) == 0 {
		t.Fatalf("badrequest.Error without violations")
	}
	for _, v := range ia.Violations {
		if !fieldOK(v.Field) {
			t.Errorf("violation names %q, not a field of the request: %q", v.Field, v.Description)
		}
		if !strings.HasPrefix(v.Description, v.Field+" ") {
			t.Errorf("description %q does not start with its field %q", v.Description, v.Field)
		}
		if !utf8.ValidString(v.Description) {
			t.Errorf("description is not valid UTF-8: %q", v.Description)
		}
		if len(v.Description) > maxDescription {
			t.Errorf("description is %d bytes (> %d): %.200q...", len(v.Description), maxDescription, v.Description)
		}
	}
	return ia.Violations
}

func oneOf(names ...string) func(string) bool {
	return func(f string) bool {
		for _, n := range names {
			if f == n {
				return true
			}
		}
		return false
	}
}

// FuzzValidateCreate: no panic; every violation names one of the five
// fields; a request let through has a valid account, region, table and
// backup name, and the table it names is in the request's account and
// region; validation is deterministic.
func FuzzValidateCreate(f *testing.F) {
	f.Add(fuzzAccount, "", "Orders", "nightly-1", "")
	f.Add(fuzzAccount, "eu-west-1", "Orders", "nightly-1", "6f1c2b7e-3f4a-4c1e-9a37-1a2b3c4d5e6f")
	f.Add(fuzzAccount, "us-east-1", fuzzTableARN, "b.b", "")
	f.Add(fuzzAccount, "", "arn:aws-cn:dynamodb:cn-north-1:111111111111:table/T_1", "abc", "x")
	f.Add("11111111111a", "mars", "a/b", "..", "abc\n")
	f.Add("", "", "", "", strings.Repeat("r", 129))
	f.Add(fuzzAccount, "", fuzzBackupARN, "tablé", "\x7f")
	f.Add(fuzzAccount, "us-"+strings.Repeat("a", 100)+"-1", "arn:"+strings.Repeat(":", 10), "\xff\xfe\xfd", "")
	f.Fuzz(func(t *testing.T, account, region, table, backup, requestID string) {
		req := &backupv1.CreateBackupRequest{AccountId: account, Region: region, TableName: table, BackupName: backup, RequestId: requestID}
		ref, err := validateCreate(req)
		ref2, err2 := validateCreate(req)
		if ref != ref2 || (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("validateCreate is not deterministic")
		}
		checkViolations(t, err, oneOf("account_id", "region", "table_name", "backup_name", "request_id"))
		if err != nil {
			return
		}
		if !awsname.ValidAccountID(account) || region != "" && !awsname.ValidRegion(region) {
			t.Errorf("account %q / region %q let through", account, region)
		}
		if !nameOK(backup) || !nameOK(ref.name) {
			t.Errorf("backup %q / table name %q let through", backup, ref.name)
		}
		if len(requestID) > 128 || strings.IndexFunc(requestID, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			t.Errorf("request_id %q let through", requestID)
		}
		if ref.ref != table {
			t.Errorf("ref %q, want the table as given %q", ref.ref, table)
		}
		if strings.HasPrefix(table, "arn:") {
			a, perr := awsarn.Parse(table)
			if perr != nil || a.AccountID != account || region != "" && a.Region != region || a.Resource != "table/"+ref.name {
				t.Errorf("table ARN %q let through for account %q region %q (%v)", table, account, region, perr)
			}
			if ref.arnRegion != a.Region || ref.field != "table_name" {
				t.Errorf("tableRef %+v for %q", ref, table)
			}
		} else if ref.name != table || ref.arnRegion != "" {
			t.Errorf("tableRef %+v for the name %q", ref, table)
		}
	})
}

// nameRe is DynamoDB's name rule as a regular expression: an oracle
// for checkName's loop.
var nameRe = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

func nameOK(s string) bool { return len(s) >= 3 && len(s) <= 255 && nameRe.MatchString(s) }

// FuzzParseARN: no panic; at most one violation, of the field asked
// for; an ARN it accepts is exactly the one its parts spell, one the
// SDK's parser reads the same way, and one whose account and region
// ARNTarget (what authorization sees) reads the same way too.
func FuzzParseARN(f *testing.F) {
	for _, s := range []string{fuzzBackupARN, fuzzTableARN,
		"arn:aws-us-gov:dynamodb:us-gov-west-1:111111111111:table/T-1/backup/1-a",
		"arn:aws-cn:dynamodb:us-east-1:111111111111:table/Orders",
		fuzzBackupARN + ":restore", fuzzBackupARN + "/x", "arn:aws:s3:::bucket", "arn:::::", "", "arn:aws:dynamodb:us-east-1:111111111111:table/\xff\xfe"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, wantBackup bool) {
		var vs violations
		a, ok := parseARN(&vs, "backup_arn", s, wantBackup)
		if ok != (len(vs) == 0) {
			t.Fatalf("ok=%v with violations %+v", ok, vs)
		}
		if len(vs) > 1 {
			t.Errorf("%d violations for one ARN: %+v", len(vs), vs)
		}
		checkViolations(t, vs.err(), oneOf("backup_arn"))
		if !ok {
			return
		}
		if account, region := ARNTarget(s); account != a.Account || region != a.Region {
			t.Errorf("accepted %q in account %s, region %s; ARNTarget reads account %q, region %q", s, a.Account, a.Region, account, region)
		}
		built := "arn:" + a.Partition + ":dynamodb:" + a.Region + ":" + a.Account + ":table/" + a.Table
		if wantBackup {
			built += "/backup/" + a.BackupID
			if !backupIDOK(a.BackupID) {
				t.Errorf("backup id %q accepted", a.BackupID)
			}
		} else if a.BackupID != "" {
			t.Errorf("table ARN with a backup id %q", a.BackupID)
		}
		if built != s {
			t.Errorf("accepted %q, whose parts spell %q", s, built)
		}
		if !awsname.ValidAccountID(a.Account) || !awsname.ValidRegion(a.Region) || !nameOK(a.Table) {
			t.Errorf("accepted %q with parts %+v", s, a)
		}
		p, err := awsarn.Parse(s)
		if err != nil || p.Partition != a.Partition || p.Region != a.Region || p.AccountID != a.Account || p.Service != "dynamodb" {
			t.Errorf("accepted %q, which the SDK reads as %+v, %v", s, p, err)
		}
	})
}

// FuzzPageToken: a token encodes and decodes back to its ARN when the
// listing can hold the ARN, and is refused otherwise; decoding never
// panics; a token decodePageToken accepts is exactly the one
// encodePageToken makes of what it decoded (no altered token passes);
// changing any one character of a token gets it refused; and the ARN of
// an accepted token is one DynamoDB could have returned.
func FuzzPageToken(f *testing.F) {
	good := encodePageToken(listScope{account: fuzzAccount, region: "us-east-1", backupType: "USER"}, fuzzBackupARN)
	f.Add(fuzzAccount, "us-east-1", "", uint8(0), int64(0), int64(0), fuzzBackupARN, good, uint16(3), uint8(1))
	f.Add(fuzzAccount, "us-east-1", "Orders", uint8(0), int64(1), int64(2), fuzzBackupARN, good, uint16(100), uint8(1))
	f.Add(fuzzAccount, "us-east-1", "", uint8(2), int64(0), int64(0), fuzzRecovery, "AA", uint16(0), uint8(0))
	f.Add(fuzzAccount, "us-east-1", "", uint8(3), int64(0), int64(0), "arn:aws:backup:us-east-1:111111111111:recovery-point:1", "!!", uint16(0), uint8(7))
	f.Add(fuzzAccount, "us-east-1", "", uint8(0), int64(0), int64(0), fuzzTableARN, good[:len(good)-2], uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, account, region, table string, bt uint8, lower, upper int64, lastARN, token string, pos uint16, flip uint8) {
		types := []string{"USER", "SYSTEM", "AWS_BACKUP", "ALL"}
		bound := func(v int64) timeBoundScope { return timeBoundScope{set: v != 0, nanos: v} } // 0 for unset
		scope := listScope{account: account, region: region, table: table, backupType: types[int(bt)%len(types)], lower: bound(lower), upper: bound(upper)}

		tok := encodePageToken(scope, lastARN)
		got, err := decodePageToken(scope, tok)
		switch holds := scope.holds(lastARN); {
		case holds && (err != nil || got != lastARN):
			t.Fatalf("round trip of %q = %q, %v", lastARN, got, err)
		case !holds && err == nil:
			t.Fatalf("token of %q, which the listing cannot hold, accepted", lastARN)
		case holds:
			checkListedARN(t, scope, lastARN)
		}

		if got, err := decodePageToken(scope, token); err == nil {
			if again := encodePageToken(scope, got); again != token {
				t.Errorf("token %q accepted, but the token of its ARN %q is %q: an altered token passed", token, got, again)
			}
			checkListedARN(t, scope, got)
		}

		if err == nil && len(tok) > 0 {
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			i := int(pos) % len(tok)
			c := alphabet[(strings.IndexByte(alphabet, tok[i])^int(flip%64|1))%64]
			altered := tok[:i] + string(c) + tok[i+1:]
			if _, err := decodePageToken(scope, altered); err == nil {
				t.Errorf("token %q with character %d changed to %q (%q) accepted", tok, i, c, altered)
			}
		}
	})
}

// checkListedARN holds the ARN of an accepted token to what DynamoDB's
// ListBackups returns: a backup ARN GetBackup takes, or an AWS Backup
// recovery point of a known partition whose region is in it.
func checkListedARN(t *testing.T, scope listScope, s string) {
	t.Helper()
	a, err := awsarn.Parse(s)
	if err != nil || a.AccountID != scope.account || a.Region != scope.region {
		t.Errorf("token with ARN %q accepted for scope %+v", s, scope)
		return
	}
	if !awsname.ValidRegion(a.Region) || !inKnownPartition(a.Partition, a.Region) {
		t.Errorf("token with ARN %q accepted: partition %q and region %q are not AWS's", s, a.Partition, a.Region)
	}
	if a.Service == "backup" && strings.TrimPrefix(a.Resource, "recovery-point:") == "" {
		t.Errorf("token with ARN %q accepted: a recovery point without an id", s)
	}
}

// FuzzValidateList: for any ListBackupsRequest (as wire bytes): no
// panic; violations name its fields; one let through has a page size
// of 1-100, a known backup type and, when bounded, time bounds to the
// millisecond, rounded up by less than a millisecond, lower before
// upper, recorded in the scope its page tokens carry.
func FuzzValidateList(f *testing.F) {
	size := func(v int32) *int32 { return &v }
	for _, r := range []*backupv1.ListBackupsRequest{
		{AccountId: fuzzAccount},
		{AccountId: fuzzAccount, Region: "us-east-1", TableName: "Orders", BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL, PageSize: size(100)},
		{AccountId: fuzzAccount, TableName: fuzzTableARN, PageToken: "AA", PageSize: size(0),
			TimeRangeLowerBound: timestamppb.New(time.Unix(1700000000, 500)), TimeRangeUpperBound: timestamppb.New(time.Unix(1700000000, 900))},
		{AccountId: fuzzAccount, TimeRangeLowerBound: &timestamppb.Timestamp{}, TimeRangeUpperBound: &timestamppb.Timestamp{Seconds: 7258118400}},
		{AccountId: fuzzAccount, TimeRangeLowerBound: &timestamppb.Timestamp{Seconds: -1, Nanos: 999999999}, TimeRangeUpperBound: &timestamppb.Timestamp{Nanos: -1}},
		{AccountId: "x", BackupType: 99, TableName: "arn:aws:dynamodb:us-east-1:222222222222:table/T"},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	md := (&backupv1.ListBackupsRequest{}).ProtoReflect().Descriptor()
	fieldOK := func(name string) bool { return md.Fields().ByName(protoreflect.Name(name)) != nil }
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &backupv1.ListBackupsRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		in, scope, table, err := validateList(req)
		checkViolations(t, err, fieldOK)
		if err != nil {
			return
		}
		if n := aws.ToInt32(in.Limit); n < 1 || n > 100 {
			t.Errorf("limit %d", n)
		}
		if string(in.BackupType) != scope.backupType || in.BackupType == "" {
			t.Errorf("backup type %q, scope %q", in.BackupType, scope.backupType)
		}
		if req.GetTableName() != "" && (scope.table != table.name || !nameOK(table.name)) {
			t.Errorf("table %q: scope %q, ref %+v", req.GetTableName(), scope.table, table)
		}
		bound := func(name string, ts *timestamppb.Timestamp, got *time.Time, inScope timeBoundScope) {
			if ts == nil {
				if got != nil || inScope.set {
					t.Errorf("%s absent, but sent as %v (scope %v)", name, got, inScope)
				}
				return
			}
			if got == nil {
				t.Fatalf("%s %v let through but not sent", name, ts)
			}
			want := ts.AsTime()
			if got.Before(want) || got.Sub(want) >= time.Millisecond || !got.Equal(got.Truncate(time.Millisecond)) {
				t.Errorf("%s %v sent as %v", name, want, got)
			}
			if !inScope.set || got.UnixNano() != inScope.nanos {
				t.Errorf("%s sent as %v, scope holds %v", name, got, inScope)
			}
		}
		bound("lower", req.GetTimeRangeLowerBound(), in.TimeRangeLowerBound, scope.lower)
		bound("upper", req.GetTimeRangeUpperBound(), in.TimeRangeUpperBound, scope.upper)
		if in.TimeRangeLowerBound != nil && in.TimeRangeUpperBound != nil && !in.TimeRangeLowerBound.Before(*in.TimeRangeUpperBound) {
			t.Errorf("bounds %v, %v let through", in.TimeRangeLowerBound, in.TimeRangeUpperBound)
		}
	})
}

// FuzzPageTokenScope: a page token made by one valid listing is taken
// by another exactly when the two list the same thing: same account,
// region, table (by name), backup type and time bounds (after rounding
// to the millisecond, a bound given or not).
func FuzzPageTokenScope(f *testing.F) {
	add := func(a, b *backupv1.ListBackupsRequest) {
		ab, _ := proto.Marshal(a)
		bb, _ := proto.Marshal(b)
		f.Add(ab, bb)
	}
	base := &backupv1.ListBackupsRequest{AccountId: fuzzAccount, TableName: "Orders"}
	add(base, &backupv1.ListBackupsRequest{AccountId: fuzzAccount, TableName: fuzzTableARN})
	add(base, &backupv1.ListBackupsRequest{AccountId: fuzzAccount, TableName: "Orders", TimeRangeLowerBound: timestamppb.New(time.Unix(1700000000, 0))})
	add(base, &backupv1.ListBackupsRequest{AccountId: fuzzAccount, TableName: "Orders", BackupType: backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_USER})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ra, rb := &backupv1.ListBackupsRequest{}, &backupv1.ListBackupsRequest{}
		if proto.Unmarshal(a, ra) != nil || proto.Unmarshal(b, rb) != nil {
			return
		}
		ina, sa, _, errA := validateList(ra)
		inb, sb, _, errB := validateList(rb)
		if errA != nil || errB != nil {
			return
		}
		sa.region, sb.region = "us-east-1", "us-east-1" // as ListBackups resolves them
		if ra.GetAccountId() != rb.GetAccountId() {
			return // the ARN cannot be in both accounts; covered by FuzzPageToken
		}
		last := "arn:aws:dynamodb:us-east-1:" + ra.GetAccountId() + ":table/Orders/backup/01700000000000-abcdef12"
		if sa.table != "" && sa.table != "Orders" || sb.table != "" && sb.table != "Orders" {
			last = "arn:aws:dynamodb:us-east-1:" + ra.GetAccountId() + ":table/" + sa.table + "/backup/01700000000000-abcdef12"
		}
		if !sa.holds(last) || !sb.holds(last) {
			return
		}
		timeKey := func(p *time.Time) string {
			// A bound at the epoch lists what no bound lists (a lower
			// one), or nothing, with no next page (an upper one).
			if p == nil || p.UnixNano() == 0 {
				return "none"
			}
			return strconv.FormatInt(p.UnixNano(), 10)
		}
		same := sa.table == sb.table && ina.BackupType == inb.BackupType &&
			timeKey(ina.TimeRangeLowerBound) == timeKey(inb.TimeRangeLowerBound) &&
			timeKey(ina.TimeRangeUpperBound) == timeKey(inb.TimeRangeUpperBound)
		_, err := decodePageToken(sb, encodePageToken(sa, last))
		if (err == nil) != same {
			t.Errorf("token of listing %v taken by listing %v: %v; they list the same: %v\n(lower %s / %s, upper %s / %s)",
				ra, rb, err == nil, same, timeKey(ina.TimeRangeLowerBound), timeKey(inb.TimeRangeLowerBound),
				timeKey(ina.TimeRangeUpperBound), timeKey(inb.TimeRangeUpperBound))
		}
	})
}

// FuzzValidateRestore: for any RestoreTableFromBackupRequest (as wire
// bytes): no panic; each violation names a field path of the request
// that exists in it (list indexes included); a request let through
// holds DynamoDB's documented bounds.
func FuzzValidateRestore(f *testing.F) {
	ks := []*backupv1.KeySchemaElement{{AttributeName: "pk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}, {AttributeName: "sk", KeyType: backupv1.KeyType_KEY_TYPE_RANGE}}
	for _, r := range []*backupv1.RestoreTableFromBackupRequest{
		{BackupArn: fuzzBackupARN, TargetTableName: "Copy"},
		{BackupArn: fuzzBackupARN, TargetTableName: "Copy", RequestId: "r1", BillingModeOverride: backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 5},
			SseSpecificationOverride:      &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/x"},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "gsi1", KeySchema: ks, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{"a", "b"}},
					ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1, WriteCapacityUnits: 0}},
			}},
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{
				{IndexName: "lsi", KeySchema: ks[:1], Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL}},
				{IndexName: "", KeySchema: append(ks, ks...), Projection: &backupv1.Projection{ProjectionType: 9}},
			}}},
		{BillingModeOverride: 7, ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: -1},
			SseSpecificationOverride:     &backupv1.SseSpecification{SseType: 9, KmsMasterKeyId: "a b"},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{}}}},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &backupv1.RestoreTableFromBackupRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		var vs violations
		in := checkRestore(&vs, req)
		checkViolations(t, vs.err(), func(field string) bool { return fieldPathIn(req.ProtoReflect(), field) })
		if len(vs) > 0 {
			return
		}
		if !nameOK(aws.ToString(in.TargetTableName)) || len(req.GetRequestId()) > 128 {
			t.Errorf("target %q / request_id %q let through", aws.ToString(in.TargetTableName), req.GetRequestId())
		}
		if pt := in.ProvisionedThroughputOverride; pt != nil && (aws.ToInt64(pt.ReadCapacityUnits) < 1 || aws.ToInt64(pt.WriteCapacityUnits) < 1) {
			t.Errorf("throughput %+v let through", pt)
		}
		if s := in.SSESpecificationOverride; s != nil && s.KMSMasterKeyId != nil && (len(*s.KMSMasterKeyId) > 2048 || s.SSEType != "KMS") {
			t.Errorf("SSE %+v let through", s)
		}
		for _, g := range in.GlobalSecondaryIndexOverride {
			checkIndexOut(t, aws.ToString(g.IndexName), len(g.KeySchema), g.Projection)
			for _, k := range g.KeySchema {
				if n := len(aws.ToString(k.AttributeName)); n < 1 || n > 255 {
					t.Errorf("attribute %q let through", aws.ToString(k.AttributeName))
				}
			}
		}
		for _, l := range in.LocalSecondaryIndexOverride {
			checkIndexOut(t, aws.ToString(l.IndexName), len(l.KeySchema), l.Projection)
		}
	})
}

func checkIndexOut(t *testing.T, name string, keys int, p interface{}) {
	t.Helper()
	if !nameOK(name) || keys < 1 || keys > 2 || p == nil {
		t.Errorf("index %q with %d keys, projection %v let through", name, keys, p)
	}
}

// fieldPathIn reports whether path ("a.b[2].c") names a field of m,
// through set messages and existing list elements, by proto names.
func fieldPathIn(m protoreflect.Message, path string) bool {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		name, idx := part, -1
		if j := strings.IndexByte(part, '['); j >= 0 && strings.HasSuffix(part, "]") {
			n, err := strconv.Atoi(part[j+1 : len(part)-1])
			if err != nil {
				return false
			}
			name, idx = part[:j], n
		}
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return false
		}
		last := i == len(parts)-1
		switch {
		case fd.IsList():
			if idx < 0 {
				return last
			}
			l := m.Get(fd).List()
			if idx >= l.Len() {
				return false
			}
			if last {
				return true
			}
			if fd.Message() == nil {
				return false
			}
			m = l.Get(idx).Message()
		case idx >= 0:
			return false
		case last:
			return true
		case fd.Message() == nil:
			return false
		default:
			m = m.Get(fd).Message()
		}
	}
	return false
}

// FuzzNameChars: checkName's loop takes exactly the names the regular
// expression of DynamoDB's rule takes.
func FuzzNameChars(f *testing.F) {
	for _, s := range []string{"Orders", "my-table_1.0", "a b", "a/b", "Ωmega", "tab\x00le", "..", "x\xff", "Z9-", "`", "[", "@", "{", "a+b", "a,b", "a:b", "a^b", "a~b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // refused before, as required
		}
		if got, want := nameChars(s), nameRe.MatchString(s); got != want {
			t.Errorf("nameChars(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
