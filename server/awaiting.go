package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/rpcerror"
)

// awaiting holds the BackupService calls whose request has yet to arrive,
// so that the drain can give each drainGrace for it, as it gives a REST
// body, rather than wait on a caller that opened a call and sent nothing
// until shutdown_timeout cuts every call off. A call that still has no
// request then is canceled (grpc-go answers CANCELLED), logged and
// counted; nothing was done for it.
//
// A known caller's request must also arrive within requestArrivalTimeout:
// grpc-go reads a whole message of up to maxRecvMsgSize before any
// interceptor runs, and a caller that opens streams and leaves their
// messages unfinished would otherwise make backupd hold that much on each,
// for as long as the connection lasts. A sweep every sweepEvery ends such
// calls (canceled, logged REQUEST_NOT_ARRIVED), and logs the calls their
// callers ended before their request arrived (CANCELED, or
// DEADLINE_EXCEEDED), as every call a caller cancels is logged and
// counted. No tighter bound applies when many wait: a burst of calls on
// one connection waits for the goroutines that read their requests, which
// under load can take seconds.
//
// Calls are not timed one by one: the only cost on the way of a call is
// its cancelable context and two map operations.
type awaiting struct {
	i     *interceptor
	mu    sync.Mutex
	calls map[*awaitingCall]struct{}
	// swept is how many calls the map held after its last sweep of the
	// calls that ended without a request (reset by their callers).
	swept int
	// cut is set once the drain's grace has passed: a call held after
	// that gets a grace of its own.
	cut bool
	// tick paces the sweep. It is stopped while no call is held, so that
	// an idle server does not wake every sweepEvery; hold starts it.
	tick    *time.Ticker
	ticking bool
	// sweeps counts the ticks taken, for tests: none while no call waits.
	sweeps atomic.Int64
}

// awaitingCall is a call's context until its request arrives.
type awaitingCall struct {
	context.Context
	cancel context.CancelFunc
	method string
	start  time.Time
	// state is waiting until either the request's arrival or the cut
	// claims the call: the other then leaves it alone.
	state atomic.Int32
}

const (
	waiting int32 = iota
	arrivedFirst
	cutFirst
	lateFirst
	endedFirst // its caller ended it (a reset, a closed connection, its deadline)
)

// sweepEvery is how often the calls waiting for their request are checked.
const sweepEvery = 100 * time.Millisecond

type awaitingKey struct{}

