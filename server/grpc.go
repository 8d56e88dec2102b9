// Package server builds backupd's gRPC server, with what every call
// passes on its way in (the tap, the arrival bounds, the interceptor of
// package intercept), plus the servers' health and their shutdown. The
// REST API is package rest's, which shares the interceptor, not this
// server.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	"github.com/backupd/backupd/connlimit"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/redact"
)

// Options configures the gRPC server. Its Logger, Metrics and Authorizer
// are the REST handler's too (rest.Options), so that a caller is treated
// alike over both.
type Options struct {
	Service backupv1.BackupServiceServer
	Logger  *slog.Logger
	// Metrics is told of every answered request; nil means none.
	Metrics intercept.RequestObserver
	// Authorizer decides who may make each BackupService call; nil lets
	// everyone make every call.
	Authorizer Authorizer
	// TLS, when set, serves gRPC over TLS (see certreload.TLSConfig).
	TLS *tls.Config
	// Conns, when set, bounds the gRPC listener's open connections (the
	// HTTP listener's are bounded by listening through it).
	Conns *connlimit.Limiter
	// Tracing, when set, makes a span of every call but health checks
	// and reflection (package tracing).
	Tracing Tracing
	// SendLeads is intercept.Options.SendLeads: by RPC name, how long
	// before its deadline a call must reach the rate limiter to be sent.
	SendLeads map[string]time.Duration
	// LogCaps makes the Capper of the failed TLS handshakes' lines
	// (loggedCredentials), for their count at exit; nil: no count.
	LogCaps *logcap.Group
	testKnobs
}

// Authorizer names a call's caller and checks what it may call (package
// callers): the interceptor asks Authorize of every BackupService call,
// the tap too before grpc-go reads the call's request, for no account in
// particular, and the streams that take no token (health Watch,
// reflection) ask Authenticate, which checks and names only the caller
// ("" for none), to count them by caller.
type Authorizer interface {
	intercept.Authorizer
	Authenticate(ctx context.Context) (caller string, err error)
}

// Tracing makes the server spans of gRPC calls.
type Tracing interface {
	GRPCStatsHandler() stats.Handler
}

// testKnobs shorten the server's fixed timeouts, for tests: each, when
// not zero, stands in for its constant (requestArrival for
// requestArrivalTimeout, connectionIdle for maxConnectionIdle,
// connectionAge for maxConnectionAge, handshake for handshakeTimeout,
// reflectionIdle for reflectionIdle).
type testKnobs struct {
	requestArrival, connectionIdle, connectionAge, handshake, reflectionIdle time.Duration
}

// maxRequestBytes bounds a gRPC request, far above any valid one:
// deferringCodec refuses a larger one through the interceptor.
// maxRecvMsgSize, grpc-go's own limit, is its default of 4 MiB: a message
// over it is refused by grpc-go alone, RESOURCE_EXHAUSTED, before any
// interceptor; of a known caller, the call is logged and counted so
// (awaiting.unread).
const (
	maxRequestBytes = 1 << 20
	maxRecvMsgSize  = 4 << 20
)

// maxStreams bounds the calls in flight on one gRPC connection (a client
// past it waits for a stream to end): far above Go's net/http HTTP/2
// default of 250, as a caller's calls may each wait up to max_wait for
// their account's turn, yet with a call's metadata bounded as the HTTP
// listener's headers (intercept.MaxHeaderBytes; grpc-go's default of 16 MiB let a
// caller without a token make the server hold that much per call) it caps
// what one connection holds at 64 MiB.
const maxStreams = 1000

// maxConnectionIdle is how long a gRPC connection may go without a call.
const maxConnectionIdle = 5 * time.Minute

// maxConnectionAge is how long a gRPC connection may last (grpc-go moves
// it by up to 10% either way, at random), and maxConnectionAgeGrace how
// long its calls in flight then have: longer than a call's wait and
// upstream_timeout.
const (
	maxConnectionAge      = time.Hour
	maxConnectionAgeGrace = 2 * time.Minute
)

// handshakeTimeout bounds a new connection's handshake, as on the HTTP
// listener.
const handshakeTimeout = intercept.HandshakeTimeout

// NewGRPC returns a gRPC server with BackupService, grpc.health.v1 and
// reflection registered. Every unary call passes through one interceptor
// that recovers panics, maps errors to status and writes the request's log
// line, so gRPC and REST callers are treated the same.
func NewGRPC(opts Options, h *Health) *grpc.Server {
	s, _ := newGRPC(opts, h)
	return s
}

// newGRPC is NewGRPC, with the server's interceptor, whose state tests
// read.
func newGRPC(opts Options, h *Health) (*grpc.Server, *interceptor) {
	ic := newInterceptor(opts, h.cutOff)
	ic.codec = newDeferringCodec()
	ic.stopping, ic.calls = h.stopped, &h.calls
	ic.awaiting = newAwaiting(ic, h.stopped)
	sopts := append(serverOptions(opts, ic), grpc.Creds(transportCredentials(h.stopped, opts)))
	var spans *otherMethods
	if opts.Tracing != nil {
		spans = &otherMethods{Handler: opts.Tracing.GRPCStatsHandler()}
		sopts = append(sopts, grpc.StatsHandler(spans))
		ic.refusals = spans
	}
	s := grpc.NewServer(sopts...)
	// What backupv1.RegisterBackupServiceServer registers, each request
	// that grpc-go does not read logged as its caller saw it.
	s.RegisterService(ic.awaiting.unreadRequests(&backupv1.BackupService_ServiceDesc), opts.Service)
	h.register(s, opts.Authorizer)
	reflection.Register(s)
	if spans != nil {
		spans.served = servedMethods(s)
	}
	return s, ic
}

