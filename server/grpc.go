// Package server builds backupd's gRPC server, with the interceptors every
// request passes, and the HTTP handler that serves the same API as REST
// through grpc-gateway, plus health.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/reqlog"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/service"
)

// Options configures the gRPC server and the REST handler alike, so both
// serve the same service through the same interceptor.
type Options struct {
	Service backupv1.BackupServiceServer
	Logger  *slog.Logger
	// Metrics is told of every answered request; nil means none.
	Metrics RequestObserver
	// Authorizer decides who may make each BackupService call; nil lets
	// everyone make every call.
	Authorizer Authorizer
	// TLS, when set, serves gRPC over TLS (see LoadTLS).
	TLS *tls.Config
}

// Authorizer names a request's caller and checks that it may call
// operation in account (package callers). Authenticate checks only the
// caller, so that a REST request from an unknown one is refused from its
// headers, before its body is read.
type Authorizer interface {
	Authorize(ctx context.Context, operation, account string) (caller string, err error)
	Authenticate(ctx context.Context) error
}

// RequestObserver counts answered requests (package metrics).
type RequestObserver interface {
	ObserveRequest(method string, code codes.Code, d time.Duration)
}

// maxRequestBytes bounds a gRPC request, far above any valid one:
// deferringCodec refuses a larger one through the interceptor.
// maxRecvMsgSize, grpc-go's own limit, is its default of 4 MiB: a message
// over it is refused by grpc-go alone, RESOURCE_EXHAUSTED and unlogged.
const (
	maxRequestBytes = 1 << 20
	maxRecvMsgSize  = 4 << 20
)

// maxStreams bounds the calls in flight on one gRPC connection (a client
// past it waits for a stream to end): far above Go's net/http HTTP/2
// default of 250, as a caller's calls may each wait up to max_wait for
// their account's turn, yet with a call's metadata bounded as the HTTP
// listener's headers (maxHeaderBytes; grpc-go's default of 16 MiB let a
// caller without a token make the server hold that much per call) it caps
// what one connection holds at 64 MiB.
const maxStreams = 1000

// NewGRPC returns a gRPC server with BackupService, grpc.health.v1 and
// reflection registered. Every unary call passes through one interceptor
// that recovers panics, maps errors to status and writes the request's log
// line, so gRPC and REST callers are treated the same.
func NewGRPC(opts Options, h *Health) *grpc.Server {
	ic := newInterceptor(opts)
	ic.codec = newDeferringCodec()
	sopts := []grpc.ServerOption{
		grpc.UnaryInterceptor(ic.unary),
		grpc.ForceServerCodecV2(ic.codec),
		grpc.UnknownServiceHandler(ic.unknown),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxHeaderListSize(maxHeaderBytes),
		grpc.MaxConcurrentStreams(maxStreams),
		// Static flow-control windows as large as the largest request
		// taken turn off grpc-go's bandwidth-delay estimation, whose PING
		// goes out on its own write with each request that arrives on a
		// quiet connection, and whose ACK the server then reads: one write
		// and about two reads more per call (BENCHMARKS.md). backupd's
		// messages are small, so the window it would grow to is never
		// needed, and 1 MiB per connection bounds what a client can send
		// ahead of backupd reading it.
		grpc.StaticStreamWindowSize(maxRequestBytes),
		grpc.StaticConnWindowSize(maxRequestBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s := grpc.NewServer(sopts...)
	backupv1.RegisterBackupServiceServer(s, opts.Service)
	h.register(s)
	reflection.Register(s)
	return s
}

// inProcess returns svc behind ic, the same interceptor as NewGRPC's
// server's, for the REST gateway to call directly: a REST request is
// recovered, mapped and logged exactly like a gRPC one, without being
// encoded again and sent through an in-memory HTTP/2 connection.
func inProcess(svc backupv1.BackupServiceServer, ic *interceptor) backupv1.BackupServiceServer {
	return &intercepted{svc: svc, ic: ic.unary}
}

type intercepted struct {
	backupv1.UnimplementedBackupServiceServer
	svc backupv1.BackupServiceServer
	ic  grpc.UnaryServerInterceptor
}

func (s *intercepted) CreateBackup(ctx context.Context, req *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_CreateBackup_FullMethodName, req, s.svc.CreateBackup)
}

func (s *intercepted) GetBackup(ctx context.Context, req *backupv1.GetBackupRequest) (*backupv1.GetBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_GetBackup_FullMethodName, req, s.svc.GetBackup)
}

