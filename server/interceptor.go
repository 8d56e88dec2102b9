package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/reqlog"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// interceptor is what every BackupService call passes through, over gRPC
// and REST alike: it authorizes the call, recovers a panic, maps the
// error to the caller's status, writes the request's one log line and
// counts it.
type interceptor struct {
	log     *slog.Logger
	metrics RequestObserver
	authz   Authorizer
	// codec holds the gRPC requests that could not be decoded; nil for
	// REST, which the gateway decodes.
	codec *deferringCodec
	// arrival bounds the wait for the request of a call that takes no
	// caller token (see tap).
	arrival time.Duration
	// unvouched holds a token for each such call whose request has yet to
	// arrive (boundArrival).
	unvouched chan struct{}
	// reflecting counts the open reflection streams.
	reflecting *streamSlots
	// reflectionIdle ends a reflection stream that sends no request for
	// that long.
	reflectionIdle time.Duration
	// stopping ends when the gRPC server stops taking work, and with it
	// every reflection stream (Health.EndStreams); nil for REST.
	stopping context.Context
	// calls counts the calls in unary (Health.calls); nil for REST,
	// whose requests the gateway counts.
	calls *atomic.Int64
	// awaiting holds the BackupService calls whose request has yet to
	// arrive, for the drain; nil for REST.
	awaiting *awaiting
	// cutOff ends when the shutdown's timeout cuts in-flight calls off
	// (Health.CutOff); nil for none.
	cutOff context.Context
	// refusals, with tracing on, makes the spans of the gRPC calls the
	// tap refuses, which grpc-go gives to no stats handler; nil without.
	refusals stats.Handler
	// violations names what a request's RPC refuses in its fields, for
	// REST requests read only in part (Options.Violations). It is asked
	// only once the caller may act in the request's account, as what it
	// says of an account's regions is for those callers alone.
	violations fieldRules
}

// fieldRules names what a request's RPC refuses in its fields: one
// field violation per bad field. unread are the violations of the fields
// the gateway could not read, which req holds empty: they are not
// returned, nor is what depends on them judged (a table ARN by a region);
// but the fields' own rules may still name them (a backup_name sent as a
// number reads as missing), so the caller drops those (beside).
type fieldRules func(req proto.Message, unread ...badrequest.Violation) []badrequest.Violation

// fieldsOnly is the field rules of a server that is given none: the
// fields' own, which know no account.
func fieldsOnly(req proto.Message, _ ...badrequest.Violation) []badrequest.Violation {
	return service.Violations(req)
}

func newInterceptor(opts Options) *interceptor {
	violations := fieldRules(opts.Violations)
	if violations == nil {
		violations = fieldsOnly
	}
	return &interceptor{log: opts.Logger, metrics: opts.Metrics, authz: opts.Authorizer, violations: violations,
		arrival: cmp.Or(opts.requestArrival, requestArrivalTimeout), unvouched: make(chan struct{}, maxUnvouched),
		reflecting:     newStreamSlots(maxReflections, "reflection streams", "close one or try again later", rpcerror.ReasonTooManyStreams),
		reflectionIdle: cmp.Or(opts.reflectionIdle, reflectionIdle)}
}

var servicePrefix = "/" + backupv1.BackupService_ServiceDesc.ServiceName + "/"

// authorize checks a BackupService call before it runs: who calls, and
// whether they may call this operation in the account the request names
// (by account_id, or by the backup ARN's account).
func (i *interceptor) authorize(ctx context.Context, method string, req any) (string, error) {
	account, _ := target(req)
	return i.authorizeIn(ctx, method, account)
}

// authorizeIn is authorize for a request known only by its account.
func (i *interceptor) authorizeIn(ctx context.Context, method, account string) (string, error) {
	op, ok := strings.CutPrefix(method, servicePrefix)
	if !ok || i.authz == nil {
		return "", nil
	}
	return i.authz.Authorize(ctx, op, account)
}

