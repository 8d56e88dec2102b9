package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/types/known/timestamppb"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// enumValue maps a DynamoDB enum string to ours. DynamoDB may add values; an
// unknown one maps to the zero value and is logged, never a failure.
func enumValue[E ~int32](s *Server, kind, v string, m map[string]E) E {
	if v == "" {
		return 0
	}
	e, ok := m[v]
	if !ok {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "unknown DynamoDB enum value",
			slog.String("enum", kind), slog.String("value", v))
	}
	return e
}

var (
	backupStatuses = map[string]backupv1.BackupStatus{
		string(types.BackupStatusCreating):  backupv1.BackupStatus_BACKUP_STATUS_CREATING,
		string(types.BackupStatusDeleted):   backupv1.BackupStatus_BACKUP_STATUS_DELETED,
		string(types.BackupStatusAvailable): backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE,
	}
	backupTypes = map[string]backupv1.BackupType{
		string(types.BackupTypeUser):      backupv1.BackupType_BACKUP_TYPE_USER,
		string(types.BackupTypeSystem):    backupv1.BackupType_BACKUP_TYPE_SYSTEM,
		string(types.BackupTypeAwsBackup): backupv1.BackupType_BACKUP_TYPE_AWS_BACKUP,
	}
)

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func (s *Server) backupDetails(d *types.BackupDetails) *backupv1.BackupDetails {
	if d == nil {
		return nil
	}
	return &backupv1.BackupDetails{
		BackupArn:              deref(d.BackupArn),
		BackupName:             deref(d.BackupName),
		BackupSizeBytes:        d.BackupSizeBytes,
		BackupStatus:           enumValue(s, "BackupStatus", string(d.BackupStatus), backupStatuses),
		BackupType:             enumValue(s, "BackupType", string(d.BackupType), backupTypes),
		BackupCreationDateTime: ts(d.BackupCreationDateTime),
		BackupExpiryDateTime:   ts(d.BackupExpiryDateTime),
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
