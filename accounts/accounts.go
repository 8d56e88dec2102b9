// Package accounts maps an (account, region) to the DynamoDB client that acts
// there as backupd's role in that account, rate limited per operation.
//
// Every client is built once at start and reused: the warm path makes no STS
// call and constructs nothing.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptrace"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awsratelimit "github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/sharedstate"
)

// NotConfiguredError means backupd has no role in the account, so it cannot
// act there at all.
type NotConfiguredError struct {
	AccountID string
}

func (e *NotConfiguredError) Error() string {
	return fmt.Sprintf("account %s is not configured", e.AccountID)
}

// RegionNotAllowedError means the account is configured but not for the region.
type RegionNotAllowedError struct {
	AccountID string
	Region    string
	Allowed   []string
	// Field names the request field the region came from (a backup ARN,
	// say), for the caller's field violation; empty means "region".
	Field string
}

func (e *RegionNotAllowedError) Error() string {
	if e.Field == "" || e.Field == "region" {
		return fmt.Sprintf("region %q is not allowed for account %s; allowed: %v", e.Region, e.AccountID, e.Allowed)
	}
	return fmt.Sprintf("%s names region %q, which is not allowed for account %s; allowed: %v", e.Field, e.Region, e.AccountID, e.Allowed)
}

// Limiter admits one call attempt for a key, waiting its turn if need be.
type Limiter interface {
	Wait(ctx context.Context, key ratelimit.Key) error
}

// CredentialSource gives an account's (cached) credentials, and hears when
// DynamoDB refused them as expired, so that the next attempt gets new ones.
type CredentialSource interface {
	Credentials(accountID string) (aws.CredentialsProvider, bool)
	Expired(accountID, accessKeyID string)
}

// Options configures a Registry.
type Options struct {
	// AWS is the base SDK configuration (endpoints, HTTP client, region).
	AWS      aws.Config
	Accounts []config.Account
	Roles    CredentialSource
	Limiter  Limiter
	// MaxAttempts bounds the SDK's retries of throttling and 5xx answers;
	// zero means 5. The caller's deadline bounds them too.
	MaxAttempts int
	// Observer is told of every attempt sent to DynamoDB; nil means none.
	Observer Observer
}

// Observer counts attempts sent to DynamoDB (package metrics).
type Observer interface {
	ObserveAttempt(account, region, operation string, err error, d time.Duration)
}

// Target is where one request acts.
type Target struct {
	AccountID string
	Region    string
	DynamoDB  *dynamodb.Client
}

type regionKey struct{ account, region string }

// Registry holds every (account, region) client. It is read-only after New.
type Registry struct {
	accounts map[string]config.Account
	clients  map[regionKey]*dynamodb.Client
}

// New builds a DynamoDB client for every account and allowed region.
func New(opts Options) (*Registry, error) {
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 5
	}
	r := &Registry{
		accounts: make(map[string]config.Account, len(opts.Accounts)),
		clients:  make(map[regionKey]*dynamodb.Client),
	}
	for _, a := range opts.Accounts {
		creds, ok := opts.Roles.Credentials(a.ID)
		if !ok {
			return nil, fmt.Errorf("accounts: no role for account %s", a.ID)
		}
		r.accounts[a.ID] = a
		for _, region := range a.AllowedRegions {
			r.clients[regionKey{a.ID, region}] = newClient(opts, a.ID, region, creds)
		}
	}
	return r, nil
}

func newClient(opts Options, account, region string, creds aws.CredentialsProvider) *dynamodb.Client {
	gate := &gate{limiter: opts.Limiter, observer: opts.Observer, account: account, region: region,
		expired: func(accessKeyID string) { opts.Roles.Expired(account, accessKeyID) }}
	return dynamodb.NewFromConfig(opts.AWS, func(o *dynamodb.Options) {
		o.Region = region
		o.Credentials = creds
		// Each client gets its own retryer, without the SDK's client-side
		// retry token bucket: a shared bucket would let one account's
		// failures use up the retries of every other account.
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = opts.MaxAttempts
			so.RateLimiter = awsratelimit.None
			// Refused before it was acted on, and retried with the new
			// credentials the gate asked for (gate.expired).
			so.Retryables = append([]retry.IsErrorRetryable{overQuota}, so.Retryables...)
			so.Retryables = append(so.Retryables, retry.RetryableErrorCode{Codes: map[string]struct{}{expiredToken: {}}})
		})
		o.APIOptions = append(slices.Clone(o.APIOptions), gate.register)
	})
}

