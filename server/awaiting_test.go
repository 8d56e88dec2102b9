package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/intercept"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/testenv"
)

// TestAwaitingCallsAreCutAtTheDrain: at the stop, a BackupService call
// still without its request has drainGrace left for it, then is canceled
// and logged once; one whose request arrived, or that ended first, is left
// alone. A call opened as the stop began gets the same grace, and one
// opened after the cut a grace of its own.
func TestAwaitingCallsAreCutAtTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		stopping, stop := context.WithCancel(context.Background())
		i := newInterceptor(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, nil)
		i.stopping = stopping
		i.awaiting = newAwaiting(i, stopping)
		method := backupv1.BackupService_CreateBackup_FullMethodName
		silent := i.holdUntilArrival(context.Background(), method)
		arrived := i.holdUntilArrival(context.Background(), method)
		if i.requestArrived(arrived) != nil {
			t.Fatal("a request arriving before the stop was refused")
		}
		parent, reset := context.WithCancel(context.Background())
		i.holdUntilArrival(parent, method) // reset by its caller
		reset()

		time.Sleep(time.Second)
		stop()
		late := i.holdUntilArrival(context.Background(), method)
		time.Sleep(drainGrace - time.Millisecond)
		if silent.Err() != nil || late.Err() != nil {
			t.Fatalf("a call without its request canceled before its grace ended (%v, %v)", silent.Err(), late.Err())
		}
		time.Sleep(2 * time.Millisecond)
		if silent.Err() == nil || late.Err() == nil {
			t.Errorf("a call without its request outlived its grace (%v, %v)", silent.Err(), late.Err())
		}
		if arrived.Err() != nil {
			t.Error("a call whose request arrived was canceled")
		}
		if err := i.requestArrived(silent); status.Code(err) != codes.Canceled || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonShuttingDown {
			t.Errorf("the request of a call cut at the drain: %v; want it refused, Canceled %s", err, rpcerror.ReasonShuttingDown)
		}
		afterCut := i.holdUntilArrival(context.Background(), method)
		time.Sleep(drainGrace - time.Millisecond)
		if afterCut.Err() != nil {
			t.Fatal("a call opened after the cut was canceled before its own grace ended")
		}
		time.Sleep(2 * time.Millisecond)
		if afterCut.Err() == nil {
			t.Error("a call opened after the cut outlived its grace")
		}
		if lines := logs.Lines(`"level":"WARN"`, `"method":"`+method+`"`, `"code":"Canceled"`, "drain's grace"); len(lines) != 3 {
			t.Errorf("want one line for each of the 3 calls cut off, none for the reset one; log:\n%s", logs.String())
		}
	})
}

// TestAwaitingArrivalAndCutRace: a request arriving as the drain cuts its
// call is either let through, and its call never canceled, or refused and
// logged by the cut alone; never both, never neither.
func TestAwaitingArrivalAndCutRace(t *testing.T) {
	logs := &testenv.Buffer{}
	stopping, stop := context.WithCancel(context.Background())
	i := &interceptor{Interceptor: intercept.New(intercept.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}), stopping: stopping}
	i.awaiting = newAwaiting(i, stopping)
	const n = 2000
	calls := make([]context.Context, n)
	for k := range calls {
		calls[k] = i.holdUntilArrival(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName)
	}
	let := make(chan bool, n)
	for _, c := range calls {
		go func() { let <- i.requestArrived(c) == nil }()
	}
	i.awaiting.cutAll()
	refused := 0
	for range n {
		if !<-let {
			refused++
		}
	}
	for k, c := range calls {
		if i.awaiting.arrived(c) == nil && c.Err() != nil {
			t.Fatalf("call %d: let through, then canceled", k)
		}
	}
	if lines := logs.Lines(`"code":"Canceled"`); len(lines) != refused {
		t.Errorf("%d calls refused, %d logged; want each refused call logged once", refused, len(lines))
	}
	stop()
}

// awaitingOrders is an interceptor with its wait for requests, which
// knows the caller "orders" (token orders-token, CreateBackup in
// 111111111111) and logs as JSON to logs, stopping when the test ends.
func awaitingOrders(t *testing.T) (*interceptor, *testenv.Buffer) {
	logs := &testenv.Buffer{}
	stopping, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	authz := callers.New([]config.Caller{{Name: "orders", TokenSHA256: callers.HashToken("orders-token"),
		Accounts: []string{"111111111111"}, Operations: []string{"CreateBackup"}}})
	i := &interceptor{Interceptor: intercept.New(intercept.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Authorizer: authz}),
		stopping: stopping, authz: authz}
	i.awaiting = newAwaiting(i, stopping)
	return i, logs
}

