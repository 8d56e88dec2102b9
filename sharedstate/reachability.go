package sharedstate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/redact"
)

// Reachability tells, in the log and through report, when Redis stops
// serving backupd and when it serves again: while it does not, every
// request that needs it is refused, and each request's own line says
// only that it was. It watches every command and dial of the clients it
// is added to (a go-redis hook). Redis counts as gone once its failures
// have lasted downAfter with no answer between, so that one slow answer
// (a fork, a long script) does not flap the gauge and the log.
type Reachability struct {
	log    *slog.Logger
	report func(up bool)
	now    func() time.Time

	// state is unknown (0), up or down: read by every command, written
	// (under mu) only when it changes.
	state atomic.Int32
	// failing is set, under mu, from the first failure after an answer.
	failing atomic.Bool
	mu      sync.Mutex
	// failingSince is when the first failure after the last answer
	// began: when its command was sent.
	failingSince time.Time
	// lastAnswer is when the last answer came, in Unix ns.
	lastAnswer atomic.Int64
	// refused is set when a failure since the last answer was a refusal
	// (refusingStates), cleared by an answer: a probe's PING, which a Redis that
	// refuses backupd's commands still answers (READONLY, OOM, MISCONF),
	// then says nothing of it.
	refused atomic.Bool

	// probe, when set, asks Redis apart from any request (ProbeWith);
	// probing is set while it runs.
	probe   func(context.Context) error
	probing atomic.Bool

	// write, when set, writes to Redis apart from any request
	// (ProbeWritesWith); writing is set while it runs, and lastWrite is
	// when it last began, in Unix ns.
	write     func(context.Context) error
	writing   atomic.Bool
	lastWrite atomic.Int64
}

// probeBound bounds a probe: two tries of the client's 1 s read timeout,
// and a dial.
const probeBound = 3 * time.Second

// ProbeWith has r ask Redis with ping, apart from any request and under
// probeBound, whenever a command's own context ended before Redis
// answered it. Such a command says nothing of Redis (its caller's
// deadline, or the rate limiter's patience, may be shorter than any
// answer), so without a probe a Redis that stalls without closing its
// connections would go unseen as long as every command is cut short so;
// the probe waits out the read timeout, and its failure, made through a
// hooked client, is seen. Its answer is not taken for Redis serving
// while Redis refuses backupd's commands (refusingStates): a replica, a
// Redis out of memory or refusing writes still answers PING. One probe
// runs at a time.
func (r *Reachability) ProbeWith(ping func(context.Context) error) { r.probe = ping }

// maybeProbe starts a probe unless one runs or none is set.
func (r *Reachability) maybeProbe() {
	if r.probe != nil {
		runApart(context.WithValue(context.Background(), probeKey{}, true), &r.probing, r.probe)
	}
}

// runApart runs f with ctx, under probeBound, apart from any request,
// unless a run it started before is still going (busy), and reports
// whether it started one.
func runApart(ctx context.Context, busy *atomic.Bool, f func(context.Context) error) bool {
	if !busy.CompareAndSwap(false, true) {
		return false
	}
	go func() {
		defer busy.Store(false)
		ctx, cancel := context.WithTimeout(ctx, probeBound)
		defer cancel()
		_ = f(ctx)
	}()
	return true
}

// ProbeWritesWith has r write to Redis with write, apart from any
// request and under probeBound, when a ReadOnly command is answered while
// Redis refuses backupd's commands, at most once per downAfter: such an
// answer says nothing of whether Redis takes writes again, and a replica
// with no requests (only its background reads reach Redis) would
// otherwise report Redis gone until its next request. The write's answer,
// or its refusal, counts as any command's.
func (r *Reachability) ProbeWritesWith(write func(context.Context) error) { r.write = write }

// maybeProbeWrites starts a write (ProbeWritesWith) unless one runs, none
// is set, or one began less than downAfter ago.
func (r *Reachability) maybeProbeWrites() {
	if r.write == nil || r.now().Sub(time.Unix(0, r.lastWrite.Load())) < downAfter {
		return
	}
	if runApart(context.Background(), &r.writing, r.write) {
		r.lastWrite.Store(r.now().UnixNano())
	}
}

// probeKey marks a probe's context: its answer is not one of backupd's
// commands served.
type probeKey struct{}

// readOnlyKey marks the context of a command whose answer does not show
// that Redis serves backupd (ReadOnly).
type readOnlyKey struct{}

// ReadOnly returns ctx marked so that the answer of a command run with it
// does not count as Redis serving while Redis refuses backupd's commands
// (refusingStates), as a probe's does not: a Redis that refuses writes (a
// replica's READONLY, OOM, MISCONF) still answers a command that only
// reads (TIME, INFO), or a script that finds nothing to write (the drop of
// a claim that Redis refused). Between the refused writes of requests,
// such answers would otherwise keep the gauge at 1, and the log silent,
// while every request is refused.
func ReadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, readOnlyKey{}, true)
}

const (
	stateUp   = 1
	stateDown = 2
)