// authenticate checks a REST request's caller from its Authorization
// headers alone, as authorize would from the metadata the gateway makes
// of them.
func (i *interceptor) authenticate(r *http.Request) error {
	if i.authz == nil {
		return nil
	}
	md := metadata.MD{"authorization": r.Header.Values("Authorization")}
	_, err := i.authz.Authenticate(metadata.NewIncomingContext(r.Context(), md))
	return err
}

func (i *interceptor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	if call := restCallOf(ctx); call != nil {
		// A REST request is timed from its arrival, its body's reading
		// included, as are those refused before they reach here.
		start = call.start
	}
	awsbase.GrowStack()
	if i.calls != nil {
		i.calls.Add(1)
		defer i.calls.Add(-1)
	}
	if err := i.requestArrived(ctx); err != nil {
		return nil, err
	}
	if i.metrics != nil && strings.HasPrefix(info.FullMethod, servicePrefix) {
		i.metrics.InFlight(1)
		defer i.metrics.InFlight(-1)
	}
	ctx, fields := reqlog.New(ctx, info.FullMethod)
	principal, resp, err := i.run(ctx, req, info, handler)
	if info.FullMethod == healthpb.Health_Check_FullMethodName {
		return resp, err
	}
	account, region := fields.Account, fields.Region
	if account == "" && !unauthenticated(err) {
		// An unknown caller's line names no account, over REST as over
		// gRPC, where tap refuses the call before its message is read.
		account, region = target(req)
	}
	done := finished{method: info.FullMethod, account: account, region: region, principal: principal,
		start: start, err: err, req: req, resp: resp}
	if st := i.record(ctx, done); st != nil {
		if restCallOf(ctx) == nil {
			pushBack(ctx, st, err)
		}
		return nil, st.Err()
	}
	return resp, nil
}

// pushBackTrailer is gRPC's server pushback (gRFC A6): how long a
// client's own retry (a service config's retryPolicy) waits before its
// next attempt, in milliseconds, or, negative, that it makes none.
const pushBackTrailer = "grpc-retry-pushback-ms"

// pushBack sets the pushback trailer of a gRPC call's error, when
// rpcerror gives the error one.
func pushBack(ctx context.Context, st *status.Status, err error) {
	if ms, ok := rpcerror.PushBack(st, err); ok {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(pushBackTrailer, strconv.FormatInt(ms, 10)))
	}
}

// finished is a call as record learns of it.
type finished struct {
	method, account, region, principal string
	start                              time.Time
	err                                error
	// req and resp, when not nil, give the log line the request's
	// request_id and the backup it made or named, which is what a
	// caller's support ticket asks about.
	req, resp any
}

// record maps the call's error to the status the caller gets, writes the
// request's log line and counts it. It returns nil when the call did not
// fail.
func (i *interceptor) record(ctx context.Context, c finished) *status.Status {
	l := requestLine{method: c.method, caller: caller(ctx), account: accountOrNone(c.account), region: regionOrNone(c.region),
		principal: c.principal, code: codes.OK, level: slog.LevelInfo}
	if !unauthenticated(c.err) {
		// An unknown caller's line repeats nothing of its message, as it
		// names no account: over gRPC, tap may refuse it before its
		// message is read, and a backup ARN names an account.
		l.requestID, l.backupARN = requestIDOf(c.req), backupARNOf(c.req, c.resp)
	}
	var st *status.Status
	if c.err != nil {
		st = l.fail(ctx, c.err)
		if l.code == codes.Canceled && i.cutOff != nil && i.cutOff.Err() != nil && ctx.Err() != nil {
			// What the caller got as its connection closed.
			l.code, l.reason, l.level, l.err = codes.Unavailable, rpcerror.ReasonShuttingDown, slog.LevelWarn, errCutOffAtShutdown
		}
	}
	i.write(ctx, l, c.start)
	return st
}

