package ratelimit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that only moves when the limiter sleeps (or when the
// test says so), so the tests are exact and instant.
type fakeClock struct {
	t      time.Time
	cancel context.CancelFunc // when set, the next sleep is canceled (TestWaitCanceledReleasesTurn)
}

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.t = c.t.Add(d)
	return ctx.Err()
}

var (
	keyA = Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	keyB = Key{Account: "222222222222", Region: "us-east-1", Operation: "CreateBackup"}
)

func newTestLimiter(c *fakeClock, maxWait time.Duration, sleepAdvances bool) *Local {
	opts := Options{
		Rates:   map[Key]float64{keyA: 50, keyB: 50},
		MaxWait: maxWait,
		Now:     c.now,
		Sleep:   c.sleep,
	}
	if !sleepAdvances {
		opts.Sleep = func(context.Context, time.Duration) error { return nil }
	}
	return NewLocal(opts)
}

// The contract: at the default 50/s, no one-second window holds more than
// 50 granted calls, however many callers wait.
func TestWaitNeverExceedsRateInAnyWindow(t *testing.T) {
	c := &fakeClock{t: time.Now().Add(time.Hour)}
	l := newTestLimiter(c, time.Hour, true)
	var grants []time.Time
	for range 500 {
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		grants = append(grants, c.now())
	}
	for i := 50; i < len(grants); i++ {
		if span := grants[i].Sub(grants[i-50]); span < time.Second+DefaultGuard {
			t.Fatalf("calls %d..%d span %s: 51 calls within one second (+guard)", i-50, i, span)
		}
	}
	if total := grants[len(grants)-1].Sub(grants[0]); total > 11*time.Second {
		t.Errorf("500 calls took %s; want about 10.98s at 50/s with the guard", total)
	}
}

func TestWaitRefusesBeyondMaxWait(t *testing.T) {
	c := &fakeClock{t: time.Now().Add(time.Hour)}
	l := newTestLimiter(c, time.Second, false)
	granted, refused := 0, 0
	var firstRefusal *LimitedError
	for range 100 {
		err := l.Wait(context.Background(), keyA)
		var le *LimitedError
		switch {
		case err == nil:
			granted++
		case errors.As(err, &le):
			refused++
			if firstRefusal == nil {
				firstRefusal = le
			}
		default:
			t.Fatalf("Wait: %v", err)
		}
	}
	// Turns are at 0, 22ms, ... 990ms: 46 fit within a 1s wait.
	if granted != 46 || refused != 54 {
		t.Errorf("granted %d refused %d; want 46 and 54", granted, refused)
	}
	if firstRefusal.Key != keyA || firstRefusal.RetryAfter < time.Second || firstRefusal.RetryAfter > 1100*time.Millisecond {
		t.Errorf("refusal = %+v; want key A and RetryAfter just over 1s", firstRefusal)
	}
	// Refusals hold no place in line: once the admitted calls drain, a
	// new call passes at once.
	c.t = c.t.Add(firstRefusal.RetryAfter)
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Errorf("Wait after RetryAfter: %v", err)
	}
}

func TestWaitBoundedByDeadline(t *testing.T) {
	c := &fakeClock{t: time.Now().Add(time.Hour)}
	l := newTestLimiter(c, time.Second, false)
	ctx, cancel := context.WithDeadline(context.Background(), c.now().Add(100*time.Millisecond))
	defer cancel()
	granted := 0
	for range 20 {
		if l.Wait(ctx, keyA) == nil {
			granted++
		}
	}
	if granted != 5 { // turns at 0, 22, 44, 66, 88 ms
		t.Errorf("granted %d within a 100ms deadline; want 5", granted)
	}
}

