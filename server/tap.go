package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"

	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/rpcerror"
)

// tap checks a BackupService call's caller when its stream opens, before
// grpc-go reads the request: grpc-go reads a whole message (up to
// maxRecvMsgSize) before any interceptor runs, so a caller backupd does
// not know could otherwise make it hold that much on every stream a
// connection takes, for as long as the message stays unfinished. A caller
// it does not know is refused there, logged and counted, as the REST
// gateway refuses one from its headers alone; a known caller goes on to
// the interceptor, which authorizes it for the account its request names
// (one refused the operation in every account is refused here too),
// and is held until its request arrives, for the drain (awaiting).
//
// The calls that take no caller token (grpc.health.v1, reflection) get a
// time bound instead: their first request must arrive within i.arrival,
// or the call is canceled and what it read let go. So does an unknown
// caller's call whose deadline lies further out: grpc-go keeps a refused
// stream's deadline timer, and its context, until the deadline passes
// (grpc/grpc-go#2976), which the caller chooses; such a call is refused by
// the interceptor instead, once its request is in.
//
// The tap runs under the connection's lock, so a refusal's log line is
// written there too: a log writer that blocks holds up that connection.
func (i *interceptor) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !intercept.InService(info.FullMethodName) {
		return i.boundArrival(ctx, nil), nil
	}
	start := time.Now()
	// grpc-go has put the call's metadata in ctx.
	principal, err := i.AuthorizeAnywhere(ctx, info.FullMethodName)
	if err == nil {
		return i.holdUntilArrival(ctx, info.FullMethodName), nil
	}
	method, known := methodLabel(info.FullMethodName)
	line := intercept.Line{Method: method, Principal: principal, Unknown: !known} // no account: the request is unread
	if i.farDeadline(ctx) {
		if principal != "" {
			// A known caller, refused the method in every account: it
			// waits for its request as one allowed it somewhere does,
			// not in the places of the calls without a known caller.
			return i.holdUntilArrival(ctx, info.FullMethodName), nil
		}
		return i.boundArrival(ctx, &line), nil
	}
	if i.refusals != nil {
		// grpc-go gives a call the tap refuses to no stats handler: its
		// span is made here, and its line names its trace, as over REST.
		ctx = i.refusals.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: info.FullMethodName})
	}
	st := line.Fail(ctx, err)
	i.Write(ctx, line, start)
	if i.refusals != nil {
		i.refusals.HandleRPC(ctx, &stats.End{BeginTime: start, EndTime: time.Now(), Error: st.Err()})
	}
	return ctx, st.Err()
}

// farDeadline reports whether the call's deadline lies further out than a
// request's arrival may take: refused in the tap, the call's context and
// deadline timer would be kept until then (grpc/grpc-go#2976).
func (i *interceptor) farDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) > i.arrival
}

// holdUntilArrival returns the context of a BackupService call that may
// go on to its request, held by i.awaiting until the request arrives.
func (i *interceptor) holdUntilArrival(ctx context.Context, method string) context.Context {
	if i.awaiting == nil {
		return ctx
	}
	return i.awaiting.hold(ctx, method)
}

// methodLabel is how a call of the full method name is logged: the name
// of a method backupd serves (known), or a caller's name for one it does
// not, cut short.
func methodLabel(full string) (label string, known bool) {
	if intercept.Serves(full) {
		return full, true
	}
	return redact.Cut(full, intercept.MaxMethodEcho), false
}

// requestArrivalTimeout bounds the wait for the first request of a call
// that takes no caller token: as long as an HTTP request's body may take.
const requestArrivalTimeout = intercept.ArrivalTimeout

// drainGrace is how long a request still arriving when the servers shut
// down has left to arrive, as a REST body has.
const drainGrace = intercept.DrainGrace

// errRequestLate cancels a call whose request did not arrive in time.
var errRequestLate = fmt.Errorf("the request did not arrive in time: within %s of the call's start, or %s once backupd began to shut down",
	requestArrivalTimeout, drainGrace)

