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
// is wrong with it, as one with only wrong values is. It knows no
// account: Server.Violations also names what the account's configuration
// refuses.
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
	return violationsOf(err)
}

// Violations is the package's Violations and what the handler adds from
// the account's configuration: a region the account does not allow, and
// a table ARN outside the account's default region. The gateway and the
// gRPC codec ask it of a request they could read only in part (a field
// of the wrong type, a string that is not UTF-8, a query the route does
// not take), so that such a request too is told of every bad field at
// once, the region among them, as DESIGN.md's BadRequest promises. It
// does not judge whether a page_token is of the listing, as ListBackups
// does beside a bad page_size: a request read in part may lack the filter
// the token was made with.
func (s *Server) Violations(req proto.Message) []badrequest.Violation {
	var err error
	switch r := req.(type) {
	case *backupv1.CreateBackupRequest:
		table, verr := validateCreate(r)
		err = s.withTargetViolations(orNone(verr), r.GetAccountId(), r.GetRegion(), "region", table)
	case *backupv1.ListBackupsRequest:
		_, _, table, verr := validateList(r)
		err = s.withTargetViolations(orNone(verr), r.GetAccountId(), r.GetRegion(), "region", table)
	case *backupv1.RestoreTableFromBackupRequest:
		_, a, verr := validateRestore(r)
		err = s.withTargetViolations(orNone(verr), a.Account, a.Region, "backup_arn", tableRef{})
	case interface{ GetBackupArn() string }:
		a, verr := validateBackupARN(r.GetBackupArn())
		err = s.withTargetViolations(orNone(verr), a.Account, a.Region, "backup_arn", tableRef{})
	}
	return violationsOf(err)
}

// orNone is err, or a field violation error that names no field when err
// is nil, for withTargetViolations to add the account's to.
func orNone(err error) error {
	if err == nil {
		return &badrequest.Error{}
	}
	return err
}

func violationsOf(err error) []badrequest.Violation {
	if bad, ok := errors.AsType[*badrequest.Error](err); ok {
		return bad.Violations
	}
	return nil
}