// Resolve returns the client for the account and region; an empty region
// means the account's default.
func (r *Registry) Resolve(accountID, region string) (Target, error) {
	a, ok := r.accounts[accountID]
	if !ok {
		return Target{}, &NotConfiguredError{AccountID: accountID}
	}
	if region == "" {
		region = a.DefaultRegion
	}
	c, ok := r.clients[regionKey{accountID, region}]
	if !ok {
		return Target{}, &RegionNotAllowedError{AccountID: accountID, Region: region, Allowed: a.AllowedRegions}
	}
	return Target{AccountID: accountID, Region: region, DynamoDB: c}, nil
}

// gate waits on the rate limiter before every attempt of every call, retries
// included, so DynamoDB never sees more calls than the limit allows. It sits
// inside the retry loop after the attempt has its credentials and before it
// is signed: an attempt that cannot get credentials (STS down) takes no
// turn from the calls that can, and a signature is never stale.
type gate struct {
	limiter  Limiter
	observer Observer
	account  string
	region   string
	// expired tells the account's credentials that DynamoDB refused those
	// of an access key as expired.
	expired func(accessKeyID string)
}

// expiredToken is DynamoDB's refusal of credentials it holds expired:
// backupd's cache held them valid, its clock being behind AWS's.
const expiredToken = "ExpiredTokenException"

func (g *gate) register(stack *middleware.Stack) error {
	if err := stack.Finalize.Insert(g, "GetIdentity", middleware.After); err != nil {
		return err
	}
	if err := stack.Initialize.Add(followAttempts{delete: stack.ID() == config.OpDeleteBackup}, middleware.After); err != nil {
		return err
	}
	return stack.Deserialize.Add(wire{}, middleware.After)
}

func (g *gate) ID() string { return "backupd.RateLimit" }

func (g *gate) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	key := ratelimit.Key{Account: g.account, Region: g.region, Operation: awsmiddleware.GetOperationName(ctx)}
	call, _ := ctx.Value(attemptsKey{}).(*attempts)
	if err := g.limiter.Wait(ctx, key); err != nil {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, notAdmitted(call, err)
	}
	if call != nil {
		call.admitted = true
	}
	// With tracing on, the attempt's span shows when its turn came.
	trace.SpanFromContext(ctx).AddEvent("admitted by the rate limit")
	sent := time.Now()
	at, _ := ctx.Value(submitKey{}).(*time.Time)
	if at != nil {
		*at = time.Time{} // until wire sees this attempt leave
	}
	out, md, err := next.HandleFinalize(ctx, in)
	err = withoutToken(in, err)
	g.observe(key.Operation, err, sent)
	if api, ok := errors.AsType[smithy.APIError](err); ok && api.ErrorCode() == expiredToken {
		g.expired(signedWith(in))
		if call != nil {
			if call.expired {
				err = &expiredAgainError{err: err}
			}
			call.expired = true
		}
	}
	err = g.answered(key.Operation, call, at, err)
	if call != nil {
		call.failed = err
	}
	return out, md, err
}

// signedWith is the access key id an attempt was signed with, from its
// SigV4 Authorization header ("AWS4-HMAC-SHA256 Credential=KEY/..."),
// which the signer below the gate wrote; "" when it has none.
func signedWith(in middleware.FinalizeInput) string {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return ""
	}
	_, credential, ok := strings.Cut(req.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(credential, "/")
	return key
}

// withoutToken is err, the answer to an attempt, without the session
// token the attempt carried, which DynamoDB's endpoint (a proxy, an
// emulator) may quote where no key names it: the caller is given
// DynamoDB's message (rpcerror), and the token is the role's, good for
// an hour.
func withoutToken(in middleware.FinalizeInput, err error) error {
	req, ok := in.Request.(*smithyhttp.Request)
	if err == nil || !ok {
		return err
	}
	token := req.Header.Get("X-Amz-Security-Token")
	if redact.Value(err.Error(), token) == err.Error() {
		return err
	}
	quoted := &tokenQuotedError{err: err, token: token}
	quoted.api, _ = errors.AsType[smithy.APIError](err)
	return quoted
}

// tokenQuotedError is an answer whose text quoted the session token its
// attempt carried, without it. It is the answer's APIError too, whose
// code and fault are the answer's, and whose message is without it.
type tokenQuotedError struct {
	err   error
	api   smithy.APIError // nil when the answer has none
	token string
}

func (e *tokenQuotedError) Error() string { return redact.Value(e.err.Error(), e.token) }
func (e *tokenQuotedError) Unwrap() error { return e.err }

