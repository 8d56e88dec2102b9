// Package service implements backup.v1.BackupService: it validates requests,
// sends them to DynamoDB in the right account and region, and maps the
// answers to typed responses. It returns domain errors; the gRPC layer maps
// them to status codes in one place (package rpcerror).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/reqlog"
)

// Resolver finds the DynamoDB client for an account and region.
type Resolver interface {
	Resolve(accountID, region string) (accounts.Target, error)
}

// Options configures a Server.
type Options struct {
	Accounts Resolver
	Logger   *slog.Logger
	// DefaultTimeout is the deadline of requests that carry none, and the
	// longest one a request gets.
	DefaultTimeout time.Duration
	// Idempotency keeps the results of requests that carry a request_id;
	// nil means an idempotency.Memory of this Server's own.
	Idempotency Idempotency
}

// Server implements backupv1.BackupServiceServer.
type Server struct {
	backupv1.UnimplementedBackupServiceServer
	accounts       Resolver
	log            *slog.Logger
	defaultTimeout time.Duration
	idem           Idempotency
	// detached is the request_id runs still going (see once).
	detached idempotency.Going
}

var _ backupv1.BackupServiceServer = (*Server)(nil)

// New returns a Server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultTimeout == 0 {
		opts.DefaultTimeout = config.DefaultUpstreamTimeout
	}
	if opts.Idempotency == nil {
		opts.Idempotency = idempotency.NewMemory()
	}
	return &Server{accounts: opts.Accounts, log: opts.Logger, defaultTimeout: opts.DefaultTimeout, idem: opts.Idempotency}
}

// consistencySlack is DynamoDB's documented guarantee: a backup holds every
// write made more than a minute before the request and none made more than a
// minute after it.
const consistencySlack = time.Minute

// CreateBackup starts an on-demand backup, once per request_id.
func (s *Server) CreateBackup(ctx context.Context, req *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	table, err := validateCreate(req)
	if err != nil {
		return nil, s.withTargetViolations(err, req.GetAccountId(), req.GetRegion(), "region", table)
	}
	target, err := s.resolveTable(ctx, req.GetAccountId(), req.GetRegion(), table)
	if err != nil {
		return nil, err
	}
	return once(ctx, s, config.OpCreateBackup, target, req.GetRequestId(),
		func() proto.Message { return normCreate(target, table, req.GetBackupName()) },
		func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
			return s.createBackup(ctx, target, table.ref, req.GetBackupName())
		})
}

// answerLacks is the error of a call DynamoDB answered as done without
// what it answers with: not DynamoDB, but something between (a proxy) may
// answer so. Whether it was done is not known, and for a request_id that
// is kept, as for any other answer that leaves it unknown.
func answerLacks(op string, target accounts.Target, what string) error {
	return outcomeUnknown(op, target, fmt.Errorf("DynamoDB's answer of success lacks %s", what))
}

// normCreate is what a CreateBackup's repeat must match: where it acts,
// the table by name (its name and its ARN are the same table), and the
// backup's name; not its request_id.
func normCreate(target accounts.Target, table tableRef, backupName string) proto.Message {
	return &backupv1.CreateBackupRequest{AccountId: target.AccountID, Region: target.Region, TableName: table.name, BackupName: backupName}
}

func (s *Server) createBackup(ctx context.Context, target accounts.Target, table, name string) (*backupv1.CreateBackupResponse, error) {
	var submitted time.Time
	out, err := target.DynamoDB.CreateBackup(accounts.WithSubmitTime(ctx, &submitted), &dynamodb.CreateBackupInput{
		TableName:  aws.String(table),
		BackupName: aws.String(name),
	})
	if err != nil {
		return nil, sendError(config.OpCreateBackup, err, submitted)
	}
	if out.BackupDetails == nil || aws.ToString(out.BackupDetails.BackupArn) == "" {
		return nil, answerLacks(config.OpCreateBackup, target, "the backup's ARN")
	}
	return &backupv1.CreateBackupResponse{
		BackupDetails: backupDetails(s.warner(ctx), out.BackupDetails),
		Consistency:   consistencyWindow(submitted),
	}, nil
}

// consistencyWindow is what a backup requested at submitted holds, by
// DynamoDB's guarantee: every write made consistencySlack before it,
// none made consistencySlack after it.
func consistencyWindow(submitted time.Time) *backupv1.ConsistencyWindow {
	return &backupv1.ConsistencyWindow{
		IncludesWritesBefore: timestamppb.New(submitted.Add(-consistencySlack)),
		ExcludesWritesAfter:  timestamppb.New(submitted.Add(consistencySlack)),
	}
}

// validateCreate checks every field and returns the table the request
// names; a table ARN's region is checked once the region to act in is
// known (tableRef.inRegion).
func validateCreate(req *backupv1.CreateBackupRequest) (tableRef, error) {
	var vs violations
	checkAccountID(&vs, "account_id", req.GetAccountId())
	checkRegion(&vs, "region", req.GetRegion())
	t := checkTableRef(&vs, "table_name", req.GetTableName(), req.GetAccountId(), req.GetRegion())
	checkName(&vs, "backup_name", req.GetBackupName())
	checkRequestID(&vs, "request_id", req.GetRequestId())
	return t, vs.err()
}

