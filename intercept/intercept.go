// Package intercept is what every BackupService call passes through,
// whichever transport it came by: it authorizes the call, recovers a
// panic, maps the error to the caller's status, writes the request's one
// log line and counts it. The gRPC server (package server) and the REST
// gateway (package rest) each make one Interceptor and hand it their
// calls, so that a caller is treated alike over both; neither transport
// knows the other. For the same reason it holds the bounds both hold a
// request to (limits.go): the handshake, the headers, the request's
// arrival and the shutdown's grace.
package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/reqlog"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// Authorizer names a request's caller and checks that it may call
// operation in account (package callers).
type Authorizer interface {
	Authorize(ctx context.Context, operation, account string) (caller string, err error)
}

// RequestObserver counts answered requests, and those in their handler
// (package metrics).
type RequestObserver interface {
	ObserveRequest(method string, code codes.Code, reason string, d time.Duration)
	InFlight(delta int)
}

// Options configures an Interceptor. A transport gives its own the same
// Logger, Metrics and Authorizer as the other's, so that both treat a
// caller alike, and sets what only it knows (Undecodable, Origin).
type Options struct {
	Logger *slog.Logger
	// Metrics is told of every answered request; nil means none.
	Metrics RequestObserver
	// Authorizer decides who may make each BackupService call; nil lets
	// everyone make every call.
	Authorizer Authorizer
	// CutOff ends when the shutdown's timeout cuts in-flight calls off
	// (server.Health.CutOff): a call canceled then is logged as its
	// caller saw it, UNAVAILABLE. Nil for none.
	CutOff context.Context
	// Undecodable, when set, is the error of a request the transport
	// could not decode (it handed the call on, with req empty, so that
	// the call is authorized, logged and counted like any other), or nil.
	// Nil for a transport that refuses such requests itself.
	Undecodable func(req any) error
	// Origin, when set, is what the transport knows of a call that did
	// not come through grpc-go (the REST gateway's, which calls in
	// process), or nil for one that did.
	Origin func(ctx context.Context) *Origin
	// Quiet, when set, names the methods whose calls run through the
	// interceptor but are neither logged nor counted: health checks,
	// which a load balancer makes every few seconds.
	Quiet func(method string) bool
	// SendLeads is, by RPC name, how long before its handler's deadline
	// a call must reach the rate limiter to be sent (the limiter's
	// Lead, accounts.Leads): a gRPC retry that could not arrive so early
	// is told to make none (pushBack). Nil for none.
	SendLeads map[string]time.Duration
}

// Origin is what a transport that calls the interceptor in process, not
// through grpc-go, tells it of a call, as grpc-go would tell it of its
// own: when the request began to arrive, and who sent it. Such a call
// gets no gRPC trailers (its transport would pass them on as headers).
// The interceptor only reads it.
type Origin struct {
	// Start is when the request began to arrive: a REST request is
	// timed from its arrival, its body's reading included, as are those
	// refused before they reach the interceptor.
	Start time.Time
	// Caller names the sender in the log line ("rest:" and the host of
	// the connection's peer); ForwardedFor is the request's
	// X-Forwarded-For, which any client can set, shown beside it.
	Caller, ForwardedFor string
}

// Interceptor is what every BackupService call passes through (see the
// package's doc).
type Interceptor struct {
	log         *slog.Logger
	metrics     RequestObserver
	authz       Authorizer
	cutOff      context.Context
	undecodable func(req any) error
	origin      func(ctx context.Context) *Origin
	quiet       func(method string) bool
	sendLeads   map[string]time.Duration
}

// New returns the Interceptor that o configures.
func New(o Options) *Interceptor {
	return &Interceptor{log: o.Logger, metrics: o.Metrics, authz: o.Authorizer, cutOff: o.CutOff,
		undecodable: o.Undecodable, origin: o.Origin, quiet: o.Quiet, sendLeads: o.SendLeads}
}