// As gives the answer's APIError without the token: the first in the
// chain is what the error mapping quotes.
func (e *tokenQuotedError) As(target any) bool {
	if t, ok := target.(*smithy.APIError); ok && e.api != nil {
		*t = quotedAPIError{e.api, e.token}
		return true
	}
	return false
}

type quotedAPIError struct {
	smithy.APIError
	token string
}

func (e quotedAPIError) Error() string { return redact.Value(e.APIError.Error(), e.token) }
func (e quotedAPIError) ErrorMessage() string {
	return redact.Value(e.APIError.ErrorMessage(), e.token)
}

// notAdmitted is the error of an attempt the limiter did not let go. The
// rate's refusal is made the attempt's error here; the deadline's, in
// followAttempts. The caller leaving, or Redis failing, is what the caller
// is told of, whatever came before, Redis failing with word of the attempt
// that went before.
func notAdmitted(call *attempts, err error) error {
	if call == nil || call.failed == nil {
		return err
	}
	if isLimited(err) || errors.As(err, new(*ratelimit.TooLateError)) {
		return &RetryNotMadeError{Failed: call.failed, Stopped: err}
	}
	if errors.As(err, new(*sharedstate.UnavailableError)) {
		return &RetryStoppedError{Stopped: err}
	}
	return err
}

// answered is the error of an attempt that was sent, as the caller is to
// hear it: one that left (at, the submit time, set by wire; without one,
// assume it left) and got no definite answer is an unknown outcome for an
// operation that is not idempotent, and marks the call unanswered for one
// that is. An attempt DynamoDB certainly did not act on (refused) clears
// its submit time.
func (g *gate) answered(op string, call *attempts, at *time.Time, err error) error {
	if err == nil {
		return nil
	}
	if at != nil && refused(err) {
		*at = time.Time{}
	}
	left := at == nil || !at.IsZero()
	if !left || !outcomeUnknown(err) {
		return err
	}
	if !idempotent[op] {
		return &OutcomeUnknownError{Operation: op, AccountID: g.account, Region: g.region, Err: err}
	}
	if call != nil {
		call.unanswered = true
	}
	return err
}

// followAttempts follows one call across its attempts, for what the gate
// tells of them:
//   - a retry the limiter does not admit (its turn comes too late for the
//     deadline, say), or that the deadline cuts off while it waits (for
//     its turn, or in the SDK's backoff), fails with the error of the
//     attempt it would have repeated (RetryNotMadeError): the caller hears
//     that DynamoDB throttled or failed, not that it was over the
//     account's rate or that nothing was sent;
//   - when a DeleteBackup attempt went unanswered (a dropped connection, a
//     5xx) DynamoDB may have deleted the backup, and the retry then finds
//     none: that BackupNotFound becomes a DeletedEarlierError, so the
//     caller is not told plainly that there was nothing to delete; any
//     other failure of such a call becomes a MayHaveDeletedError.
type followAttempts struct {
	delete bool // the call is a DeleteBackup
}

type attemptsKey struct{}

// attempts is what the gate tells followAttempts of one call.
type attempts struct {
	admitted   bool  // an attempt passed the limiter: it may have reached DynamoDB
	failed     error // the last attempt's error
	unanswered bool  // an attempt went unanswered
	expired    bool  // an attempt was refused with credentials DynamoDB holds expired
}

// expiredAgainError stops the retries of a call whose credentials DynamoDB
// refused as expired a second time: the first refusal was retried with
// the role assumed again, and further attempts would only take the
// account's turns.
type expiredAgainError struct{ err error }

func (e *expiredAgainError) Error() string        { return e.err.Error() }
func (e *expiredAgainError) Unwrap() error        { return e.err }
func (e *expiredAgainError) RetryableError() bool { return false }

func (followAttempts) ID() string { return "backupd.FollowAttempts" }

func (f followAttempts) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
	middleware.InitializeOutput, middleware.Metadata, error,
) {
	call := &attempts{}
	ctx = context.WithValue(ctx, attemptsKey{}, call)
	if _, ok := ctx.Value(submitKey{}).(*time.Time); f.delete && !ok {
		// So that an attempt that never got a connection (a failed
		// dial or TLS handshake) is known not to have been sent.
		ctx = WithSubmitTime(ctx, new(time.Time))
	}
	out, md, err := next.HandleInitialize(ctx, in)
	// Only the call's own deadline: STS's timeout for a retry's fresh
	// credentials is STS's failure, and must read as one.
	if call.failed != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(call.failed, context.DeadlineExceeded) {
		err = &RetryNotMadeError{Failed: call.failed, Stopped: err}
	}
	if !call.admitted && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The deadline (or the caller) ended the call before any of its
		// attempts passed the limiter: nothing reached DynamoDB. Said of
		// the whole call here, as the limiter's own error (NotSent)
		// speaks of one attempt only.
		err = &NothingDoneError{Err: err}
	}
	if f.delete && call.unanswered && err != nil {
		if _, gone := errors.AsType[*types.BackupNotFoundException](err); gone {
			err = &DeletedEarlierError{Err: err}
		} else {
			err = &MayHaveDeletedError{Err: err}
		}
	}
	return out, md, err
}

