package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// validateBackupARN checks the one field of a GetBackup or a
// DeleteBackup, the backup ARN, which decides the account and region to
// act in: the handlers' checks and Violations'.
func validateBackupARN(backupARN string) (arn, error) {
	var vs violations
	a, _ := parseARN(&vs, "backup_arn", backupARN, true)
	return a, vs.err()
}

// onBackup makes call, DynamoDB's operation op with input in, on the
// backup that backupARN names: in the ARN's account and region (target),
// once the ARN is valid, under the request's deadline. GetBackup and
// DeleteBackup are this and the conversion of the answer.
func onBackup[In, Out any](ctx context.Context, s *Server, op, backupARN string, in *In,
	call func(*dynamodb.Client, context.Context, *In, ...func(*dynamodb.Options)) (*Out, error)) (*Out, accounts.Target, error) {
	a, err := validateBackupARN(backupARN)
	if err != nil {
		return nil, accounts.Target{}, err
	}
	target, err := s.resolve(ctx, a.Account, a.Region, "backup_arn")
	if err != nil {
		return nil, accounts.Target{}, err
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	out, err := call(target.DynamoDB, ctx, in)
	if err != nil {
		return nil, target, callError(op, target, err)
	}
	return out, target, nil
}

// callError is the error of op, a DynamoDB call made in target's account
// and region, which it names for the log; rpcerror maps it by what it
// wraps.
func callError(op string, target accounts.Target, err error) error {
	return fmt.Errorf("%s in account %s, region %s: %w", op, target.AccountID, target.Region, err)
}

// GetBackup describes one backup.
func (s *Server) GetBackup(ctx context.Context, req *backupv1.GetBackupRequest) (*backupv1.GetBackupResponse, error) {
	out, target, err := onBackup(ctx, s, config.OpDescribeBackup, req.GetBackupArn(),
		&dynamodb.DescribeBackupInput{BackupArn: aws.String(req.GetBackupArn())}, (*dynamodb.Client).DescribeBackup)
	if err != nil {
		return nil, err
	}
	if lacksDescription(out.BackupDescription) {
		return nil, callError(config.OpDescribeBackup, target, errors.New("DynamoDB's answer of success lacks the backup's description"))
	}
	return &backupv1.GetBackupResponse{BackupDescription: backupDescription(s.warner(ctx), out.BackupDescription)}, nil
}

// lacksDescription reports whether an answer of success holds no backup
// description: not DynamoDB, but something between may answer so, and
// the call then fails rather than being answered with a description that
// describes nothing: INTERNAL for a DescribeBackup, an unknown outcome for
// a DeleteBackup (answerLacks).
func lacksDescription(d *types.BackupDescription) bool {
	return d == nil || d.BackupDetails == nil
}

// DeleteBackup deletes one backup.
func (s *Server) DeleteBackup(ctx context.Context, req *backupv1.DeleteBackupRequest) (*backupv1.DeleteBackupResponse, error) {
	out, target, err := onBackup(ctx, s, config.OpDeleteBackup, req.GetBackupArn(),
		&dynamodb.DeleteBackupInput{BackupArn: aws.String(req.GetBackupArn())}, (*dynamodb.Client).DeleteBackup)
	if err != nil {
		return nil, err
	}
	if lacksDescription(out.BackupDescription) {
		// The answer says the backup was deleted, but one this short is
		// not DynamoDB's: as for a CreateBackup or a restore, the caller
		// is told the outcome is unknown and to look (a GetBackup then
		// finds the backup gone), not INTERNAL, whose retry would be
		// refused as BACKUP_NOT_FOUND.
		return nil, answerLacks(config.OpDeleteBackup, target, "the backup's description (it says the backup was deleted)")
	}
	return &backupv1.DeleteBackupResponse{BackupDescription: backupDescription(s.warner(ctx), out.BackupDescription)}, nil
}

const (
	defaultPageSize = 50
	maxPageSize     = 100
)

var backupTypeFilters = map[backupv1.BackupTypeFilter]types.BackupTypeFilter{
	backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_UNSPECIFIED: types.BackupTypeFilterUser,
	backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_USER:        types.BackupTypeFilterUser,
	backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_SYSTEM:      types.BackupTypeFilterSystem,
	backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_AWS_BACKUP:  types.BackupTypeFilterAwsBackup,
	backupv1.BackupTypeFilter_BACKUP_TYPE_FILTER_ALL:         types.BackupTypeFilterAll,
}

// badPageToken is the rule a page_token breaks.
const badPageToken = "is not a token from a listing with this account, region and filters, or was altered; start again without one"

// ListBackups pages through the backups of one account and region.
func (s *Server) ListBackups(ctx context.Context, req *backupv1.ListBackupsRequest) (*backupv1.ListBackupsResponse, error) {
	in, scope, table, err := validateList(req)
	if err != nil {
		return nil, s.withTokenViolation(s.withTargetViolations(err, req.GetAccountId(), req.GetRegion(), "region", table), req, scope)
	}
	target, err := s.resolveTable(ctx, req.GetAccountId(), req.GetRegion(), table)
	if err != nil {
		return nil, err
	}
	scope.region = target.Region
	if req.GetPageToken() != "" {
		start, err := decodePageToken(scope, req.GetPageToken())
		if err != nil {
			var vs violations
			vs.add("page_token", badPageToken)
			return nil, vs.err()
		}
		in.ExclusiveStartBackupArn = aws.String(start)
	}
	ctx, cancel := s.withDeadline(ctx)
	defer cancel()
	out, err := target.DynamoDB.ListBackups(ctx, in)
	if err != nil {
		return nil, callError(config.OpListBackups, target, err)
	}
	page, last := heldPage(in, table.name, out)
	resp := &backupv1.ListBackupsResponse{BackupSummaries: make([]*backupv1.BackupSummary, 0, len(page))}
	warn := s.warner(ctx)
	for i := range page {
		resp.BackupSummaries = append(resp.BackupSummaries, backupSummary(warn, &page[i]))
	}
	if last != "" {
		resp.NextPageToken = encodePageToken(scope, last)
	}
	return resp, nil
}

// withTokenViolation completes err, the violations of a ListBackups
// request, with its page_token when that is another listing's and the
// listing itself is right: when page_size is the only other field named.
// A bad account, region, table or filter leaves the token unjudged, as it
// may well be the listing meant.
func (s *Server) withTokenViolation(err error, req *backupv1.ListBackupsRequest, scope listScope) error {
	bad, ok := errors.AsType[*badrequest.Error](err)
	if !ok || req.GetPageToken() == "" ||
		slices.ContainsFunc(bad.Violations, func(v badrequest.Violation) bool { return v.Field != "page_size" }) {
		return err
	}
	target, rerr := s.accounts.Resolve(req.GetAccountId(), req.GetRegion())
	if rerr != nil {
		return err
	}
	scope.region = target.Region
	if _, derr := decodePageToken(scope, req.GetPageToken()); derr == nil {
		return err
	}
	vs := violations(slices.Clone(bad.Violations))
	vs.add("page_token", badPageToken)
	return &badrequest.Error{Violations: vs, More: bad.More}
}

// validateList checks a ListBackups request and returns the DynamoDB input,
// the listing's scope (which its page tokens carry) and the table filter.
func validateList(req *backupv1.ListBackupsRequest) (*dynamodb.ListBackupsInput, listScope, tableRef, error) {
	var vs violations
	checkAccountID(&vs, "account_id", req.GetAccountId())
	checkRegion(&vs, "region", req.GetRegion())
	in := &dynamodb.ListBackupsInput{}
	var table tableRef
	if t := req.GetTableName(); t != "" {
		in.TableName = aws.String(t)
		table = checkTableRef(&vs, "table_name", t, req.GetAccountId(), req.GetRegion())
	}
	in.BackupType = backupTypeFilter(&vs, req.GetBackupType())
	in.TimeRangeLowerBound, in.TimeRangeUpperBound = timeRange(&vs, req.GetTimeRangeLowerBound(), req.GetTimeRangeUpperBound())
	in.Limit = aws.Int32(pageSize(&vs, req.PageSize))
	checkPageTokenForm(&vs, req.GetPageToken())
	// The token is bound to the table by name, as normCreate binds a
	// request_id: Orders and its ARN list the same backups, so a token
	// from one works with the other. The ARN's account and region are the
	// request's (checkTableRef, inRegion), which the scope holds.
	scope := listScope{account: req.GetAccountId(), region: req.GetRegion(), table: table.name, backupType: string(in.BackupType),
		lower: boundScope(in.TimeRangeLowerBound), upper: boundScope(in.TimeRangeUpperBound)}
	return in, scope, table, vs.err()
}

// backupTypeFilter checks a ListBackups backup type and returns it in
// DynamoDB's terms.
func backupTypeFilter(vs *violations, f backupv1.BackupTypeFilter) types.BackupTypeFilter {
	bt, ok := backupTypeFilters[f]
	if !ok {
		vs.add("backup_type", "must be BACKUP_TYPE_FILTER_USER, BACKUP_TYPE_FILTER_SYSTEM, BACKUP_TYPE_FILTER_AWS_BACKUP or BACKUP_TYPE_FILTER_ALL; got %d", f)
	}
	return bt
}

// checkPageTokenForm checks what of a page token can be known before the
// region is: whether it is a token at all, so that it is named beside the
// other fields' violations. Whether it is this listing's is checked in
// ListBackups.
func checkPageTokenForm(vs *violations, token string) {
	if token == "" {
		return
	}
	if _, err := pageTokenBody(token); err != nil {
		vs.add("page_token", badPageToken)
	}
}

// pageSize checks a ListBackups page size and returns it, the default
// when absent or 0: many clients send 0 for a size left unset, and
// Google's APIs (AIP-158) read 0 as "the server's default" too.
func pageSize(vs *violations, size *int32) int32 {
	if size == nil || *size == 0 {
		return defaultPageSize
	}
	if *size < 1 || *size > maxPageSize {
		vs.add("page_size", "must be between 1 and %d (0 or absent means %d); got %d", maxPageSize, defaultPageSize, *size)
	}
	return *size
}

// timeRange checks a ListBackups time range, each bound (timeBound) and
// that the upper one falls after the lower, and returns the bounds
// DynamoDB is sent, nil for one absent or wrong.
func timeRange(vs *violations, lowerTS, upperTS *timestamppb.Timestamp) (lower, upper *time.Time) {
	l, lowerOK := timeBound(vs, "time_range_lower_bound", lowerTS)
	u, upperOK := timeBound(vs, "time_range_upper_bound", upperTS)
	if lowerOK && upperOK && !l.Before(u) {
		vs.add("time_range_upper_bound", "must fall in a later millisecond than time_range_lower_bound (DynamoDB keeps backup times to the millisecond); got %s and %s",
			lowerTS.AsTime().Format(time.RFC3339Nano), upperTS.AsTime().Format(time.RFC3339Nano))
	}
	if lowerOK {
		lower = &l
	}
	if upperOK {
		upper = &u
	}
	return lower, upper
}

// boundScope is a time bound as a listing's scope holds it.
func boundScope(t *time.Time) timeBoundScope {
	if t == nil {
		return timeBoundScope{}
	}
	return timeBoundScope{set: true, nanos: t.UnixNano()}
}

// The time bounds a ListBackups takes: DynamoDB's backups are younger,
// and a later bound would overflow the nanoseconds since 1970 that page
// tokens and the SDK count in.
var (
	minTimeBound = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTimeBound = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// timeBound checks a ListBackups time bound and rounds it up to the
// millisecond. DynamoDB keeps backup times to the millisecond, and the SDK
// sends a bound to the millisecond by cutting off the rest, which would
// take in a backup made in the bound's own millisecond but before it;
// rounding up keeps "at or after" and "before" exact.
func timeBound(vs *violations, field string, ts *timestamppb.Timestamp) (time.Time, bool) {
	if ts == nil {
		return time.Time{}, false
	}
	// Said in backupd's words: protobuf's own (CheckValid's) change from
	// one build to the next and name no remedy. Seconds out of a
	// Timestamp's range are out of the bounds below too.
	if n := ts.GetNanos(); n < 0 || n > 999_999_999 {
		vs.add(field, "is not a valid timestamp: nanos must be 0-999999999 (a count within its second; carry whole seconds into seconds); got %d", n)
		return time.Time{}, false
	}
	// Seconds are compared as numbers, and told as a time only within
	// a Timestamp's range: time's own arithmetic wraps near int64's
	// ends, so that AsTime's text for seconds -1<<63 reads as a time
	// 292 billion years ahead.
	if s := ts.GetSeconds(); s < minTimeBound.Unix() || s > maxTimeBound.Unix() ||
		s == maxTimeBound.Unix() && ts.GetNanos() > 0 {
		got := fmt.Sprintf("seconds %d, outside a Timestamp's range (0001-01-01 to 9999-12-31)", s)
		if ts.CheckValid() == nil {
			got = ts.AsTime().Format(time.RFC3339Nano)
		}
		vs.add(field, "must be between %s and %s; got %s", minTimeBound.Format(time.RFC3339), maxTimeBound.Format(time.RFC3339), got)
		return time.Time{}, false
	}
	t := ts.AsTime()
	if ms := t.Truncate(time.Millisecond); ms.Before(t) {
		return ms.Add(time.Millisecond), true
	}
	return t, true
}

// normRestore is what a restore's repeat must match: the request without
// its request_id, and with what DynamoDB is sent the same whichever way it
// is written (as checkRestore sends it) written one way: index overrides
// in name order, an index's 0/0 throughput as absent, an index's non-key
// attributes sorted (a repeated one kept, as sent) and only with
// PROJECTION_TYPE_INCLUDE, and enabled encryption with its type unset as
// SSE_TYPE_KMS. A request already so written keeps the fingerprint
// earlier builds gave it.
func normRestore(req *backupv1.RestoreTableFromBackupRequest) proto.Message {
	n := proto.CloneOf(req)
	n.RequestId = ""
	if sse := n.GetSseSpecificationOverride(); sse.GetEnabled() && sse.GetSseType() == backupv1.SseType_SSE_TYPE_UNSPECIFIED {
		sse.SseType = backupv1.SseType_SSE_TYPE_KMS
	}
	normProjection := func(p *backupv1.Projection) {
		if p == nil {
			return
		}
		if p.GetProjectionType() != backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE {
			p.NonKeyAttributes = nil
		}
		slices.Sort(p.NonKeyAttributes)
	}
	if sel := n.GetGlobalSecondaryIndexOverride(); sel != nil {
		for _, g := range sel.GetIndexes() {
			if pt := g.GetProvisionedThroughput(); pt != nil && pt.GetReadCapacityUnits() == 0 && pt.GetWriteCapacityUnits() == 0 {
				g.ProvisionedThroughput = nil
			}
			normProjection(g.GetProjection())
		}
		slices.SortStableFunc(sel.Indexes, func(a, b *backupv1.GlobalSecondaryIndex) int {
			return strings.Compare(a.GetIndexName(), b.GetIndexName())
		})
	}
	if sel := n.GetLocalSecondaryIndexOverride(); sel != nil {
		for _, l := range sel.GetIndexes() {
			normProjection(l.GetProjection())
		}
		slices.SortStableFunc(sel.Indexes, func(a, b *backupv1.LocalSecondaryIndex) int {
			return strings.Compare(a.GetIndexName(), b.GetIndexName())
		})
	}
	return n
}

// RestoreTableFromBackup creates a new table from a backup in the backup's
// account and region.
func (s *Server) RestoreTableFromBackup(ctx context.Context, req *backupv1.RestoreTableFromBackupRequest) (*backupv1.RestoreTableFromBackupResponse, error) {
	in, a, err := validateRestore(req)
	if err != nil {
		return nil, s.withTargetViolations(err, a.Account, a.Region, "backup_arn", tableRef{})
	}
	target, err := s.resolve(ctx, a.Account, a.Region, "backup_arn")
	if err != nil {
		return nil, err
	}
	return once(ctx, s, config.OpRestoreTableFromBackup, target, req.GetRequestId(),
		func() proto.Message { return normRestore(req) },
		func(ctx context.Context) (*backupv1.RestoreTableFromBackupResponse, error) {
			var submitted time.Time
			out, err := target.DynamoDB.RestoreTableFromBackup(accounts.WithSubmitTime(ctx, &submitted), in)
			if err != nil {
				return nil, sendError(config.OpRestoreTableFromBackup, err, submitted)
			}
			if out.TableDescription == nil || aws.ToString(out.TableDescription.TableName) == "" {
				return nil, answerLacks(config.OpRestoreTableFromBackup, target, "the new table's description")
			}
			return &backupv1.RestoreTableFromBackupResponse{TableDescription: tableDescription(s.warner(ctx), out.TableDescription)}, nil
		})
}
