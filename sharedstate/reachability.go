package sharedstate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/redact"
)

// Reachability tells, in the log and through report, when Redis stops
// answering backupd and when it answers again: while it does not, every
// request that needs it is refused, and each request's own line says
// only that it was. It watches every command and dial of the clients it
// is added to (a go-redis hook).
type Reachability struct {
	log    *slog.Logger
	report func(up bool)

	// state is unknown (0), up or down: read by every command, written
	// (under mu) only when it changes.
	state     atomic.Int32
	mu        sync.Mutex
	downSince time.Time
}

const (
	stateUp   = 1
	stateDown = 2
)

// NewReachability returns a Reachability that logs to log and calls
// report (a gauge; nil for none) with each change.
func NewReachability(log *slog.Logger, report func(up bool)) *Reachability {
	if report == nil {
		report = func(bool) {}
	}
	return &Reachability{log: log, report: report}
}

// DialHook implements redis.Hook.
func (r *Reachability) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		r.observe(err)
		return conn, err
	}
}

// ProcessHook implements redis.Hook.
func (r *Reachability) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.observe(err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (r *Reachability) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		r.observe(err)
		return err
	}
}

// observe takes one command's or dial's outcome. An answer of Redis,
// an error reply included, says it answers; a failure to reach it or
// to read its answer in time (the read timeout), that it does not. A
// command that ran out of its request's deadline, waited for a pooled
// connection, or ran on a closed client says neither.
func (r *Reachability) observe(err error) {
	var reply redis.Error
	switch {
	case err == nil, errors.As(err, &reply):
		r.set(true, nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
	default:
		r.set(false, err)
	}
}

// set records the state, logging a change from a known one: the first
// state is the start's to log (CheckStart).
func (r *Reachability) set(up bool, err error) {
	want := int32(stateDown)
	if up {
		want = stateUp
	}
	if r.state.Load() == want {
		return
	}
	r.mu.Lock()
	was := r.state.Load()
	if was == want {
		r.mu.Unlock()
		return
	}
	r.state.Store(want)
	downSince := r.downSince
	if !up {
		r.downSince = time.Now()
	}
	r.report(up)
	r.mu.Unlock()
	switch {
	case was == 0:
	case up:
		r.log.Info("shared state: Redis answers again", slog.Duration("down_for", time.Since(downSince).Round(time.Millisecond)))
	default:
		r.log.Error("shared state: Redis stopped answering; requests that need it are refused (SHARED_STATE_UNAVAILABLE) until it answers again",
			slog.String("error", redact.Error(err)))
	}
}