// TestLeadBeforeDeadline: an operation with a lead goes no later than
// the lead before its deadline. A call whose turn comes later is refused
// as one beyond its deadline; one arriving with less than the lead left is
// refused at once (TooLateError) and takes no turn, so the next call goes
// at once. Turns come every 22 ms (50/s), the first at 0.
func TestLeadBeforeDeadline(t *testing.T) {
	tests := []struct {
		name     string
		lead     map[string]time.Duration
		deadline time.Duration
		granted  int // of 20 calls
		tooLate  bool
	}{
		{"no lead: turns until the deadline", nil, 100 * time.Millisecond, 5, false},
		{"lead: turns until the lead before it", map[string]time.Duration{keyA.Operation: 50 * time.Millisecond}, 100 * time.Millisecond, 3, false},
		// The turn at 44 ms leaves 52 ms: within wakeSlack of the lead,
		// a sleep that ends a moment late would give it up unsent.
		{"a turn within wakeSlack of the lead: refused at once", map[string]time.Duration{keyA.Operation: 50 * time.Millisecond}, 96 * time.Millisecond, 2, false},
		{"another operation's lead", map[string]time.Duration{"DeleteBackup": 50 * time.Millisecond}, 100 * time.Millisecond, 5, false},
		{"less than the lead left: none", map[string]time.Duration{keyA.Operation: 50 * time.Millisecond}, 49 * time.Millisecond, 0, true},
		{"the lead left exactly: the first", map[string]time.Duration{keyA.Operation: 50 * time.Millisecond}, 50 * time.Millisecond, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Now().Add(time.Hour)}
			var got decisions
			l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Lead: tt.lead, Now: c.now,
				Sleep: func(context.Context, time.Duration) error { return nil }, Observer: &got})
			ctx, cancel := context.WithDeadline(context.Background(), c.now().Add(tt.deadline))
			defer cancel()
			granted, late := 0, 0
			for range 20 {
				err := l.Wait(ctx, keyA)
				if err == nil {
					granted++
				}
				if tl, ok := errors.AsType[*TooLateError](err); ok {
					late++
					if tl.Key != keyA || !errors.Is(err, context.DeadlineExceeded) || !tl.NotSent() {
						t.Errorf("refusal %v: want one for key A, unwrapping to context.DeadlineExceeded, not sent", err)
					}
				} else if err != nil && !errors.As(err, new(*LimitedError)) {
					t.Errorf("refusal %v: want a LimitedError", err)
				}
			}
			if granted != tt.granted || (late == 20) != tt.tooLate || (late != 0) != tt.tooLate {
				t.Errorf("granted %d, too late %d of 20; want %d granted, all too late: %v", granted, late, tt.granted, tt.tooLate)
			}
			if tt.tooLate {
				if err := l.Wait(context.Background(), keyA); err != nil || got[len(got)-1] != keyA.String()+":"+Admitted || len(got) != 1 {
					t.Errorf("a call without a deadline after the refusals: %v, decisions %v; want it admitted at once, the refusals not counted", err, got)
				}
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	c := &fakeClock{t: time.Now().Add(time.Hour)}
	l := newTestLimiter(c, time.Second, false)
	for range 200 {
		_ = l.Wait(context.Background(), keyA)
	}
	if err := l.Wait(context.Background(), keyB); err != nil {
		t.Errorf("account B after flooding A: %v", err)
	}
}

func TestWaitUnknownKey(t *testing.T) {
	l := NewLocal(Options{})
	if err := l.Wait(context.Background(), keyA); err == nil {
		t.Error("Wait on an unconfigured key succeeded")
	}
}

