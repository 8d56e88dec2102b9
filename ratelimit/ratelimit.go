// Package ratelimit keeps each (account, region, operation) under its call
// rate, so DynamoDB never sees more calls from backupd than the account's
// documented control-plane limit.
//
// Calls are spaced evenly (burst 1) rather than counted in fixed windows: a
// fixed window lets 2N calls through across a window boundary, while even
// spacing keeps every one-second window at N or fewer. A caller over the rate
// waits its turn up to a bound; one whose turn lies further out is refused at
// once with the time to come back.
package ratelimit

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Key identifies one rate-limited stream of calls.
type Key struct {
	Account   string
	Region    string
	Operation string
}

func (k Key) String() string { return k.Account + "/" + k.Region + "/" + k.Operation }

// LimitedError refuses a call whose turn lies beyond the caller's patience.
type LimitedError struct {
	Key Key
	// RetryAfter is how long until the calls already admitted have drained
	// to this point; coming back after it, the call would pass at once.
	RetryAfter time.Duration
	// Held says the turns are held back after the shared state lost data
	// or Redis' clock stepped (Redis), not taken by calls over the rate.
	Held bool
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("rate limit of %s for account %s in %s reached; retry after %s",
		e.Key.Operation, e.Key.Account, e.Key.Region, e.RetryAfter)
}

// RetryableError tells the AWS SDK's retryer not to retry a refusal: the
// caller, not the SDK, decides when to come back.
func (e *LimitedError) RetryableError() bool { return false }

// NotSent says the call was not made: nothing reached DynamoDB.
func (e *LimitedError) NotSent() bool { return true }

// DefaultGuard is the slack added to every one-second window. Calls leave
// backupd evenly spaced, but reach DynamoDB with network and scheduling
// jitter; spacing N calls over 1s+guard keeps N+1 of them from landing in
// one second unless the first is delayed by a guard more than the last.
// With a 50 ms guard, the full test suite on a busy two-core machine once
// saw 51 calls land in one second at the emulator: a stall held one call
// back about 60 ms (the widest gap between arrivals was 84 ms, for 21 ms
// turns). So the guard is 100 ms: 50/s becomes one call every 22 ms, 45.5
// per second.
const DefaultGuard = 100 * time.Millisecond

