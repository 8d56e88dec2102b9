package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rpcerror"
)

// Health tracks readiness for grpc.health.v1 and /readyz together.
type Health struct {
	grpc *health.Server
	// stopped ends when the servers stop taking work (EndStreams).
	stopped context.Context
	stop    context.CancelFunc
	// cutOff ends when the shutdown's timeout cuts in-flight calls off
	// (CutOff).
	cutOff context.Context
	cut    context.CancelFunc
	// watches counts the Watch streams open.
	watches *streamSlots
	// handling counts the REST requests in their handlers (Handling),
	// which a shutdown that cut them off waits for (AwaitHandlers).
	handling atomic.Int64
	// calls counts the gRPC calls in the interceptor (NewGRPC), which
	// with handling tells a shutdown that times out whether it cuts off a
	// request or only closes connections that carry none (busy).
	calls atomic.Int64
}

// Handling counts a request into its handler (delta 1) and out (-1), for
// a server that, unlike grpc-go's, does not wait for its handlers once
// the shutdown's timeout has closed their connections (net/http's, which
// the REST handler counts): AwaitHandlers waits for them, and a shutdown
// that times out tells by them whether it cut a request off (busy).
func (h *Health) Handling(delta int) { h.handling.Add(int64(delta)) }

// CutOffContext ends when the shutdown's timeout cuts in-flight calls
// off (CutOff), so that a transport's interceptor logs a call canceled
// then as its caller saw it.
func (h *Health) CutOffContext() context.Context { return h.cutOff }

// busy reports whether a REST request or gRPC call is being handled.
func (h *Health) busy() bool { return h.handling.Load() > 0 || h.calls.Load() > 0 }

// Health calls need no caller token, so what one may hold is bounded: the
// service name it names (backupd serves two short ones), and the Watch
// streams open at once, each a goroutine held for as long as its client
// keeps it: maxWatches for each caller that presents its token, and
// maxWatches for all the others together, a quarter of them from one
// client address (streamSlots). gRPC client-side health
// checking keeps a Watch on each connection and takes a refused one for
// an unhealthy server, so streams held by whoever can reach the port
// must not take the places of callers backupd knows.
const (
	maxHealthServiceName = 256
	maxWatches           = 1024
)

// NewHealth starts NOT_SERVING until SetReady(true).
func NewHealth() *Health {
	h := &Health{grpc: health.NewServer(),
		watches: newStreamSlots(maxWatches, "health watches", "poll Check instead", rpcerror.ReasonTooManyWatches)}
	h.stopped, h.stop = context.WithCancel(context.Background())
	h.cutOff, h.cut = context.WithCancel(context.Background())
	h.SetReady(false)
	return h
}

// EndStreams ends every grpc.health.v1 Watch stream and reflection stream,
// and refuses new ones: such a stream lasts as long as its client keeps it
// (gRPC client-side health checking keeps a Watch on each connection, and
// a gRPC GUI its reflection stream), and the graceful stop that follows
// would otherwise wait for it until the shutdown timeout.
func (h *Health) EndStreams() { h.stop() }

// CutOff marks the calls still in flight as cut off by the shutdown's
// timeout, before the servers close their connections: their handlers see
// their contexts canceled, and their log lines say what the callers got
// (UNAVAILABLE), not CANCELLED as from a caller that left.
func (h *Health) CutOff() { h.cut() }

// AwaitHandlers waits, at most bound, for the REST requests still in their
// handlers. Once the shutdown's timeout has closed their connections,
// net/http no longer waits for them, and a handler that has just seen its
// context canceled may not yet have written its request's log line when
// backupd exits; grpc-go's Stop waits for its own. It reports whether
// they all returned.
func (h *Health) AwaitHandlers(bound time.Duration) bool {
	for deadline := time.Now().Add(bound); h.handling.Load() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// register serves grpc.health.v1 on s; authn, when not nil, names the
// caller of a Watch, whose streams are then bounded apart from others'.
func (h *Health) register(s *grpc.Server, authn authenticator) {
	healthpb.RegisterHealthServer(s, healthService{h.grpc, h, authn})
}

// healthService is grpc-go's health service with Watch streams that end
// when the servers stop taking work (Health.EndStreams).
type healthService struct {
	*health.Server
	h     *Health
	authn authenticator
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
		msg := fmt.Sprintf("service must be at most %d bytes; got %d", maxHealthServiceName, len(name))
		return refused(&badrequest.Error{Violations: []badrequest.Violation{{Field: "service", Description: msg}}})
	}
	return nil
}

func (s healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if err := checkHealthServiceName(req.GetService()); err != nil {
		return err
	}
	caller := callerOf(stream.Context(), s.authn)
	release, err := s.h.watches.take(stream.Context(), caller)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.h.stopped, cancel)()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx}
	err = s.Server.Watch(req, ws)
	if s.h.stopped.Err() != nil {
		// grpc-go's Watch may have ended before it sent the NOT_SERVING
		// that the shutdown set a moment earlier (with no drain delay):
		// the watcher hears it here, then the end.
		if ws.last != healthpb.HealthCheckResponse_NOT_SERVING {
			_ = stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
		}
		return errWatchStopping
	}
	return err
}

// watchStream is a Watch stream whose context ends at shutdown too, and
// that remembers the last status it sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(resp *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(resp)
	if err == nil {
		w.last = resp.GetStatus()
	}
	return err
}

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

// errWatchStopping ends the health watches at shutdown.
var errWatchStopping = refused(&rpcerror.RequestError{Code: codes.Unavailable, Reason: rpcerror.ReasonShuttingDown,
	Msg: "backupd is shutting down; watch another replica", RetryAfter: rpcerror.DefaultRetryAfter})
