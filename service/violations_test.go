package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// unconfigured resolves no account: a request its handler lets through
// its validation fails there, before any DynamoDB call.
type unconfigured struct{}

func (unconfigured) Resolve(account, _ string) (accounts.Target, error) {
	return accounts.Target{}, &accounts.NotConfiguredError{AccountID: account}
}

// handlerViolations calls the handler of req's RPC and returns the
// violations of its INVALID_ARGUMENT, nil when its validation let req
// through (to the account's lookup, which s refuses).
func handlerViolations(t *testing.T, s *Server, req proto.Message) []badrequest.Violation {
	t.Helper()
	err := handlerError(t, s, req)
	if bad, ok := errors.AsType[*badrequest.Error](err); ok {
		return bad.Violations
	}
	if _, ok := errors.AsType[*accounts.NotConfiguredError](err); !ok {
		t.Fatalf("handler: %v; want its violations or the account's lookup", err)
	}
	return nil
}

// handlerError is the error of the handler of req's RPC.
func handlerError(t *testing.T, s *Server, req proto.Message) error {
	t.Helper()
	ctx := context.Background()
	var err error
	switch r := req.(type) {
	case *backupv1.CreateBackupRequest:
		_, err = s.CreateBackup(ctx, r)
	case *backupv1.ListBackupsRequest:
		_, err = s.ListBackups(ctx, r)
	case *backupv1.RestoreTableFromBackupRequest:
		_, err = s.RestoreTableFromBackup(ctx, r)
	case *backupv1.GetBackupRequest:
		_, err = s.GetBackup(ctx, r)
	case *backupv1.DeleteBackupRequest:
		_, err = s.DeleteBackup(ctx, r)
	default:
		t.Fatalf("no handler for %T", req)
	}
	return err
}