// TestWaitCanceledReleasesTurn: a call canceled while it waits for its
// turn gives the turn back, and one whose context has ended before it
// asks takes none: either way the next call's turn is the one after the
// first call's, not a turn later.
func TestWaitCanceledReleasesTurn(t *testing.T) {
	for _, tt := range []struct {
		name  string
		wait  func(l *Local, c *fakeClock) error
		spent time.Duration // the clock's time the canceled call took
	}{
		{"canceled while it waits", func(l *Local, c *fakeClock) error {
			ctx, cancel := context.WithCancel(context.Background())
			c.cancel = cancel
			defer func() { c.cancel = nil }()
			return l.Wait(ctx, keyA)
		}, 10 * time.Millisecond},
		{"ended before it asks", func(l *Local, _ *fakeClock) error {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			return l.Wait(ctx, keyA)
		}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Now()}
			var slept []time.Duration
			l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Now: c.now,
				Sleep: func(ctx context.Context, d time.Duration) error {
					if c.cancel != nil { // canceled 10 ms into its wait
						c.t = c.t.Add(10 * time.Millisecond)
						c.cancel()
						return ctx.Err()
					}
					slept = append(slept, d)
					return c.sleep(ctx, d)
				}})
			if err := l.Wait(context.Background(), keyA); err != nil {
				t.Fatal(err)
			}
			err := tt.wait(l, c)
			if ie, ok := errors.AsType[*InterruptedError](err); !ok || ie.Key != keyA {
				t.Errorf("the canceled call: %v; want an InterruptedError for key A", err)
			}
			if err := l.Wait(context.Background(), keyA); err != nil {
				t.Fatal(err)
			}
			if want := 22*time.Millisecond - tt.spent; len(slept) != 1 || (slept[0]-want).Abs() > time.Microsecond {
				t.Errorf("the next call waited %v; want %v, the canceled call's turn", slept, want)
			}
		})
	}
}

// TestWaitAfterTheDeadlineTakesNoTurn: a call whose deadline has passed is
// not given a turn free at once (it could no longer be sent), and the
// next call gets that turn.
func TestWaitAfterTheDeadlineTakesNoTurn(t *testing.T) {
	c := &fakeClock{t: time.Now()}
	var slept []time.Duration
	l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Now: c.now,
		Sleep: func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return c.sleep(ctx, d) }})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := l.Wait(ctx, keyA); !errors.As(err, new(*InterruptedError)) {
		t.Errorf("a call past its deadline: %v; want an InterruptedError", err)
	}
	if err := l.Wait(context.Background(), keyA); err != nil || len(slept) != 0 {
		t.Errorf("the next call: %v after waiting %v; want its turn at once", err, slept)
	}
}

type decisions []string

func (d *decisions) ObserveLimit(account, region, operation, decision string) {
	*d = append(*d, account+"/"+region+"/"+operation+":"+decision)
}

// TestObserverSeesEveryDecision: the first call goes at once, the second
// waits its 22 ms turn, the third (beyond a 30 ms max wait) is refused.
func TestObserverSeesEveryDecision(t *testing.T) {
	c := &fakeClock{t: time.Now()}
	var got decisions
	l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 30 * time.Millisecond, Now: c.now,
		Sleep: func(context.Context, time.Duration) error { return nil }, Observer: &got})
	for range 3 {
		_ = l.Wait(context.Background(), keyA)
	}
	want := decisions{keyA.String() + ":" + Admitted, keyA.String() + ":" + Waited, keyA.String() + ":" + Refused}
	if !slices.Equal(got, want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
}

// TestStaleTurnCheckedAnew: a call whose sleep ended long after its turn
// (the process paused) queues again; when its new turn is free at once it
// is counted as having waited, and its deadline's lead is checked again:
// the pause may have eaten the time DynamoDB needs to answer.
func TestStaleTurnCheckedAnew(t *testing.T) {
	for _, tt := range []struct {
		name     string
		deadline time.Duration // from the start
		wantErr  bool
	}{
		{"time left", time.Hour, false},
		{"the pause took the lead", time.Second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now().Add(time.Hour)
			c := &fakeClock{t: start}
			var got decisions
			l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 2 * time.Second, Now: c.now,
				Lead: map[string]time.Duration{keyA.Operation: 50 * time.Millisecond},
				Sleep: func(ctx context.Context, d time.Duration) error {
					c.t = c.t.Add(d + 940*time.Millisecond) // woken 940 ms late
					return ctx.Err()
				}, Observer: &got})
			ctx, cancel := context.WithDeadline(context.Background(), start.Add(tt.deadline))
			defer cancel()
			if err := l.Wait(ctx, keyA); err != nil {
				t.Fatalf("the first call: %v; want its turn at once", err)
			}
			err := l.Wait(ctx, keyA) // its 22 ms turn, slept through
			if _, late := errors.AsType[*TooLateError](err); late != tt.wantErr || (err != nil) != tt.wantErr {
				t.Fatalf("the call woken late: %v; want a TooLateError: %v", err, tt.wantErr)
			}
			want := decisions{keyA.String() + ":" + Admitted}
			if !tt.wantErr {
				want = append(want, keyA.String()+":"+Waited)
			}
			if !slices.Equal(got, want) {
				t.Errorf("decisions = %v, want %v", got, want)
			}
		})
	}
}

