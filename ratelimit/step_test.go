package ratelimit

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

// offsetKey holds how far (µs) withRedisClockOffset moves Redis' clock:
// a key of this test process's own, so that two runs sharing one Redis
// do not move each other's clocks.
var offsetKey = "ratelimit-test:clock-offset:" + strconv.Itoa(os.Getpid())

// withRedisClockOffset has the limiter's scripts read Redis' clock moved by
// the offset under offsetKey, as a step of the server's clock would move
// it, for the rest of the test.
func withRedisClockOffset(t *testing.T, client *redis.Client) {
	t.Helper()
	moved := `local function movedTime()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(redis.call('GET', '` + offsetKey + `') or '0')
  return {tostring(math.floor(us / 1000000)), tostring(us % 1000000)}
end
`
	scripts := []**redis.Script{&takeTurn, &redisTime, &holdTurns}
	saved := []*redis.Script{takeTurn, redisTime, holdTurns}
	for i, src := range []string{takeTurnSource, redisTimeSource, holdTurnsSource} {
		if !strings.Contains(src, "redis.call('TIME')") {
			t.Fatalf("script %d does not read Redis' clock with TIME", i)
		}
		*scripts[i] = redis.NewScript(moved + strings.ReplaceAll(src, "redis.call('TIME')", "movedTime()"))
	}
	ctx := context.Background()
	if err := client.Del(ctx, offsetKey).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i, s := range saved {
			*scripts[i] = s
		}
		client.Del(context.Background(), offsetKey)
	})
}

// stepRedisClock moves the clock the limiter's scripts read on client
// (withRedisClockOffset) by step from Redis' own.
func stepRedisClock(t *testing.T, client *redis.Client, step time.Duration) {
	t.Helper()
	if err := client.Set(context.Background(), offsetKey, step.Microseconds(), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisClockStepForwardHoldsTheTurns: a replica's queue holds a second
// of turns when Redis' clock steps forward. Turns are times on Redis'
// clock, and those given by the stepped clock would be due as much sooner,
// among the queue's, which are still sent when they were due: 69 turns
// in 0.8 s without the hold. With it, the first call after the step is
// refused with the hold's true delay (not "retry after 1ms", which a step
// past max_wait gave), and the turns after it come once the queue has
// gone. The limiter does not sleep: each call's turn is recorded (turnLog).
func TestRedisClockStepForwardHoldsTheTurns(t *testing.T) {
	for _, step := range []time.Duration{500 * time.Millisecond, 5 * time.Second} {
		t.Run(step.String(), func(t *testing.T) {
			client := testRedis(t)
			withRedisClockOffset(t, client)
			var turns turnLog
			l := redisLimiter(t, testenv.RedisPrefix(t), Options{MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns})
			ctx := context.Background()
			turns.fill(t, l, 45)
			queueEnd := turns[len(turns)-1]
			stepRedisClock(t, client, step)
			err := l.Wait(ctx, keyA)
			le, ok := errors.AsType[*LimitedError](err)
			if !ok || !le.Held || time.Now().Add(le.RetryAfter).Before(queueEnd) {
				t.Fatalf("the first call after the step: %v; want a refusal until the queue (due until %s) has gone",
					err, queueEnd.Format("15:04:05.000"))
			}
			time.Sleep(le.RetryAfter)
			for range 10 {
				if err := l.Wait(ctx, keyA); err != nil {
					t.Fatalf("after the hold: %v", err)
				}
			}
			for i := 50; i < len(turns); i++ {
				if span := turns[i].Sub(turns[i-50]); span < time.Second {
					t.Fatalf("turns %d..%d span %s: 51 calls within one second", i-50, i, span)
				}
			}
			if first := turns[45]; first.Before(queueEnd) {
				t.Errorf("a turn after the step is due at %s, before the queue's last at %s", first.Format("15:04:05.000"), queueEnd.Format("15:04:05.000"))
			}
		})
	}
}

// TestRedisClockStepSeenByConcurrentCalls: calls in flight together when
// Redis' clock steps forward all get turns from the stepped clock, but
// only the first answer read disagrees with the placing they were asked
// by; the others then agree with the stepped placing that replaced it.
// Each gives up its turn all the same (the clock's epoch moved), so none
// is due among the turns queued before the step, and no two are closer
// than half the spacing. Without that, 15 of 16 calls got turns, 13 of
// them among the queue's, 3 ms apart. The calls' scripts all run before
// any answer is read (barrierRedis).
func TestRedisClockStepSeenByConcurrentCalls(t *testing.T) {
	const queued, inFlight = 20, 16
	br := &barrierRedis{done: make(chan struct{})}
	ctx := context.Background()
	l, turns := queuedThenStepped(ctx, t, queued, func(c redis.Scripter) redis.Scripter { br.Scripter = c; return br })
	br.n.Store(inFlight)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() { _ = l.Wait(ctx, keyA) })
	}
	wg.Wait()
	turns.checkAfterStep(t, queued, 50)
}