// Violations names what each RPC's handler refuses, in the same fields,
// words and order (REST and gRPC callers are told the same), and nothing
// for a valid request.
func TestViolations(t *testing.T) {
	const (
		arn      = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
		tableARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
	)
	hash := []*backupv1.KeySchemaElement{{AttributeName: "pk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}}
	tests := []struct {
		name   string
		req    proto.Message
		fields []string
	}{
		{"valid create", &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly"}, nil},
		{"create", &backupv1.CreateBackupRequest{AccountId: "1", TableName: "Orders", BackupName: "a b"}, []string{"account_id", "backup_name"}},
		{"empty create", &backupv1.CreateBackupRequest{}, []string{"account_id", "table_name", "backup_name"}},
		{"create of another account's table in another region", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "eu-west-1",
			TableName: "arn:aws:dynamodb:us-west-2:222222222222:table/Orders", BackupName: "nightly", RequestId: strings.Repeat("r", 129)},
			[]string{"table_name", "request_id"}},
		{"create in a bad region", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "mars-1", TableName: "Orders", BackupName: "nightly"}, []string{"region"}},
		{"valid restore", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy"}, nil},
		{"restore", &backupv1.RestoreTableFromBackupRequest{BackupArn: "arn:nope", RequestId: "\x01"}, []string{"target_table_name", "request_id", "backup_arn"}},
		{"restore of a table ARN", &backupv1.RestoreTableFromBackupRequest{BackupArn: tableARN, TargetTableName: "Copy"}, []string{"backup_arn"}},
		{"restore with bad overrides", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn + ":restore", TargetTableName: "Copy",
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1},
			SseSpecificationOverride:      &backupv1.SseSpecification{SseType: backupv1.SseType_SSE_TYPE_AES256},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "ix", KeySchema: hash}}},
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{Projection: &backupv1.Projection{}}}},
		}, []string{
			"provisioned_throughput_override.write_capacity_units", "provisioned_throughput_override", "sse_specification_override.sse_type",
			"global_secondary_index_override.indexes[0].index_name", "global_secondary_index_override.indexes[0].projection.projection_type",
			"local_secondary_index_override.indexes[0].index_name", "local_secondary_index_override.indexes[0].key_schema",
			"local_secondary_index_override.indexes[0].projection.projection_type", "backup_arn",
		}},
		{"valid list", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: tableARN, PageSize: aws.Int32(100)}, nil},
		{"list", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "a b", PageToken: "x"}, []string{"table_name", "page_token"}},
		{"empty list", &backupv1.ListBackupsRequest{}, []string{"account_id"}},
		{"list of every bad field", &backupv1.ListBackupsRequest{AccountId: "12", Region: "nowhere", BackupType: 9,
			TimeRangeLowerBound: &timestamppb.Timestamp{Nanos: -1}, TimeRangeUpperBound: timestamppb.New(maxTimeBound.AddDate(1, 0, 0)),
			PageSize: aws.Int32(101)},
			[]string{"account_id", "region", "backup_type", "time_range_lower_bound", "time_range_upper_bound", "page_size"}},
		{"list of a time range backwards", &backupv1.ListBackupsRequest{AccountId: "111111111111",
			TimeRangeLowerBound: timestamppb.New(minTimeBound.AddDate(50, 0, 0)), TimeRangeUpperBound: timestamppb.New(minTimeBound.AddDate(40, 0, 0)),
			PageSize: aws.Int32(-1)},
			[]string{"time_range_upper_bound", "page_size"}},
		{"get", &backupv1.GetBackupRequest{BackupArn: "nope"}, []string{"backup_arn"}},
		{"valid get", &backupv1.GetBackupRequest{BackupArn: arn}, nil},
		{"get of a table ARN", &backupv1.GetBackupRequest{BackupArn: tableARN}, []string{"backup_arn"}},
		{"valid delete", &backupv1.DeleteBackupRequest{BackupArn: arn}, nil},
		{"delete", &backupv1.DeleteBackupRequest{}, []string{"backup_arn"}},
		{"delete in another partition", &backupv1.DeleteBackupRequest{BackupArn: strings.Replace(arn, "arn:aws:", "arn:aws-cn:", 1)}, []string{"backup_arn"}},
	}
	s := New(Options{Accounts: unconfigured{}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listed := Violations(tt.req)
			var fields []string
			for _, v := range listed {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("violations of %v; want %v", fields, tt.fields)
			}
			if handled := handlerViolations(t, s, tt.req); !slices.Equal(listed, handled) {
				t.Errorf("Violations lists\n%v\nthe handler refuses with\n%v", listed, handled)
			}
		})
	}
}

// Server.Violations also names what the account's configuration refuses,
// as the handler does: a region the account does not allow, in region or
// in a backup ARN, and a table ARN outside the default region, beside the
// other bad fields, and alone when they are right (the gateway asks it of
// a request whose other fields it could not read). An account that is not
// configured is no field's fault.
func TestServerViolations(t *testing.T) {
	const (
		farBackup = "arn:aws:dynamodb:us-west-2:111111111111:table/Orders/backup/01700000000000-abcdef12"
		euTable   = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
	)
	tests := []struct {
		name   string
		req    proto.Message
		fields []string
	}{
		{"create: region not allowed", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "us-west-2", TableName: "Orders", BackupName: "nightly"},
			[]string{"region"}},
		{"create: region not allowed, beside a bad name", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "us-west-2", TableName: "Orders", BackupName: "x"},
			[]string{"backup_name", "region"}},
		{"create: table ARN outside the default region", &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: euTable, BackupName: "nightly"},
			[]string{"table_name"}},
		{"create: valid", &backupv1.CreateBackupRequest{AccountId: "111111111111", Region: "eu-west-1", TableName: euTable, BackupName: "nightly"}, nil},
		{"create: account not configured", &backupv1.CreateBackupRequest{AccountId: "333333333333", Region: "us-west-2", TableName: "Orders", BackupName: "nightly"}, nil},
		{"list: region not allowed", &backupv1.ListBackupsRequest{AccountId: "111111111111", Region: "us-west-2"}, []string{"region"}},
		{"list: table ARN outside the default region", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: euTable}, []string{"table_name"}},
		{"get: backup ARN's region not allowed", &backupv1.GetBackupRequest{BackupArn: farBackup}, []string{"backup_arn"}},
		{"delete: backup ARN's region not allowed", &backupv1.DeleteBackupRequest{BackupArn: farBackup}, []string{"backup_arn"}},
		{"restore: backup ARN's region not allowed", &backupv1.RestoreTableFromBackupRequest{BackupArn: farBackup, TargetTableName: "Copy"},
			[]string{"backup_arn"}},
		{"restore: and a bad target", &backupv1.RestoreTableFromBackupRequest{BackupArn: farBackup, TargetTableName: "x"},
			[]string{"target_table_name", "backup_arn"}},
	}
	s := New(Options{Accounts: regional{}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listed := s.Violations(tt.req)
			var fields []string
			for _, v := range listed {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Fatalf("violations of %v (%v); want %v", fields, listed, tt.fields)
			}
			if tt.fields == nil {
				return // the handler would go on to DynamoDB, which regional has none of
			}
			if handled := refusedFields(t, s, tt.req); !slices.Equal(listed, handled) {
				t.Errorf("Violations lists\n%v\nthe handler refuses with\n%v", listed, handled)
			}
		})
	}
}