// tableRef is a request's table: as the caller gave it (a name or an ARN),
// the table's name, and, for an ARN, its region and the request field
// that gave it.
type tableRef struct {
	ref, name        string
	arnRegion, field string
}

// checkTableRef accepts a table name or a table ARN of the request's account
// and region. When the request names no region, the ARN's is checked
// once the account's default is known (inRegion).
func checkTableRef(vs *violations, field, ref, account, region string) tableRef {
	t := tableRef{ref: ref, name: ref}
	if len(ref) < 4 || ref[:4] != "arn:" {
		checkName(vs, field, ref)
		return t
	}
	a, ok := parseARN(vs, field, ref, false)
	if !ok {
		return t
	}
	if a.Account != account {
		vs.add(field, "is a table ARN of account %s; it must be in account_id %s", a.Account, badrequest.Quote(account))
	}
	if region != "" && awsname.ValidRegion(region) && a.Region != region { // an invalid region has a violation of its own
		vs.add(field, "is a table ARN in region %s; it must be in region %s", a.Region, region)
	}
	t.name, t.arnRegion, t.field = a.Table, a.Region, field
	return t
}

// inRegion checks that a table ARN is in the region the request acts in,
// the account's default when the request names none: as with a name, the
// region field decides, and the ARN must agree.
func (t tableRef) inRegion(region string) error {
	if t.arnRegion == "" || t.arnRegion == region {
		return nil
	}
	var vs violations
	vs.add(t.field, "is a table ARN in region %s; it must be in region %s, the account's default, as region is empty: set region to %s to act there",
		t.arnRegion, region, t.arnRegion)
	return vs.err()
}

// resolve finds where the request acts and notes it for the request's log line.
// regionField names the request field the region came from, for the
// caller's error when the region is not allowed.
func (s *Server) resolve(ctx context.Context, accountID, region, regionField string) (accounts.Target, error) {
	target, err := s.accounts.Resolve(accountID, region)
	if err != nil {
		if e, ok := errors.AsType[*accounts.RegionNotAllowedError](err); ok {
			e.Field = regionField
		}
		return target, err
	}
	reqlog.SetTarget(ctx, target.AccountID, target.Region)
	return target, nil
}

// withTargetViolations completes err, the violations of a request's
// fields, with those that only the account's configuration tells: a
// region the account does not allow (named by regionField, the field it
// came from) and, when the request names no region, a table ARN outside
// the account's default one. A request with several bad fields is then
// told of each at once, as google.rpc.BadRequest promises, not of the
// region only once the others are right. err is returned as it is when
// it is no field violation, when the account id or the region field is
// itself bad, or when the account is not configured (NOT_FOUND, told once
// the fields are right).
func (s *Server) withTargetViolations(err error, accountID, region, regionField string, table tableRef) error {
	bad, ok := errors.AsType[*badrequest.Error](err)
	if !ok || !awsname.ValidAccountID(accountID) || (region != "" && !awsname.ValidRegion(region)) {
		return err
	}
	for _, v := range bad.Violations {
		if v.Field == regionField {
			return err
		}
	}
	target, rerr := s.accounts.Resolve(accountID, region)
	var more []badrequest.Violation
	if e, isRegion := errors.AsType[*accounts.RegionNotAllowedError](rerr); isRegion {
		e.Field = regionField
		more = []badrequest.Violation{{Field: regionField, Description: e.Error()}}
	} else if rerr == nil && region == "" {
		if tb, isBad := errors.AsType[*badrequest.Error](table.inRegion(target.Region)); isBad {
			more = tb.Violations
		}
	}
	if len(more) == 0 {
		return err
	}
	vs := violations(slices.Clone(bad.Violations))
	for _, m := range more {
		vs.add(m.Field, "%s", strings.TrimPrefix(m.Description, m.Field+" "))
	}
	return &badrequest.Error{Violations: vs, More: bad.More}
}

// resolveTable finds where a request that names a table (table, which
// may be an ARN) acts: in accountID and region, the account's default
// region when region is empty, which a table ARN must then be in too.
func (s *Server) resolveTable(ctx context.Context, accountID, region string, table tableRef) (accounts.Target, error) {
	target, err := s.resolve(ctx, accountID, region, "region")
	if err != nil {
		return accounts.Target{}, err
	}
	if err := table.inRegion(target.Region); err != nil {
		return accounts.Target{}, err
	}
	return target, nil
}

// withDeadline bounds a call by the caller's deadline, but by no more than
// DefaultTimeout: nothing backupd waits for (its limiter, STS, DynamoDB
// and the SDK's retries) needs longer, and a longer one would outlast the
// REST write timeout and the shutdown drain, answering no one. (A call
// with a request_id is bounded in once.)
func (s *Server) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return capDeadline(ctx, s.defaultTimeout)
}

// capDeadline gives ctx a deadline no later than limit from now: its own
// when that is sooner, so that no timer is made for it.
func capDeadline(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= limit {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, limit)
}
