package server

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/rpcerror"
)

// interceptor is what every gRPC call passes through: the Interceptor
// every BackupService call passes through, over gRPC and REST alike
// (package intercept), and what only a gRPC server needs beside it: the
// tap that refuses an unknown caller before its request is read, the
// bounds on a request's arrival, and those on the streams that take no
// token.
type interceptor struct {
	*intercept.Interceptor
	authz Authorizer
	// codec holds the gRPC requests that could not be decoded.
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
	// every reflection stream (Health.EndStreams); nil in tests.
	stopping context.Context
	// calls counts the calls in unary (Health.calls); nil in tests.
	calls *atomic.Int64
	// awaiting holds the BackupService calls whose request has yet to
	// arrive, for the drain; nil in tests.
	awaiting *awaiting
	// refusals, with tracing on, makes the spans of the gRPC calls the
	// tap refuses, which grpc-go gives to no stats handler; nil without.
	refusals stats.Handler
}

// healthPrefix begins the methods of grpc.health.v1's service.
var healthPrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

// newInterceptor returns the gRPC server's interceptor; cutOff, when not
// nil, ends when the shutdown's timeout cuts in-flight calls off
// (Health.CutOff).
func newInterceptor(opts Options, cutOff context.Context) *interceptor {
	i := &interceptor{authz: opts.Authorizer,
		arrival: cmp.Or(opts.requestArrival, requestArrivalTimeout), unvouched: make(chan struct{}, maxUnvouched),
		reflecting:     newStreamSlots(maxReflections, "reflection streams", "close one or try again later", rpcerror.ReasonTooManyStreams),
		reflectionIdle: cmp.Or(opts.reflectionIdle, reflectionIdle)}
	i.Interceptor = intercept.New(intercept.Options{Logger: opts.Logger, Metrics: opts.Metrics, Authorizer: opts.Authorizer,
		CutOff: cutOff, Undecodable: func(req any) error { return i.codec.take(req) }, SendLeads: opts.SendLeads,
		// Every unary call of the health service (Check, List), as
		// tracing leaves the whole service out.
		Quiet: func(method string) bool { return strings.HasPrefix(method, healthPrefix) }})
	return i
}

// refused is the error of a gRPC call the server refuses on its own
// (a *rpcerror.RequestError, or a request's bad fields), with the details
// every backupd status carries.
func refused(err error) error {
	st, _ := rpcerror.Status(err, rpcerror.Request{})
	return st.Err()
}

// unary runs a unary call through the interceptor, once its request has
// arrived in time.
func (i *interceptor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if i.calls != nil {
		i.calls.Add(1)
		defer i.calls.Add(-1)
	}
	if err := i.requestArrived(ctx); err != nil {
		return nil, err
	}
	return i.Unary(ctx, req, info, handler)
}

// unknown answers a call to a method backupd does not serve, UNIMPLEMENTED
// as grpc-go would, but logged and counted like every other call: under
// the method "unknown" in the metrics, so callers cannot add label values.
func (i *interceptor) unknown(_ any, stream grpc.ServerStream) error {
	start := time.Now()
	if err := i.requestArrived(stream.Context()); err != nil { // none is read
		return err
	}
	method, _ := grpc.MethodFromServerStream(stream)
	method = redact.Cut(method, intercept.MaxMethodEcho)
	st, _ := rpcerror.Status(&rpcerror.RequestError{Code: codes.Unimplemented, Reason: rpcerror.ReasonUnknownMethod,
		Msg: fmt.Sprintf("backupd serves no method %s; see backup.v1.BackupService", method)}, rpcerror.Request{})
	i.Write(stream.Context(), intercept.Line{Method: method, Code: codes.Unimplemented, Reason: rpcerror.ReasonUnknownMethod, Unknown: true}, start)
	return st.Err()
}