func (s *intercepted) ListBackups(ctx context.Context, req *backupv1.ListBackupsRequest) (*backupv1.ListBackupsResponse, error) {
	return call(ctx, s, backupv1.BackupService_ListBackups_FullMethodName, req, s.svc.ListBackups)
}

func (s *intercepted) DeleteBackup(ctx context.Context, req *backupv1.DeleteBackupRequest) (*backupv1.DeleteBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_DeleteBackup_FullMethodName, req, s.svc.DeleteBackup)
}

func (s *intercepted) RestoreTableFromBackup(ctx context.Context, req *backupv1.RestoreTableFromBackupRequest) (*backupv1.RestoreTableFromBackupResponse, error) {
	return call(ctx, s, backupv1.BackupService_RestoreTableFromBackup_FullMethodName, req, s.svc.RestoreTableFromBackup)
}

// call runs method through the interceptor, as grpc-go's generated
// handlers do.
func call[Req, Resp any](ctx context.Context, s *intercepted, method string, req *Req,
	handle func(context.Context, *Req) (*Resp, error)) (*Resp, error) {
	markIntercepted(ctx)
	info := &grpc.UnaryServerInfo{Server: s.svc, FullMethod: method}
	resp, err := s.ic(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		if err := restRefusal(ctx, method); err != nil {
			return nil, err
		}
		return handle(ctx, req.(*Req))
	})
	if err != nil {
		return nil, err
	}
	return resp.(*Resp), nil
}

type interceptor struct {
	log     *slog.Logger
	metrics RequestObserver
	authz   Authorizer
	// codec holds the gRPC requests that could not be decoded; nil for
	// REST, which the gateway decodes.
	codec *deferringCodec
}

func newInterceptor(opts Options) *interceptor {
	return &interceptor{log: opts.Logger, metrics: opts.Metrics, authz: opts.Authorizer}
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
	return i.authz.Authenticate(metadata.NewIncomingContext(r.Context(), md))
}

func (i *interceptor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	service.GrowStack()
	ctx, fields := reqlog.New(ctx)
	principal, resp, err := i.run(ctx, req, info, handler)
	if info.FullMethod == healthpb.Health_Check_FullMethodName {
		return resp, err
	}
	account, region := fields.Account, fields.Region
	if account == "" {
		account, region = target(req)
	}
	if st := i.record(ctx, info.FullMethod, account, region, principal, start, err, req, resp); st != nil {
		return nil, st.Err()
	}
	return resp, nil
}

// record maps err to the status the caller gets, writes the request's log
// line and counts it. It returns nil when err is nil. req and resp, when
// not nil, give the line the request's request_id and the backup it made
// or named, which is what a caller's support ticket asks about.
func (i *interceptor) record(ctx context.Context, method, account, region, principal string, start time.Time, err error, req, resp any) *status.Status {
	account, region = accountOrNone(account), regionOrNone(region)
	code, level := codes.OK, slog.LevelInfo
	var st *status.Status
	if err != nil {
		var internal bool
		st, internal = rpcerror.Status(err, rpcerror.Request{AccountID: account})
		code = st.Code()
		if code == codes.Canceled && deadlineDue(ctx) {
			// A gRPC client cancels the stream as its deadline passes,
			// a moment before the server's own timer would: the line
			// and the metrics say what happened, and so does the
			// error, which says only that the context was canceled.
			code = codes.DeadlineExceeded
			err = fmt.Errorf("the caller's deadline passed; its client canceled the call as it did: %w", err)
		}
		level = levelOf(code, internal, err)
	}
	l := requestLine{method: method, caller: caller(ctx), account: account, region: region,
		principal: principal, code: code, level: level, err: err}
	if r, ok := req.(interface{ GetRequestId() string }); ok && r.GetRequestId() != "" {
		l.requestID = echo(r.GetRequestId(), maxRequestIDEcho)
	}
	if r, ok := req.(interface{ GetBackupArn() string }); ok && r.GetBackupArn() != "" {
		l.backupARN = echo(r.GetBackupArn(), maxARNEcho)
	} else if r, ok := resp.(interface {
		GetBackupDetails() *backupv1.BackupDetails
	}); ok && r.GetBackupDetails() != nil {
		l.backupARN = r.GetBackupDetails().GetBackupArn()
	}
	i.write(ctx, l, start)
	return st
}