// TestAwaitingCallsEndedByTheirCallerAreLogged: a BackupService call its
// caller ends before its request arrives (a reset stream, a closed
// connection, its deadline) is logged and counted once, as any call its
// caller cancels is (over REST, a body its client abandons is), naming its
// caller; one whose request arrived first is left to its handler, and a
// request arriving after the line was written is refused, not run.
func TestAwaitingCallsEndedByTheirCallerAreLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i, logs := awaitingOrders(t)
		method := backupv1.BackupService_CreateBackup_FullMethodName
		md := metadata.Pairs("authorization", "Bearer orders-token")

		resetParent, reset := context.WithCancel(metadata.NewIncomingContext(context.Background(), md))
		resetCall := i.holdUntilArrival(resetParent, method)
		deadlineParent, cancelDeadline := context.WithTimeout(metadata.NewIncomingContext(context.Background(), md), 250*time.Millisecond)
		defer cancelDeadline()
		i.holdUntilArrival(deadlineParent, method)
		arrivedParent, resetArrived := context.WithCancel(context.Background())
		arrivedCall := i.holdUntilArrival(arrivedParent, method)
		if i.requestArrived(arrivedCall) != nil {
			t.Fatal("a request arriving in time was refused")
		}
		reset()
		resetArrived() // its handler logs it
		time.Sleep(time.Second)

		if lines := logs.Lines(`"level":"INFO"`, `"method":"`+method+`"`, `"principal":"orders"`, `"code":"Canceled"`, `"reason":"CANCELED"`); len(lines) != 1 {
			t.Errorf("want one line for the call reset before its request came; log:\n%s", logs.String())
		}
		// Its duration runs to its deadline, not to the sweep that found it ended.
		if lines := logs.Lines(`"level":"WARN"`, `"method":"`+method+`"`, `"code":"DeadlineExceeded"`, `"reason":"DEADLINE_EXCEEDED"`, "before its request was read",
			`"duration":250000000`); len(lines) != 1 {
			t.Errorf("want one line for the call whose deadline passed before its request came, of 250ms; log:\n%s", logs.String())
		}
		if n := len(logs.Lines(`"msg":"request"`)); n != 2 {
			t.Errorf("%d lines; want the 2 above, none for the call whose request arrived; log:\n%s", n, logs.String())
		}
		if err := i.requestArrived(resetCall); status.Code(err) != codes.Canceled || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonCanceled {
			t.Errorf("the request of a call logged as ended by its caller: %v; want it refused, Canceled %s", err, rpcerror.ReasonCanceled)
		}
	})
}

// TestAwaitingCallArrivingPastItsDeadlineHasNoNegativeDuration: a call
// whose deadline had passed when the tap held it (grpc-timeout: 1n; grpc-go
// sets the deadline before the tap takes the start) is logged with a
// duration of zero, not one running back to its deadline, before its start.
func TestAwaitingCallArrivingPastItsDeadlineHasNoNegativeDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i, logs := awaitingOrders(t)
		method := backupv1.BackupService_CreateBackup_FullMethodName
		md := metadata.Pairs("authorization", "Bearer orders-token")
		parent, cancel := context.WithDeadline(metadata.NewIncomingContext(context.Background(), md), time.Now().Add(-time.Millisecond))
		defer cancel()
		i.holdUntilArrival(parent, method)
		time.Sleep(time.Second)
		if lines := logs.Lines(`"code":"DeadlineExceeded"`, `"duration":0,`); len(lines) != 1 {
			t.Errorf("want one line of duration 0 for the call that arrived past its deadline; log:\n%s", logs.String())
		}
	})
}