// originOf is what the transport told of ctx's call, or nil for a call
// that came through grpc-go.
func (i *Interceptor) originOf(ctx context.Context) *Origin {
	if i.origin == nil {
		return nil
	}
	return i.origin(ctx)
}

// servicePrefix begins the full name of every BackupService method,
// served or not.
var servicePrefix = "/" + backupv1.BackupService_ServiceDesc.ServiceName + "/"

// InService reports whether method (a full gRPC method name) names
// BackupService, whether or not it is one of its methods (Serves): a
// transport holds such a call to a caller token, where the health and
// reflection services take none.
func InService(method string) bool { return strings.HasPrefix(method, servicePrefix) }

// authorize checks a BackupService call before it runs: who calls, and
// whether they may call this operation in the account the request names
// (by account_id, or by the backup ARN's account).
func (i *Interceptor) authorize(ctx context.Context, method string, req any) (string, error) {
	account, _ := target(req)
	return i.AuthorizeIn(ctx, method, account)
}

// AuthorizeIn checks a call of method known only by its account, as the
// interceptor checks every call before it runs, for a transport that
// answers a request before it reaches the interceptor (one it could not
// read, say): who calls, and whether they may call method in account.
// It returns the caller's name.
func (i *Interceptor) AuthorizeIn(ctx context.Context, method, account string) (string, error) {
	op, ok := strings.CutPrefix(method, servicePrefix)
	if !ok || i.authz == nil {
		return "", nil
	}
	return i.authz.Authorize(ctx, op, account)
}

// AuthorizeAnywhere checks a call of method before its request is read,
// from its metadata alone: an unknown caller, and one refused method in
// every account, are refused whatever the request names, so a transport
// can refuse them without waiting for a request that may come slowly or
// never. It returns nil for a caller the request's account decides
// (AuthorizeIn, once it is read), and the caller's name. A known caller
// of a method backupd does not serve is not refused it: the call is
// answered as one of no such method (UNIMPLEMENTED), as for a caller
// allowed every operation, not as an operation the caller was denied.
func (i *Interceptor) AuthorizeAnywhere(ctx context.Context, method string) (string, error) {
	principal, err := i.AuthorizeIn(ctx, method, "")
	if d, ok := errors.AsType[*callers.DeniedError](err); ok && (!d.AnyAccount || !serves[method]) {
		return principal, nil
	}
	return principal, err
}

// Serves reports whether method (a full gRPC method name) is one of
// BackupService's.
func Serves(method string) bool { return serves[method] }

// serves holds the full names of the BackupService methods.
var serves = func() map[string]bool {
	m := map[string]bool{}
	for _, md := range backupv1.BackupService_ServiceDesc.Methods {
		m[servicePrefix+md.MethodName] = true
	}
	return m
}()

// Unary runs a call through the interceptor, as grpc-go's generated
// handlers do: authorized, its panic recovered, its error mapped, logged
// and counted.
func (i *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	origin := i.originOf(ctx)
	if origin != nil {
		// A REST request is timed from its arrival, its body's reading
		// included, as are those refused before they reach here.
		start = origin.Start
	}
	awsbase.GrowStack()
	if i.metrics != nil && InService(info.FullMethod) {
		i.metrics.InFlight(1)
		defer i.metrics.InFlight(-1)
	}
	ctx, fields := reqlog.New(ctx, info.FullMethod)
	principal, resp, err := i.run(ctx, req, info, handler)
	if i.quiet != nil && i.quiet(info.FullMethod) {
		return resp, err
	}
	account, region := fields.Account, fields.Region
	if account == "" && !unauthenticated(err) {
		// An unknown caller's line names no account, over REST as over
		// gRPC, where tap refuses the call before its message is read.
		account, region = target(req)
	}
	done := Finished{Method: info.FullMethod, Account: account, Region: region, Principal: principal,
		Start: start, Err: err, req: req, resp: resp}
	if st := i.Record(ctx, done); st != nil {
		if origin == nil {
			i.pushBack(ctx, info.FullMethod, st, err)
		}
		return nil, st.Err()
	}
	return resp, nil
}

