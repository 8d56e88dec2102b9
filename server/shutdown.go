package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

// Shutdown is what stops a running backupd, and in what order. It lives
// beside the servers it stops rather than in cmd/backupd, so that main only
// wires and the order (not ready, drain delay, both listeners closed
// together, the timeout, then the detached request_id runs) is written
// once, next to Health and the servers whose behaviour it depends on.
//
// The caller sets Health ready before it starts Run in another goroutine:
// a signal that came during start-up then finds it ready and turns it off,
// rather than being followed by a SetReady(true) that would answer 200 on
// /readyz through the drain.
type Shutdown struct {
	Health *Health
	HTTP   *http.Server
	GRPC   *grpc.Server
	// Service is waited for once both servers have drained, so that the
	// request_id runs whose callers left keep their results.
	Service interface{ Wait(context.Context) error }
	Logger  *slog.Logger
	// DrainDelay is how long to keep serving, not ready, after a signal.
	DrainDelay time.Duration
	// Timeout bounds the drain of in-flight requests and of Service.
	Timeout time.Duration
}

// handlersAfterClose bounds the wait for REST handlers once their
// connections are closed: their contexts are canceled, so they return at
// once but for their log line and metrics.
const handlersAfterClose = 2 * time.Second

// Run says not ready, keeps serving for the drain delay when signalled,
// then stops taking work and drains REST and gRPC together: health Watch
// and reflection streams end, both listeners close at once, and in-flight
// requests, and the request_id runs their callers left, get the shutdown
// timeout to finish. Not signalled (a listener failed), there is no one to give the
// drain delay to.
func (s Shutdown) Run(signalled bool) error {
	s.Health.SetReady(false)
	if signalled && s.DrainDelay > 0 {
		s.Logger.Info("shutting down: not ready; serving on for the drain delay", slog.Duration("drain_delay", s.DrainDelay))
		time.Sleep(s.DrainDelay)
	}
	s.Logger.Info("shutting down: draining in-flight requests", slog.Duration("timeout", s.Timeout))
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	s.Health.EndStreams()
	done := make(chan struct{})
	go func() {
		s.GRPC.GracefulStop()
		close(done)
	}()
	httpErr := s.HTTP.Shutdown(ctx)
	timedOut := errors.Is(httpErr, context.DeadlineExceeded)
	select {
	case <-done:
	case <-ctx.Done():
		timedOut = true
	}
	if timedOut {
		return s.cutOff(ctx, done)
	}
	// The request_id runs are waited for, and those left logged, however
	// the HTTP server's shutdown ended (its listener's close may fail).
	var errs []error
	if httpErr != nil {
		errs = append(errs, fmt.Errorf("HTTP shutdown: %w", httpErr))
	}
	if err := s.Service.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown timed out: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.Logger.Info("stopped")
	return nil
}

// cutOff ends the drain at the timeout, ctx having ended: it closes what
// is still open, waits for the gRPC server's stop (done) and, briefly,
// for the REST handlers, and logs the request_id runs left. It fails
// only when requests, or request_id runs, were cut off.
func (s Shutdown) cutOff(ctx context.Context, done <-chan struct{}) error {
	// Only connections that carry no request (a client that does not close
	// its own after GOAWAY, a frozen one) held the drain, or requests too,
	// which are then cut off.
	busy := s.Health.busy()
	// Marked before the connections close, so that the calls cut off are
	// logged as their callers see them.
	s.Health.CutOff()
	s.GRPC.Stop() // nothing left to stop if gRPC drained in time
	<-done
	_ = s.HTTP.Close()
	if !s.Health.AwaitHandlers(handlersAfterClose) {
		s.Logger.Warn("shutting down: REST requests still in their handlers after their connections closed; their log lines may be missing",
			slog.Duration("waited", handlersAfterClose))
	}
	// ctx has ended: Wait returns at once, having logged the request_id
	// runs it leaves, whose results are lost.
	err := s.Service.Wait(ctx)
	switch {
	case busy:
		return fmt.Errorf("shutdown timed out after shutdown_timeout (%s); in-flight requests were cut off: "+
			"a shutdown_timeout above upstream_timeout, the longest a request runs, lets them finish", s.Timeout)
	case err != nil:
		return fmt.Errorf("shutdown timed out: %w", err)
	}
	s.Logger.Warn("shutting down: connections that carried no request were still open at the timeout; closed them",
		slog.Duration("timeout", s.Timeout))
	s.Logger.Info("stopped")
	return nil
}