// levelOf is the level of a failed request's log line: ERROR for what
// operators must look at (a bug, AWS or Redis unreachable, AWS refusing
// backupd's role), WARN for AWS
// throttling backupd after its retries and for deadlines that passed
// (slowness upstream), INFO for the caller's own mistakes and for
// backupd's own limit doing its job. For the codes that both give, err
// tells backupd's own refusal (rpcerror.Refusal) from AWS's answer; it is
// asked only then. The error's detail is logged from WARN up.
func levelOf(code codes.Code, internal bool, err error) slog.Level {
	switch {
	case internal || code == codes.Unavailable:
		return slog.LevelError
	case code == codes.DeadlineExceeded:
		return slog.LevelWarn
	case code == codes.PermissionDenied && !rpcerror.Refusal(err):
		return slog.LevelError
	case code == codes.ResourceExhausted && !rpcerror.Refusal(err):
		return slog.LevelWarn
	}
	return slog.LevelInfo
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
	level                                      slog.Level
	err                                        error // logged at level error
	// route names a REST request that matched no route; such requests, and
	// calls of methods backupd does not serve, are counted under the
	// method "unknown", so callers cannot add label values.
	route   string
	unknown bool
	// requestID is the request's request_id; backupARN the backup it made
	// or named. Empty when it has none.
	requestID, backupARN string
}

// write writes a request's log line and counts it.
func (i *interceptor) write(ctx context.Context, l requestLine, start time.Time) {
	d := time.Since(start)
	var buf [13]slog.Attr
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
	if l.principal != "" {
		attrs = append(attrs, slog.String("principal", l.principal))
	}
	if l.requestID != "" {
		attrs = append(attrs, slog.String("request_id", l.requestID))
	}
	if l.backupARN != "" {
		attrs = append(attrs, slog.String("backup_arn", l.backupARN))
	}
	if call, ok := ctx.Value(restCallKey{}).(*restCall); ok && call.forwardedFor != "" {
		// Behind a proxy the connection's peer is the proxy; the client
		// is in here, as the proxy (or the client itself) wrote it.
		attrs = append(attrs, slog.String("forwarded_for", echo(call.forwardedFor, maxForwardedEcho)))
	}
	if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) == 1 && v[0] != "" {
		// The caller's id for correlation (X-Request-Id over REST).
		attrs = append(attrs, slog.String("x_request_id", echo(v[0], maxRequestIDEcho)))
	}
	if l.level >= slog.LevelWarn && l.err != nil {
		attrs = append(attrs, slog.String("error", rpcerror.LogText(l.err)))
	}
	i.log.LogAttrs(ctx, l.level, "request", attrs...)
	if i.metrics != nil {
		label := l.method
		if l.unknown {
			label = "unknown"
		}
		i.metrics.ObserveRequest(label, l.code, d)
	}
}

// maxMethodEcho bounds how much of an unknown method's name a log line
// or an error repeats.
const maxMethodEcho = 128

// unknown answers a call to a method backupd does not serve, UNIMPLEMENTED
// as grpc-go would, but logged and counted like every other call: under
// the method "unknown" in the metrics, so callers cannot add label values.
func (i *interceptor) unknown(_ any, stream grpc.ServerStream) error {
	start := time.Now()
	method, _ := grpc.MethodFromServerStream(stream)
	method = echo(method, maxMethodEcho)
	st, _ := status.Newf(codes.Unimplemented, "backupd serves no method %s; see backup.v1.BackupService", method).
		WithDetails(errorInfo("UNKNOWN_METHOD", ""))
	i.write(stream.Context(), requestLine{method: method, caller: caller(stream.Context()),
		code: codes.Unimplemented, unknown: true}, start)
	return st.Err()
}

// denied reports whether err refuses a known caller (PERMISSION_DENIED),
// rather than one backupd does not know.
func denied(err error) bool {
	st, _ := rpcerror.Status(err, rpcerror.Request{})
	return st.Code() == codes.PermissionDenied
}