// pushBackTrailer is gRPC's server pushback (gRFC A6): how long a
// client's own retry (a service config's retryPolicy) waits before its
// next attempt, in milliseconds, or, negative, that it makes none.
const pushBackTrailer = "grpc-retry-pushback-ms"

// pushBackSlack is how much later than the pushback's delay after this
// answer a client's next attempt is taken to reach the rate limiter: the
// trailer's way back, the client's timer, the new attempt's way in and
// its handling up to the limiter (its request_id's check among it). Without
// it, a delay that leaves the next attempt just its send lead is allowed,
// and the attempt, a millisecond later, is refused DEADLINE_EXCEEDED,
// unsent, without RetryInfo.
const pushBackSlack = 10 * time.Millisecond

// pushBack sets the pushback trailer of a gRPC call's error, when
// rpcerror gives the error one. A delay after which the next attempt
// could not be sent in time is -1: the client's retry would wait for it
// and end at the deadline with its own DEADLINE_EXCEEDED, or, for a
// CreateBackup or restore, be refused DEADLINE_EXCEEDED on arrival (it
// must reach the rate limiter its send lead before the deadline
// keepTimeToAnswer gives the handler), neither of which says why nor when
// to come back, where without a retry the client has this error and its
// RetryInfo at once.
func (i *Interceptor) pushBack(ctx context.Context, method string, st *status.Status, err error) {
	ms, ok := rpcerror.PushBack(st, err)
	if !ok {
		return
	}
	if deadline, has := ctx.Deadline(); has && ms > 0 {
		// when the next attempt arrives, at the earliest: the trailer's
		// way back, the client's timer and the attempt's way to the rate
		// limiter take time too (pushBackSlack)
		left := deadline.Sub(time.Now().Add(time.Duration(ms)*time.Millisecond + pushBackSlack))
		if left <= 0 || left-answerTime(left) < i.sendLeads[strings.TrimPrefix(method, servicePrefix)] {
			ms = -1
		}
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs(pushBackTrailer, strconv.FormatInt(ms, 10)))
}

// Finished is a call as Record learns of it.
type Finished struct {
	Method, Account, Region, Principal string
	Start                              time.Time
	Err                                error
	// req and resp, when not nil, give the log line the request's
	// request_id and the backup it made or named, which is what a
	// caller's support ticket asks about. Only Unary has them: a call a
	// transport records itself never reached its handler.
	req, resp any
}

// Record maps the call's error to the status the caller gets, writes the
// request's log line and counts it. It returns nil when the call did not
// fail. Unary records each call it runs; a transport records itself a
// call it answers before it reaches Unary.
func (i *Interceptor) Record(ctx context.Context, c Finished) *status.Status {
	l := Line{Method: c.Method, Account: AccountOrNone(c.Account), Region: RegionOrNone(c.Region),
		Principal: c.Principal, Code: codes.OK, Level: slog.LevelInfo}
	if !unauthenticated(c.Err) {
		// An unknown caller's line repeats nothing of its message, as it
		// names no account: over gRPC, tap may refuse it before its
		// message is read, and a backup ARN names an account.
		l.requestID, l.backupARN = requestIDOf(c.req), backupARNOf(c.req, c.resp)
	}
	var st *status.Status
	if c.Err != nil {
		st = l.Fail(ctx, c.Err)
		if l.Code == codes.Canceled && i.cutOff != nil && i.cutOff.Err() != nil && ctx.Err() != nil {
			// What the caller got as its connection closed.
			l.Code, l.Reason, l.Level, l.Err = codes.Unavailable, rpcerror.ReasonShuttingDown, slog.LevelWarn, errCutOffAtShutdown
		}
	}
	i.Write(ctx, l, c.Start)
	return st
}