// NothingDoneError is the error of a call that DynamoDB did not act
// on: no attempt of it reached DynamoDB (the deadline, or the caller
// leaving, ended it before any attempt passed the rate limiter, say), or
// DynamoDB refused each one that did. It speaks of the whole call, where
// an error that says NotSent (the limiter's, STS's) speaks of one
// attempt: a call with an attempt that went out and whose retry was then
// cut off is never one, whatever that retry's wait answered. A request_id
// run that ends with it is forgotten, so that its repeat runs, and a
// caller whose deadline passed is told nothing was done.
type NothingDoneError struct{ Err error }

func (e *NothingDoneError) Error() string {
	return e.Err.Error() + " (DynamoDB did not act on it: no attempt reached it, or it refused each one that did)"
}

func (e *NothingDoneError) Unwrap() error { return e.Err }

// NotSent says the call was not made: DynamoDB did nothing.
func (e *NothingDoneError) NotSent() bool { return true }

// RetryNotMadeError is the error of an attempt whose retry was not made:
// the limiter refused it (its turn came too late for the deadline), or
// the call's deadline passed while it waited. The call fails for what the
// attempt failed with (DynamoDB's throttling or 5xx, a dropped
// connection), which is what the caller is told, and why the retry was
// not made is kept for the log.
type RetryNotMadeError struct {
	Failed  error // the last attempt's error
	Stopped error // why its retry was not made
}

func (e *RetryNotMadeError) Error() string {
	return fmt.Sprintf("%v (not retried: %v)", e.Failed, e.Stopped)
}

func (e *RetryNotMadeError) Unwrap() error { return e.Failed }

// RetryableError stops the SDK's retryer: the retry is not to be made.
func (e *RetryNotMadeError) RetryableError() bool { return false }

// RetryStoppedError is a retry that Redis failing stopped, after an
// earlier attempt of the call was sent to DynamoDB: the caller is told of
// Redis, but not that nothing was sent.
type RetryStoppedError struct{ Stopped error }

func (e *RetryStoppedError) Error() string {
	return fmt.Sprintf("retry not made after a failed attempt: %v", e.Stopped)
}

func (e *RetryStoppedError) Unwrap() error { return e.Stopped }

// RetryableError stops the SDK's retryer: the retry is not to be made.
func (e *RetryStoppedError) RetryableError() bool { return false }

// DeletedEarlierError says a DeleteBackup found no backup after an earlier
// attempt of the same call went unanswered: that attempt may have deleted
// it.
type DeletedEarlierError struct{ Err error }

func (e *DeletedEarlierError) Error() string {
	return fmt.Sprintf("backup not found after an unanswered attempt that may have deleted it: %v", e.Err)
}

func (e *DeletedEarlierError) Unwrap() error { return e.Err }

// MayHaveDeletedError says a DeleteBackup failed after one of its attempts
// went unanswered (a dropped connection, a 5xx): that attempt may have
// deleted the backup, and a retry that finds none is then no surprise.
// One whose attempts all went unsent or were refused says nothing of it.
type MayHaveDeletedError struct{ Err error }

func (e *MayHaveDeletedError) Error() string {
	return fmt.Sprintf("%v (an unanswered attempt may have deleted the backup)", e.Err)
}

func (e *MayHaveDeletedError) Unwrap() error { return e.Err }

// wire is the last middleware before the HTTP client. It records as the
// submit time the moment the signed attempt gets its connection to
// DynamoDB, right before it is written; an attempt that fails before that
// (credentials from STS, signing, a dial or TLS handshake that fails or
// outlasts the deadline) cannot have been acted on.
type wire struct{}

func (wire) ID() string { return "backupd.Submit" }

func (wire) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	if at, ok := ctx.Value(submitKey{}).(*time.Time); ok {
		// GotConn runs on this goroutine, inside the HTTP client's call.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { *at = time.Now() }})
	}
	return next.HandleDeserialize(ctx, in)
}