// serverOptions are the gRPC server's bounds, and what every call passes
// through on its way in (ic), besides its credentials.
func serverOptions(opts Options, ic *interceptor) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InTapHandle(ic.tap),
		grpc.UnaryInterceptor(ic.unary),
		grpc.StreamInterceptor(ic.stream),
		grpc.ForceServerCodecV2(ic.codec),
		grpc.UnknownServiceHandler(ic.unknown),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxHeaderListSize(intercept.MaxHeaderBytes),
		grpc.MaxConcurrentStreams(maxStreams),
		// Static flow-control windows as large as the largest request
		// taken turn off grpc-go's bandwidth-delay estimation, whose PING
		// goes out on its own write with each request that arrives on a
		// quiet connection, and whose ACK the server then reads: one write
		// and about two reads more per call (BENCHMARKS.md). backupd's
		// messages are small, so the window it would grow to is never
		// needed. (The window does not bound what a stream may hold:
		// grpc-go widens it to take a whole message of up to
		// maxRecvMsgSize, read before any interceptor runs, which is why
		// tap refuses an unknown caller before that.)
		grpc.StaticStreamWindowSize(maxRequestBytes),
		grpc.StaticConnWindowSize(maxRequestBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A connection with no call for this long is sent GOAWAY, as the
		// HTTP listener closes an idle one: a client reconnects when it
		// calls again, and one that went away holds nothing.
		// And every connection is sent GOAWAY at an age, its calls given a
		// grace to finish: a client whose certificate's CA was taken out
		// of client_ca_file (certreload applies it to new connections
		// only) is cut off within the age, and clients spread over new
		// replicas.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cmp.Or(opts.connectionIdle, maxConnectionIdle),
			MaxConnectionAge: cmp.Or(opts.connectionAge, maxConnectionAge), MaxConnectionAgeGrace: maxConnectionAgeGrace}),
		// A connection must finish its handshake (TLS, and HTTP/2's
		// preface and settings) in as long as the HTTP listener gives a
		// request's headers. grpc-go's default of 120 s let a connection
		// that sends nothing hold a shutdown that long, past its timeout.
		grpc.ConnectionTimeout(cmp.Or(opts.handshake, handshakeTimeout)),
		// Calls run on reused goroutines, one per CPU, rather than each on
		// a new one (more calls than workers still get their own). A new
		// goroutine's small stack grew twice per call, once reading the
		// request and once in GrowStack, each a copy of every frame: 14 µs
		// of CPU per call at concurrency 1 in a profile (BENCHMARKS.md). A
		// worker keeps its grown stack from one call to the next, until a
		// GC finds it idle and halves it.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}
}

// transportCredentials wrap each gRPC connection: in TLS when opts.TLS
// is set, its failed handshakes logged (loggedCredentials); closed when
// stopped ends if it carries no HTTP/2 connection yet, which would hold
// the drain (quietConns); and counted under the connection limits
// (opts.Conns).
func transportCredentials(stopped context.Context, opts Options) credentials.TransportCredentials {
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = loggedCredentials{credentials.NewTLS(h2Only(opts.TLS)), opts.Logger, opts.LogCaps.New(10 * time.Second)}
	}
	quiet := newQuietConns()
	closeQuietWhenStopped(stopped, quiet)
	creds = quietCredentials{creds, quiet}
	if opts.Conns != nil {
		creds = limitedCredentials{creds, opts.Conns}
	}
	return creds
}

// h2Only is cfg for the gRPC listener, which speaks HTTP/2 alone: the
// config a GetConfigForClient returns per client (certreload's, with a
// client_ca_file) is shared with the HTTP listener and offers http/1.1
// too, which credentials.NewTLS does not take out; a client that asked
// for HTTP/1.1 would then be told it may speak it, and get HTTP/2 frames.
func h2Only(cfg *tls.Config) *tls.Config {
	if cfg.GetConfigForClient == nil {
		return cfg
	}
	cfg = cfg.Clone()
	perClient := cfg.GetConfigForClient
	var mu sync.Mutex
	var from, made *tls.Config // the last per-client config and its h2-only copy
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := perClient(hello)
		if err != nil || c == nil {
			return c, err
		}
		mu.Lock()
		defer mu.Unlock()
		if c != from {
			from, made = c, c.Clone()
			made.NextProtos = []string{"h2"}
		}
		return made, nil
	}
	return cfg
}

// otherMethods wraps the tracing's stats handler so that a call of a
// method the server does not serve is traced as one of the method
// _OTHER, as OpenTelemetry names it, with the name the caller sent, cut
// short, in rpc.method_original: the span's name and rpc.method would
// otherwise be whatever a caller sent, up to the headers' 64 KiB.
type otherMethods struct {
	stats.Handler
	// served holds the full names of the methods the server serves; set
	// once they are registered, before it serves.
	served map[string]bool
}

func (h *otherMethods) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if h.served[info.FullMethodName] {
		return h.Handler.TagRPC(ctx, info)
	}
	other := *info
	other.FullMethodName = "/_OTHER"
	ctx = h.Handler.TagRPC(ctx, &other)
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("rpc.method_original", redact.Cut(info.FullMethodName, intercept.MaxMethodEcho)))
	return ctx
}

// servedMethods are the full names of the methods s serves.
func servedMethods(s *grpc.Server) map[string]bool {
	served := map[string]bool{}
	for service, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			served["/"+service+"/"+m.Name] = true
		}
	}
	return served
}
