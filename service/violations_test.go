package service

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// Violations names what each RPC's own validation refuses, in the same
// fields, and nothing for a valid request.
func TestViolations(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	tests := []struct {
		name   string
		req    proto.Message
		fields []string
	}{
		{"valid create", &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly"}, nil},
		{"create", &backupv1.CreateBackupRequest{AccountId: "1", TableName: "Orders", BackupName: "a b"}, []string{"account_id", "backup_name"}},
		{"valid restore", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy"}, nil},
		{"restore", &backupv1.RestoreTableFromBackupRequest{BackupArn: "arn:nope", RequestId: "\x01"}, []string{"target_table_name", "request_id", "backup_arn"}},
		{"list", &backupv1.ListBackupsRequest{AccountId: "111111111111", TableName: "a b", PageToken: "x"}, []string{"table_name", "page_token"}},
		{"get", &backupv1.GetBackupRequest{BackupArn: "nope"}, []string{"backup_arn"}},
		{"valid delete", &backupv1.DeleteBackupRequest{BackupArn: arn}, nil},
		{"delete", &backupv1.DeleteBackupRequest{}, []string{"backup_arn"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields []string
			for _, v := range Violations(tt.req) {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("violations of %v; want %v", fields, tt.fields)
			}
		})
	}
}