// fail maps err to the status the caller gets, and sets the line's code,
// level and error from it.
func (l *requestLine) fail(ctx context.Context, err error) *status.Status {
	st, internal := rpcerror.Status(err, rpcerror.Request{AccountID: l.account})
	l.code, l.reason = st.Code(), rpcerror.ReasonOf(st)
	if l.code == codes.Canceled && deadlineDue(ctx) {
		// A gRPC client cancels the stream as its deadline passes, a
		// moment before the server's own timer would: the line and the
		// metrics say what happened, and so does the error, which says
		// only that the context was canceled.
		l.code, l.reason = codes.DeadlineExceeded, rpcerror.ReasonDeadlineExceeded
		err = fmt.Errorf("the caller's deadline passed; its client canceled the call as it did: %w", err)
	}
	l.level, l.err = rpcerror.Level(l.code, internal, err), err
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

// deadlineDue reports whether ctx's deadline has passed or is due within
// a few milliseconds.
func deadlineDue(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < 50*time.Millisecond
}

// maxRequestIDEcho bounds the request_id a log line repeats: a valid one
// is at most 128 characters, an invalid one is cut there.
const maxRequestIDEcho = 128

// maxARNEcho bounds the backup ARN a log line repeats from a request: a
// valid one is well under it.
const maxARNEcho = 512

// requestLine is what a request's log line says.
type requestLine struct {
	method, caller, account, region, principal string
	code                                       codes.Code
	// reason is the ErrorInfo reason the caller got; "" for none.
	reason string
	level  slog.Level
	err    error // logged at level error
	// route names a REST request that matched no route; such requests, and
	// calls of methods backupd does not serve, are counted under the
	// method "unknown", so callers cannot add label values.
	route   string
	unknown bool
	// requestID is the request's request_id; backupARN the backup it made
	// or named. Empty when it has none.
	requestID, backupARN string
}

// write writes a request's log line and counts it; with tracing on, the
// request's span gets what the line says too (annotate).
func (i *interceptor) write(ctx context.Context, l requestLine, start time.Time) {
	now := time.Now()
	d := now.Sub(start)
	var buf [15]slog.Attr
	attrs := append(buf[:0], slog.String("method", l.method))
	if l.route != "" {
		attrs = append(attrs, slog.String("route", l.route))
	}
	attrs = append(attrs,
		slog.String("caller", l.caller),
		slog.String("account", l.account),
		slog.String("region", l.region),
		slog.String("code", l.code.String()),
		slog.Duration("duration", d))
	if l.reason != "" {
		attrs = append(attrs, slog.String("reason", l.reason))
	}
	if l.principal != "" {
		attrs = append(attrs, slog.String("principal", l.principal))
	}
	if l.requestID != "" {
		attrs = append(attrs, slog.String("request_id", l.requestID))
	}
	if l.backupARN != "" {
		attrs = append(attrs, slog.String("backup_arn", l.backupARN))
	}
	if call := restCallOf(ctx); call != nil && call.forwardedFor != "" {
		// Behind a proxy the connection's peer is the proxy; the client
		// is in here, as the proxy (or the client itself) wrote it.
		attrs = append(attrs, slog.String("forwarded_for", redact.Cut(call.forwardedFor, maxForwardedEcho)))
	}
	if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) == 1 && v[0] != "" && !unreadable(v[0]) {
		// The caller's id for correlation (X-Request-Id over REST), left
		// out when it is not printable ASCII, as over REST (metadataSafe):
		// a line must not carry characters that disguise it on a terminal.
		attrs = append(attrs, slog.String("x_request_id", redact.Cut(v[0], maxRequestIDEcho)))
	}
	span := trace.SpanFromContext(ctx) // with tracing off, a no-op span
	if sc := span.SpanContext(); sc.IsValid() {
		// The trace the request's span is in (with tracing on), to go
		// from the line to the trace and back.
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if l.level >= slog.LevelWarn && l.err != nil {
		attrs = append(attrs, slog.String("error", redact.Error(l.err)))
	}
	annotate(ctx, span, l)
	logLine(ctx, i.log, now, l.level, attrs)
	if i.metrics != nil {
		label := l.method
		if l.unknown {
			label = "unknown"
		}
		i.metrics.ObserveRequest(label, l.code, l.reason, d)
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
// line says of the request, and names a REST request's span by its
// method and route, as HTTP servers' spans are named.
func annotate(ctx context.Context, span trace.Span, l requestLine) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("backupd.account", l.account), attribute.String("backupd.region", l.region),
		attribute.String("backupd.code", l.code.String()))
	for _, a := range []struct{ key, value string }{
		{"backupd.principal", l.principal}, {"backupd.request_id", l.requestID}, {"backupd.backup_arn", l.backupARN},
	} {
		if a.value != "" {
			span.SetAttributes(attribute.String(a.key, a.value))
		}
	}
	if restCallOf(ctx) != nil {
		// The route of the RPC the line names: also of a request the
		// gateway did not match for a path variable left empty
		// (emptyPathFields), which is answered as its route's.
		if route, ok := restRoutes[l.method]; ok {
			_, template, _ := strings.Cut(route, " ")
			span.SetName(route)
			span.SetAttributes(attribute.String("http.route", template))
		}
	}
}

// restRoutes is routeMethods the other way round: the REST route (method
// and path template) of each RPC.
var restRoutes = func() map[string]string {
	m := make(map[string]string, len(routeMethods))
	for route, rpc := range routeMethods {
		m[rpc] = route
	}
	return m
}()

// maxMethodEcho bounds how much of an unknown method's name a log line
// or an error repeats.
const maxMethodEcho = 128

// unknown answers a call to a method backupd does not serve, UNIMPLEMENTED
// as grpc-go would, but logged and counted like every other call: under
// the method "unknown" in the metrics, so callers cannot add label values.
func (i *interceptor) unknown(_ any, stream grpc.ServerStream) error {
	start := time.Now()
	if err := i.requestArrived(stream.Context()); err != nil { // none is read
		return err
	}
	method, _ := grpc.MethodFromServerStream(stream)
	method = redact.Cut(method, maxMethodEcho)
	st, _ := rpcerror.Status(&rpcerror.RequestError{Code: codes.Unimplemented, Reason: rpcerror.ReasonUnknownMethod,
		Msg: fmt.Sprintf("backupd serves no method %s; see backup.v1.BackupService", method)}, rpcerror.Request{})
	i.write(stream.Context(), requestLine{method: method, caller: caller(stream.Context()),
		code: codes.Unimplemented, reason: rpcerror.ReasonUnknownMethod, unknown: true}, start)
	return st.Err()
}

// deniedAccount reports whether err refuses the caller the account a
// request names, not the operation in every account.
func deniedAccount(err error) bool {
	d, ok := errors.AsType[*callers.DeniedError](err)
	return ok && !d.AnyAccount
}

// run authorizes the call and runs its handler, turning a panic of either
// into service.ErrPanic after logging it with its stack.
func (i *interceptor) run(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (
	principal string, resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, service.Recovered(ctx, i.log, p, slog.String("method", info.FullMethod))
		}
	}()
	undecodable := i.codec.take(req)
	principal, err = i.authorize(ctx, info.FullMethod, req)
	keepChallenge(ctx, err)
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

// maxAnswerTime bounds the time keepTimeToAnswer keeps back.
const maxAnswerTime = 100 * time.Millisecond

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
	keep := min(time.Until(dl)/10, maxAnswerTime)
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
// a REST request, which has no gRPC peer, the host of its connection's
// peer. Not the X-Forwarded-For the gateway passes on, whose first
// address is whatever the client wrote.
func caller(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	if call := restCallOf(ctx); call != nil {
		return "rest:" + call.remote
	}
	return ""
}

// maxForwardedEcho bounds the X-Forwarded-For a log line repeats: a chain
// of a few proxies' addresses fits.
const maxForwardedEcho = 256