// waiter is either limiter.
type waiter interface {
	Wait(ctx context.Context, k Key) error
}

// testStaleTurnsQueueAgain runs ten calls at once through the limiter mk
// builds, in a process that is paused (a stopped container, CPU
// throttling) from the start until 400 ms: every sleep ends no earlier.
// Nine turns, 22 ms apart, fall in the pause. Released together they would
// all go at 400 ms; queued again, they go 22 ms apart from there.
func testStaleTurnsQueueAgain(t *testing.T, mk func(Options) waiter) {
	resume := time.Now().Add(400 * time.Millisecond)
	paused := func(ctx context.Context, d time.Duration) error {
		if err := sleep(ctx, d); err != nil {
			return err
		}
		time.Sleep(time.Until(resume))
		return nil
	}
	l := mk(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 2 * time.Second, Sleep: paused})
	const n = 10
	var (
		mu   sync.Mutex
		went []time.Time
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			if err := l.Wait(context.Background(), keyA); err != nil {
				t.Error(err)
			}
			mu.Lock()
			went = append(went, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(went, time.Time.Compare)
	// The first went at once; the other nine after the pause, spread over
	// eight turns (176 ms). Together they would span a few ms.
	if span := went[n-1].Sub(went[1]); span < 4*spacing(50, DefaultGuard) {
		t.Errorf("the nine calls released by the pause went within %s; want them spaced, over about %s", span, 8*spacing(50, DefaultGuard))
	}
}

func TestStaleTurnsQueueAgain(t *testing.T) {
	testStaleTurnsQueueAgain(t, func(o Options) waiter { return NewLocal(o) })
}

// TestClockReadingsNeverGoBack: a caller that read the clock, then lost the
// CPU (or waited for the lock) while others took turns, must not move the
// limiter's clock back: x/time/rate would count the gap again as time in
// which turns went by, and bring the later calls closer than the rate.
// Here every tenth caller's reading is 25 ms old.
func TestClockReadingsNeverGoBack(t *testing.T) {
	base := time.Now().Add(time.Hour)
	cur := base
	var due []time.Time
	l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Hour,
		Now: func() time.Time { return cur },
		Sleep: func(_ context.Context, d time.Duration) error {
			due = append(due, cur.Add(d))
			return nil
		}})
	for i := range 201 {
		cur = base.Add(time.Duration(i) * 5 * time.Millisecond)
		if i%10 == 0 && i > 0 {
			cur = cur.Add(-25 * time.Millisecond)
		}
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			due = append(due, cur) // admitted at once
		}
	}
	slices.SortFunc(due, time.Time.Compare)
	for i := 50; i < len(due); i++ {
		// Turns are reckoned in float64 tokens: a nanosecond either way.
		if span := due[i].Sub(due[i-50]); span < time.Second+DefaultGuard-time.Microsecond {
			t.Fatalf("turns %d..%d span %s: 51 calls within one second and a guard", i-50, i, span)
		}
	}
}

