// Package rpcerror maps backupd's domain errors and AWS errors to gRPC
// status, in one place: the code of DESIGN.md's error table, a
// google.rpc.ErrorInfo with a stable reason, a google.rpc.BadRequest for
// field problems and a google.rpc.RetryInfo where coming back later helps;
// and what else follows from the error: the level of the call's log line
// (Level) and what a gRPC client's own retry is told (PushBack).
//
// Messages never carry credentials, role ARNs or ExternalIds; the full error
// goes to the log instead.
package rpcerror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/sharedstate"
)

// domain is the ErrorInfo domain of every backupd error: a client tells
// backupd's reasons from those of a proxy or library on the way.
const domain = "backupd"

// The reasons of the refusals backupd's servers make on their own, before
// a request reaches the service (RequestError).
const (
	ReasonBodyTooLarge     = "BODY_TOO_LARGE"
	ReasonMalformed        = "MALFORMED_REQUEST"
	ReasonRouteNotFound    = "ROUTE_NOT_FOUND"
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	ReasonUnknownMethod    = "UNKNOWN_METHOD"
	ReasonShuttingDown     = "SHUTTING_DOWN"
	ReasonRequestLate      = "REQUEST_NOT_ARRIVED"
	ReasonTooManyWatches   = "TOO_MANY_WATCHES"
	ReasonTooManyStreams   = "TOO_MANY_STREAMS"
	ReasonIdleStream       = "IDLE_STREAM"
	// ReasonCanceled is also that of a call whose caller canceled it.
	ReasonCanceled = "CANCELED"
)

// ReasonQuotaExceeded is a call DynamoDB refused as over a standing quota
// of the account, which retrying alone does not mend.
const ReasonQuotaExceeded = "DYNAMODB_QUOTA_EXCEEDED"

// ReasonDeadlineExceeded is a call whose deadline passed first.
const ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"

// The reasons of the errors that only this package maps: backupd's own
// refusals past the servers' (the caller, the request's fields, the
// account's configuration and rate, the request_id, the shared state),
// and what STS and DynamoDB answered. With those above they are the
// reason column of the README's error table, which a test holds them to:
// clients branch on them, so one is never renamed, and a new one is
// documented.
const (
	// reasonOutcomeUnknown is a CreateBackup or restore that may or may
	// not have been done: one a client must not simply send again.
	reasonOutcomeUnknown         = "OUTCOME_UNKNOWN"
	reasonUnauthenticated        = "UNAUTHENTICATED"
	reasonCallerNotAllowed       = "CALLER_NOT_ALLOWED"
	reasonInvalidArgument        = "INVALID_ARGUMENT"
	reasonRegionNotAllowed       = "REGION_NOT_ALLOWED"
	reasonAccountNotConfigured   = "ACCOUNT_NOT_CONFIGURED"
	reasonRateLimited            = "RATE_LIMITED"
	reasonRequestIDReused        = "REQUEST_ID_REUSED"
	reasonSharedStateUnavailable = "SHARED_STATE_UNAVAILABLE"
	reasonRoleAssumptionDenied   = "ROLE_ASSUMPTION_DENIED"
	reasonSTSUnavailable         = "STS_UNAVAILABLE"
	reasonDynamoDBValidation     = "DYNAMODB_VALIDATION"
	reasonAccessDenied           = "ACCESS_DENIED"
	reasonCredentialsExpired     = "CREDENTIALS_EXPIRED"
	reasonTableNotFound          = "TABLE_NOT_FOUND"
	reasonBackupNotFound         = "BACKUP_NOT_FOUND"
	reasonTableAlreadyExists     = "TABLE_ALREADY_EXISTS"
	reasonTableInUse             = "TABLE_IN_USE"
	reasonBackupInUse            = "BACKUP_IN_USE"
	reasonBackupsUnavailable     = "BACKUPS_UNAVAILABLE"
	reasonDynamoDBThrottled      = "DYNAMODB_THROTTLED"
	// reasonDynamoDBUnavailable is DynamoDB unreachable, or failing,
	// after the SDK's retries.
	reasonDynamoDBUnavailable = "DYNAMODB_UNAVAILABLE"
	// reasonInternal is anything unexpected (internalMsg).
	reasonInternal = "INTERNAL"
)

// RequestError is a request the gRPC server or the REST gateway refuses on
// its own, before the service sees it: too large, undecodable, or for a
// route or method backupd does not have, or arriving as it shuts down. It
// is mapped here like every other error, so its status has the same
// details.
type RequestError struct {
	Code   codes.Code
	Reason string // one of the Reason constants
	Msg    string
	// RetryAfter, when not zero, says when to come back (RetryInfo).
	RetryAfter time.Duration
}