// errCutOffAtShutdown is what a call cut off by the shutdown's timeout is
// logged with.
var errCutOffAtShutdown = errors.New("cut off by shutdown_timeout: backupd closed the connection before the call ended " +
	"(a gRPC caller got UNAVAILABLE, a REST caller no answer); if the call had reached DynamoDB, whether it acted is not known")

// Fail maps err to the status the caller gets, and sets the line's code,
// level and error from it.
func (l *Line) Fail(ctx context.Context, err error) *status.Status {
	st, internal := rpcerror.Status(err, rpcerror.Request{AccountID: l.Account})
	l.Code, l.Reason = st.Code(), rpcerror.ReasonOf(st)
	if l.Code == codes.Canceled && DeadlineDue(ctx) {
		// A gRPC client cancels the stream as its deadline passes, a
		// moment before the server's own timer would: the line and the
		// metrics say what happened, and so does the error, which says
		// only that the context was canceled.
		l.Code, l.Reason = codes.DeadlineExceeded, rpcerror.ReasonDeadlineExceeded
		err = fmt.Errorf("the caller's deadline passed; its client canceled the call as it did: %w", err)
	}
	l.Level, l.Err = rpcerror.Level(l.Code, internal, err), err
	return st
}

// requestIDOf is the request's request_id, cut short, or "".
func requestIDOf(req any) string {
	if r, ok := req.(interface{ GetRequestId() string }); ok && r.GetRequestId() != "" {
		return redact.Cut(r.GetRequestId(), maxRequestIDEcho)
	}
	return ""
}

// backupARNOf is the backup the request named or the response made, or "".
func backupARNOf(req, resp any) string {
	if r, ok := req.(interface{ GetBackupArn() string }); ok && r.GetBackupArn() != "" {
		return redact.Cut(r.GetBackupArn(), maxARNEcho)
	}
	if r, ok := resp.(interface {
		GetBackupDetails() *backupv1.BackupDetails
	}); ok {
		return r.GetBackupDetails().GetBackupArn()
	}
	return ""
}

// DeadlineDue reports whether ctx's deadline has passed or is due within
// a few milliseconds: a call canceled then ended at its deadline, its
// client, or grpc-go's own timer, canceling it as the deadline passed, a
// moment before the context's timer would.
func DeadlineDue(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < 50*time.Millisecond
}

// maxRequestIDEcho bounds the request_id a log line repeats: a valid one
// is at most 128 characters, an invalid one is cut there.
const maxRequestIDEcho = 128

// maxARNEcho bounds the backup ARN a log line repeats from a request: a
// valid one is well under it.
const maxARNEcho = 512

// MaxMethodEcho bounds how much of an unknown method's name (or a REST
// request's method and path) a log line or an error repeats, over either
// transport: a caller chooses it, up to the headers' 64 KiB.
const MaxMethodEcho = 128

// Line is what a request's log line says. A transport writes one itself
// (Write) for a request that names no call the interceptor runs: a gRPC
// call of a method backupd does not serve, a REST request that matched
// no route, a call ended before its request arrived.
type Line struct {
	Method, Account, Region, Principal string
	Code                               codes.Code
	// Reason is the ErrorInfo reason the caller got; "" for none.
	Reason string
	Level  slog.Level
	Err    error // logged at level warn and above
	// Route names a REST request that matched no route; such requests, and
	// calls of methods backupd does not serve (Unknown), are counted
	// under the method "unknown", so callers cannot add label values.
	Route   string
	Unknown bool
	// Ended is when the call ended, when that was before its line is
	// written (a call whose deadline passed before its request arrived,
	// logged by the sweep or as grpc-go gave up reading it); zero for
	// now. The duration runs to it.
	Ended time.Time
	// requestID is the request's request_id; backupARN the backup it made
	// or named. Empty when it has none.
	requestID, backupARN string
}

