package service

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// Violations lists what the RPC that takes req would refuse in its fields:
// it calls the validation that RPC's handler makes before it looks up the
// account, so that REST and gRPC callers are told the same. The REST
// gateway asks it of the part of a body or query that it could read, so
// that a request with a field of the wrong type is told at once what else
// is wrong with it, as one with only wrong values is.
func Violations(req proto.Message) []badrequest.Violation {
	var err error
	switch r := req.(type) {
	case *backupv1.CreateBackupRequest:
		_, err = validateCreate(r)
	case *backupv1.ListBackupsRequest:
		_, _, _, err = validateList(r)
	case *backupv1.RestoreTableFromBackupRequest:
		_, _, err = validateRestore(r)
	case interface{ GetBackupArn() string }: // GetBackup's and DeleteBackup's (a restore's is above)
		_, err = validateBackupARN(r.GetBackupArn())
	}
	if bad, ok := errors.AsType[*badrequest.Error](err); ok {
		return bad.Violations
	}
	return nil
}