func (e *RequestError) Error() string { return e.Msg }

// DefaultRetryAfter is suggested when AWS throttles or fails without saying
// when to come back.
const DefaultRetryAfter = time.Second

// Request is what an error message may name about the request.
type Request struct {
	AccountID string
}

// Status maps err to the status a caller sees. Internal reports whether the
// error was unexpected, so the caller logs its detail.
func Status(err error, req Request) (st *status.Status, internal bool) {
	if err == nil {
		return status.New(codes.OK, ""), false
	}
	if s, ok := status.FromError(err); ok {
		return s, false
	}
	m := mapErr(err)
	return m.status(req), m.code == codes.Internal
}

// ReasonOf is the reason of st's ErrorInfo from backupd, "" for none:
// what the request's log line and metrics name beside its code, which
// alone cannot tell, say, Redis gone (SHARED_STATE_UNAVAILABLE) from
// DynamoDB failing (DYNAMODB_UNAVAILABLE).
func ReasonOf(st *status.Status) string {
	for _, d := range st.Proto().GetDetails() {
		info := &errdetails.ErrorInfo{}
		if d.MessageIs(info) && d.UnmarshalTo(info) == nil && info.GetDomain() == domain {
			return info.GetReason()
		}
	}
	return ""
}

// RetryDelay is the delay of st's RetryInfo, and whether it has one.
func RetryDelay(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Proto().GetDetails() {
		info := &errdetails.RetryInfo{}
		if d.MessageIs(info) && d.UnmarshalTo(info) == nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// PushBack is gRPC's server pushback (gRFC A6) for a call that failed
// with err, answered st: how long a client's own retry (a service
// config's retryPolicy) waits before its next attempt, in milliseconds,
// or, negative, that it makes none; ok is false when it is told nothing.
// grpc-go's retry reads no RetryInfo, so without it a retryPolicy would
// come back on its own backoff, long before a rate-limit turn; and a
// policy that retries UNAVAILABLE would repeat a CreateBackup or restore
// that may have been done (OUTCOME_UNKNOWN, or sent and unanswered at the
// deadline), making a second backup, which a negative pushback forbids,
// as it does the retries of a call over an account's DynamoDB quota,
// which would be refused the same way.
func PushBack(st *status.Status, err error) (ms int64, ok bool) {
	if reason := ReasonOf(st); reason == reasonOutcomeUnknown || reason == ReasonQuotaExceeded || errors.As(err, new(*service.UnansweredError)) {
		return -1, true
	}
	d, ok := RetryDelay(st)
	if !ok {
		return 0, false
	}
	return (d + time.Millisecond - 1).Milliseconds(), true // rounded up: never before the turn
}

type mapped struct {
	code       codes.Code
	reason     string
	msg        string
	meta       map[string]string
	violations []badrequest.Violation
	retryAfter time.Duration
	// unread: the refusal does not depend on the request, which over
	// gRPC may be refused before it is read, so its account is not named
	// (REST answers the same body).
	unread bool
}

func (m mapped) status(req Request) *status.Status {
	meta := map[string]string{}
	// An unknown caller is told nothing of the request: over gRPC its
	// token is checked before the request is read, and REST answers the
	// same body.
	if req.AccountID != "" && m.code != codes.Unauthenticated && !m.unread {
		meta["account_id"] = req.AccountID
	}
	for k, v := range m.meta {
		// An AWS request id or message is not checked to be UTF-8, and
		// a detail that is not could not be encoded at all.
		meta[k] = strings.ToValidUTF8(v, "\uFFFD")
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Domain: domain, Reason: m.reason, Metadata: meta}}
	if len(m.violations) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range m.violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details = append(details, br)
	}
	if m.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(m.retryAfter)})
	}
	st, err := status.New(m.code, strings.ToValidUTF8(m.msg, "\uFFFD")).WithDetails(details...)
	if err != nil {
		return status.New(m.code, m.msg)
	}
	return st
}

// MaxViolations bounds the field violations one error carries, and
// maxViolationBytes the bytes of their fields and descriptions, so that a
// request made of mistakes cannot make an answer many times its size.
// maxMessageBytes bounds the violations the message repeats. Over gRPC
// the message and the details travel in the trailers, the message twice
// (grpc-message, and in grpc-status-details-bin, base64), which must stay
// within the 8 KiB of metadata gRPC clients take by default: grpc-java
// refuses more, and grpcio drops such an answer at random. These bounds
// keep them under about 6 KiB.
const (
	MaxViolations     = 20
	maxViolationBytes = 2048
	maxMessageBytes   = 1024
)