// TestLateWakeUpQueuesAgain: a turn whose sleep ends more than half the
// guard late is stale, and its call queues again (the other half of the
// guard is for jitter on the way to DynamoDB). Queued again with no one
// ahead, it goes at once, but the next call's turn is then a whole spacing
// after it; a turn used late leaves the next one where it was, already
// past.
func TestLateWakeUpQueuesAgain(t *testing.T) {
	tests := []struct {
		late       time.Duration
		wantQueued bool
	}{
		{DefaultGuard / 4, false},
		{DefaultGuard / 2, false},
		{DefaultGuard/2 + time.Millisecond, true},
		{DefaultGuard, true},
	}
	for _, tt := range tests {
		t.Run(tt.late.String(), func(t *testing.T) {
			c := &fakeClock{t: time.Now().Add(time.Hour)}
			sleeps := 0
			l := NewLocal(Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Now: c.now,
				Sleep: func(ctx context.Context, d time.Duration) error {
					if sleeps++; sleeps == 1 {
						d += tt.late
					}
					return c.sleep(ctx, d)
				}})
			var went []time.Time
			for range 3 { // the first goes at once, the second wakes late
				if err := l.Wait(context.Background(), keyA); err != nil {
					t.Fatal(err)
				}
				went = append(went, c.now())
			}
			gap := went[2].Sub(went[1])
			if queued := gap >= spacing(50, DefaultGuard)-time.Microsecond; queued != tt.wantQueued {
				t.Errorf("woken %s late: the next call went %s after; want queued again %v", tt.late, gap, tt.wantQueued)
			}
		})
	}
}

// TestLateByOnlyWithAGuard: a turn reached more than slack past due is
// late, and so stale, only when the limiter keeps a guard: with none
// (Guard < 0) there is no slack a turn could be late within, and Redis'
// slack, half the guard less its clock's uncertainty, is then below zero,
// so every turn would be stale and its call queue again without end.
func TestLateByOnlyWithAGuard(t *testing.T) {
	const slack = DefaultGuard / 2
	tests := []struct {
		name  string
		guard time.Duration // Options.Guard
		late  time.Duration // how far past due the clock stands
		slack time.Duration
		want  bool
	}{
		{"on time", 0, 0, slack, false},
		{"within the slack", 0, slack, slack, false},
		{"past the slack", 0, slack + time.Nanosecond, slack, true},
		{"past a guard of its own's slack", 10 * time.Millisecond, 6 * time.Millisecond, 5 * time.Millisecond, true},
		{"no guard, an hour late", -1, time.Hour, 0, false},
		{"no guard, a slack below zero", -1, time.Nanosecond, -time.Millisecond, false},
		{"no guard, on time", -1, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			due := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
			p := newPolicy(Options{Guard: tt.guard, Now: func() time.Time { return due.Add(tt.late) }})
			if got := p.lateBy(due, tt.slack); got != tt.want {
				t.Errorf("with Guard %s, %s past due, slack %s: lateBy = %v; want %v", tt.guard, tt.late, tt.slack, got, tt.want)
			}
		})
	}
}

// TestLeadHeldWhenTheWakeUpIsLate: a call whose turn lies within the lead
// before its deadline, but whose sleep ends late (a stalled process, a
// busy scheduler: within the slack that still lets a turn go), is not let
// go with less than its lead left: it is refused as too late, nothing
// sent, and its turn given back.
func TestLeadHeldWhenTheWakeUpIsLate(t *testing.T) {
	c := &fakeClock{t: time.Now().Add(time.Hour)}
	const late = 40 * time.Millisecond // under the half guard a turn may be late by
	l := NewLocal(Options{Rates: map[Key]float64{keyA: 5}, MaxWait: time.Second, Lead: map[string]time.Duration{keyA.Operation: 50 * time.Millisecond},
		Now: c.now, Sleep: func(ctx context.Context, d time.Duration) error { c.t = c.t.Add(d + late); return nil }})
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Fatalf("first call: %v", err)
	}
	// The next turn is 220 ms out, 30 ms before the lead: within it.
	ctx, cancel := context.WithDeadline(context.Background(), c.now().Add(300*time.Millisecond))
	defer cancel()
	err := l.Wait(ctx, keyA)
	if dl, _ := ctx.Deadline(); err == nil {
		t.Fatalf("a call woken %s late was let go with %s of its deadline left; want a TooLateError, under the 50ms lead", late, dl.Sub(c.now()))
	}
	if _, ok := errors.AsType[*TooLateError](err); !ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("refusal %v: want a TooLateError", err)
	}
}

