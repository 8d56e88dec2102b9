package service

import (
	"errors"
	"slices"

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
// a table ARN outside the account's default region. The REST gateway asks
// it of a request it could read only in part (a field of the wrong type, a
// query it could not parse, a query or body the route does not take), once
// the caller may act in the account, so that such a request too is told
// of every bad field at once, the region among them, as DESIGN.md's
// BadRequest promises. It judges whether a page_token is of the listing
// as ListBackups does, when page_size is the only other field named (read
// or not): a request with another field unread may lack the filter the
// token was made with.
//
// unread are the violations of the fields the gateway could not read (of
// the wrong type, given twice): req holds them empty, so what the
// account's configuration says of them, or of the fields judged by them
// (a table ARN by the region), is not said; they are not returned.
func (s *Server) Violations(req proto.Message, unread ...badrequest.Violation) []badrequest.Violation {
	var err error
	switch r := req.(type) {
	case *backupv1.CreateBackupRequest:
		table, verr := validateCreate(r)
		err = s.withTargetViolations(seeded(unread, verr), r.GetAccountId(), r.GetRegion(), "region", table)
	case *backupv1.ListBackupsRequest:
		_, scope, table, verr := validateList(r)
		err = s.withTargetViolations(seeded(unread, verr), r.GetAccountId(), r.GetRegion(), "region", table)
		// As the handler does beside a bad page_size, the one field
		// outside the listing: a page_size that was not read included.
		err = s.withTokenViolation(err, r, scope)
	case *backupv1.RestoreTableFromBackupRequest:
		_, a, verr := validateRestore(r)
		err = s.withTargetViolations(seeded(unread, verr), a.Account, a.Region, "backup_arn", tableRef{})
	case interface{ GetBackupArn() string }:
		a, verr := validateBackupARN(r.GetBackupArn())
		err = s.withTargetViolations(seeded(unread, verr), a.Account, a.Region, "backup_arn", tableRef{})
	}
	vs := violationsOf(err)
	return vs[min(len(unread), len(vs)):]
}

// seeded is a field violation error of unread and then err's, for
// withTargetViolations to add the account's to: it judges no field
// already named, nor a table ARN by a region that was not read.
func seeded(unread []badrequest.Violation, err error) error {
	bad := &badrequest.Error{Violations: slices.Clone(unread)}
	if e, ok := errors.AsType[*badrequest.Error](err); ok {
		bad.Violations, bad.More = append(bad.Violations, e.Violations...), e.More
	}
	return bad
}

func violationsOf(err error) []badrequest.Violation {
	if bad, ok := errors.AsType[*badrequest.Error](err); ok {
		return bad.Violations
	}
	return nil
}