// TestAwaitingCallCanceledAtItsDeadlineIsADeadline: a call whose
// deadline passes before its request arrives is canceled by grpc-go's
// timer for the deadline (or reset by its client's) as the context's own
// timer would end it, and either may come first: canceled so, it is
// logged and counted as the deadline it is, not as a call its caller
// canceled; one reset well before its deadline is still CANCELED.
func TestAwaitingCallCanceledAtItsDeadlineIsADeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i, logs := awaitingOrders(t)
		method := backupv1.BackupService_CreateBackup_FullMethodName
		md := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer orders-token"))
		atDeadline, cancelAtDeadline := context.WithCancel(md)
		i.holdUntilArrival(withDeadline{atDeadline, time.Now().Add(300 * time.Millisecond)}, method)
		time.AfterFunc(300*time.Millisecond, cancelAtDeadline) // grpc-go's timer, first
		early, reset := context.WithCancel(md)
		defer reset()
		i.holdUntilArrival(withDeadline{early, time.Now().Add(time.Minute)}, method)
		time.AfterFunc(300*time.Millisecond, reset)
		time.Sleep(time.Second)

		if lines := logs.Lines(`"level":"WARN"`, `"code":"DeadlineExceeded"`, `"reason":"DEADLINE_EXCEEDED"`, "before its request was read"); len(lines) != 1 {
			t.Errorf("want one DEADLINE_EXCEEDED line, for the call canceled at its deadline; log:\n%s", logs.String())
		}
		if lines := logs.Lines(`"level":"INFO"`, `"code":"Canceled"`, `"reason":"CANCELED"`); len(lines) != 1 {
			t.Errorf("want one CANCELED line, for the call reset a minute before its deadline; log:\n%s", logs.String())
		}
	})
}

// withDeadline is a context with a deadline that does not end it: as
// grpc-go's stream context is, when grpc-go's timer for the deadline
// cancels it before the context's own timer fires.
type withDeadline struct {
	context.Context
	deadline time.Time
}

func (c withDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

// TestAwaitingCutNamesTheCaller: the line of a call cut at the drain
// names its caller, whom the tap knew by its token.
func TestAwaitingCutNamesTheCaller(t *testing.T) {
	i, logs := awaitingOrders(t)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer orders-token"))
	i.holdUntilArrival(ctx, backupv1.BackupService_CreateBackup_FullMethodName)
	i.awaiting.cutAll()
	if lines := logs.Lines(`"principal":"orders"`, `"code":"Canceled"`, `"reason":"SHUTTING_DOWN"`); len(lines) != 1 {
		t.Errorf("want the cut call's line naming its caller; log:\n%s", logs.String())
	}
}

// TestAwaitingForgetsEndedCalls: calls reset before their request came
// are swept out, so the calls held stay bounded by those still open.
func TestAwaitingForgetsEndedCalls(t *testing.T) {
	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	i := &interceptor{Interceptor: intercept.New(intercept.Options{Logger: slog.New(slog.DiscardHandler)}), stopping: stopping}
	i.awaiting = newAwaiting(i, stopping)
	open := i.holdUntilArrival(context.Background(), "m")
	for range 10000 {
		parent, reset := context.WithCancel(context.Background())
		i.holdUntilArrival(parent, "m")
		reset()
	}
	i.awaiting.mu.Lock()
	n := len(i.awaiting.calls)
	_, kept := i.awaiting.calls[open.(*awaitingCall)]
	i.awaiting.mu.Unlock()
	if n > 200 || !kept {
		t.Errorf("%d calls held after 10000 ended (open one kept: %v); want the open one and few others", n, kept)
	}
}

// TestLateRequestOfAnUnknownCallerIsLogged: a BackupService call of a
// caller backupd does not know, whose deadline lies further out than the
// arrival bound (so the interceptor is to refuse it once its request is
// in), is logged when it is canceled for a request that never came, as a
// call cut at the drain is; a health check's is not a request's line.
func TestLateRequestOfAnUnknownCallerIsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		stopping, stop := context.WithCancel(context.Background())
		i := newInterceptor(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, nil)
		i.stopping = stopping
		method := backupv1.BackupService_CreateBackup_FullMethodName
		silent := i.boundArrival(fromPeer(1), &intercept.Line{Method: method})
		arrived := i.boundArrival(fromPeer(2), &intercept.Line{Method: method})
		i.requestArrived(arrived)
		health := i.boundArrival(context.Background(), nil)
		stop()
		time.Sleep(drainGrace + time.Millisecond)
		if silent.Err() == nil || health.Err() == nil || arrived.Err() != nil {
			t.Fatalf("canceled: silent %v, health check %v, arrived %v; want the first two", silent.Err(), health.Err(), arrived.Err())
		}
		if err := i.requestArrived(silent); !errors.Is(err, errRequestLateStatus) || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonRequestLate {
			t.Errorf("the request of a call its bound ended, arriving then: %v; want it refused", err)
		}
		if lines := logs.Lines(`"level":"WARN"`, `"method":"`+method+`"`, `"caller":"127.0.0.1:1"`, `"code":"Canceled"`, `"reason":"REQUEST_NOT_ARRIVED"`, "did not arrive in time"); len(lines) != 1 ||
			len(logs.Lines(`"msg":"request"`)) != 1 {
			t.Errorf("want one line, for the silent call; log:\n%s", logs.String())
		}
	})
}

