package service

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// Violations lists what the RPC that takes req would refuse in its fields,
// as its own validation does before it looks up the account. The REST
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
		var vs violations
		validateRestore(&vs, r)
		parseARN(&vs, "backup_arn", r.GetBackupArn(), true)
		err = vs.err()
	case interface{ GetBackupArn() string }: // GetBackup's and DeleteBackup's (a restore's is above)
		var vs violations
		parseARN(&vs, "backup_arn", r.GetBackupArn(), true)
		err = vs.err()
	}
	if bad, ok := errors.AsType[*badrequest.Error](err); ok {
		return bad.Violations
	}
	return nil
}