// refusedFields is handlerViolations, with a region the account does not
// allow as the one violation the handler names it by.
func refusedFields(t *testing.T, s *Server, req proto.Message) []badrequest.Violation {
	t.Helper()
	if e, ok := errors.AsType[*accounts.RegionNotAllowedError](handlerError(t, s, req)); ok {
		return []badrequest.Violation{{Field: e.Field, Description: e.Error()}}
	}
	return handlerViolations(t, s, req)
}

// A region the gateway could not read (of the wrong type, given twice)
// is named by the gateway alone: the table ARN is not judged against
// the default region, which the caller did not ask for.
func TestServerViolationsBesideAnUnreadRegion(t *testing.T) {
	s := New(Options{Accounts: regional{}})
	euTable := "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
	unread := badrequest.Violation{Field: "region", Description: "region must be a string; got 5"}
	for _, req := range []proto.Message{
		&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: euTable, BackupName: "nightly"},
		&backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: euTable},
	} {
		if vs := s.Violations(req, unread); len(vs) != 0 {
			t.Errorf("%T: violations %v beside an unread region; want none", req, vs)
		}
		if vs := s.Violations(req); len(vs) != 1 || vs[0].Field != "table_name" {
			t.Errorf("%T: violations %v; want table_name's", req, vs)
		}
	}
	// And a field named beside it is still told.
	req := &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: euTable, BackupName: "x"}
	if vs := s.Violations(req, unread); len(vs) != 1 || vs[0].Field != "backup_name" {
		t.Errorf("violations %v; want backup_name's", vs)
	}
}

// Server.Violations judges a ListBackups page_token beside a page_size
// the gateway could not read, as the handler does beside a bad one; but
// not beside another field it could not read, which the token's listing
// may have named.
func TestServerViolationsJudgeTheTokenBesideAnUnreadPageSize(t *testing.T) {
	const last = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	orders := encodePageToken(listScope{account: "111111111111", region: "us-east-1", table: "Orders", backupType: "USER"}, last)
	pageSize := badrequest.Violation{Field: "page_size", Description: `page_size must be an integer; got "abc"`}
	tableName := badrequest.Violation{Field: "table_name", Description: "table_name is given twice"}
	s := New(Options{Accounts: regional{}})
	tests := []struct {
		name   string
		req    *backupv1.ListBackupsRequest
		unread []badrequest.Violation
		want   []string
	}{
		{"another listing's token", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageToken: orders},
			[]badrequest.Violation{pageSize}, []string{"page_token"}},
		{"this listing's token", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "Orders", PageToken: orders},
			[]badrequest.Violation{pageSize}, nil},
		{"beside an unread table", &backupv1.ListBackupsRequest{AccountId: "111111111111", PageToken: orders},
			[]badrequest.Violation{pageSize, tableName}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields []string
			for _, v := range s.Violations(tt.req, tt.unread...) {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.want) {
				t.Errorf("violations of %v; want %v", fields, tt.want)
			}
		})
	}
}