// errPanic stands for a handler's panic once it is recovered and logged:
// like any unexpected error, it is mapped to INTERNAL, logged on the
// request's line and counted.
var errPanic = errors.New("panic in handler; the stack is in the log line before")

// run authorizes the call and runs its handler, turning a panic of either
// into errPanic after logging it with its stack.
func (i *interceptor) run(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (
	principal string, resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			i.log.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.String("method", info.FullMethod),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			resp, err = nil, errPanic
		}
	}()
	undecodable := i.codec.take(req)
	principal, err = i.authorize(ctx, info.FullMethod, req)
	keepChallenge(ctx, err)
	if undecodable != nil && (err == nil || denied(err)) {
		// An undecodable request names no account; a known caller is
		// told what is wrong with it rather than refused that account.
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
		parts := strings.SplitN(r.GetBackupArn(), ":", 6)
		if len(parts) == 6 {
			return parts[4], parts[3]
		}
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
	if call, ok := ctx.Value(restCallKey{}).(*restCall); ok {
		return "rest:" + call.remote
	}
	return ""
}

// maxForwardedEcho bounds the X-Forwarded-For a log line repeats: a chain
// of a few proxies' addresses fits.
const maxForwardedEcho = 256

// Health tracks readiness for grpc.health.v1 and /readyz together.
type Health struct {
	grpc *health.Server
	// stopped ends when the servers stop taking work (EndWatches).
	stopped context.Context
	stop    context.CancelFunc
	// watches holds a token for each Watch stream open (maxWatches).
	watches chan struct{}
}

// Health calls need no caller token, so what one may hold is bounded: the
// service name it names (backupd serves two short ones), and the Watch
// streams open at once, each a goroutine held for as long as its client
// keeps it.
const (
	maxHealthServiceName = 256
	maxWatches           = 1024
)

// NewHealth starts NOT_SERVING until SetReady(true).
func NewHealth() *Health {
	h := &Health{grpc: health.NewServer(), watches: make(chan struct{}, maxWatches)}
	h.stopped, h.stop = context.WithCancel(context.Background())
	h.SetReady(false)
	return h
}

// EndWatches ends every grpc.health.v1 Watch stream, and refuses new ones:
// a Watch lasts as long as its client keeps it (gRPC client-side health
// checking keeps one on each connection), and the graceful stop that
// follows would otherwise wait for it until the shutdown timeout.
func (h *Health) EndWatches() { h.stop() }

// register serves grpc.health.v1 on s.
func (h *Health) register(s *grpc.Server) {
	healthpb.RegisterHealthServer(s, healthService{h.grpc, h})
}

// healthService is grpc-go's health service with Watch streams that end
// when the servers stop taking work (Health.EndWatches).
type healthService struct {
	*health.Server
	h *Health
}

// Check is grpc-go's, for a service name of a bounded length.
func (s healthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := checkHealthServiceName(req.GetService()); err != nil {
		return nil, err
	}
	return s.Server.Check(ctx, req)
}

func checkHealthServiceName(name string) error {
	if len(name) > maxHealthServiceName {
		return status.Errorf(codes.InvalidArgument, "service must be at most %d bytes; got %d", maxHealthServiceName, len(name))
	}
	return nil
}

func (s healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if err := checkHealthServiceName(req.GetService()); err != nil {
		return err
	}
	select {
	case s.h.watches <- struct{}{}:
		defer func() { <-s.h.watches }()
	default:
		return status.Errorf(codes.ResourceExhausted, "%d health watches are open already; poll Check instead", cap(s.h.watches))
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.h.stopped, cancel)()
	err := s.Server.Watch(req, watchStream{stream, ctx})
	if s.h.stopped.Err() != nil {
		// grpc-go's Watch may have ended before it sent the NOT_SERVING
		// that the shutdown set a moment earlier (with no drain delay):
		// the watcher hears it here, then the end.
		_ = stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
		return status.Error(codes.Unavailable, "backupd is shutting down; watch another replica")
	}
	return err
}

// watchStream is a Watch stream whose context ends at shutdown too.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }

// SetReady flips every service's health status.
func (h *Health) SetReady(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.grpc.SetServingStatus("", st)
	h.grpc.SetServingStatus(backupv1.BackupService_ServiceDesc.ServiceName, st)
}

// Ready reports the overall status.
func (h *Health) Ready(ctx context.Context) bool {
	resp, err := h.grpc.Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
