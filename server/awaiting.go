package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// awaiting holds the BackupService calls whose request has yet to arrive,
// so that the drain can give each drainGrace for it, as it gives a REST
// body, rather than wait on a caller that opened a call and sent nothing
// until shutdown_timeout cuts every call off. A call that still has no
// request then is canceled (grpc-go answers CANCELLED), logged and
// counted; nothing was done for it.
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
}

// awaitingCall is a call's context until its request arrives.
type awaitingCall struct {
	context.Context
	cancel context.CancelFunc
	method string
	start  time.Time
}

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
	a := &awaiting{i: i, calls: make(map[*awaitingCall]struct{})}
	context.AfterFunc(stopping, func() { time.AfterFunc(drainGrace, a.cut) })
	return a
}

// hold returns ctx, to be canceled if the drain's grace passes before
// arrived is called for it.
func (a *awaiting) hold(ctx context.Context, method string) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	c := &awaitingCall{Context: ctx, cancel: cancel, method: method, start: time.Now()}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) >= 2*a.swept+64 {
		for other := range a.calls {
			if other.Err() != nil {
				delete(a.calls, other)
			}
		}
		a.swept = len(a.calls)
	}
	a.calls[c] = struct{}{}
	return c
}

// arrived lets go of ctx's call, if it is held: its request is in.
func (a *awaiting) arrived(ctx context.Context) {
	c, ok := ctx.Value(awaitingKey{}).(*awaitingCall)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.calls, c)
}

// cut cancels the calls still without a request, and logs each.
func (a *awaiting) cut() {
	a.mu.Lock()
	calls := a.calls
	a.calls = make(map[*awaitingCall]struct{})
	a.mu.Unlock()
	for c := range calls {
		if c.Err() != nil {
			continue // ended already
		}
		c.cancel()
		a.i.write(c, requestLine{method: c.method, caller: caller(c), code: codes.Canceled, level: slog.LevelInfo}, c.start)
	}
}