// lockedTurns records when each call's turn is due, from any goroutine.
type lockedTurns struct {
	mu sync.Mutex
	at []time.Time
}

func (l *lockedTurns) sleep(_ context.Context, d time.Duration) error {
	l.add(time.Now().Add(d))
	return nil
}

func (l *lockedTurns) ObserveLimit(_, _, _, decision string) {
	if decision == Admitted {
		l.add(time.Now())
	}
}

func (l *lockedTurns) add(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, at)
}

func (l *lockedTurns) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// dropFirst forgets the first turn recorded (one long past, taken before
// the queue a check looks at).
func (l *lockedTurns) dropFirst() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = l.at[1:]
}

// primed primes each limiter, as a replica does at start.
func primed(ctx context.Context, t *testing.T, ls ...*Redis) {
	t.Helper()
	for _, l := range ls {
		if err := l.Prime(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// queuedThenStepped starts a step test: a limiter of keyA at 50/s whose
// commands go through wrap's scripter around a Redis whose clock can step
// (steppable), primed, with queued turns taken and recorded, after which
// Redis' clock steps 300 ms forward.
func queuedThenStepped(ctx context.Context, t *testing.T, queued int, wrap func(redis.Scripter) redis.Scripter) (*Redis, *lockedTurns) {
	t.Helper()
	client, prefix := steppable(t)
	turns := &lockedTurns{}
	l := NewRedis(wrap(client), prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: turns}, nil)
	primed(ctx, t, l)
	takeTurns(ctx, t, l, turns, queued)
	stepRedisClock(t, client, 300*time.Millisecond)
	return l, turns
}

// takeTurns has l take turns until turns holds n; any refusal fails the
// test.
func takeTurns(ctx context.Context, t *testing.T, l *Redis, turns *lockedTurns, n int) {
	t.Helper()
	for turns.len() < n {
		if err := l.Wait(ctx, keyA); err != nil {
			t.Fatal(err)
		}
	}
}

// waitOutHolds makes n calls of l; after a refusal for a hold of the
// turns it sleeps the hold out before the next. Any other refusal fails
// the test.
func waitOutHolds(ctx context.Context, t *testing.T, l *Redis, n int) {
	t.Helper()
	for range n {
		err := l.Wait(ctx, keyA)
		if le, ok := errors.AsType[*LimitedError](err); ok && le.Held {
			time.Sleep(le.RetryAfter)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// turnsOrHolds makes n calls of l, each of which must get a turn or a
// refusal for a hold of the turns; once one got a turn (the hold's end
// came within MaxWait, as it does when the calls take long on a loaded
// machine), a later one may be refused the next turn, past MaxWait, as
// any call is. Where the turns fall is checkAfterStep's to judge.
func turnsOrHolds(ctx context.Context, t *testing.T, l *Redis, n int) {
	t.Helper()
	turned := false
	for range n {
		err := l.Wait(ctx, keyA)
		le, ok := errors.AsType[*LimitedError](err)
		if err != nil && (!ok || !le.Held && !turned) {
			t.Fatalf("%v; want a turn, or a refusal for the hold", err)
		}
		turned = turned || err == nil
	}
}

// checkAfterStep holds the turns to a rate per second after a step of
// Redis' clock: no two closer than half the spacing, and none of those
// after the first queued (recorded before the step) due before the last
// of those.
func (l *lockedTurns) checkAfterStep(t *testing.T, queued int, rate float64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	queueEnd := l.at[queued-1]
	all := slices.SortedFunc(slices.Values(l.at), time.Time.Compare)
	for i := 1; i < len(all); i++ {
		if gap := all[i].Sub(all[i-1]); gap < spacing(rate, DefaultGuard)/2 {
			t.Errorf("two turns %s apart (spacing %s)", gap, spacing(rate, DefaultGuard))
		}
	}
	for _, at := range l.at[queued:] { // in the order given, not sorted among the queue's
		if at.Before(queueEnd) {
			t.Errorf("a turn at %s, after the step, is due among the queue's (its last at %s)",
				at.Format("15:04:05.000"), queueEnd.Format("15:04:05.000"))
		}
	}
}

// barrierRedis runs every turn script it is asked, and answers none until
// n have run (or 20 ms have passed): n calls in flight at once, as under
// load.
type barrierRedis struct {
	redis.Scripter
	n    atomic.Int32
	ran  atomic.Int32
	done chan struct{}
	once sync.Once
}

func (r *barrierRedis) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	cmd := r.Scripter.EvalSha(ctx, sha1, keys, args...)
	if n := r.n.Load(); sha1 == takeTurn.Hash() && n > 0 {
		if r.ran.Add(1) == n {
			r.once.Do(func() { close(r.done) })
		}
		select {
		case <-r.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
	return cmd
}

// TestRedisTurnWhileAHoldIsUnderWay: a call that starts after another
// found Redis' clock stepped forward, but before that call's hold reached
// Redis, is placed by the stepped clock and gets an unheld turn, due among
// the turns queued before the step. It gives it up, waits for the hold,
// and asks again. Without that, its turn came 8 ms from one of the
// queue's. The hold's script is kept from Redis until the call is done
// (holdBlocker).
func TestRedisTurnWhileAHoldIsUnderWay(t *testing.T) {
	const queued = 20
	hb := &holdBlocker{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ctx := context.Background()
	l, turns := queuedThenStepped(ctx, t, queued, func(c redis.Scripter) redis.Scripter { hb.Scripter = c; return hb })
	holder := make(chan error, 1)
	go func() { holder <- l.Wait(ctx, keyA) }() // finds the step; its hold is kept back
	<-hb.entered
	late := make(chan error, 1)
	go func() { late <- l.Wait(ctx, keyA) }() // starts while the hold is under way
	lateDone := false
	select {
	case err := <-late:
		lateDone = true
		t.Errorf("a call during the hold returned (%v) before the hold reached Redis", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(hb.release)
	<-holder
	if !lateDone {
		<-late
	}
	turns.checkAfterStep(t, queued, 50)
}

// holdBlocker runs every script but holdTurns at once; holdTurns waits
// for release, after telling entered.
type holdBlocker struct {
	redis.Scripter
	entered chan struct{}
	release chan struct{}
}

func (h *holdBlocker) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if sha == holdTurns.Hash() {
		select {
		case h.entered <- struct{}{}:
		default:
		}
		<-h.release
	}
	return h.Scripter.EvalSha(ctx, sha, keys, args...)
}

// TestRedisClockStepFoundByAnIdleReplica: a replica whose placing of
// Redis' clock is ten minutes old, allowed 600 ms of drift, finds the clock
// 500 ms ahead when a call comes, while another replica's queue holds a
// second of turns given before the step. Taken for drift, the step placed
// its ten turns by the stepped clock among the queue's, 6 ms from them (51
// turns in 880 ms); a placing is allowed no more drift than a turn may be
// off when an exchange is checked against it, and the step is held for.
func TestRedisClockStepFoundByAnIdleReplica(t *testing.T) {
	const queued = 45
	client, prefix := steppable(t)
	var turns lockedTurns
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}
	ctx := context.Background()
	a := NewRedis(client, prefix, opts, nil)
	b := NewRedis(testRedis(t), prefix, opts, nil)
	primed(ctx, t, a, b)
	// b's last exchange with Redis was ten minutes ago.
	b.clock.mu.Lock()
	b.clock.best.mid = b.clock.best.mid.Add(-10 * time.Minute)
	b.clock.best.redisMid = b.clock.best.redisMid.Add(-10 * time.Minute)
	b.clock.mu.Unlock()
	takeTurns(ctx, t, a, &turns, queued)
	stepRedisClock(t, client, 500*time.Millisecond)
	waitOutHolds(ctx, t, b, 10)
	turns.checkAfterStep(t, queued, 50)
}

// steppable is the test Redis, whose clock a test steps through offsetKey
// (withRedisClockOffset), and a prefix of t's own on it, established.
func steppable(t *testing.T) (client *redis.Client, prefix string) {
	t.Helper()
	client = testRedis(t)
	withRedisClockOffset(t, client)
	prefix = testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	return client, prefix
}

// slowHold is a client whose hold of the turns (holdTurns) waits delay
// before it is sent, as one held up on its way to a slow Redis would.
type slowHold struct {
	*redis.Client
	delay time.Duration
}

func (c slowHold) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if sha == holdTurns.Hash() {
		time.Sleep(c.delay)
	}
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

// TestRedisHoldOutlastsTheCall: the hold of the turns that a call's turn
// found Redis' clock stepped forward for reaches Redis even when the
// call's deadline passes first: the call is answered by its deadline, and
// the hold goes on. Cut off with the call (the client ends a command by
// its context's deadline), it was never made, and no later exchange finds
// the step again: the turns given by the stepped clock went unheld.
func TestRedisHoldOutlastsTheCall(t *testing.T) {
	client := testRedis(t)
	withRedisClockOffset(t, client)
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	var turns turnLog
	l := NewRedis(slowHold{client, 200 * time.Millisecond}, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second,
		Sleep: turns.sleep, Observer: &turns}, nil)
	ctx := context.Background()
	if err := l.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	turns.fill(t, l, 3)
	before, err := client.Get(ctx, prefix+"state").Int64()
	if err != nil {
		t.Fatal(err)
	}
	const step = 5 * time.Second
	stepRedisClock(t, client, step)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = l.Wait(short, keyA)
	if took := time.Since(start); err == nil || took > 180*time.Millisecond {
		t.Errorf("the call whose turn found the step, with a 100ms deadline: %v after %s; want a refusal by its deadline", err, took)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mark, err := client.Get(ctx, prefix+"state").Int64()
		if err == nil && mark >= before+step.Microseconds() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state marker is %d (%d before the step of %s): the turns were not held", mark, before, step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failingHold fails the next n holds of the turns (holdTurns), as a
// Redis whose answer is lost (a timeout, a reset connection) does.
type failingHold struct {
	*redis.Client
	n atomic.Int32
}

func (c *failingHold) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if sha == holdTurns.Hash() && c.n.Add(-1) >= 0 {
		return redis.NewCmdResult(nil, errors.New("i/o timeout"))
	}
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

// TestRedisHoldThatFailsIsMadeAgain: the call that finds Redis' clock
// stepped forward cannot get its hold of the turns to Redis (one command
// failed, and go-redis' resend too). The step is not taken into the
// placing unheld: the next exchange finds it again and holds the turns,
// so no turn after the step is due among the queue's. Before, the 10
// calls after it got turns at once by the stepped clock, all among the
// queue's: 55 in one second at 50/s.
func TestRedisHoldThatFailsIsMadeAgain(t *testing.T) {
	for _, failures := range []int32{0, 2} {
		t.Run(strconv.Itoa(int(failures))+" failed", func(t *testing.T) {
			client, prefix := steppable(t)
			var turns turnLog
			fh := &failingHold{Client: client}
			l := NewRedis(fh, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}, nil)
			ctx := context.Background()
			primed(ctx, t, l)
			turns.fill(t, l, 45)
			queueEnd := turns[len(turns)-1]
			stepRedisClock(t, client, 500*time.Millisecond)
			fh.n.Store(failures)
			for range 11 {
				_ = l.Wait(ctx, keyA) // refused while the turns are held
			}
			for i, at := range turns[45:] {
				if at.Before(queueEnd) {
					t.Errorf("turn %d after the step is due at %s, before the queue's last at %s", i, at.Format("15:04:05.000"), queueEnd.Format("15:04:05.000"))
				}
			}
			for i := 50; i < len(turns); i++ {
				if span := turns[i].Sub(turns[i-50]); span < time.Second {
					t.Errorf("turns %d..%d span %s: 51 calls within one second", i-50, i, span)
				}
			}
		})
	}
}

// TestRedisHoldFoundByAnExchangeThatFailsIsMadeAgain: as
// TestRedisHoldThatFailsIsMadeAgain, for a step found by an exchange that
// asks Redis its time (an idle replica's placing renewed) rather than by a
// turn: the call whose hold failed is refused, Redis unavailable, and the
// step is not taken into the placing unheld: the next exchange finds it
// again and holds the turns.
func TestRedisHoldFoundByAnExchangeThatFailsIsMadeAgain(t *testing.T) {
	const queued = 45
	client, prefix := steppable(t)
	var turns lockedTurns
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}
	ctx := context.Background()
	a := NewRedis(client, prefix, opts, nil)
	fh := &failingHold{Client: testRedis(t)}
	b := NewRedis(fh, prefix, opts, nil)
	primed(ctx, t, a, b)
	// b's placing is too old to use: its next call asks Redis' time.
	b.clock.mu.Lock()
	b.clock.best.mid = b.clock.best.mid.Add(-time.Minute)
	b.clock.best.redisMid = b.clock.best.redisMid.Add(-time.Minute)
	b.clock.mu.Unlock()
	takeTurns(ctx, t, a, &turns, queued)
	stepRedisClock(t, client, 500*time.Millisecond)
	fh.n.Store(1)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](b.Wait(ctx, keyA)); !ok {
		t.Fatal("the call whose hold failed: want Redis unavailable")
	}
	waitOutHolds(ctx, t, b, 10)
	turns.checkAfterStep(t, queued, 50)
}

// gatedTurnAfterHold runs every script at once but holdTurns, which waits
// for release after telling entered; once a hold has entered, the next
// turn script runs at once but its answer is kept until answer is closed
// (ran is told when it has run): a call whose turn Redis gave, by the
// stepped clock, before the hold reached it, and whose answer is read
// after the hold has ended.
type gatedTurnAfterHold struct {
	redis.Scripter
	holding         atomic.Bool
	entered, ran    chan struct{}
	release, answer chan struct{}
	gated           atomic.Bool
}

func (g *gatedTurnAfterHold) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	switch {
	case sha == holdTurns.Hash() && g.holding.CompareAndSwap(false, true):
		close(g.entered)
		<-g.release
	case sha == takeTurn.Hash() && g.holding.Load() && g.gated.CompareAndSwap(false, true):
		cmd := g.Scripter.EvalSha(ctx, sha, keys, args...)
		close(g.ran)
		<-g.answer
		return cmd
	}
	return g.Scripter.EvalSha(ctx, sha, keys, args...)
}

// TestRedisTurnAnsweredAfterTheHoldEnded: as
// TestRedisTurnWhileAHoldIsUnderWay, but the call's unheld turn (given by
// the stepped clock before the hold reached Redis) is answered only once
// the hold has ended: the end of the hold still tells the call that its
// turn may be due among the queue's, and it asks again.
func TestRedisTurnAnsweredAfterTheHoldEnded(t *testing.T) {
	const queued = 20
	g := &gatedTurnAfterHold{entered: make(chan struct{}), ran: make(chan struct{}),
		release: make(chan struct{}), answer: make(chan struct{})}
	ctx := context.Background()
	l, turns := queuedThenStepped(ctx, t, queued, func(c redis.Scripter) redis.Scripter { g.Scripter = c; return g })
	holder := make(chan error, 1)
	go func() { holder <- l.Wait(ctx, keyA) }() // finds the step; its hold is kept back
	<-g.entered
	late := make(chan error, 1)
	go func() { late <- l.Wait(ctx, keyA) }()
	<-g.ran // its turn given, unheld
	close(g.release)
	holding := func() bool { l.clock.mu.Lock(); defer l.clock.mu.Unlock(); return l.clock.holds > 0 }
	for holding() {
		time.Sleep(time.Millisecond) // until the hold has ended
	}
	close(g.answer)
	<-holder
	<-late
	turns.checkAfterStep(t, queued, 50)
}

// TestRedisHoldThatFailsRefusesTheCall: the call whose turn found Redis'
// clock stepped forward, and whose hold of the turns failed, is refused at
// once, Redis unavailable, with what failed, as one whose exchange found
// the step is (TestRedisHoldFoundByAnExchangeThatFailsIsMadeAgain). Asking
// again instead, it found the step again on every turn, its hold failing
// each time, and took a turn by the stepped clock each time, unheld, until
// its patience was over: hundreds of turns used up, which other calls
// lose, and then "Redis did not answer". In a synctest bubble, with a fake
// Redis whose holds all fail and whose answers take a millisecond.
func TestRedisHoldThatFailsRefusesTheCall(t *testing.T) {
	synctest.Test(t, testRedisHoldThatFailsRefusesTheCall)
}

func testRedisHoldThatFailsRefusesTheCall(t *testing.T) {
	srv := &fakeRedisServer{next: map[string]int64{}}
	link := &holdlessLink{fakeLink: fakeLink{srv: srv, reply: time.Millisecond}}
	l := NewRedis(link, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	ctx := context.Background()
	if err := l.Wait(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	srv.skew = 500 * time.Millisecond // Redis' clock steps forward
	link.turns.Store(0)
	start := time.Now()
	err := l.Wait(ctx, keyA)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || !errors.Is(err, errHoldLost) || time.Since(start) > 10*time.Millisecond {
		t.Errorf("the call whose turn found the step and whose hold failed: %v after %s; want Redis unavailable at once, for the hold that failed",
			err, time.Since(start))
	}
	if n := link.turns.Load(); n != 1 {
		t.Errorf("%d turns taken by that call; want 1", n)
	}
}

// errHoldLost is the failure of every hold of a holdlessLink.
var errHoldLost = errors.New("i/o timeout")

// holdlessLink is a fakeLink that fails every hold of the turns
// (holdTurns), and counts the turns asked for.
type holdlessLink struct {
	fakeLink
	turns atomic.Int32
}

func (h *holdlessLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	switch sha1 {
	case holdTurns.Hash():
		return redis.NewCmdResult(nil, errHoldLost)
	case takeTurn.Hash():
		h.turns.Add(1)
	}
	return h.fakeLink.EvalSha(ctx, sha1, keys, args...)
}