// Write writes a request's log line and counts it; with tracing on, the
// request's span gets what the line says too (annotate). The line names
// the caller that ctx's call came from (caller).
func (i *Interceptor) Write(ctx context.Context, l Line, start time.Time) {
	now := time.Now()
	end := now
	if !l.Ended.IsZero() && l.Ended.Before(now) {
		// Never before its start: a call can arrive with its deadline
		// already passed (grpc-timeout: 1n), which is then earlier
		// than the start the tap took.
		end = l.Ended
		if end.Before(start) {
			end = start
		}
	}
	d := end.Sub(start)
	origin := i.originOf(ctx)
	var buf [15]slog.Attr
	attrs := append(buf[:0], slog.String("method", l.Method))
	if l.Route != "" {
		attrs = append(attrs, slog.String("route", l.Route))
	}
	attrs = append(attrs,
		slog.String("caller", caller(ctx, origin)),
		slog.String("account", l.Account),
		slog.String("region", l.Region),
		slog.String("code", l.Code.String()),
		slog.Duration("duration", d))
	if l.Reason != "" {
		attrs = append(attrs, slog.String("reason", l.Reason))
	}
	if l.Principal != "" {
		attrs = append(attrs, slog.String("principal", l.Principal))
	}
	if l.requestID != "" {
		attrs = append(attrs, slog.String("request_id", l.requestID))
	}
	if l.backupARN != "" {
		attrs = append(attrs, slog.String("backup_arn", l.backupARN))
	}
	if origin != nil && origin.ForwardedFor != "" {
		// Behind a proxy the connection's peer is the proxy; the client
		// is in here, as the proxy (or the client itself) wrote it.
		attrs = append(attrs, slog.String("forwarded_for", redact.Cut(origin.ForwardedFor, maxForwardedEcho)))
	}
	if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) == 1 && v[0] != "" && callers.PrintableASCII(v[0]) {
		// The caller's id for correlation (X-Request-Id over REST), left
		// out when it is not printable ASCII, as over REST (package
		// rest's metadataSafe): a line must not carry characters that
		// disguise it on a terminal.
		attrs = append(attrs, slog.String("x_request_id", redact.Cut(v[0], maxRequestIDEcho)))
	}
	span := trace.SpanFromContext(ctx) // with tracing off, a no-op span
	if sc := span.SpanContext(); sc.IsValid() {
		// The trace the request's span is in (with tracing on), to go
		// from the line to the trace and back.
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if l.Level >= slog.LevelWarn && l.Err != nil {
		attrs = append(attrs, slog.String("error", redact.Error(l.Err)))
	}
	annotate(span, l)
	logLine(ctx, i.log, now, l.Level, attrs)
	if i.metrics != nil {
		label := l.Method
		if l.Unknown {
			label = "unknown"
		}
		i.metrics.ObserveRequest(label, l.Code, l.Reason, d)
	}
}

// logLine writes the request's line, as Logger.LogAttrs would but
// without a source position: Logger.LogAttrs walks the stack
// (runtime.Callers) for one with every line, about 3 µs of a request's
// CPU in a profile, which no handler of backupd's writes.
func logLine(ctx context.Context, log *slog.Logger, now time.Time, level slog.Level, attrs []slog.Attr) {
	if !log.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(now, level, "request", 0)
	r.AddAttrs(attrs...)
	_ = log.Handler().Handle(ctx, r)
}

// annotate gives the request's span, when one is recorded, what its log
// line says of the request. (The REST gateway names its request's span
// by the route.)
func annotate(span trace.Span, l Line) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("backupd.account", l.Account), attribute.String("backupd.region", l.Region),
		attribute.String("backupd.code", l.Code.String()))
	for _, a := range []struct{ key, value string }{
		{"backupd.principal", l.Principal}, {"backupd.request_id", l.requestID}, {"backupd.backup_arn", l.backupARN},
	} {
		if a.value != "" {
			span.SetAttributes(attribute.String(a.key, a.value))
		}
	}
}