func (c *awaitingCall) Value(key any) any {
	if key == (awaitingKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// newAwaiting returns the calls' holder; their grace starts when stopping
// ends.
func newAwaiting(i *interceptor, stopping context.Context) *awaiting {
	a := &awaiting{i: i, calls: make(map[*awaitingCall]struct{}), tick: time.NewTicker(sweepEvery)}
	a.tick.Stop()
	context.AfterFunc(stopping, func() { time.AfterFunc(drainGrace, a.cutAll) })
	go a.sweep(stopping)
	return a
}

// sweep ends, every sweepEvery until stopping ends (the drain's cut
// takes over), the calls whose request is late.
func (a *awaiting) sweep(stopping context.Context) {
	defer a.tick.Stop()
	for {
		select {
		case <-stopping.Done():
			return
		case now := <-a.tick.C:
			a.sweeps.Add(1)
			late, ended := a.late(now)
			for _, c := range late {
				a.endLate(c)
			}
			for _, c := range ended {
				a.endedByCaller(c)
			}
		}
	}
}

// late takes out the calls whose request has not arrived within
// i.arrival, and those their callers ended (ended), to be logged.
func (a *awaiting) late(now time.Time) (late, ended []*awaitingCall) {
	a.mu.Lock()
	defer a.mu.Unlock()
	bound := cmp.Or(a.i.arrival, requestArrivalTimeout)
	for c := range a.calls {
		switch {
		case c.Err() != nil: // ended by its caller
			delete(a.calls, c)
			ended = append(ended, c)
		case now.Sub(c.start) > bound:
			delete(a.calls, c)
			late = append(late, c)
		}
	}
	if len(a.calls) == 0 {
		a.tick.Stop()
		a.ticking = false
	}
	return late, ended
}

// endLate ends c for a request that did not arrive in time.
func (a *awaiting) endLate(c *awaitingCall) {
	a.end(c, lateFirst, rpcerror.ReasonRequestLate, errRequestLate)
}

// end logs c as canceled for why and cancels it, as state (cutFirst or
// lateFirst) says, unless its request arrived first; one its caller ended
// first is logged as such.
func (a *awaiting) end(c *awaitingCall, state int32, reason string, why error) {
	if c.Err() != nil {
		a.endedByCaller(c)
		return
	}
	if !c.state.CompareAndSwap(waiting, state) {
		return
	}
	method, known := methodLabel(c.method)
	principal, _ := a.i.AuthorizeIn(c, c.method, "") // its caller's name: the tap knew it
	a.i.Write(c, intercept.Line{Method: method, Principal: principal, Unknown: !known, Code: codes.Canceled,
		Reason: reason, Level: slog.LevelWarn, Err: why}, c.start)
	c.cancel()
}

// endedByCaller logs c, which ended before its request arrived (its
// caller reset the stream or closed the connection, or the call's
// deadline passed), as any call its caller canceled is logged and
// counted, unless its request arrived first: nothing was done for it.
// grpc-go's own refusal of a request in a compression backupd does not
// take ends the call alike, before its handler, and nothing tells the two
// apart here: the line says so, under CANCELED. One it refuses as it
// reads it is logged as the caller saw it (unread).
func (a *awaiting) endedByCaller(c *awaitingCall) {
	if !c.state.CompareAndSwap(waiting, endedFirst) {
		return
	}
	code, reason, level, why := codes.Canceled, rpcerror.ReasonCanceled, slog.LevelInfo, errEndedByCaller
	var ended time.Time
	// Canceled at its deadline, the call ended for it: grpc-go's timer
	// for the deadline (or the client's) cancels the call as the
	// context's own timer would end it, and either may come first.
	if errors.Is(c.Err(), context.DeadlineExceeded) || intercept.DeadlineDue(c) {
		code, reason, level, why = codes.DeadlineExceeded, rpcerror.ReasonDeadlineExceeded, slog.LevelWarn, errDeadlineBeforeRequest
		// It ended then, not when the sweep came by, up to sweepEvery later.
		ended, _ = c.Deadline()
	}
	method, known := methodLabel(c.method)
	principal, _ := a.i.AuthorizeIn(c, c.method, "") // its caller's name: the tap knew it
	a.i.Write(c, intercept.Line{Method: method, Principal: principal, Unknown: !known, Code: code,
		Reason: reason, Level: level, Err: why, Ended: ended}, c.start)
}

// errEndedByCaller and errDeadlineBeforeRequest are what a call that
// ended before its request arrived is logged with; errEndedByCallerStatus
// answers one whose request arrived just as it was logged so.
var (
	errEndedByCaller         = errors.New("the call ended before its request was read: its caller ended it, or grpc-go refused the request (compressed in a way backupd does not take), which the caller was told; nothing was done")
	errDeadlineBeforeRequest = errors.New("the call's deadline passed before its request was read; nothing was done")
	errEndedByCallerStatus   = refused(&rpcerror.RequestError{Code: codes.Canceled, Reason: rpcerror.ReasonCanceled, Msg: errEndedByCaller.Error()})
)

// unreadRequests returns desc with each method's handler telling a of the
// request grpc-go did not read for it (unread). grpc-go reads a unary
// call's request in the method's handler, before any interceptor, and
// answers the call with its own error when it cannot: the handler returns
// that error with the call still held.
func (a *awaiting) unreadRequests(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for k, m := range d.Methods {
		d.Methods[k].Handler = func(srv any, ctx context.Context, dec func(any) error, ui grpc.UnaryServerInterceptor) (any, error) {
			resp, err := m.Handler(srv, ctx, dec, ui)
			if err != nil {
				a.unread(ctx, err)
			}
			return resp, err
		}
	}
	return &d
}

// unread logs ctx's call, when it is still held (its request not read),
// as grpc-go ended it (err): a request over maxRecvMsgSize
// (RESOURCE_EXHAUSTED), a stream that ended without its request or in the
// middle of it (INTERNAL), with the code its caller got, rather than as
// one its caller ended; one its caller did end, or whose deadline passed,
// as endedByCaller logs it. Nothing was done for it.
func (a *awaiting) unread(ctx context.Context, err error) {
	if b, ok := ctx.Value(arrivalKey{}).(*arrival); ok && b.line != nil {
		a.unreadUnknown(ctx, b, status.Convert(err))
		return
	}
	c, ok := ctx.Value(awaitingKey{}).(*awaitingCall)
	if !ok || c.state.Load() != waiting { // its request was read: the call's own error
		return
	}
	st := status.Convert(err)
	if code := st.Code(); code == codes.Canceled || code == codes.DeadlineExceeded {
		a.forget(c)
		a.endedByCaller(c)
		return
	}
	if !c.state.CompareAndSwap(waiting, endedFirst) {
		return
	}
	a.forget(c)
	method, known := methodLabel(c.method)
	principal, _ := a.i.AuthorizeIn(c, c.method, "")
	a.i.Write(c, intercept.Line{Method: method, Principal: principal, Unknown: !known, Code: st.Code(), Level: slog.LevelWarn,
		Err: errUnread(st)}, c.start)
}

// errUnread is what a call whose request grpc-go refused to read (st,
// what the caller got) is logged with, known caller or not.
func errUnread(st *status.Status) error {
	return fmt.Errorf("grpc-go refused the call's request before backupd read it, and answered %s: %s; nothing was done", st.Code(), st.Message())
}

// unreadUnknown logs the call of a caller backupd does not know, given
// its request's time to arrive (tap: its deadline lies far out), whose
// request grpc-go refused as unread does a known caller's: with the code
// its caller got. One its caller ended is not logged, as it would not
// be had grpc-go's reading not ended with it.
func (a *awaiting) unreadUnknown(ctx context.Context, b *arrival, st *status.Status) {
	if code := st.Code(); code == codes.Canceled || code == codes.DeadlineExceeded || !b.refused() {
		return
	}
	line := *b.line
	line.Code, line.Level = st.Code(), slog.LevelWarn
	line.Err = errUnread(st)
	a.i.Write(ctx, line, b.start)
}

// forget lets go of c, which will not be swept.
func (a *awaiting) forget(c *awaitingCall) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.calls, c)
}