// boundViolations keeps the first of vs within MaxViolations and
// maxViolationBytes (the first always), and counts the rest in more.
func boundViolations(vs []badrequest.Violation, more int) ([]badrequest.Violation, int) {
	size := 0
	for i, v := range vs {
		size += len(v.Field) + len(v.Description)
		if i > 0 && (i == MaxViolations || size > maxViolationBytes) {
			return vs[:i], more + len(vs) - i
		}
	}
	return vs, more
}

// violationsMessage repeats the first of vs within maxMessageBytes (the
// first always), and counts the rest, those the details carry included.
func violationsMessage(vs []badrequest.Violation, more int) string {
	size := 0
	for i, v := range vs {
		size += len(v.Description) + len("; ")
		if i > 0 && size > maxMessageBytes {
			return (&badrequest.Error{Violations: vs[:i], More: more + len(vs) - i}).Error()
		}
	}
	return (&badrequest.Error{Violations: vs, More: more}).Error()
}

func mapErr(err error) mapped {
	m, ok := mapOurs(err)
	if !ok {
		m = mapUpstream(err)
	}
	// Whichever failed last (DynamoDB, or Redis stopping the retry), a
	// retry is safe, but its answer would otherwise mislead.
	if _, ok := errors.AsType[*accounts.MayHaveDeletedError](err); ok && m.code != codes.Internal {
		m.msg += "; an earlier attempt went unanswered and may have deleted the backup: a retry answered BACKUP_NOT_FOUND means it is gone"
	}
	return m
}