// deniedAccount reports whether err refuses the caller the account a
// request names, not the operation in every account.
func deniedAccount(err error) bool {
	d, ok := errors.AsType[*callers.DeniedError](err)
	return ok && !d.AnyAccount
}

// run authorizes the call and runs its handler, turning a panic of either
// into service.ErrPanic after logging it with its stack.
func (i *Interceptor) run(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (
	principal string, resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, service.Recovered(ctx, i.log, p, slog.String("method", info.FullMethod))
		}
	}()
	var undecodable error
	if i.undecodable != nil {
		undecodable = i.undecodable(req)
	}
	principal, err = i.authorize(ctx, info.FullMethod, req)
	if undecodable != nil && (err == nil || deniedAccount(err)) {
		// An undecodable request names no account; a known caller is
		// told what is wrong with it rather than refused that account.
		// One refused the operation in every account is refused, as
		// over REST.
		return principal, nil, undecodable
	}
	if err != nil {
		return principal, nil, err
	}
	hctx, cancel := keepTimeToAnswer(ctx)
	defer cancel()
	resp, err = handler(hctx, req)
	return principal, resp, err
}

// unauthenticated reports whether err refuses an unknown caller: one
// with a challenge for its 401.
func unauthenticated(err error) bool {
	_, ok := callers.ChallengeOf(err)
	return ok
}

// maxAnswerTime bounds the time keepTimeToAnswer keeps back.
const maxAnswerTime = 100 * time.Millisecond

// answerTime is what keepTimeToAnswer keeps back of left, the time to a
// call's deadline.
func answerTime(left time.Duration) time.Duration { return min(left/10, maxAnswerTime) }

// keepTimeToAnswer ends the handler's work a little before the caller's
// deadline: a tenth of the time left, at most maxAnswerTime. A gRPC client
// ends the call itself at its deadline, so an answer sent at that moment
// is never read, and with it what the answer says (whether a CreateBackup
// was sent, that a request_id run goes on). Work detached from the
// caller (a request_id run) keeps its own deadline.
func keepTimeToAnswer(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	keep := answerTime(time.Until(dl))
	if keep <= 0 {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl.Add(-keep))
}

// target names the account and region a request asked for, for the log when
// the handler did not get as far as resolving them: from account_id/region,
// or from the backup ARN.
func target(req any) (account, region string) {
	if r, ok := req.(interface {
		GetAccountId() string
		GetRegion() string
	}); ok {
		return r.GetAccountId(), r.GetRegion()
	}
	if r, ok := req.(interface{ GetBackupArn() string }); ok {
		return service.ARNTarget(r.GetBackupArn())
	}
	return "", ""
}

// caller identifies who sent the request: the gRPC peer's address, or for
// a call from in process (a REST request, which has no gRPC peer), what
// its origin names. Not the X-Forwarded-For the gateway passes on, whose
// first address is whatever the client wrote.
func caller(ctx context.Context, origin *Origin) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	if origin != nil {
		return origin.Caller
	}
	return ""
}

// maxForwardedEcho bounds the X-Forwarded-For a log line repeats: a chain
// of a few proxies' addresses fits.
const maxForwardedEcho = 256

// AccountOrNone is a, an account id for a log line or an error's
// metadata, when it is one (awsname.ValidAccountID); otherwise it is left
// out, since a request that names no valid account may name anything.
func AccountOrNone(a string) string {
	if !awsname.ValidAccountID(a) {
		return ""
	}
	return a
}

// RegionOrNone is r, a region for a log line, when it is one
// (awsname.ValidRegion, which bounds its length); otherwise it is left out.
func RegionOrNone(r string) string {
	if !awsname.ValidRegion(r) {
		return ""
	}
	return r
}