// InterruptedError is a wait for a turn that ended with its context. The
// call was not made; the type says so to whoever must know whether
// DynamoDB may have acted (a request_id's run), while Unwrap still gives
// the context's error for the caller's status.
type InterruptedError struct {
	Key Key
	Err error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("waiting for a %s turn for account %s in %s: %v", e.Key.Operation, e.Key.Account, e.Key.Region, e.Err)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// NotSent says the call was not made: nothing reached DynamoDB.
func (e *InterruptedError) NotSent() bool { return true }

// TooLateError refuses a call that arrives with less than its operation's
// lead (Options.Lead) left before its deadline: sent, it would most likely
// not be answered in time, and for an operation DynamoDB cannot be asked
// twice (CreateBackup) the caller would be told that a backup may or may
// not exist. It unwraps to context.DeadlineExceeded, the caller's status.
type TooLateError struct {
	Key  Key
	Lead time.Duration
}

func (e *TooLateError) Error() string {
	return fmt.Sprintf("%s for account %s in %s not sent: less than %s of its deadline was left, too little for DynamoDB to answer in time",
		e.Key.Operation, e.Key.Account, e.Key.Region, e.Lead)
}

func (e *TooLateError) Unwrap() error { return context.DeadlineExceeded }

// RetryableError tells the AWS SDK's retryer not to retry: no time is left.
func (e *TooLateError) RetryableError() bool { return false }

// NotSent says the call was not made: nothing reached DynamoDB.
func (e *TooLateError) NotSent() bool { return true }

// Options configures a limiter, in process (NewLocal) or shared in Redis
// (NewRedis).
type Options struct {
	// Rates are calls per second per key; a key that is not here is refused.
	Rates map[Key]float64
	// MaxWait bounds how long a call waits its turn (further bounded by the
	// context's deadline).
	MaxWait time.Duration
	// Lead is, per operation, how long before its context's deadline a
	// call must go at the latest: a turn later than that is refused as
	// one beyond the deadline, and a call arriving later than that is
	// refused at once (TooLateError), as is one that reaches its turn
	// later than that (a sleep that ended late, Redis' answer after the
	// turn), its turn given up. Operations not here may go until the
	// deadline itself.
	Lead map[string]time.Duration
	// Guard is added to the one-second window; zero means DefaultGuard,
	// negative means none.
	Guard time.Duration
	// Now and Sleep let tests drive time; nil means the real clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Observer is told of every decision; nil means none.
	Observer Observer
}

// Observer counts the limiter's decisions (package metrics).
type Observer interface {
	ObserveLimit(account, region, operation, decision string)
}

// The decisions an Observer is told of.
const (
	Admitted = "admitted" // at once
	Waited   = "waited"   // after waiting its turn
	Refused  = "refused"  // its turn lay too far out
)

// policy is what both limiters share: each key's spacing between calls,
// how long a call may wait its turn, and who hears of the decisions.
type policy struct {
	spacing  map[Key]time.Duration
	maxWait  time.Duration
	lead     map[string]time.Duration
	guard    time.Duration
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error
	observer Observer
}

func newPolicy(opts Options) policy {
	guard := opts.guard()
	p := policy{spacing: make(map[Key]time.Duration, len(opts.Rates)), maxWait: opts.MaxWait, lead: maps.Clone(opts.Lead), guard: guard,
		now: opts.Now, sleep: opts.Sleep, observer: opts.Observer}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sleep == nil {
		p.sleep = sleep
	}
	for k, perSecond := range opts.Rates {
		p.spacing[k] = spacing(perSecond, guard)
	}
	return p
}

// spacing is the time between calls at perSecond calls per second with
// guard added to each second.
func spacing(perSecond float64, guard time.Duration) time.Duration {
	return time.Duration(float64(time.Second+guard) / perSecond)
}

// wakeSlack is how late a sleep until a turn may end, kept from the
// patience of an operation with a lead: a turn placed at the very end of
// its patience, reached a moment late, would be given up unsent
// (tooLate) after the call had waited for it, where it should have been
// refused at once, with its RetryInfo.
const wakeSlack = 5 * time.Millisecond

// patience is until when a call for k arriving at now may wait: MaxWait,
// bounded by the context's deadline less the operation's lead (and
// wakeSlack, for an operation with one). A call
// arriving with less than its lead left gets a *TooLateError (tooLate),
// and one whose context has ended an *InterruptedError: a turn free at
// once would otherwise go to a call that can no longer be sent.
func (p policy) patience(ctx context.Context, k Key, now time.Time) (time.Time, error) {
	if err := p.tooLate(ctx, k, now); err != nil {
		return time.Time{}, err
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, &InterruptedError{Key: k, Err: context.Cause(ctx)}
	}
	end := now.Add(p.maxWait)
	if dl, ok := ctx.Deadline(); ok {
		if lead := p.lead[k.Operation]; lead > 0 {
			dl = dl.Add(-lead - wakeSlack)
		}
		if dl.Before(end) {
			return dl, nil
		}
	}
	return end, nil
}

// await sleeps until due, a turn's time by this process's clock, and
// records the wait, or returns an *InterruptedError when ctx ends first. It
// reports the turn stale when the sleep ended more than slack after due:
// the process was paused (a stopped container, CPU throttling), and the
// calls it releases together would crowd one second, so the caller must
// queue again. slack is how late past due a sleep may end: half the guard
// for Local, the other half being for jitter on the way to DynamoDB (a
// turn sent the whole guard late, and the turn a second and a guard after
// it sent on time, would be a second apart with the rate's number of calls
// between them); less for Redis, whose turns are placed only so closely
// (see Redis.Wait).
func (p policy) await(ctx context.Context, k Key, due time.Time, slack time.Duration) (stale bool, err error) {
	if err := p.sleep(ctx, due.Sub(p.now())); err != nil {
		return false, &InterruptedError{Key: k, Err: err}
	}
	if p.lateBy(due, slack) {
		return true, nil
	}
	if err := p.tooLate(ctx, k, p.now()); err != nil {
		return false, err
	}
	p.observe(k, Waited)
	return false, nil
}

// tooLate refuses a call for k that would go at now with less than its
// operation's lead left before ctx's deadline (a *TooLateError), and
// returns nil when it may go: on arrival, and again when a turn within
// the lead (patience) was reached late (a sleep that ended late, or
// Redis' answer that came after the turn, within the slack a turn may
// still go by). Not the rate's refusal: the decisions observed leave it
// out.
func (p policy) tooLate(ctx context.Context, k Key, now time.Time) error {
	lead := p.lead[k.Operation]
	if lead <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < lead {
		return &TooLateError{Key: k, Lead: lead}
	}
	return nil
}

// lateBy reports whether now is more than slack past due, when there is a
// guard.
func (p policy) lateBy(due time.Time, slack time.Duration) bool {
	return p.guard > 0 && p.now().Sub(due) > slack
}

// admitted records a call let go at once: admitted, or waited when it
// had queued before (its first turn went stale).
func (p policy) admitted(k Key, waited bool) {
	if waited {
		p.observe(k, Waited)
	} else {
		p.observe(k, Admitted)
	}
}

// refuse records and returns the refusal of a call whose turn is delay
// away, held there or not (LimitedError.Held).
func (p policy) refuse(k Key, delay time.Duration, held bool) error {
	p.observe(k, Refused)
	return &LimitedError{Key: k, RetryAfter: delay.Round(time.Millisecond) + time.Millisecond, Held: held}
}

// observe tells the observer, when there is one, of a decision for k.
func (p policy) observe(k Key, decision string) {
	if p.observer != nil {
		p.observer.ObserveLimit(k.Account, k.Region, k.Operation, decision)
	}
}

// guard is the configured guard, with the default applied.
func (opts Options) guard() time.Duration {
	switch {
	case opts.Guard == 0:
		return DefaultGuard
	case opts.Guard < 0:
		return 0
	}
	return opts.Guard
}

// Local limits calls within one process. Its map is built once and only read
// afterwards, so Wait takes no lock for it.
type Local struct {
	policy
	limiters map[Key]*turns
}

// turns hands out one key's turns. rate.Limiter takes the time of each
// reservation from its caller, and a time earlier than the last one's
// moves its clock back: the gap is then counted again as time in which
// turns went by, and the calls after it come closer together than the
// rate. A caller that read the clock, then waited for the CPU or for the
// limiter's lock while another reserved, would pass such a time. So the
// clock is read, never earlier than the last reading, under turns' own
// lock.
type turns struct {
	mu   sync.Mutex
	lim  *rate.Limiter
	last time.Time
}

// cancel gives r back, as far as no later turn was taken after it.
func (t *turns) cancel(r *rate.Reservation, now func() time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.CancelAt(t.nowLocked(now))
}

func (t *turns) nowLocked(now func() time.Time) time.Time {
	if at := now(); at.After(t.last) {
		t.last = at
	}
	return t.last
}

// NewLocal builds a limiter for every key in opts.Rates.
func NewLocal(opts Options) *Local {
	l := &Local{policy: newPolicy(opts), limiters: make(map[Key]*turns, len(opts.Rates))}
	for k, d := range l.spacing {
		l.limiters[k] = &turns{lim: rate.NewLimiter(rate.Every(d), 1)}
	}
	return l
}

// Wait returns when the call for k may go, or a *LimitedError at once when
// its turn lies beyond MaxWait or the context's deadline, or an
// *InterruptedError when the context ends while waiting.
func (l *Local) Wait(ctx context.Context, k Key) error {
	t, ok := l.limiters[k]
	if !ok {
		return fmt.Errorf("ratelimit: no rate configured for %s", k)
	}
	until, err := l.patience(ctx, k, l.now())
	if err != nil {
		return err
	}
	for waited := false; ; waited = true {
		// The turn is taken here, not in a method of turns, so that
		// its reservation stays on the stack.
		t.mu.Lock()
		now := t.nowLocked(l.now)
		r := t.lim.ReserveN(now, 1)
		t.mu.Unlock()
		delay := r.DelayFrom(now)
		switch {
		case delay == 0:
			// patience checked the lead on arrival; a turn queued again
			// (stale) is checked anew.
			if waited {
				if err := l.tooLate(ctx, k, now); err != nil {
					t.cancel(r, l.now)
					return err
				}
			}
			l.admitted(k, waited)
			return nil
		case now.Add(delay).After(until):
			t.cancel(r, l.now)
			return l.refuse(k, delay, false)
		}
		// Half the guard for the wake-up, as for Redis, the other half
		// for jitter on the way to DynamoDB.
		stale, err := l.await(ctx, k, now.Add(delay), l.guard/2)
		if err != nil {
			t.cancel(r, l.now)
			return err
		}
		if !stale {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