// errRequestLateStatus answers a call whose request arrived just as its
// bound ended it.
var errRequestLateStatus = refused(&rpcerror.RequestError{Code: codes.Canceled, Reason: rpcerror.ReasonRequestLate, Msg: errRequestLate.Error()})

type arrivalKey struct{}

// boundArrival returns ctx, canceled unless requestArrived is called for
// it within i.arrival, or within drainGrace of the server's stop taking
// work (a call still waiting for its request would hold the graceful stop
// to its timeout).
//
// line, when not nil, is the log line of a BackupService call, which is
// logged when its request does not arrive in time.
func (i *interceptor) boundArrival(ctx context.Context, line *intercept.Line) context.Context {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	a := &arrival{line: line, start: start}
	wait, lateErr := i.arrival, errRequestLate
	select {
	case i.unvouched <- struct{}{}:
		a.release = func() { <-i.unvouched }
	default:
		// Over the bound, a call has a moment for its request rather
		// than none: canceled in the tap, grpc-go would keep its stream's
		// deadline timer (see tap).
		wait, lateErr = unvouchedArrival, errTooManyUnvouched
	}
	a.due = start.Add(wait)
	a.timer = time.AfterFunc(wait, func() {
		if !a.late() {
			return
		}
		cancel(lateErr)
		if line != nil {
			line.Code, line.Reason, line.Level, line.Err = codes.Canceled, rpcerror.ReasonRequestLate, slog.LevelWarn, lateErr
			i.Write(ctx, *line, start)
		}
	})
	if i.stopping != nil {
		a.stopDrain = context.AfterFunc(i.stopping, a.drain)
	}
	// A call that ends first (reset, refused, or its request undecodable)
	// stops the timer, which would otherwise hold the call's context, its
	// metadata included, until it fires.
	context.AfterFunc(ctx, func() { a.arrived() })
	return context.WithValue(ctx, arrivalKey{}, a)
}

// maxUnvouched bounds the calls that take no caller token, or whose caller
// backupd does not know, that may wait their full arrival bound for their
// request at once: grpc-go reads a whole message of up to maxRecvMsgSize
// before any interceptor runs, and without a bound anyone could make
// backupd hold that much on each of many streams of many connections.
// Such calls' requests are small and come at once (a health Check, a
// reflection query), so the bound is reached only by calls that hold
// their requests back; the calls beyond it get unvouchedArrival.
const (
	maxUnvouched     = 32
	unvouchedArrival = 100 * time.Millisecond
)

// errTooManyUnvouched cancels a call beyond maxUnvouched whose request did
// not arrive within unvouchedArrival.
var errTooManyUnvouched = fmt.Errorf("%d calls without a known caller were waiting for their request already, and this one's did not arrive within %s",
	maxUnvouched, unvouchedArrival)

// arrival is a call's bound on its request's arrival.
type arrival struct {
	timer     *time.Timer
	stopDrain func() bool // nil without a stop to follow
	due       time.Time   // when the bound ends, unless the drain shortens it
	// line, when not nil, is the log line of a BackupService call (of a
	// caller backupd does not know), begun at start: logged when its
	// request does not arrive in time, or grpc-go refuses it (unread).
	line  *intercept.Line
	start time.Time

	mu sync.Mutex
	// release gives up the call's place among the unvouched; nil for a
	// call without one, or once given up.
	release func()
	done    bool // the request arrived, the call ended, or it was too late
	wasLate bool
}

// arrived lifts the bound. It reports false when the bound had ended the
// call first.
func (a *arrival) arrived() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done = true
	if a.release != nil {
		a.release()
		a.release = nil
	}
	// Also for a call the bound ended: the watch on the stop would
	// otherwise hold it, its context included, until the server stops.
	a.timer.Stop()
	if a.stopDrain != nil {
		a.stopDrain()
	}
	return !a.wasLate
}

// late reports whether the request has yet to arrive, and marks the call
// as one whose request came too late.
func (a *arrival) late() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return false
	}
	a.done, a.wasLate = true, true
	return true
}