// fromPeer is the context of a gRPC call from 127.0.0.1:port.
func fromPeer(port int) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}})
}

// TestCutOffCallsAreLoggedAsTheCallerSawThem: a call cut off by the
// shutdown's timeout ends with its context canceled, as one its caller
// left does; its line says what its caller got as the connection closed,
// UNAVAILABLE at WARN, rather than CANCELLED at INFO. Before the cut off,
// a canceled call is its caller's doing.
func TestCutOffCallsAreLoggedAsTheCallerSawThem(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprintf("cut off %v", cut), func(t *testing.T) {
			logs := &testenv.Buffer{}
			h := NewHealth()
			i := intercept.New(intercept.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), CutOff: h.cutOff})
			if cut {
				h.CutOff()
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			st := i.Record(ctx, intercept.Finished{Method: backupv1.BackupService_CreateBackup_FullMethodName, Start: time.Now(), Err: context.Canceled})
			want := []string{`"level":"INFO"`, `"code":"Canceled"`}
			if cut {
				want = []string{`"level":"WARN"`, `"code":"Unavailable"`, "cut off by shutdown_timeout"}
			}
			if st == nil || len(logs.Lines(want...)) != 1 {
				t.Errorf("want a line with %q; log:\n%s", want, logs.String())
			}
		})
	}
}

// TestUnvouchedCallsAreBounded: no more than maxUnvouched calls without a
// known caller wait their full bound for their request at once; the next
// has unvouchedArrival, is canceled and logged then, and a place is given
// back when a request arrives or a call ends.
func TestUnvouchedCallsAreBounded(t *testing.T) {
	logs := &testenv.Buffer{}
	i := newInterceptor(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), testKnobs: testKnobs{requestArrival: time.Hour}}, nil)
	method := backupv1.BackupService_CreateBackup_FullMethodName
	waiting := make([]context.Context, maxUnvouched)
	ends := make([]context.CancelFunc, maxUnvouched)
	for n := range waiting {
		var ctx context.Context
		ctx, ends[n] = context.WithCancel(context.Background())
		defer ends[n]()
		waiting[n] = i.boundArrival(ctx, nil)
		if waiting[n].Err() != nil {
			t.Fatalf("call %d of %d canceled", n+1, maxUnvouched)
		}
	}
	over := i.boundArrival(fromPeer(1), &intercept.Line{Method: method})
	select {
	case <-over.Done():
		if !errors.Is(context.Cause(over), errTooManyUnvouched) {
			t.Fatalf("call %d: %v; want it canceled as one over the bound", maxUnvouched+1, context.Cause(over))
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("call %d not canceled %s after it began; want it within %s", maxUnvouched+1, 5*time.Second, unvouchedArrival)
	}
	warned := func() int {
		return len(logs.Lines(`"level":"WARN"`, `"method":"`+method+`"`, `"code":"Canceled"`, "waiting for their request already"))
	}
	for deadline := time.Now().Add(5 * time.Second); warned() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // written just after the cancel
	}
	if warned() != 1 {
		t.Errorf("want one WARN line for the call over the bound; log:\n%s", logs.String())
	}
	if err := i.requestArrived(waiting[0]); err != nil { // a request arrives
		t.Fatal(err)
	}
	ends[1]() // a call ends
	deadline := time.Now().Add(5 * time.Second)
	for len(i.unvouched) > maxUnvouched-2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the call's end runs its AfterFunc on a goroutine of its own
	}
	for n := range 2 {
		if ctx := i.boundArrival(context.Background(), nil); ctx.Err() != nil {
			t.Errorf("call %d after two places were given back: canceled", n+1)
		}
	}
}