// hold returns the context of a call of method, to be canceled if the
// drain's grace passes before arrived is called for it.
func (a *awaiting) hold(ctx context.Context, method string) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	c := &awaitingCall{Context: ctx, cancel: cancel, method: method, start: time.Now()}
	var ended []*awaitingCall
	a.mu.Lock()
	if a.cut {
		a.mu.Unlock()
		time.AfterFunc(drainGrace, func() { a.cutOne(c) })
		return c
	}
	if len(a.calls) >= 2*a.swept+64 {
		for other := range a.calls {
			if other.Err() != nil {
				delete(a.calls, other)
				ended = append(ended, other)
			}
		}
		a.swept = len(a.calls)
	}
	a.calls[c] = struct{}{}
	if !a.ticking {
		a.tick.Reset(sweepEvery)
		a.ticking = true
	}
	a.mu.Unlock()
	for _, other := range ended {
		a.endedByCaller(other)
	}
	return c
}

// arrived lets go of ctx's call, if it is held: its request is in. It
// returns, when the drain's cut or the sweep of late calls ended the call
// first, the status to answer it with: the call must then not run, and
// its end has been logged.
func (a *awaiting) arrived(ctx context.Context) error {
	c, ok := ctx.Value(awaitingKey{}).(*awaitingCall)
	if !ok {
		return nil
	}
	if !c.state.CompareAndSwap(waiting, arrivedFirst) {
		switch c.state.Load() {
		case cutFirst:
			return errCutAtDrainStatus
		case lateFirst:
			return errRequestLateStatus
		case endedFirst:
			return errEndedByCallerStatus
		}
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.calls, c)
	return nil
}

// cutAll cuts the calls still without a request.
func (a *awaiting) cutAll() {
	a.mu.Lock()
	calls := a.calls
	a.calls, a.cut = nil, true
	a.mu.Unlock()
	for c := range calls {
		a.cutOne(c)
	}
}

// cutOne cancels c and logs it, unless its request arrived first or it
// ended.
func (a *awaiting) cutOne(c *awaitingCall) {
	a.end(c, cutFirst, rpcerror.ReasonShuttingDown, errCutAtDrain)
}

// errCutAtDrain is what a call cut at the drain is logged with;
// errCutAtDrainStatus answers one whose request arrived just as it was cut.
var (
	errCutAtDrain = errors.New(
		"backupd is shutting down and the call's request did not arrive within the drain's grace; nothing was done: send it again")
	errCutAtDrainStatus = refused(&rpcerror.RequestError{Code: codes.Canceled, Reason: rpcerror.ReasonShuttingDown, Msg: errCutAtDrain.Error()})
)