// refused marks the call as one whose request grpc-go refused to read.
// It reports whether the request was still awaited: the call's end is
// then the caller's to log.
func (a *arrival) refused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return false
	}
	a.done = true
	return true
}

// drain leaves a request not yet arrived drainGrace to arrive, or what is
// left of its bound if that is less.
func (a *arrival) drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.done && time.Until(a.due) > drainGrace {
		a.timer.Reset(drainGrace)
	}
}

// requestArrived lifts ctx's arrival bound, or lets go of its call held
// by i.awaiting, if it has either. It returns the call's error when the
// bound or the drain ended the call as its request arrived: the call must
// not run, and has been logged.
func (i *interceptor) requestArrived(ctx context.Context) error {
	if a, ok := ctx.Value(arrivalKey{}).(*arrival); ok && !a.arrived() {
		return errRequestLateStatus
	}
	if i.awaiting != nil {
		return i.awaiting.arrived(ctx)
	}
	return nil
}

// stream passes a streaming call's first request on to requestArrived, and
// ends a reflection stream when the server stops taking work.
func (i *interceptor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, ok := ss.Context().Value(arrivalKey{}).(*arrival); ok {
		ss = &arrivalStream{ServerStream: ss, arrived: i.requestArrived}
	}
	if strings.HasPrefix(info.FullMethod, reflectionPrefix) {
		caller := callerOf(ss.Context(), i.authz)
		release, err := i.reflecting.take(ss.Context(), caller)
		if err != nil {
			return err
		}
		defer release()
		ss = &stoppingStream{ServerStream: ss, stopping: i.stopping, idle: i.reflectionIdle}
	}
	return handler(srv, ss)
}

// maxReflections bounds the reflection streams open at once, for each
// caller that sends its token with them and for all others together
// (streamSlots): they take no token and last as long as their client
// keeps them (a gRPC GUI keeps one open), each holding a goroutine and its
// buffers. Tools use one or two.
const maxReflections = 64

// reflectionPrefix starts the full method names of gRPC reflection, v1 and
// v1alpha.
const reflectionPrefix = "/grpc.reflection."

// stoppingStream is a stream whose wait for its next request ends when
// stopping does, or after idle: grpc-go's reflection service waits for
// requests for as long as its client keeps the stream, and the graceful
// stop would wait for it, and streams kept without a request would keep
// the maxReflections places from others. Each wait runs in a goroutine of
// its own, which grpc-go ends when the call ends; reflection streams are
// few.
type stoppingStream struct {
	grpc.ServerStream
	stopping context.Context
	idle     time.Duration
}

func (s *stoppingStream) RecvMsg(m any) error {
	if s.stopping.Err() != nil {
		return errStopping
	}
	received := make(chan error, 1)
	go func() { received <- s.ServerStream.RecvMsg(m) }()
	idle := time.NewTimer(s.idle)
	defer idle.Stop()
	select {
	case err := <-received:
		return err
	case <-s.stopping.Done():
		return errStopping
	case <-idle.C:
		return errReflectionIdle
	}
}

// reflectionIdle is how long a reflection stream may go without a request:
// a tool asks its questions at once, and opens a new stream for more.
const reflectionIdle = 2 * time.Minute

var errReflectionIdle = refused(&rpcerror.RequestError{Code: codes.Unavailable, Reason: rpcerror.ReasonIdleStream,
	Msg: fmt.Sprintf("the reflection stream sent no request for %s; open a new one", reflectionIdle)})

var errStopping = refused(&rpcerror.RequestError{Code: codes.Unavailable, Reason: rpcerror.ReasonShuttingDown,
	Msg: "backupd is shutting down; reconnect to another replica", RetryAfter: rpcerror.DefaultRetryAfter})

// arrivalStream lifts its call's arrival bound once a request arrives.
type arrivalStream struct {
	grpc.ServerStream
	arrived func(context.Context) error
}

func (s *arrivalStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		err = s.arrived(s.Context()) // an error when the bound ended the call first
	}
	return err
}