// TestHoldCountOnlyGrows: an answer read late, from a server left since,
// does not lower the count of holds a replica has seen.
func TestHoldCountOnlyGrows(t *testing.T) {
	var l Redis
	for _, gen := range []int64{3, 5, 4, 0, 6} {
		l.sawGen(gen)
	}
	if got := l.gen.Load(); got != 6 {
		t.Errorf("count %d after 3, 5, 4, 0, 6; want 6", got)
	}
	l.sawGen(5)
	if got := l.gen.Load(); got != 6 {
		t.Errorf("count %d after a late 5; want 6", got)
	}
}

// TestGuard: no guard configured is DefaultGuard; a negative one is none,
// never a second shorter than the rate's (a spacing below 1/rate).
func TestGuard(t *testing.T) {
	for _, tt := range []struct {
		guard, want time.Duration
	}{
		{0, DefaultGuard},
		{-time.Second, 0},
		{5 * time.Millisecond, 5 * time.Millisecond},
	} {
		if got := (Options{Guard: tt.guard}).guard(); got != tt.want {
			t.Errorf("guard %s: %s, want %s", tt.guard, got, tt.want)
		}
	}
}

// TestRefusalsSayNothingWasSent: the limiter's refusals tell the SDK not
// to retry them (RetryableError false: the caller is told when to come
// back) and tell backupd that nothing reached DynamoDB (NotSent).
func TestRefusalsSayNothingWasSent(t *testing.T) {
	type retryable interface{ RetryableError() bool }
	type unsent interface{ NotSent() bool }
	for _, tt := range []struct {
		name  string
		err   error
		retry bool // whether it has a RetryableError at all
	}{
		{"limited", &LimitedError{}, true},
		{"too late", &TooLateError{}, true},
		{"interrupted", &InterruptedError{Err: context.Canceled}, false},
	} {
		if r, ok := tt.err.(retryable); ok != tt.retry || ok && r.RetryableError() {
			t.Errorf("%s: RetryableError present %v, want %v, and false", tt.name, ok, tt.retry)
		}
		if u, ok := tt.err.(unsent); !ok || !u.NotSent() {
			t.Errorf("%s: want NotSent true", tt.name)
		}
	}
}

// TestDecisionLabels: the decisions are the label values the README gives
// backupd_ratelimit_decisions_total, which dashboards and alerts match.
func TestDecisionLabels(t *testing.T) {
	if Admitted != "admitted" || Waited != "waited" || Refused != "refused" {
		t.Errorf("decisions %q, %q, %q; want the README's admitted, waited, refused", Admitted, Waited, Refused)
	}
}

// TestLocalRefusal: a call whose turn lies beyond MaxWait is refused with
// the time to its turn, rounded and a millisecond more, never less (a
// client that comes back then finds its turn), and, Local having no
// shared state to recover, not as held.
func TestLocalRefusal(t *testing.T) {
	k := Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	if err := newPolicy(Options{}).refuse(k, 1500*time.Millisecond, false); err.(*LimitedError).RetryAfter != 1501*time.Millisecond {
		t.Errorf("refusal of a turn 1.5s away: %v; want retry after 1.501s", err)
	}
	t0 := time.Now()
	l := NewLocal(Options{Rates: map[Key]float64{k: 1}, Now: func() time.Time { return t0 }}) // no time passes between the calls
	if err := l.Wait(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	err := l.Wait(context.Background(), k)
	if le, ok := errors.AsType[*LimitedError](err); !ok || le.Held || le.RetryAfter <= 0 || le.RetryAfter > time.Second+DefaultGuard+time.Millisecond {
		t.Errorf("second call at 1/s with no wait: %#v; want refused, not held, retry within a second", err)
	}
}