// downAfter is how long failures must last, with no answer between,
// before Redis counts as gone.
const downAfter = time.Second

// NewReachability returns a Reachability that logs to log and calls
// report (a gauge; nil for none) with each change.
func NewReachability(log *slog.Logger, report func(up bool)) *Reachability {
	if report == nil {
		report = func(bool) {}
	}
	return &Reachability{log: log, report: report, now: time.Now}
}

// DialHook implements redis.Hook. A connection made says nothing of
// Redis (a stopped server's kernel still accepts); one refused, or not
// made within the dial timeout, that it is not there.
func (r *Reachability) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := r.now()
		conn, err := next(ctx, network, addr)
		if err != nil && !errors.Is(err, context.Canceled) {
			r.failed(err, start)
		}
		return conn, err
	}
}

// ProcessHook implements redis.Hook. The commands that set up a new
// connection (HELLO, AUTH, CLIENT, SELECT) say nothing of whether Redis
// serves: go-redis dials again after a READONLY, and the new
// connection's HELLO would otherwise count as its answer.
func (r *Reachability) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := r.now()
		err := next(ctx, cmd)
		if !connectionSetup[cmd.Name()] {
			r.observe(ctx, err, start)
		}
		return err
	}
}

// connectionSetup are the commands go-redis sends on a new connection.
var connectionSetup = map[string]bool{"hello": true, "auth": true, "client": true, "select": true}

// ProcessPipelineHook implements redis.Hook.
func (r *Reachability) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := r.now()
		err := next(ctx, cmds)
		if !slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return !connectionSetup[c.Name()] }) {
			return err // a new connection's set-up, as above
		}
		r.observe(ctx, err, start)
		return err
	}
}

// refusingStates are the error replies of a Redis that answers but
// serves no command of backupd's: loading its data, a replica (an old
// primary after a failover), without its primary, busy with a script,
// refusing writes after a failed save or when full (OOM, under
// noeviction), or refusing backupd's user (a Redis restarted without the
// ACL it was given at runtime, or an ACL changed since backupd started).
var refusingStates = []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "MISCONF", "OOM", "NOPERM", "WRONGPASS", "NOAUTH"}

// observe takes one command's outcome, the command sent at start. An
// answer, an error reply included, says Redis serves, but for the replies
// of refusingStates; a failure to reach it or to read its answer in time,
// that it does not. A command whose own request's context ended says
// neither, but has a probe ask Redis (ProbeWith).
func (r *Reachability) observe(ctx context.Context, err error, start time.Time) {
	var reply redis.Error
	switch {
	case err == nil, errors.As(err, &reply) && !refusing(err):
		readOnly := ctx.Value(readOnlyKey{}) != nil
		if (readOnly || ctx.Value(probeKey{}) != nil) && r.refused.Load() {
			if readOnly {
				r.maybeProbeWrites() // do writes pass again?
			}
			return // PING or a read answered, backupd's commands refused
		}
		r.answered()
	case errors.As(err, &reply):
		r.refused.Store(true)
		r.failed(err, start)
	case ctx.Err() != nil:
		r.maybeProbe()
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
	default:
		r.failed(err, start)
	}
}

// refusing reports whether err is the reply of a Redis that serves none
// of backupd's commands (refusingStates).
func refusing(err error) bool {
	for _, state := range refusingStates {
		if redis.HasErrorPrefix(err, state) {
			return true
		}
	}
	return false
}

// answered records that Redis served a command.
func (r *Reachability) answered() {
	r.lastAnswer.Store(r.now().UnixNano())
	if r.state.Load() == stateUp && !r.failing.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing.Store(false)
	r.refused.Store(false)
	was := r.state.Swap(stateUp)
	if was == stateUp {
		return
	}
	r.report(true)
	if was == stateDown {
		r.log.Info("shared state: Redis serves again", slog.Duration("down_for", r.now().Sub(r.failingSince).Round(time.Millisecond)))
	}
}

// failed records a failure of a command (or dial) begun at start, and
// Redis gone once failures have lasted downAfter with no answer between
// (at once at the start, whose own check logs it). A failure lasts from
// when its command was sent, or the last answer came after that: a
// command that waited out the read timeout, and its resend, has found
// Redis not serving for all that time.
func (r *Reachability) failed(err error, start time.Time) {
	if r.state.Load() == stateDown {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.failing.Load() {
		r.failing.Store(true)
		r.failingSince = start
		if last := time.Unix(0, r.lastAnswer.Load()); last.After(start) {
			r.failingSince = last
		}
	}
	was := r.state.Load()
	if was == stateDown || was == stateUp && now.Sub(r.failingSince) < downAfter {
		return
	}
	r.state.Store(stateDown)
	r.report(false)
	if was == stateUp {
		r.log.Error("shared state: Redis stopped serving backupd; requests that need it are refused (SHARED_STATE_UNAVAILABLE) until it serves again",
			slog.Duration("failing_for", now.Sub(r.failingSince).Round(time.Millisecond)), slog.String("error", redact.Error(err)))
	}
}
