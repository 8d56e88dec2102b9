package service

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/auth"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/sharedstate"
)

func TestMayHaveActed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", Err: errors.New("connection reset")}, true},
		{"deadline while DynamoDB had the call", fmt.Errorf("operation error DynamoDB: CreateBackup: %w", context.DeadlineExceeded), true},
		{"refused by the limiter", &ratelimit.LimitedError{RetryAfter: time.Second}, false},
		{"deadline while waiting for a turn", fmt.Errorf("operation error DynamoDB: CreateBackup: %w",
			&ratelimit.InterruptedError{Err: context.DeadlineExceeded}), false},
		{"role refused", &auth.AssumeRoleError{AccountID: "111111111111", Err: context.DeadlineExceeded}, false},
		{"Redis gone", &sharedstate.UnavailableError{Op: "rate limit", Err: context.DeadlineExceeded}, false},
		{"DynamoDB refused", &smithy.GenericAPIError{Code: "TableNotFoundException"}, false},
	}
	for _, tt := range tests {
		if got := mayHaveActed(tt.err); got != tt.want {
			t.Errorf("%s: mayHaveActed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOutcomeUnknownWrapsOnce(t *testing.T) {
	unsure := &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Err: errors.New("connection reset")}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"already unknown", fmt.Errorf("operation error DynamoDB: %w", unsure),
			"operation error DynamoDB: CreateBackup in account 111111111111: outcome unknown: connection reset"},
		{"deadline", context.DeadlineExceeded,
			"CreateBackup in account 111111111111: outcome unknown: context deadline exceeded"},
	}
	for _, tt := range tests {
		err := outcomeUnknown("CreateBackup", "111111111111", tt.err)
		if _, ok := errors.AsType[*accounts.OutcomeUnknownError](err); !ok || err.Error() != tt.want {
			t.Errorf("%s: outcomeUnknown = %q, want an OutcomeUnknownError %q", tt.name, err, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	restore := func(target, rid string) *backupv1.RestoreTableFromBackupRequest {
		return &backupv1.RestoreTableFromBackupRequest{BackupArn: "arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12",
			TargetTableName: target, RequestId: rid}
	}
	fp := func(m *backupv1.RestoreTableFromBackupRequest) [32]byte {
		m.RequestId = "" // as RestoreTableFromBackup normalizes it
		f, err := fingerprint(m)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if fp(restore("Copy", "a")) != fp(restore("Copy", "b")) {
		t.Error("the request_id changed the fingerprint")
	}
	if fp(restore("Copy", "a")) == fp(restore("Other", "a")) {
		t.Error("another target table has the same fingerprint")
	}
	create, err := fingerprint(&backupv1.CreateBackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if empty, _ := fingerprint(&backupv1.RestoreTableFromBackupRequest{}); create == empty {
		t.Error("two empty requests of different RPCs have the same fingerprint")
	}
}