// observe counts an attempt. Attempts that could not get credentials never
// reach the gate: they are counted as AssumeRole calls.
func (g *gate) observe(op string, err error, sent time.Time) {
	if g.observer != nil {
		g.observer.ObserveAttempt(g.account, g.region, op, err, time.Since(sent))
	}
}

// idempotent marks the operations that may be repeated safely. A repeated
// CreateBackup makes a second backup and a repeated restore fails on the
// table the first one made, so those are sent again only when DynamoDB
// provably did not act on the first attempt.
var idempotent = map[string]bool{
	config.OpDescribeBackup: true,
	config.OpListBackups:    true,
	config.OpDeleteBackup:   true,
}

// outcomeUnknown reports whether an attempt failed without telling whether
// DynamoDB acted on it: anything but a refusal, the caller's end or the
// limiter's.
func outcomeUnknown(err error) bool {
	return !refused(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !isLimited(err)
}

// refused reports whether an attempt certainly was not acted on: DynamoDB
// answered with one of its own client errors or throttling, or the
// connection to it was never made. A 5xx is not a refusal, whatever its
// body (a proxy's 503 page parses as an error of unknown fault), nor is a
// 4xx whose body is not DynamoDB's JSON, or is JSON without DynamoDB's
// error code: what answered it was not DynamoDB, and may have answered
// after passing the request on (a proxy or WAF that checks responses).
func refused(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		if Throttling(api.ErrorCode()) {
			return true
		}
		if api.ErrorCode() == noErrorCode {
			return false
		}
		var resp *awshttp.ResponseError
		if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
			return false
		}
		return api.ErrorFault() != smithy.FaultServer
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// noErrorCode is the error code smithy gives an error answer that named
// none, as every answer of DynamoDB's own does.
const noErrorCode = "UnknownError"

func isLimited(err error) bool {
	var le *ratelimit.LimitedError
	return errors.As(err, &le)
}

// Throttling reports whether DynamoDB's error code says it throttled the
// call: refused it without acting on it. backupd's mapping and its retry
// bookkeeping both read it, so they cannot disagree.
func Throttling(code string) bool { return throttled[code] }

// OverQuota reports whether DynamoDB's LimitExceededException is over a
// standing quota of the account ("Subscriber limit exceeded: There is a
// limit of 2500 tables per subscriber"), which waiting does not mend,
// rather than over how many control-plane operations may run at once
// ("Only 10 tables can be created, updated, or deleted simultaneously",
// "Too many concurrent control plane operations"), which it does.
// DynamoDB tells them apart only in its message, so only the quota's
// words count as one: any other is taken as the passing kind, and
// retried. The SDK does not retry a quota's, and backupd's mapping names
// it.
func OverQuota(code, msg string) bool {
	return code == "LimitExceededException" && strings.Contains(strings.ToLower(msg), "there is a limit of")
}

// overQuota stops the SDK's retries of a call over a quota: each would
// be refused the same way, and take one of the account's turns.
var overQuota = retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
	if api, ok := errors.AsType[smithy.APIError](err); ok && OverQuota(api.ErrorCode(), api.ErrorMessage()) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
})

// throttled lists DynamoDB's refusals that say the call was not acted on.
var throttled = map[string]bool{
	"ThrottlingException":                    true,
	"LimitExceededException":                 true,
	"RequestLimitExceeded":                   true,
	"ProvisionedThroughputExceededException": true,
}

// OutcomeUnknownError says a non-idempotent call failed in a way that leaves
// open whether DynamoDB acted on it (a dropped connection, a 5xx). It is not
// retried, so backupd never makes a second backup by itself; the caller
// should look (ListBackups, DescribeTable) before trying again.
type OutcomeUnknownError struct {
	Operation string
	AccountID string
	Region    string
	Err       error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("%s in account %s, region %s: outcome unknown: %v", e.Operation, e.AccountID, e.Region, e.Err)
}

func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// RetryableError stops the SDK's retryer: repeating the call could do it twice.
func (e *OutcomeUnknownError) RetryableError() bool { return false }

type submitKey struct{}

// WithSubmitTime returns a context in which the client records, into at, the
// moment its last attempt left for DynamoDB: the submit time from which a
// backup's consistency window is computed. After a failed call at is zero
// when DynamoDB cannot have acted on any attempt: none left (credentials
// could not be had, the deadline passed first), or each one that did was
// refused.
func WithSubmitTime(ctx context.Context, at *time.Time) context.Context {
	return context.WithValue(ctx, submitKey{}, at)
}