// TestAwaitingEndsLateRequests: a known caller's call whose request has not
// arrived within the arrival bound is ended (canceled, logged
// REQUEST_NOT_ARRIVED), however many wait: grpc-go would hold a whole
// unfinished message for each, for as long as the connection lasts. Many
// calls waiting at once are not ended sooner: a burst's requests wait for
// the goroutines that read them.
func TestAwaitingEndsLateRequests(t *testing.T) {
	for _, tt := range []struct {
		name    string
		arrival time.Duration
		calls   int
		remain  int // calls left waiting for their request
	}{
		{"past the arrival bound", 300 * time.Millisecond, 3, 0},
		{"many past the arrival bound", 300 * time.Millisecond, 200, 0},
		{"many waiting within the bound", time.Hour, 200, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			stopping, stop := context.WithCancel(context.Background())
			defer stop()
			i := &interceptor{Interceptor: intercept.New(intercept.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}), stopping: stopping, arrival: tt.arrival}
			i.awaiting = newAwaiting(i, stopping)
			calls := make([]context.Context, tt.calls)
			for k := range calls {
				calls[k] = i.holdUntilArrival(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName)
			}
			waiting := func() int {
				n := 0
				for _, c := range calls {
					if c.Err() == nil {
						n++
					}
				}
				return n
			}
			if waiting() != tt.calls {
				t.Fatal("a call was ended at once")
			}
			for deadline := time.Now().Add(5 * time.Second); waiting() > tt.remain && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(5 * sweepEvery) // the sweep under way ends, and more pass
			if n := waiting(); n != tt.remain {
				t.Fatalf("%d calls still wait for their request; want %d", n, tt.remain)
			}
			ended := 0
			for k, c := range calls {
				if c.Err() == nil {
					continue
				}
				ended++
				if err := i.requestArrived(c); status.Code(err) != codes.Canceled || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonRequestLate {
					t.Errorf("call %d's request, arriving late: %v; want CANCELLED %s", k, err, rpcerror.ReasonRequestLate)
				}
			}
			if n := len(logs.Lines(`"code":"Canceled"`, rpcerror.ReasonRequestLate)); n != ended {
				t.Errorf("%d lines of late requests for %d calls ended:\n%s", n, ended, logs.String())
			}
		})
	}
	// A call whose request comes at once is not ended.
	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	i := &interceptor{Interceptor: intercept.New(intercept.Options{Logger: slog.New(slog.DiscardHandler)}), stopping: stopping, arrival: 300 * time.Millisecond}
	i.awaiting = newAwaiting(i, stopping)
	c := i.holdUntilArrival(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName)
	if err := i.requestArrived(c); err != nil {
		t.Fatalf("a request that came at once: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if c.Err() != nil {
		t.Error("a call whose request arrived was ended")
	}
}

// TestRefusedKnownCallerWithAFarDeadlineTakesNoUnvouchedPlace: a known
// caller refused its method in every account, whose deadline lies past
// the arrival bound, is refused once its request is in, and waits for it
// as a known caller does: not in one of maxUnvouched's places, kept for
// calls without a known caller, where it would be told that it has none.
func TestRefusedKnownCallerWithAFarDeadlineTakesNoUnvouchedPlace(t *testing.T) {
	i := newInterceptor(Options{Logger: slog.New(slog.DiscardHandler), Authorizer: callers.New([]config.Caller{{Name: "scraper",
		TokenSHA256: callers.HashToken("scraper-token"), Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}}})}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer scraper-token"))
	if _, err := i.tap(ctx, &tap.Info{FullMethodName: backupv1.BackupService_CreateBackup_FullMethodName}); err != nil {
		t.Fatalf("tap: %v; want the call let on to its request, which its deadline lies past the bound", err)
	}
	if n := len(i.unvouched); n != 0 {
		t.Errorf("%d places of maxUnvouched taken; want none for a known caller", n)
	}
}

// TestAwaitingSweepsOnlyWhileCallsWait: the sweep's ticker runs while a
// call waits for its request and stops at the first sweep that finds none,
// so that an idle server is not woken every sweepEvery; the next call
// starts it again.
func TestAwaitingSweepsOnlyWhileCallsWait(t *testing.T) {
	i, _ := awaitingOrders(t)
	a := i.awaiting
	ticking := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.ticking
	}
	if ticking() {
		t.Fatal("the sweep ticks with no call held")
	}
	for round := range 2 {
		ctx := i.holdUntilArrival(context.Background(), backupv1.BackupService_CreateBackup_FullMethodName)
		if !ticking() {
			t.Fatalf("round %d: a call waits for its request and the sweep does not tick", round)
		}
		if err := i.requestArrived(ctx); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * sweepEvery); ticking(); time.Sleep(sweepEvery / 10) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the sweep still ticks %s after the last call's request arrived", round, 10*sweepEvery)
			}
		}
		// The ticker itself stopped, not only the flag that says so.
		swept := a.sweeps.Load()
		time.Sleep(3 * sweepEvery)
		if n := a.sweeps.Load() - swept; n != 0 {
			t.Fatalf("round %d: %d sweeps with no call held; want none", round, n)
		}
	}
}