// Level is the level of the log line of a call that failed with err,
// logged with code: the status's, or what the server makes of it (a
// cancel at the caller's deadline is logged as DeadlineExceeded);
// internal is what Status said of err. ERROR for what operators must
// look at (a bug, AWS or Redis unreachable, AWS refusing backupd's
// role), WARN for AWS throttling backupd after its retries and for
// deadlines that passed (slowness upstream), INFO for the caller's own
// mistakes, for backupd's own limit doing its job and for its own
// shutdown. For the codes that both give, err tells backupd's own refusal
// (refusal) from AWS's answer; it is asked only then. A line from WARN up
// carries the error's detail.
func Level(code codes.Code, internal bool, err error) slog.Level {
	switch {
	case code == codes.Unavailable && shuttingDown(err):
		return slog.LevelInfo // backupd's own shutdown, as it should go
	case internal || code == codes.Unavailable:
		return slog.LevelError
	case code == codes.DeadlineExceeded:
		return slog.LevelWarn
	case code == codes.Canceled && (errors.As(err, new(*service.UnansweredError)) || errors.As(err, new(*service.StillRunningError))):
		// Its caller left, but DynamoDB may have acted, or may yet:
		// the line, with its error, is all that says so.
		return slog.LevelWarn
	case code == codes.PermissionDenied && !refusal(err):
		return slog.LevelError
	case code == codes.ResourceExhausted && !refusal(err):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// shuttingDown reports whether err is a server's refusal of a request as
// backupd shuts down (a RequestError of ReasonShuttingDown).
func shuttingDown(err error) bool {
	r, ok := errors.AsType[*RequestError](err)
	return ok && r.Reason == ReasonShuttingDown
}

// refusal reports whether err is backupd's own refusal (the caller's
// credentials or rights, a field, the account's configuration or rate,
// the request_id, the shared state), rather than what STS or DynamoDB
// answered: the log tells a caller's refusal from AWS refusing backupd,
// and backupd's limit from AWS throttling it.
func refusal(err error) bool {
	_, ok := mapOurs(err)
	return ok
}

// mapOurs maps backupd's own refusals: the caller's credentials and
// rights, the request's fields, the account's configuration and rate, the
// request_id, and the shared state.
func mapOurs(err error) (mapped, bool) {
	var (
		invalid   *badrequest.Error
		unknown   *accounts.NotConfiguredError
		region    *accounts.RegionNotAllowedError
		limited   *ratelimit.LimitedError
		reused    *idempotency.ConflictError
		replayed  *idempotency.OutcomeUnknownError
		shared    *sharedstate.UnavailableError
		anonymous *callers.UnauthenticatedError
		denied    *callers.DeniedError
		request   *RequestError
	)
	switch {
	case errors.As(err, &request):
		return mapped{code: request.Code, reason: request.Reason, msg: request.Msg, retryAfter: request.RetryAfter}, true
	case errors.As(err, &anonymous):
		return mapped{code: codes.Unauthenticated, reason: reasonUnauthenticated, msg: anonymous.Error()}, true
	case errors.As(err, &denied):
		// A caller refused the operation in every account is refused over
		// gRPC before its request is read (and so with no account_id),
		// or after it, when its deadline lies further out: the body says
		// the same either way, and over REST too.
		return mapped{code: codes.PermissionDenied, reason: reasonCallerNotAllowed, msg: denied.Error(),
			meta: map[string]string{"caller": denied.Caller, "operation": denied.Operation}, unread: denied.AnyAccount}, true
	case errors.As(err, &invalid):
		vs, more := boundViolations(invalid.Violations, invalid.More)
		m := mapped{code: codes.InvalidArgument, reason: reasonInvalidArgument, msg: violationsMessage(vs, more), violations: vs}
		if more > 0 {
			// The message counts what it leaves out, those the details
			// carry among them: this is what the details leave out.
			m.meta = map[string]string{"omitted_violations": strconv.Itoa(more)}
		}
		return m, true
	case errors.As(err, &region):
		msg := region.Error()
		return mapped{code: codes.InvalidArgument, reason: reasonRegionNotAllowed, msg: msg,
			violations: []badrequest.Violation{{Field: cmp.Or(region.Field, "region"), Description: msg}}}, true
	case errors.As(err, &unknown):
		return mapped{code: codes.NotFound, reason: reasonAccountNotConfigured,
			msg: fmt.Sprintf("account %s is not configured in backupd; ask its operators to add it", unknown.AccountID)}, true
	case errors.As(err, &limited):
		msg := fmt.Sprintf("%s calls for account %s in %s are over the account's rate; retry after %s", limited.Key.Operation, limited.Key.Account, limited.Key.Region, limited.RetryAfter)
		if limited.Held {
			msg = fmt.Sprintf("%s calls for account %s in %s are held back while backupd's shared rate limit recovers "+
				"(after a first start on this Redis, a Redis restart or failover, or a step of its clock, turns given before may still be going out); retry after %s",
				limited.Key.Operation, limited.Key.Account, limited.Key.Region, limited.RetryAfter)
		}
		return mapped{code: codes.ResourceExhausted, reason: reasonRateLimited, retryAfter: limited.RetryAfter, msg: msg,
			meta: map[string]string{"operation": limited.Key.Operation, "region": limited.Key.Region}}, true
	case errors.As(err, &reused):
		return mapped{code: codes.AlreadyExists, reason: reasonRequestIDReused, msg: reused.Error(),
			violations: []badrequest.Violation{{Field: "request_id", Description: reused.Error()}}}, true
	case errors.As(err, &replayed):
		return mapped{code: codes.Unavailable, reason: reasonOutcomeUnknown, msg: replayed.Error()}, true
	case errors.As(err, &shared):
		msg := "backupd's shared state (Redis) is unavailable or did not answer in time, so it cannot check the account's rate; nothing was sent to DynamoDB; retry later"
		switch {
		case errors.As(err, new(*accounts.RetryStoppedError)):
			msg = "backupd's shared state (Redis) became unavailable before it could retry the call, whose attempt before had failed at DynamoDB; retry later"
		case shared.Op == sharedstate.OpIdempotency:
			// This call sent nothing, but another with its request_id
			// (on another replica, or one Redis forgot in a restart)
			// may have.
			msg = "backupd's shared state (Redis) is unavailable or did not answer in time, so it cannot check the request_id: this call sent nothing to DynamoDB, " +
				"but another call with the same request_id may have; retry later with the same request_id, not a new one"
		}
		return mapped{code: codes.Unavailable, reason: reasonSharedStateUnavailable, retryAfter: DefaultRetryAfter, msg: msg}, true
	}
	return mapped{}, false
}

// mapUpstream maps what STS and DynamoDB did, or did not do in time; the
// order matters, since one may wrap another.
func mapUpstream(err error) mapped {
	var (
		unsure     *accounts.OutcomeUnknownError
		deleted    *accounts.DeletedEarlierError
		unanswered *service.UnansweredError
		nothing    *accounts.NothingDoneError
		running    *service.StillRunningError
		unstarted  *service.NotStartedError
		late       *ratelimit.TooLateError
		assume     *auth.AssumeRoleError
		api        smithy.APIError
		maxTries   *retry.MaxAttemptsError
		canceled   *aws.RequestCanceledError
		netErr     net.Error
		respError  *awshttp.ResponseError
	)
	switch {
	case errors.As(err, &unsure): // before the deadline: an unknown outcome may wrap one
		m := mapped{code: codes.Unavailable, reason: reasonOutcomeUnknown,
			msg: fmt.Sprintf("DynamoDB did not answer %s in account %s, region %s, definitively: it may or may not have been done; "+
				"%s before trying again", unsure.Operation, unsure.AccountID, unsure.Region, howToCheck(unsure.Operation))}
		if id := awsRequestID(err); id != "" { // a 5xx's, for AWS support
			m.meta = map[string]string{"aws_request_id": id}
		}
		return m
	case errors.As(err, &assume): // before the deadline: STS's own timeout is not the caller's deadline
		return mapAssume(assume)
	case errors.As(err, &unanswered):
		return cutShort(err, fmt.Sprintf("after %s was sent to DynamoDB, before it answered: it may or may not have been done; "+
			"%s before trying again", unanswered.Operation, howToCheck(unanswered.Operation)),
			" (with a request_id, a repeat is answered with the first one's result)")
	case errors.As(err, &unstarted):
		return cutShort(err, fmt.Sprintf("before %s started: this call sent nothing to DynamoDB, "+
			"but another call with the same request_id may have; repeat the request with the same request_id, not a new one", unstarted.Operation),
			" (backupd was still checking its request_id: the deadline left too little time for that, or its shared state (Redis) was slow or unavailable)")
	case errors.As(err, &running):
		return cutShort(err, fmt.Sprintf("before %s finished; it goes on under its request_id: "+
			"repeat the request with the same request_id to get its result", running.Operation),
			" (OUTCOME_UNKNOWN if the replica running it stopped before it finished)")
	case errors.As(err, &late):
		return mapped{code: codes.DeadlineExceeded, reason: ReasonDeadlineExceeded,
			msg: fmt.Sprintf("%s was not sent to DynamoDB: less than %s of the deadline was left, too little for DynamoDB to answer in time; "+
				"nothing was done: retry with a longer deadline", late.Key.Operation, late.Lead)}
	// The call's own word, not an attempt's (the limiter's NotSent): a
	// retry's wait cut off after an attempt went out says nothing of it.
	case errors.Is(err, context.DeadlineExceeded) && errors.As(err, &nothing):
		return mapped{code: codes.DeadlineExceeded, reason: ReasonDeadlineExceeded,
			msg: "the deadline passed before the request was sent to DynamoDB: nothing was done; retry with a longer deadline " +
				"(the caller's deadline, or backupd's upstream_timeout when the caller set none or a longer one)"}
	case errors.Is(err, context.DeadlineExceeded):
		return mapped{code: codes.DeadlineExceeded, reason: ReasonDeadlineExceeded,
			msg: "the deadline passed before AWS answered (the caller's deadline, or backupd's upstream_timeout when the caller set none or a longer one)"}
	case errors.Is(err, context.Canceled) || errors.As(err, &canceled):
		return mapped{code: codes.Canceled, reason: ReasonCanceled, msg: "the request was canceled"}
	case errors.As(err, &deleted) && errors.As(err, &api):
		m := mapAPI(api, awsRequestID(err), httpStatus(err))
		m.msg = "the backup was not found, but an earlier attempt of this DeleteBackup went unanswered and may have deleted it; " +
			"it is gone either way (DynamoDB: " + m.msg + ")"
		return m
	case errors.As(err, &api):
		return mapAPI(api, awsRequestID(err), httpStatus(err))
	case errors.As(err, &respError) && respError.HTTPStatusCode() == http.StatusForbidden:
		// A 403 whose body is not AWS's JSON (a proxy's or a WAF's page):
		// refused as forbidden all the same, as mapUnlisted takes one
		// without an error code.
		return mapped{code: codes.PermissionDenied, reason: reasonAccessDenied, meta: requestIDMeta(err),
			msg: "DynamoDB refused backupd's role in this account (HTTP 403 without an AWS error); " +
				"ask backupd's operators to check the role and its permissions policy, and any proxy on the way to AWS"}
	case errors.As(err, &respError) && proxyStatus(respError.HTTPStatusCode()):
		// Not AWS's JSON, and a status DynamoDB does not answer with: a
		// proxy's page.
		return proxyAnswer(mapped{meta: requestIDMeta(err)}, respError.HTTPStatusCode())
	case errors.As(err, &maxTries), errors.As(err, &netErr), errors.As(err, &respError) && respError.HTTPStatusCode() >= 500:
		return mapped{code: codes.Unavailable, reason: reasonDynamoDBUnavailable, retryAfter: DefaultRetryAfter,
			msg: "DynamoDB could not be reached or kept failing; retry later"}
	}
	return mapped{code: codes.Internal, reason: reasonInternal, msg: internalMsg}
}

func mapAssume(e *auth.AssumeRoleError) mapped {
	var meta map[string]string
	if id := awsRequestID(e); id != "" { // STS's, for AWS support
		meta = map[string]string{"aws_request_id": id}
	}
	if e.OwnCredentialsRefused() {
		return mapped{code: codes.PermissionDenied, reason: reasonRoleAssumptionDenied, meta: meta,
			msg: fmt.Sprintf("STS refused the credentials backupd assumes roles with, so it could not assume its role in account %s; "+
				"ask backupd's operators to check backupd's own AWS credentials", e.AccountID)}
	}
	if e.Denied() {
		// Across accounts STS asks both sides: the role's trust policy and
		// the policies of backupd's own role or user, which the trust
		// policy's hint alone would leave out.
		hint := "check the role's trust policy and ExternalId, and that backupd's own role or user may call sts:AssumeRole on it"
		if api, ok := errors.AsType[smithy.APIError](e); ok {
			switch api.ErrorCode() {
			case "RegionDisabledException":
				hint = fmt.Sprintf("STS is not activated in the region backupd calls it in (backupd's top-level default_region); "+
					"an administrator of account %s activates it in its IAM account settings", e.AccountID)
			case "PackedPolicyTooLarge", "MalformedPolicyDocument":
				// backupd's AssumeRole carries no session policy or tags
				// of its own: what STS refused came with backupd's own
				// credentials (transitive session tags).
				hint = fmt.Sprintf("STS refused the session policies or tags of the session (%s); backupd asks for none of its own, "+
					"so ask backupd's operators to check the session tags its own credentials pass on (transitive tags)", api.ErrorCode())
			}
		}
		return mapped{code: codes.PermissionDenied, reason: reasonRoleAssumptionDenied, meta: meta,
			msg: fmt.Sprintf("STS refused backupd's role in account %s; %s", e.AccountID, hint)}
	}
	if e.Invalid() {
		// A retry would be refused the same way; DESIGN's INTERNAL: the
		// details (the account, STS's code) are in the log.
		return mapped{code: codes.Internal, reason: reasonInternal, meta: meta, msg: internalMsg}
	}
	return mapped{code: codes.Unavailable, reason: reasonSTSUnavailable, retryAfter: DefaultRetryAfter, meta: meta,
		msg: fmt.Sprintf("STS could not issue credentials for account %s; retry later", e.AccountID)}
}

// internalMsg is INTERNAL's message: generic, as DESIGN says.
const internalMsg = "internal error; the details are in backupd's log"

// howToCheck says how a caller finds out whether a CreateBackup or a
// restore whose outcome is unknown was done.
func howToCheck(op string) string {
	if op == config.OpRestoreTableFromBackup {
		return "check whether the target table exists (DynamoDB's DescribeTable in that account)"
	}
	return "check (ListBackups, GetBackup)"
}

// maxAWSMessage bounds what of DynamoDB's message a caller's error quotes.
const maxAWSMessage = 1024

// mapAPI maps DynamoDB's own errors; httpStatus is the answer's status, 0
// when unknown. DynamoDB's messages describe the request, so they are
// passed on, except when it refuses backupd's credentials: those messages
// name backupd's role and session ("User: arn:aws:sts::…:assumed-role/…"),
// and a signature mismatch's may quote the signed request, so the caller
// gets a fixed message and the log the rest.
func mapAPI(api smithy.APIError, requestID string, httpStatus int) mapped {
	meta := map[string]string{}
	if requestID != "" {
		meta["aws_request_id"] = requestID
	}
	// What reaches the caller of the message is what the log keeps of it:
	// an endpoint between (a proxy, an emulator) may quote the signed
	// request, and a message may run to megabytes.
	msg := withoutClosingPeriod(redact.Cut(redact.Secrets(api.ErrorMessage()), maxAWSMessage))
	if msg == "" {
		msg = redact.Cut(api.ErrorCode(), maxAWSMessage)
	}
	m := mapped{meta: meta, msg: msg}
	switch code := api.ErrorCode(); code {
	// ValidationError is the spelling of AWS's common errors.
	case "ValidationException", "ValidationError", "InvalidRestoreTimeException":
		m.code, m.reason = codes.InvalidArgument, reasonDynamoDBValidation
		m.msg = "DynamoDB refused the request as invalid: " + msg +
			" (DynamoDB names fields in PascalCase; backupd names them in snake_case, or lowerCamelCase over REST)"
	case "AccessDeniedException", "NotAuthorized":
		m.code, m.reason = codes.PermissionDenied, reasonAccessDenied
		m.msg = "DynamoDB refused backupd's role in this account (" + code + "); " +
			"ask backupd's operators to check the role's permissions policy"
	// Refusals of the credentials themselves, not of what the role may do
	// (DynamoDB's own names, and those of AWS's common errors): a
	// permissions policy does not mend them.
	case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
		"MissingAuthenticationTokenException", "InvalidClientTokenId", "IncompleteSignature",
		"MissingAuthenticationToken", "OptInRequired":
		m.code, m.reason = codes.PermissionDenied, reasonAccessDenied
		m.msg = "DynamoDB did not accept the credentials backupd holds for this account in this region (" + code + "), " +
			"whatever the role's permissions; ask backupd's operators to check that the region is enabled in the account " +
			"and that backupd's clock is right"
	case "ExpiredTokenException":
		// backupd renews its credentials before they expire by its own
		// clock; AWS finding them expired says that clock is behind. The
		// call's one retry with the role assumed again (accounts' gate)
		// was refused too, or could not be made (a RetryNotMadeError, over
		// the rate or past the deadline, carries this refusal).
		m.code, m.reason, m.retryAfter = codes.Unavailable, reasonCredentialsExpired, DefaultRetryAfter
		m.msg = "DynamoDB found backupd's credentials for this account expired (ExpiredTokenException): " +
			"nothing was done; retry later, and ask backupd's operators to check its clock"
	default:
		if r, ok := passedOn[code]; ok {
			m.code, m.reason, m.msg = r.code, r.reason, msg+"; "+r.hint
			return m
		}
		return mapUnlisted(m, api, httpStatus)
	}
	return m
}

// withoutClosingPeriod is DynamoDB's message without the period that
// closes its sentence, as backupd's own words follow it; but a message
// that ends in a value after a colon ("Table not found: Orders.") keeps
// its last period, which may be the value's own: a table or backup name
// may end in ".", and "Orders." is not "Orders".
func withoutClosingPeriod(msg string) string {
	body, ok := strings.CutSuffix(msg, ".")
	if !ok {
		return msg
	}
	if i := strings.LastIndexByte(body, ' '); i > 0 && body[i-1] == ':' {
		return msg
	}
	return body
}

// passedOn are DynamoDB's refusals of the request itself, whose message
// the caller gets (it describes the request) with what to do about it.
var passedOn = map[string]struct {
	code   codes.Code
	reason string
	hint   string
}{
	"TableNotFoundException": {codes.NotFound, reasonTableNotFound,
		"the table must exist in the account and region the request names (the account's default region when region is empty)"},
	"ResourceNotFoundException": {codes.NotFound, reasonTableNotFound,
		"the table must exist in the account and region the request names (the account's default region when region is empty)"},
	"BackupNotFoundException":               {codes.NotFound, reasonBackupNotFound, "ListBackups gives the ARNs of the account's backups"},
	"TableAlreadyExistsException":           {codes.AlreadyExists, reasonTableAlreadyExists, "choose another target_table_name"},
	"TableInUseException":                   {codes.FailedPrecondition, reasonTableInUse, "retry once the table's current operation has ended"},
	"ResourceInUseException":                {codes.FailedPrecondition, reasonTableInUse, "retry once the table's current operation has ended"},
	"BackupInUseException":                  {codes.FailedPrecondition, reasonBackupInUse, "retry once the backup's current operation has ended"},
	"ContinuousBackupsUnavailableException": {codes.FailedPrecondition, reasonBackupsUnavailable, "backups of this table are not available yet, retry later"},
}

// mapUnlisted maps a DynamoDB error whose code mapAPI does not name: by
// what its code and message say of a quota or throttling, else by its
// HTTP status and fault. m holds the error's metadata and message.
func mapUnlisted(m mapped, api smithy.APIError, httpStatus int) mapped {
	code, msg := api.ErrorCode(), m.msg
	if accounts.OverQuota(code, api.ErrorMessage()) {
		// No RetryInfo: no delay mends it.
		m.code, m.reason = codes.ResourceExhausted, ReasonQuotaExceeded
		m.msg = msg + "; DynamoDB refused the call as over one of the account's quotas, and did nothing: it succeeds once the account " +
			"is under that quota (fewer tables, say) or the quota is raised (AWS Service Quotas), not by retrying alone"
		return m
	}
	if accounts.Throttling(code) {
		m.code, m.reason, m.retryAfter = codes.ResourceExhausted, reasonDynamoDBThrottled, DefaultRetryAfter
		m.msg = msg + "; DynamoDB throttled this account's calls (after backupd's retries, or with no time left for another before the deadline) " +
			"and did nothing: retry later"
		return m
	}
	// An error code the SDK does not model (ServiceUnavailable,
	// InternalFailure) is a server fault by its status alone.
	if api.ErrorFault() == smithy.FaultServer || httpStatus >= 500 {
		m.code, m.reason, m.retryAfter = codes.Unavailable, reasonDynamoDBUnavailable, DefaultRetryAfter
		what := redact.Cut(code, 64)
		if code == "UnknownError" && httpStatus > 0 {
			what = fmt.Sprintf("HTTP %d without an error code", httpStatus) // smithy's name for none
		}
		m.msg = "DynamoDB failed (" + what + "); retry later"
		return m
	}
	if proxyStatus(httpStatus) {
		return proxyAnswer(m, httpStatus)
	}
	if httpStatus == http.StatusForbidden {
		// An error code the SDK does not model, refused as
		// forbidden: AWS's common errors are, on credentials.
		what := redact.Cut(code, 64) + ", HTTP 403"
		if code == "UnknownError" {
			what = "HTTP 403 without an error code" // smithy's name for none
		}
		m.code, m.reason = codes.PermissionDenied, reasonAccessDenied
		m.msg = "DynamoDB refused backupd's role in this account (" + what + "); " +
			"ask backupd's operators to check the role and its permissions policy"
		return m
	}
	m.code, m.reason = codes.Internal, reasonInternal
	m.msg = internalMsg
	return m
}

// proxyStatus reports whether an HTTP status is one DynamoDB does not
// answer with (it throttles with a 400 and an error code), but a proxy
// or gateway on the way to it may: too many requests, or the request
// timed out before it was complete.
func proxyStatus(httpStatus int) bool {
	return httpStatus == http.StatusTooManyRequests || httpStatus == http.StatusRequestTimeout
}

// proxyAnswer maps such an answer for a call whose outcome it does not
// leave unknown (CreateBackup and restore are told OUTCOME_UNKNOWN
// before this: a proxy may answer so after passing the request on). m
// holds the error's metadata.
func proxyAnswer(m mapped, httpStatus int) mapped {
	if httpStatus == http.StatusTooManyRequests {
		m.code, m.reason, m.retryAfter = codes.ResourceExhausted, reasonDynamoDBThrottled, DefaultRetryAfter
		m.msg = "the call to DynamoDB was refused with HTTP 429 Too Many Requests, by DynamoDB's endpoint or a proxy on the way to it: retry later"
		return m
	}
	m.code, m.reason, m.retryAfter = codes.Unavailable, reasonDynamoDBUnavailable, DefaultRetryAfter
	m.msg = fmt.Sprintf("the call to DynamoDB failed with HTTP %d, from DynamoDB's endpoint or a proxy on the way to it; retry later", httpStatus)
	return m
}

// cutShort maps a call its caller ended, canceled or by its deadline,
// before it was done: what the call had come to, and, past the deadline,
// a note for a caller that will repeat it.
func cutShort(err error, what, deadlineNote string) mapped {
	if errors.Is(err, context.Canceled) {
		return mapped{code: codes.Canceled, reason: ReasonCanceled, msg: "the request was canceled " + what}
	}
	return mapped{code: codes.DeadlineExceeded, reason: ReasonDeadlineExceeded, msg: "the deadline passed " + what + deadlineNote}
}

// httpStatus is the status of the HTTP answer err carries, 0 when none.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// requestIDMeta is the metadata naming err's AWS request id, nil when
// it has none.
func requestIDMeta(err error) map[string]string {
	if id := awsRequestID(err); id != "" {
		return map[string]string{"aws_request_id": id}
	}
	return nil
}

func awsRequestID(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.ServiceRequestID()
	}
	return ""
}
