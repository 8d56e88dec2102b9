package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// redisLimiter returns a limiter on the test Redis, under a prefix of its
// own, at 50/s for keyA unless opts.Rates says otherwise.
func redisLimiter(t *testing.T, prefix string, opts Options) *Redis {
	t.Helper()
	if opts.Rates == nil {
		opts.Rates = map[Key]float64{keyA: 50}
	}
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	l := NewRedis(testRedis(t), prefix, opts, nil)
	// As backupd does before it serves: Redis' clock is placed before the
	// first call, so calls made at once (testStaleTurnsQueueAgain) do not
	// each place it over a connection of their own still being made.
	if err := l.Prime(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// heldOrTurn reports whether err is a turn or a refusal for a turn held
// back: which one a fresh prefix gets depends on how long the test's
// Redis has been up (no turn until max_wait after its start).
func heldOrTurn(err error) bool {
	_, held := errors.AsType[*LimitedError](err)
	return err == nil || held
}

// testRedis is a client of the test Redis, closed when the test ends, with
// a connection already made. A limiter's first exchange with Redis places
// its clock, and one slower than a 25 ms round trip (twice maxUncertainty)
// refuses the call as "Redis answers too slowly": made over a connection
// still to be dialled, with its HELLO and CLIENT SETINFO, on a machine busy
// with the other packages' tests, it sometimes is (up to 71 ms seen).
// backupd makes its connection before it serves (Prime).
func testRedis(tb testing.TB) *redis.Client {
	tb.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(tb)})
	tb.Cleanup(func() { client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		tb.Fatal(err)
	}
	return client
}

// TestRedisSpacesTurnsAcrossReplicas: two limiters sharing one Redis stand
// for two replicas; 120 calls through them in turn get 120 turns 22 ms
// apart, so no one-second window holds more than 50. The limiters do not
// sleep: each call's turn is Redis' time when it answered plus the delay
// it gave, on this process's clock, which keeps the test exact and fast. (Calls from many goroutines at
// once are proven end to end in integration.TestReplicasShareTheRateLimit.)
func TestRedisSpacesTurnsAcrossReplicas(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	var turns turnLog
	opts := Options{MaxWait: time.Minute, Sleep: turns.sleep, Observer: &turns}
	replicas := []*Redis{redisLimiter(t, prefix, opts), redisLimiter(t, prefix, opts)}
	for i := range 120 {
		if err := replicas[i%2].Wait(context.Background(), keyA); err != nil {
			t.Fatal(err)
		}
	}
	interval := spacing(50, DefaultGuard)
	if len(turns) != 120 {
		t.Fatalf("%d turns recorded, want 120", len(turns))
	}
	for i := 1; i < len(turns); i++ {
		// A turn given twice would show as a gap near zero; the slack
		// covers a loaded machine's delay in reading Redis' answers.
		if gap := turns[i].Sub(turns[i-1]); gap < interval/2 {
			t.Fatalf("turns %d and %d are %s apart; want %s", i-1, i, gap, interval)
		}
	}
	for i := 50; i < len(turns); i++ {
		if span := turns[i].Sub(turns[i-50]); span < time.Second {
			t.Fatalf("turns %d..%d span %s: 51 calls within one second", i-50, i, span)
		}
	}
}

// turnLog records when each call may go: now for a call admitted at once,
// now plus the delay for one that would sleep (it does not).
type turnLog []time.Time

func (l *turnLog) sleep(_ context.Context, d time.Duration) error {
	*l = append(*l, time.Now().Add(d))
	return nil
}

func (l *turnLog) ObserveLimit(_, _, _, decision string) {
	if decision == Admitted {
		*l = append(*l, time.Now())
	}
}

// fill has l's limiter w take turns for keyA until l holds n, first
// waiting out the hold a Redis just started puts on its first turns.
func (l *turnLog) fill(t *testing.T, w waiter, n int) {
	t.Helper()
	for len(*l) < n {
		err := w.Wait(context.Background(), keyA)
		if le, ok := errors.AsType[*LimitedError](err); ok && len(*l) == 0 {
			time.Sleep(le.RetryAfter) // a Redis just started holds its first turns
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisRefusesBeyondMaxWait: three calls in a row, whose waits are not
// slept, take the turns now, +220 ms and +440 ms (5/s); with a 300 ms max
// wait the third is refused. The turns drain in real time while the calls
// are made: at 50/s, with turns 22 ms apart and a 30 ms max wait, three
// calls taking over 14 ms (a loaded machine) had the third admitted.
func TestRedisRefusesBeyondMaxWait(t *testing.T) {
	var got decisions
	l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 5}, MaxWait: 300 * time.Millisecond, Observer: &got,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	var errs []error
	for range 3 {
		errs = append(errs, l.Wait(context.Background(), keyA))
	}
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("first two: %v; want both admitted (the second after 220 ms)", errs[:2])
	}
	var le *LimitedError
	if !errors.As(errs[2], &le) || le.RetryAfter < 300*time.Millisecond || le.RetryAfter > 450*time.Millisecond || le.Held {
		t.Errorf("third: %v (held %v); want a LimitedError about 440 ms out, not held", errs[2], le != nil && le.Held)
	}
	want := decisions{keyA.String() + ":" + Admitted, keyA.String() + ":" + Waited, keyA.String() + ":" + Refused}
	if !slices.Equal(got, want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
}

// TestRedisTurnKeyLivesUntilItsTurnsPass: a key's next free slot lives in
// Redis a second past it, no longer (takeTurn's PX): a limiter's keys,
// one for each account, region and operation called, leave Redis when
// idle, and none is gone while turns are queued on it. Its time to live
// counts from the last turn queued, not from now: a key that expired
// while turns are queued would give the next call a turn among them.
func TestRedisTurnKeyLivesUntilItsTurnsPass(t *testing.T) {
	l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 5}, MaxWait: time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	const calls = 4
	for i := range calls {
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// The last turn is three spacings out, and the next free slot one more.
	interval := spacing(5, DefaultGuard)
	next := calls * interval
	ttl, err := testRedis(t).PTTL(context.Background(), l.prefix+keyA.String()).Result()
	if err != nil || ttl <= next+time.Second-300*time.Millisecond || ttl > next+time.Second {
		t.Errorf("the key's time to live: %v, %v; want just under %s (the next free slot, %s out, and a second)", ttl, err, next+time.Second, next)
	}
}

// TestRedisLeadBeforeDeadline: a call arriving with less than its
// operation's lead left is refused before a turn is asked for, and one
// whose turn comes later than the lead before its deadline is refused as
// one beyond it, as by Local (TestLeadBeforeDeadline).
func TestRedisLeadBeforeDeadline(t *testing.T) {
	var got decisions
	l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 5}, MaxWait: time.Second, Observer: &got,
		Lead: map[string]time.Duration{keyA.Operation: 100 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, keyA); !errors.As(err, new(*TooLateError)) {
		t.Fatalf("Wait with 90ms left and a 100ms lead: %v; want a TooLateError", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	first := l.Wait(ctx, keyA)
	// The next turn is 220 ms out: within the deadline, but not within
	// the lead before it.
	second := l.Wait(ctx, keyA)
	if first != nil || !errors.As(second, new(*LimitedError)) {
		t.Errorf("then with 300ms left: %v, %v; want the first admitted, no turn having been taken, and the second refused", first, second)
	}
	want := decisions{keyA.String() + ":" + Admitted, keyA.String() + ":" + Refused}
	if !slices.Equal(got, want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
}

func TestRedisDownRefuses(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer client.Close()
	l := NewRedis(client, "x:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	var ue *sharedstate.UnavailableError
	if err := l.Wait(context.Background(), keyA); !errors.As(err, &ue) {
		t.Errorf("Wait with Redis down: %v; want an UnavailableError", err)
	}
	// Refused as unconfigured, not for Redis being down: it is never
	// asked.
	if err := l.Wait(context.Background(), keyB); err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "no rate configured") {
		t.Errorf("an unconfigured key: %v; want it refused as unconfigured", err)
	}
}

// TestRedisTurnFailureIsReported: a turn Redis fails to give (a
// connection reset while the script ran) refuses the call as Redis
// unavailable, with Redis' own error: what an operator reads to find why.
func TestRedisTurnFailureIsReported(t *testing.T) {
	errReset := errors.New("read tcp 10.0.0.1:6379: connection reset by peer")
	l := NewRedis(failingTurns{Scripter: testRedis(t), err: errReset}, scriptedPrefix(t), Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	err := l.Wait(context.Background(), keyA)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || !errors.Is(err, errReset) {
		t.Errorf("Wait with the turn's script failing: %v; want Redis unavailable, wrapping %q", err, errReset)
	}
}

// failingTurns fails every turn script with err.
type failingTurns struct {
	redis.Scripter
	err error
}

func (f failingTurns) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == takeTurn.Hash() {
		return redis.NewCmdResult(nil, f.err)
	}
	return f.Scripter.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisWaitInterrupted: a wait that its context ends is an
// InterruptedError, which tells a request_id's run that nothing was sent.
func TestRedisWaitInterrupted(t *testing.T) {
	// At 2/s the second turn is 550 ms out however slowly the first call
	// came back; its sleep, and only its, is interrupted (the first may
	// sleep too, for a turn asked ahead of a slow answer).
	var interrupt atomic.Bool
	l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 2}, MaxWait: time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if interrupt.Load() {
				return context.DeadlineExceeded
			}
			return sleep(ctx, d)
		}})
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Fatalf("first call: %v", err)
	}
	interrupt.Store(true)
	err := l.Wait(context.Background(), keyA)
	if ie, ok := errors.AsType[*InterruptedError](err); !ok || ie.Key != keyA || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("interrupted wait = %v; want an InterruptedError for key A wrapping context.DeadlineExceeded", err)
	}
	// A deadline that passes while Redis is asked is the caller's, not
	// Redis being down (DEADLINE_EXCEEDED, not SHARED_STATE_UNAVAILABLE).
	ended, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = l.Wait(ended, keyA)
	if _, ok := errors.AsType[*InterruptedError](err); !ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a passed deadline = %v; want an InterruptedError wrapping context.DeadlineExceeded", err)
	}
}

// TestRedisQuarantineAfterLosingItsData: a Redis that loses its data (a
// restart without persistence) would give out turns from now while
// replicas still wait on turns taken before it. A replica that had seen
// the marker notices, says so, and no turn is given until every turn taken
// before can have passed.
func TestRedisQuarantineAfterLosingItsData(t *testing.T) {
	ctx := context.Background()
	prefix := testenv.RedisPrefix(t)
	client := testRedis(t)
	const maxWait = 300 * time.Millisecond
	var lost atomic.Int32
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait, Sleep: func(context.Context, time.Duration) error { return nil }}
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	a := NewRedis(client, prefix, opts, func() { lost.Add(1) })
	if err := a.Wait(ctx, keyA); err != nil || lost.Load() != 0 {
		t.Fatalf("first call: %v, %d losses; want a turn at once and none", err, lost.Load())
	}
	if err := client.Del(ctx, prefix+"state", prefix+"ratelimit:"+keyA.String()).Err(); err != nil {
		t.Fatal(err)
	}
	err := a.Wait(ctx, keyA)
	le, ok := errors.AsType[*LimitedError](err)
	// Held for max_wait, the furthest a turn taken before can lie, and
	// one spacing more, for the turn after it.
	if quarantine := maxWait + spacing(50, DefaultGuard); !ok || le.RetryAfter < quarantine || lost.Load() != 1 {
		t.Fatalf("first call after the loss: %v, %d losses; want a refusal at least %s out and one loss", err, lost.Load(), quarantine)
	}
	// Another replica, a little later, gets a turn after the quarantine,
	// and finds no second loss.
	time.Sleep(50 * time.Millisecond)
	var turns turnLog
	b := NewRedis(client, prefix, Options{Rates: opts.Rates, MaxWait: maxWait, Sleep: turns.sleep}, func() { lost.Add(1) })
	start := time.Now()
	if err := b.Wait(ctx, keyA); err != nil || len(turns) != 1 || turns[0].Sub(start) < maxWait/2 || lost.Load() != 1 {
		t.Errorf("replica b: %v, turns %v from %v, %d losses; want one turn about %s out and no new loss", err, turns, start, lost.Load(), maxWait-50*time.Millisecond)
	}
}

func TestRedisStaleTurnsQueueAgain(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	testStaleTurnsQueueAgain(t, func(o Options) waiter { return redisLimiter(t, prefix, o) })
}

// TestRedisQuarantineAfterARestart: a server back from a snapshot (or a
// promoted replica) keeps the marker but may have lost the latest turns;
// its new run_id alone starts the quarantine, once, whichever replica
// takes the next turn, and a replica that sees it later starts none.
func TestRedisQuarantineAfterARestart(t *testing.T) {
	ctx := context.Background()
	client := testRedis(t)
	const maxWait = 300 * time.Millisecond
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait, Sleep: func(context.Context, time.Duration) error { return nil }}
	var lost atomic.Int32
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	a := NewRedis(client, prefix, opts, func() { lost.Add(1) })
	b := NewRedis(client, prefix, opts, func() { lost.Add(1) })
	if err := a.Wait(ctx, keyA); err != nil || lost.Load() != 0 {
		t.Fatalf("first call: %v, %d losses", err, lost.Load())
	}
	// What a restart from a snapshot leaves: the marker, and the run_id of
	// the server before.
	if err := client.Set(ctx, prefix+"state:run_id", "0123456789abcdef0123456789abcdef01234567", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := b.Wait(ctx, keyA)
	if le, ok := errors.AsType[*LimitedError](err); !ok || le.RetryAfter < maxWait || !le.Held || lost.Load() != 1 {
		t.Errorf("first call after a restart: %v, %d losses; want a refusal held at least %s out and one loss", err, lost.Load(), maxWait)
	}
	time.Sleep(maxWait + 50*time.Millisecond)
	if err := a.Wait(ctx, keyA); err != nil || lost.Load() != 1 {
		t.Errorf("after the quarantine, on the other replica: %v, %d losses; want a turn and still one loss", err, lost.Load())
	}
}

// TestRedisPrimedReplicaNoticesAnEmptyRedis: a replica that found the
// marker at start notices a Redis that comes back empty though it took no
// turn before; on a fresh Redis, Prime leaves the marker to the first turn.
func TestRedisPrimedReplicaNoticesAnEmptyRedis(t *testing.T) {
	ctx := context.Background()
	client := testRedis(t)
	prefix := testenv.RedisPrefix(t)
	var lost atomic.Int32
	l := NewRedis(client, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 300 * time.Millisecond,
		Sleep: func(context.Context, time.Duration) error { return nil }}, func() { lost.Add(1) })
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix) // other replicas' turns made the marker
	if err := l.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.Del(ctx, prefix+"state", prefix+"state:run_id").Err(); err != nil { // Redis back empty
		t.Fatal(err)
	}
	if err := l.Wait(ctx, keyA); err == nil || lost.Load() != 1 {
		t.Errorf("first turn after the loss: %v, %d losses; want a refusal and one loss", err, lost.Load())
	}

	fresh := NewRedis(client, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, func() { lost.Add(1) })
	if err := fresh.Prime(ctx); err != nil || fresh.server.Load() != nil {
		t.Errorf("Prime on a fresh prefix: %v, server %v; want the marker left to the first turn", err, fresh.server.Load())
	}
	if err := fresh.Wait(ctx, keyA); !heldOrTurn(err) || lost.Load() != 1 {
		t.Errorf("first turn on a fresh prefix: %v, %d losses; want a turn (or one held back) and no new loss", err, lost.Load())
	}
}

// TestRedisRestartFirstSeenByANewReplica: a replica that never saw the old
// server takes the first turn after Redis came back empty, and cannot
// tell; the first replica that saw the old server still reports the loss,
// once. (That no turn is given until the server has been up for a
// quarantine is proven end to end by integration.TestRedisBackEmptyHoldsTurns.)
func TestRedisRestartFirstSeenByANewReplica(t *testing.T) {
	ctx := context.Background()
	client := testRedis(t)
	prefix := testenv.RedisPrefix(t)
	const maxWait = 300 * time.Millisecond
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait, Sleep: func(context.Context, time.Duration) error { return nil }}
	var lost atomic.Int32
	replica := func() *Redis { return NewRedis(client, prefix, opts, func() { lost.Add(1) }) }
	// a and c took turns from a server before (its run_id stands in for
	// the server that restarted); the Redis is now empty.
	a, c := replica(), replica()
	before := "1111111111111111111111111111111111111111"
	a.server.Store(&before)
	c.server.Store(&before)
	fresh := replica()
	if err := fresh.Wait(ctx, keyA); !heldOrTurn(err) || lost.Load() != 0 {
		t.Fatalf("the new replica's turn: %v, %d losses; want no loss, taken for a first start", err, lost.Load())
	}
	if err := a.Wait(ctx, keyA); !heldOrTurn(err) || lost.Load() != 1 {
		t.Errorf("the first turn of a replica that saw the old server: %v, %d losses; want one loss", err, lost.Load())
	}
	if err := c.Wait(ctx, keyA); !heldOrTurn(err) || lost.Load() != 1 {
		t.Errorf("another such replica: %v, %d losses; want still one loss", err, lost.Load())
	}
}

// BenchmarkRedisTurn is one turn from the Redis limiter on the test Redis,
// over loopback, with a rate no call waits for: the script's cost, its
// INFO read for the restart checks included.
func BenchmarkRedisTurn(b *testing.B) {
	client := testRedis(b)
	prefix := testenv.RedisPrefix(b)
	testenv.EstablishRedis(b, testenv.RedisAddr(b), prefix)
	l := NewRedis(client, prefix, Options{Rates: map[Key]float64{keyA: 1e9}, MaxWait: time.Second, Guard: -1}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Wait(ctx, keyA); err != nil {
			b.Fatal(err)
		}
	}
}

// laggingRedis answers scripts late, as a Redis behind a slow link or an
// overloaded proxy does: the script runs at once, its answer arrives later,
// by lags in turn, then by the last of them. With queued set, the turn
// script instead waits that long before it runs, as a command does behind
// others for a pooled connection, and its answer comes at once.
type laggingRedis struct {
	redis.Scripter
	queued bool
	mu     sync.Mutex
	lags   []time.Duration
	turns  atomic.Int32 // turn scripts run
}

func (r *laggingRedis) lag() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.lags[0]
	if len(r.lags) > 1 {
		r.lags = r.lags[1:]
	}
	return d
}

func (r *laggingRedis) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == takeTurn.Hash() {
		r.turns.Add(1)
	}
	if r.queued {
		if sha1 == takeTurn.Hash() {
			if err := sleep(ctx, r.lag()); err != nil {
				return redis.NewCmdResult(nil, err)
			}
		}
		return r.Scripter.EvalSha(ctx, sha1, keys, args...)
	}
	cmd := r.Scripter.EvalSha(ctx, sha1, keys, args...)
	if err := sleep(ctx, r.lag()); err != nil {
		return redis.NewCmdResult(nil, err) // the answer lost to the caller's deadline
	}
	return cmd
}

// TestRedisAsksWithinPatience: a call does not wait for Redis longer than
// it may wait for its turn; a Redis that answers later refuses it, nothing
// sent.
func TestRedisAsksWithinPatience(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	if err := takeTurn.Load(context.Background(), testRedis(t)).Err(); err != nil {
		t.Fatal(err)
	}
	const late, maxWait = 3 * time.Second, time.Second
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, late}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait}, nil)
	start := time.Now()
	err := l.Wait(context.Background(), keyA)
	took := time.Since(start)
	// max_wait and the guard, and a second's room for a loaded machine
	// under -race: short of the answer, 3 s late.
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || scripter.turns.Load() != 1 || took > maxWait+DefaultGuard+time.Second {
		t.Errorf("Wait on a Redis answering %s late: %v after %s and %d turns asked; want Redis unavailable within the call's patience, after one",
			late, err, took.Round(time.Millisecond), scripter.turns.Load())
	}
}

// TestRedisPlacesTurnsByRedisClock: a turn is given by Redis' clock, which
// a replica places against its own to within half the round trip of its
// fastest recent exchange. A replica whose answers all take longer than
// half the guard would send its calls that far off their turns, into other
// replicas' seconds (a fault proxy saw 64 calls in one second with 400 ms
// answers): it takes no turn and says Redis is too slow. A slow exchange
// among fast ones (a stall) or a command that waited for a connection
// places its turn as well as the fast ones.
func TestRedisPlacesTurnsByRedisClock(t *testing.T) {
	tests := []struct {
		name   string
		queued bool
		lags   []time.Duration
		slow   bool
	}{
		{"150 ms answers", false, []time.Duration{150 * time.Millisecond}, true},
		{"60 ms answers", false, []time.Duration{60 * time.Millisecond}, true},
		{"8 ms answers", false, []time.Duration{8 * time.Millisecond}, false},
		{"one stall", false, []time.Duration{0, 150 * time.Millisecond, 0}, false},
		{"150 ms waits for a connection", true, []time.Duration{150 * time.Millisecond}, false},
		// Placed by a fast exchange, then every answer arrives 150 ms
		// after Redis gave it: turns are asked that far ahead.
		{"fast, then 150 ms answers", false, []time.Duration{0, 0, 150 * time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := scriptedPrefix(t) // the scripts loaded first, so that the lags fall on them
			scripter := &laggingRedis{Scripter: testRedis(t), queued: tt.queued, lags: tt.lags}
			l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 2 * time.Second}, nil)
			for i := range 3 {
				err := l.Wait(context.Background(), keyA)
				_, unavailable := errors.AsType[*sharedstate.UnavailableError](err)
				switch {
				case tt.slow && !unavailable:
					t.Fatalf("call %d: %v; want Redis too slow", i, err)
				case tt.slow && !strings.Contains(err.Error(), "more than the 12.5ms a turn may be off"):
					t.Errorf("message %q does not say why", err)
				case !tt.slow && err != nil:
					t.Fatalf("call %d: %v; want its turn", i, err)
				}
			}
			taken, err := testRedis(t).Exists(context.Background(), l.prefix+keyA.String()).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tt.slow && taken != 0 {
				t.Error("a replica too slow to place turns took one, which other replicas lose")
			}
			// A turn whose answer came after it is given up: at most one,
			// the first after the answers slowed.
			if n := scripter.turns.Load(); !tt.slow && n > 4 {
				t.Errorf("%d turns taken for 3 calls; want at most 4", n)
			}
		})
	}
}

// fakeRedisServer gives turns as takeTurn does (without its watch for lost
// data) by a clock skew ahead of this process's, for TestRedisSendsOnTurn.
type fakeRedisServer struct {
	skew time.Duration
	mu   sync.Mutex
	next map[string]int64 // each key's next free slot, µs by its clock
}

// fakeLink is one replica's connection to a fakeRedisServer: each request
// takes req to arrive and each answer reply. It remembers the last turn it
// carried. Only EvalSha is served.
type fakeLink struct {
	redis.Scripter
	srv        *fakeRedisServer
	req, reply time.Duration
	mu         sync.Mutex
	lastTurn   time.Time // by the server's clock
}

func (f *fakeLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	time.Sleep(f.req)
	defer time.Sleep(f.reply)
	now := time.Now().Add(f.srv.skew).UnixMicro()
	switch sha1 {
	case redisTime.Hash():
		return redis.NewCmdResult(now, nil)
	case takeTurn.Hash():
		interval, latest, lead := args[0].(int64), args[1].(int64), args[4].(int64)
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		slot := max(f.srv.next[keys[0]], now+lead)
		if slot > latest && slot > now {
			byLead := int64(0)
			if bare := max(f.srv.next[keys[0]], now); lead > 0 && (bare <= latest || bare == now) {
				byLead = 1
			}
			return redis.NewCmdResult([]any{int64(0), slot - now, int64(0), "fake", now, int64(0), int64(0), byLead}, nil)
		}
		f.srv.next[keys[0]] = slot + interval
		f.mu.Lock()
		f.lastTurn = time.UnixMicro(slot)
		f.mu.Unlock()
		return redis.NewCmdResult([]any{int64(1), slot - now, int64(0), "fake", now, int64(0), int64(0), int64(0)}, nil)
	}
	return redis.NewCmdResult(nil, fmt.Errorf("fakeLink: unknown script %s", sha1))
}

// TestRedisSendsOnTurn: two replicas share a Redis whose clock runs 3 s
// ahead of theirs, one close by and one whose answers take 15 ms to
// arrive. Each call goes out when Redis' clock reaches its turn: no more
// than an eighth of the guard early (how far off the clock may be placed)
// and no more than three eighths late (await's slack). The link is a fake
// one, and in a synctest bubble time passes only by the link's delays and
// the limiter's waits, not by this test's scheduling on a loaded machine.
func TestRedisSendsOnTurn(t *testing.T) { synctest.Test(t, testRedisSendsOnTurn) }

func testRedisSendsOnTurn(t *testing.T) {
	srv := &fakeRedisServer{skew: 3 * time.Second, next: map[string]int64{}}
	links := []*fakeLink{{srv: srv}, {srv: srv, req: 2 * time.Millisecond, reply: 15 * time.Millisecond}}
	maxEarly := DefaultGuard / 8
	const calls = 30
	var wg sync.WaitGroup
	for i, link := range links {
		l := NewRedis(link, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: 10 * time.Second}, nil)
		wg.Go(func() {
			for n := range calls {
				if err := l.Wait(context.Background(), keyA); err != nil {
					t.Errorf("replica %d, call %d: %v", i, n, err)
					return
				}
				sent := time.Now()
				link.mu.Lock()
				turn := link.lastTurn.Add(-srv.skew) // by this process's clock
				link.mu.Unlock()
				if off := sent.Sub(turn); off < -maxEarly || off > 3*maxEarly {
					t.Errorf("replica %d, call %d went out %s after its turn; want from %s early to %s late",
						i, n, off.Round(time.Millisecond), maxEarly, 3*maxEarly)
				}
			}
		})
	}
	wg.Wait()
}

// TestRedisTurnsOnlyWithinThePlacing: a turn is given no later than
// Redis' clock stays placed within maxUncertainty, its drift allowance
// growing with the placing's age. A turn further out would be found too
// loosely placed only once taken: the call refused as Redis unavailable,
// and a turn used up that no call sends. It is refused as over the limit
// instead, nothing taken, and told when to retry. In a synctest bubble an
// exchange takes no time, and its placing lasts 12.5 s exactly.
func TestRedisTurnsOnlyWithinThePlacing(t *testing.T) {
	synctest.Test(t, testRedisTurnsOnlyWithinThePlacing)
}

func testRedisTurnsOnlyWithinThePlacing(t *testing.T) {
	srv := &fakeRedisServer{next: map[string]int64{}}
	l := NewRedis(&fakeLink{srv: srv}, "p:", Options{Rates: map[Key]float64{keyA: 1}, MaxWait: time.Minute,
		Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	lasts := time.Duration(float64(l.maxUncertainty()) * float64(time.Second) / float64(clockDrift))
	interval := spacing(1, DefaultGuard)
	within := int(lasts/interval) + 1 // turns now, one interval on, ... up to lasts
	for i := range within {
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatalf("call %d, its turn %s out: %v; want it", i, time.Duration(i)*interval, err)
		}
	}
	next := func() int64 {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.next[l.prefix+keyA.String()]
	}
	before := next()
	err := l.Wait(context.Background(), keyA)
	if le, ok := errors.AsType[*LimitedError](err); !ok || le.RetryAfter < lasts {
		t.Errorf("a call whose turn is %s out, past the %s the placing lasts: %v; want a LimitedError, retry after %s",
			time.Duration(within)*interval, lasts, err, time.Duration(within)*interval)
	}
	if after := next(); after != before {
		t.Errorf("the key's next free slot moved %s; want no turn taken", time.Duration(after-before)*time.Microsecond)
	}
}

// TestRedisTurnWithinPatienceWhereverTheClockIs: a turn is given no later
// than the call's patience, by Redis' clock, less how far off that clock
// may be placed, so that it lies within the patience wherever in that band
// the clock truly is. Here the exchange that places it took 20 ms to reach
// Redis and its answer came at once: the clock is placed 10 ms ahead of
// this process's, give or take 10 ms, and reads as this process's. The
// turn's own exchange, instant, places it exactly. A turn 1005 ms out,
// given to a call that may wait 1 s because the loose placing put it at
// 995 ms, had the call go past its max_wait; it is refused at once
// instead, nothing taken. In a synctest bubble, so that the exchanges take
// exactly what they are given.
func TestRedisTurnWithinPatienceWhereverTheClockIs(t *testing.T) {
	synctest.Test(t, testRedisTurnWithinPatienceWhereverTheClockIs)
}

func testRedisTurnWithinPatienceWhereverTheClockIs(t *testing.T) {
	const maxWait, turnAt = time.Second, 1005 * time.Millisecond
	srv := &fakeRedisServer{next: map[string]int64{}}
	l := NewRedis(&slowClockLink{fakeLink: fakeLink{srv: srv}, req: 20 * time.Millisecond}, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait}, nil)
	start := time.Now()
	key := l.prefix + keyA.String()
	srv.next[key] = start.Add(turnAt).UnixMicro() // the turns queued before
	err := l.Wait(context.Background(), keyA)
	if le, ok := errors.AsType[*LimitedError](err); !ok || le.Held || time.Since(start) > maxWait {
		t.Errorf("a call that may wait %s, whose turn is %s out: %v after %s; want a LimitedError, at once", maxWait, turnAt, err, time.Since(start))
	}
	if next := time.UnixMicro(srv.next[key]); next.Sub(start) != turnAt {
		t.Errorf("the key's next free slot moved to %s out; want no turn taken", next.Sub(start))
	}
}

// slowClockLink is a fakeLink whose exchanges asking Redis' time take req
// to reach it, their answers coming at once.
type slowClockLink struct {
	fakeLink
	req time.Duration
}

func (s *slowClockLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == redisTime.Hash() {
		time.Sleep(s.req)
	}
	return s.fakeLink.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisLateWakeUpQueuesAgain: a call whose sleep until its turn ends
// later than the slack gives the turn up and queues again, as Local's does
// (TestLateWakeUpQueuesAgain): sent so late, it would crowd the second of
// the turns after it. The slack is half the guard less how far off Redis'
// clock may be placed, both ways: with answers taking 10 ms each way, the
// clock is placed to within 10 ms, and a turn may be reached 27.5 ms late
// at most. In a synctest bubble, so that the link's delays are exact.
func TestRedisLateWakeUpQueuesAgain(t *testing.T) { synctest.Test(t, testRedisLateWakeUpQueuesAgain) }

func testRedisLateWakeUpQueuesAgain(t *testing.T) {
	const wokenLate = 35 * time.Millisecond
	srv := &fakeRedisServer{next: map[string]int64{}}
	var late atomic.Bool
	l := NewRedis(&fakeLink{srv: srv, req: 10 * time.Millisecond, reply: 10 * time.Millisecond}, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if late.CompareAndSwap(true, false) {
				d += wokenLate
			}
			return sleep(ctx, d)
		}}, nil)
	next := func() time.Duration {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return time.Duration(srv.next[l.prefix+keyA.String()]) * time.Microsecond
	}
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Fatal(err)
	}
	before := next()
	late.Store(true) // the next call's sleep until its turn ends late
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Fatal(err)
	}
	interval := spacing(50, DefaultGuard)
	if moved := next() - before; moved <= interval {
		t.Errorf("the call woken %s late moved the next free slot %s, one turn; want its turn given up and another taken", wokenLate, moved)
	}
}

// TestRedisKeepsAnOldPlacingBetterThanNewOnes: Redis' clock was placed
// by a fast exchange over a second ago, and every exchange since is
// slower (a flood queued on the connections, as in
// integration.TestReplicasShareTheRateLimit), so the old placing stays
// the best one. A call that may wait a minute, longer than any placing
// lasts, asks Redis its time once more and then takes its turn by the
// placing it has, rather than asking again and again and being refused as
// "Redis answers too slowly"; and the next calls do not ask again within
// the second. In a synctest bubble, the slower exchanges take the 6 ms
// they are given, whatever the machine's load: not the 25 ms that would
// make them too slow to place the clock at all.
func TestRedisKeepsAnOldPlacingBetterThanNewOnes(t *testing.T) {
	synctest.Test(t, testRedisKeepsAnOldPlacingBetterThanNewOnes)
}

func testRedisKeepsAnOldPlacingBetterThanNewOnes(t *testing.T) {
	srv := &fakeRedisServer{next: map[string]int64{}}
	link := &countingLink{fakeLink: fakeLink{srv: srv}}
	l := NewRedis(link, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Minute}, nil)
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	link.req, link.reply = 3*time.Millisecond, 3*time.Millisecond
	link.times.Store(0)
	for i := range 5 {
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatalf("call %d: %v; want its turn", i, err)
		}
	}
	if n := link.times.Load(); n != 1 {
		t.Errorf("Redis asked its time %d times for 5 calls; want once", n)
	}
}

// TestRedisRenewsAnOldPlacingUnderSteadyTraffic: turns' exchanges, slower
// than the one that placed Redis' clock, do not place it better, and do
// not count as asking Redis its time: under steady traffic a placing over
// a second old that would not last the calls' max_wait is still renewed,
// about once a second, so that it does not age out under them (calls
// whose turn lay past it would be refused as over the limit). In a
// synctest bubble, as TestRedisKeepsAnOldPlacingBetterThanNewOnes.
func TestRedisRenewsAnOldPlacingUnderSteadyTraffic(t *testing.T) {
	synctest.Test(t, testRedisRenewsAnOldPlacingUnderSteadyTraffic)
}

func testRedisRenewsAnOldPlacingUnderSteadyTraffic(t *testing.T) {
	srv := &fakeRedisServer{next: map[string]int64{}}
	link := &slowTakeLink{countingLink: countingLink{fakeLink: fakeLink{srv: srv}}, take: 3 * time.Millisecond}
	l := NewRedis(link, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Minute}, nil)
	for stop := time.Now().Add(1500 * time.Millisecond); time.Now().Before(stop); {
		if err := l.Wait(context.Background(), keyA); err != nil {
			t.Fatal(err)
		}
	}
	if n := link.times.Load(); n < 2 {
		t.Errorf("Redis asked its time %d times in 1.5 s of steady calls; want the placing renewed after its first second", n)
	}
}

// slowTakeLink is a countingLink whose turns take take each way, longer
// than an exchange asking Redis' time: a turn's answer waits behind the
// others' (Lua scripts on pooled connections).
type slowTakeLink struct {
	countingLink
	take time.Duration
}

func (s *slowTakeLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == takeTurn.Hash() {
		time.Sleep(s.take)
		defer time.Sleep(s.take)
	}
	return s.countingLink.EvalSha(ctx, sha1, keys, args...)
}

// countingLink is a fakeLink that counts the exchanges asking Redis' time.
type countingLink struct {
	fakeLink
	times atomic.Int32
}

func (c *countingLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == redisTime.Hash() {
		c.times.Add(1)
	}
	return c.fakeLink.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisBurstAfterIdlePlacesTheClockOnce: a burst of calls that finds
// Redis' clock unplaced (as after an idle spell, when its placing has
// aged past maxUncertainty) asks Redis its time once, not once a call,
// and an exchange slowed by the burst itself is tried again rather than
// refusing every call of the burst as "Redis answers too slowly".
func TestRedisBurstAfterIdlePlacesTheClockOnce(t *testing.T) {
	prefix := scriptedPrefix(t)
	busyUntil := time.Now().Add(40 * time.Millisecond) // the clock script answers late while the burst is under way
	scripter := &clockRedis{Scripter: testRedis(t), fn: func(ctx context.Context) error {
		if time.Now().Before(busyUntil) {
			return sleep(ctx, 60*time.Millisecond)
		}
		return nil
	}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 1000}, MaxWait: 5 * time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	const calls = 50
	var wg sync.WaitGroup
	var slow atomic.Int32
	for range calls {
		wg.Go(func() {
			err := l.Wait(context.Background(), keyA)
			if _, ok := errors.AsType[*sharedstate.UnavailableError](err); ok {
				slow.Add(1)
			}
		})
	}
	wg.Wait()
	if n := slow.Load(); n > 0 {
		t.Errorf("%d of %d calls refused as Redis too slow; want none", n, calls)
	}
	if n := scripter.times.Load(); n > placeTries {
		t.Errorf("Redis asked its time %d times for a burst of %d calls; want at most %d", n, calls, placeTries)
	}
}

// clockRedis runs the clock script through fn.
type clockRedis struct {
	redis.Scripter
	fn    func(ctx context.Context) error // nil: answer at once
	times atomic.Int32
}

func (r *clockRedis) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if sha1 == redisTime.Hash() {
		r.times.Add(1)
		if err := r.fn(ctx); err != nil {
			return redis.NewCmdResult(nil, err)
		}
	}
	return r.Scripter.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisClockExchangeOutlivesItsLeader: the exchange placing Redis'
// clock for a burst is no call's own: a call that can wait no longer
// leaves it, and the calls that share it still get it; and a failure of
// Redis fails the call at once, with what failed, even one that reads as
// a deadline (a dial's i/o timeout), rather than being taken for a
// call's context and asked again until "too slow".
func TestRedisClockExchangeOutlivesItsLeader(t *testing.T) {
	prefix := scriptedPrefix(t)
	opts := Options{Rates: map[Key]float64{keyA: 1000}, MaxWait: 5 * time.Second, Sleep: func(context.Context, time.Duration) error { return nil }}

	t.Run("leader leaves", func(t *testing.T) {
		// The first exchange is held until the test lets it go, however
		// slowly the test runs, and ends early only if its context does;
		// later ones (a retry: the held one comes back too slowly to place
		// the clock) answer at once.
		started, release := make(chan struct{}), make(chan struct{})
		var first sync.Once
		var ended atomic.Int32 // exchanges a context ended
		scripter := &clockRedis{Scripter: testRedis(t), fn: func(ctx context.Context) error {
			first.Do(func() { close(started) })
			select {
			case <-release:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				ended.Add(1)
			}
			return ctx.Err()
		}}
		l := NewRedis(scripter, prefix, opts, nil)
		leaderCtx, leave := context.WithCancel(context.Background())
		defer leave()
		leader := make(chan error, 1)
		go func() { leader <- l.Wait(leaderCtx, keyA) }()
		select {
		case <-started: // the leader's exchange is in flight
		case <-time.After(5 * time.Second):
			t.Fatal("the leader asked Redis nothing")
		}
		leave() // the caller gave up
		if err := <-leader; err == nil {
			t.Error("the call that left got its turn")
		}
		follower := make(chan error, 1)
		go func() { follower <- l.Wait(context.Background(), keyA) }()
		close(release)
		if err := <-follower; err != nil {
			t.Errorf("a call after the leader left: %v; want its turn", err)
		}
		if n := ended.Load(); n != 0 {
			t.Errorf("%d exchanges ended with the call that led them; want none", n)
		}
		if n := scripter.times.Load(); n > placeTries {
			t.Errorf("Redis asked its time %d times; want at most %d", n, placeTries)
		}
	})
	t.Run("Redis fails", func(t *testing.T) {
		errDial := fmt.Errorf("dial tcp 10.0.0.1:6379: i/o timeout: %w", context.DeadlineExceeded)
		scripter := &clockRedis{Scripter: testRedis(t), fn: func(context.Context) error { return errDial }}
		l := NewRedis(scripter, prefix, opts, nil)
		err := l.Wait(context.Background(), keyA)
		if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || !strings.Contains(err.Error(), "dial tcp") {
			t.Errorf("Wait: %v; want Redis unavailable, saying the dial failed", err)
		}
		if n := scripter.times.Load(); n != 1 {
			t.Errorf("Redis asked its time %d times; want once", n)
		}
	})
}

// scriptedPrefix is a key prefix of t's own on the test Redis, established
// as a deployment leaves it, with the limiter's scripts loaded, so that a
// test's wrapped client runs them at once (EVALSHA) rather than loading
// them on its first calls.
func scriptedPrefix(t *testing.T) string {
	t.Helper()
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	for _, sc := range []*redis.Script{takeTurn, redisTime} {
		if err := sc.Load(context.Background(), testRedis(t)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return prefix
}

// TestRedisFlushFirstSeenByANewReplica: backupd's keys are gone from a
// Redis that did not restart (an operator's FLUSHDB) while replica a has
// a second of turns queued. The first to ask after it is a replica that
// never saw the marker, which cannot tell the flush from a first start:
// it holds the turns all the same, so none of its turns is due among a's,
// and no one-second window holds more than the rate. Taken for a first
// start, its turns came at once, 81 in one second.
func TestRedisFlushFirstSeenByANewReplica(t *testing.T) {
	ctx := context.Background()
	client := testRedis(t)
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	var turns turnLog
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}
	a := NewRedis(client, prefix, opts, nil)
	if err := a.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if err := a.Wait(ctx, keyA); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	b := NewRedis(client, prefix, opts, nil)
	if err := b.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	limited, ok := errors.AsType[*LimitedError](b.Wait(ctx, keyA))
	if !ok || !limited.Held {
		t.Fatalf("the new replica's first turn after the flush: %v; want it held", limited)
	}
	for range 40 {
		_ = b.Wait(ctx, keyA)
		_ = a.Wait(ctx, keyA)
	}
	if most := mostInOneSecond(turns); most > 50 {
		t.Errorf("%d turns in one second after the flush; want at most 50", most)
	}
}

// mostInOneSecond is the most turns that fall in any one-second window.
func mostInOneSecond(turns turnLog) int {
	all := slices.SortedFunc(slices.Values(turns), time.Time.Compare)
	most := 0
	for i := range all {
		n := 0
		for j := i; j < len(all) && all[j].Sub(all[i]) < time.Second; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// TestRedisLeadHeldWhenTheWakeUpIsLate: as TestLeadHeldWhenTheWakeUpIsLate,
// for turns given by Redis. The sleep ends 10 ms inside the lead, or at
// the turn when that is later: a call let go then goes with less than
// its lead left. A sleep that ended past the slack a turn may be late by
// (Redis answering slowly on a busy machine) queues the call again, which
// then has no turn within its deadline: the attempt is made again.
func TestRedisLeadHeldWhenTheWakeUpIsLate(t *testing.T) {
	const lead = 100 * time.Millisecond
	wake := func(ctx context.Context, d time.Duration) error {
		dl, _ := ctx.Deadline()
		return sleep(ctx, max(d, time.Until(dl.Add(-lead+10*time.Millisecond))))
	}
	var outcomes []error
	for range 10 {
		l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 5}, MaxWait: time.Second,
			Lead: map[string]time.Duration{keyA.Operation: lead}, Sleep: wake})
		firstTurn(t, l)
		// The next turn is 220 ms out, and within the lead: 10 ms before it.
		ctx, cancel := context.WithTimeout(context.Background(), 330*time.Millisecond)
		err := l.Wait(ctx, keyA)
		dl, _ := ctx.Deadline()
		cancel()
		if err == nil {
			t.Fatalf("a call woken late was let go with %s of its deadline left; want a TooLateError, under the %s lead", time.Until(dl).Round(time.Millisecond), lead)
		}
		if _, ok := errors.AsType[*TooLateError](err); ok {
			return
		}
		outcomes = append(outcomes, err)
	}
	t.Errorf("no attempt was woken within the slack: %v; want a TooLateError", outcomes)
}

// firstTurn takes l's first turn of keyA: a fresh prefix's turns may be
// held back at first.
func firstTurn(t *testing.T, l *Redis) {
	t.Helper()
	for {
		err := l.Wait(context.Background(), keyA)
		if err == nil {
			return
		}
		le, ok := errors.AsType[*LimitedError](err)
		if !ok || !le.Held {
			t.Fatalf("first call: %v", err)
		}
		time.Sleep(le.RetryAfter)
	}
}

// TestRedisLeadCappedAfterAStall: an answer that arrived long after Redis
// gave it (a link that stalled) raises the lead turns are asked with, but
// no further than half of MaxWait: a lead beyond MaxWait would have every
// call refused as beyond its wait until the lead fell again, seconds
// later.
func TestRedisLeadCappedAfterAStall(t *testing.T) {
	const maxWait = time.Second
	l := redisLimiter(t, testenv.RedisPrefix(t), Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	firstTurn(t, l)
	// An exchange sent 3 s ago, whose answer Redis gave halfway and which
	// arrives now: 1.5 s late.
	now := time.Now()
	place, _, _, _ := l.clock.read(now)
	sent := now.Add(-3 * time.Second)
	l.clock.observe(sent, now, place.redis(sent.Add(1500*time.Millisecond)))
	if lead := l.clock.currentLead(time.Now()); lead > maxWait/2 {
		t.Errorf("lead after an answer 1.5 s late: %s; want at most %s (half of MaxWait)", lead, maxWait/2)
	}
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Errorf("a call after the stall: %v; want a turn", err)
	}
}

// deniedRedis refuses backupd's user some commands, as a Redis ACL does.
type deniedRedis struct {
	redis.Scripter
	load, evalSha bool // SCRIPT LOAD, EVALSHA denied
}

// replyError is an error reply of Redis'.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func noperm(cmd string) error {
	return replyError(fmt.Sprintf("NOPERM User backupd has no permissions to run the '%s' command", cmd))
}

func (r deniedRedis) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	if r.load {
		return redis.NewStringResult("", noperm("script|load"))
	}
	return r.Scripter.ScriptLoad(ctx, script)
}

func (r deniedRedis) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if r.evalSha {
		return redis.NewCmdResult(nil, noperm("evalsha"))
	}
	return r.Scripter.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisPrimeFindsTheScriptsDenied: Prime fails, as a refusal (which
// fails backupd's start), for a user whose ACL denies it loading the
// scripts, or running them by EVALSHA, as every call does: with EVAL
// alone allowed, Prime's own look for the marker passes.
func TestRedisPrimeFindsTheScriptsDenied(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	for _, denied := range []deniedRedis{{load: true}, {evalSha: true}} {
		denied.Scripter = testRedis(t)
		l := NewRedis(denied, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
		if err := l.Prime(context.Background()); !sharedstate.Refused(err) {
			t.Errorf("Prime with SCRIPT LOAD denied %v, EVALSHA denied %v: %v; want a refusal", denied.load, denied.evalSha, err)
		}
	}
}

// TestRedisTurnAnsweredTooLateIsNotUsed: a turn whose answer arrives after
// the turn has passed, by more than the slack a call may go late by, is
// not used: the call, sent then, would go among the turns given after
// it. It asks for another turn, and goes at that one.
func TestRedisTurnAnsweredTooLateIsNotUsed(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	for _, sc := range []*redis.Script{takeTurn, redisTime} {
		if err := sc.Load(context.Background(), testRedis(t)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The clock's exchange answers at once, the first turn 150 ms late,
	// the next at once.
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, 150 * time.Millisecond, 0}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	if err := l.Wait(context.Background(), keyA); err != nil || scripter.turns.Load() != 2 {
		t.Errorf("Wait with its first turn answered 150 ms late: %v after %d turns asked; want a turn, the second asked", err, scripter.turns.Load())
	}
}

// TestRedisStallIsNotTheRate: one turn whose answer arrives 900 ms after
// Redis gave it, on an idle key, makes the replica ask for its turns that
// far ahead (the lead, capped at half of max_wait), and the call's next
// turn then lies beyond its patience. The account's rate is not used up:
// the call is refused as Redis too slow (SHARED_STATE_UNAVAILABLE), as
// docs/replicas.md says a slow Redis shows, and so is a call made when
// Redis answers at once again but the lead, which falls 100 ms a second,
// still lies beyond what the call can wait. Refused as over the rate, both
// told the caller to retry after the lead, when its call would be refused
// again. Turns queued beyond the lead are the rate's refusal still.
func TestRedisStallIsNotTheRate(t *testing.T) {
	prefix := scriptedPrefix(t)
	// The clock's exchange answers at once, the first turn 900 ms late,
	// the rest at once.
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, 900 * time.Millisecond, 0}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	err := l.Wait(context.Background(), keyA)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || !strings.Contains(err.Error(), "arriving up to 500ms after it gave them") {
		t.Errorf("idle key, one answer 900 ms late: %v; want Redis unavailable, its answers arriving up to 500ms late", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = l.Wait(ctx, keyA)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok {
		t.Errorf("Redis answering at once again, a call with 100 ms left: %v; want Redis unavailable, the lead still beyond its patience", err)
	}
	// Turns queued 2 s out, beyond the lead: the rate refuses the call.
	queueTurnsOut(t, l, keyA, 2*time.Second)
	if err := l.Wait(context.Background(), keyA); !errors.As(err, new(*LimitedError)) {
		t.Errorf("turns queued 2 s out, the lead 500 ms: %v; want the rate's refusal", err)
	}
}

// queueTurnsOut moves k's next free slot in Redis to d from now, by
// Redis' clock, as turns taken on other replicas would.
func queueTurnsOut(t *testing.T, l *Redis, k Key, d time.Duration) {
	t.Helper()
	now, err := testRedis(t).Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := testRedis(t).Set(context.Background(), l.prefix+k.String(), now.Add(d).UnixMicro(), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisQueueBeyondPatienceIsTheRate: with the lead at 500 ms, turns
// queued 300 ms out (by calls on other replicas) lie beyond the patience
// of a call with 100 ms left: the account's rate refuses it, as it does
// on a replica without a lead, whatever the lead adds. Only a turn that
// the queue alone would have given within the call's patience is Redis
// too slow.
func TestRedisQueueBeyondPatienceIsTheRate(t *testing.T) {
	prefix := scriptedPrefix(t)
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, 900 * time.Millisecond, 0}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	if err := l.Wait(context.Background(), keyA); !errors.As(err, new(*sharedstate.UnavailableError)) {
		t.Fatalf("idle key, one answer 900 ms late: %v; want Redis unavailable, the lead set", err)
	}
	queueTurnsOut(t, l, keyA, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, keyA); !errors.As(err, new(*LimitedError)) {
		t.Errorf("turns queued 300 ms out, a call with 100 ms left, the lead 500 ms: %v; want the rate's refusal", err)
	}
}

// TestRedisHoldBeyondPatienceIsTheHoldWhateverTheLead: with the lead at
// 500 ms, the turns are held (a loss of data, a step of Redis' clock) for
// 300 ms more, beyond the patience of a call with 100 ms left. A replica
// without a lead refuses the call as held (RATE_LIMITED, Held, retry after
// the hold); so must one with a lead, though its lead lies past the hold's
// end: the account's turns would not reach the call in time, lead or not
// (docs/replicas.md). Refused as Redis too slow, the same call got 503
// from one replica and 429 from the other.
func TestRedisHoldBeyondPatienceIsTheHoldWhateverTheLead(t *testing.T) {
	prefix := scriptedPrefix(t)
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, 900 * time.Millisecond, 0}}
	led := NewRedis(scripter, prefix, opts, nil)
	if err := led.Wait(context.Background(), keyA); !errors.As(err, new(*sharedstate.UnavailableError)) {
		t.Fatalf("idle key, one answer 900 ms late: %v; want Redis unavailable, the lead set", err)
	}
	unled := NewRedis(testRedis(t), prefix, opts, nil)
	for name, l := range map[string]*Redis{"with a lead": led, "without a lead": unled} {
		// The hold ends 300 ms from now, by Redis' clock.
		now, err := testRedis(t).Time(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		mark := now.Add(300*time.Millisecond - l.quarantine(l.spacing[keyA]))
		if err := testRedis(t).Set(context.Background(), l.marker, mark.UnixMicro(), 0).Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err = l.Wait(ctx, keyA)
		cancel()
		if le, ok := errors.AsType[*LimitedError](err); !ok || !le.Held {
			t.Errorf("%s: the turns held 300 ms more, a call with 100 ms left: %v; want the hold's refusal", name, err)
		}
	}
}

// TestRedisTurnAnsweredLateKeepsTheLead: a turn whose answer arrives a
// little after it (within the slack a call may go late by) lets the call
// go at once, unless the call has less than its operation's lead left by
// then: it is refused (TooLateError) rather than sent with too little
// time for AWS to answer.
func TestRedisTurnAnsweredLateKeepsTheLead(t *testing.T) {
	const lead = 100 * time.Millisecond
	prefix := scriptedPrefix(t)
	// The clock's exchange answers at once, the turn 20 ms late.
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{0, 20 * time.Millisecond, 0}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second,
		Lead: map[string]time.Duration{keyA.Operation: lead}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), lead+10*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, keyA); err == nil {
		dl, _ := ctx.Deadline()
		t.Errorf("a call whose turn was answered 20 ms late went with %s of its deadline left; want it refused, under the %s lead", time.Until(dl).Round(time.Millisecond), lead)
	}
}

// TestRedisLoosePlacingIsRenewed: a placing of Redis' clock off by more
// than a turn may be (an eighth of the guard), here from a 40 ms exchange,
// is renewed before a turn is taken: used, it would place no turn at all
// (none lies within how long it places the clock closely enough), and the
// call would be refused as beyond its wait.
func TestRedisLoosePlacingIsRenewed(t *testing.T) {
	prefix := scriptedPrefix(t)
	client := testRedis(t)
	l := NewRedis(client, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second,
		Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	before := time.Now()
	now, err := client.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	mid := before.Add(time.Since(before) / 2)
	l.clock.observe(mid.Add(-20*time.Millisecond), mid.Add(20*time.Millisecond), now) // off by up to 20 ms
	if err := l.Wait(context.Background(), keyA); err != nil {
		t.Errorf("a call with Redis' clock placed to within 20 ms: %v; want the clock placed anew and a turn", err)
	}
}

// TestRedisPlacesTheClockWithinPatience: a call whose placing of Redis'
// clock waits on an exchange that Redis answers late (its first, here)
// does not wait for it longer than the call may wait for its turn: it is
// refused, Redis unavailable, and the exchange goes on for the next call.
func TestRedisPlacesTheClockWithinPatience(t *testing.T) {
	prefix := scriptedPrefix(t)
	const late, maxWait = 3 * time.Second, time.Second
	scripter := &laggingRedis{Scripter: testRedis(t), lags: []time.Duration{late, 0}}
	l := NewRedis(scripter, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait}, nil)
	start := time.Now()
	err := l.Wait(context.Background(), keyA)
	took := time.Since(start)
	if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || took > maxWait+DefaultGuard+time.Second {
		t.Errorf("Wait with Redis' clock answered %s late: %v after %s; want Redis unavailable within the call's patience",
			late, err, took.Round(time.Millisecond))
	}
}

// TestRedisAnswerWithinTheGuardIsUsed: a call asks Redis while it may
// still wait for its turn, and a guard more (docs/replicas.md). Its turn,
// 990 ms out with a 1 s max_wait, is answered 1010 ms after Redis gave
// it: past the call's patience, within the guard, and 20 ms after the
// turn, within the slack a turn may be reached late by. The call goes on
// it. Asked only until its patience ended, it was refused as Redis
// unavailable, and its turn, given, went unused. In a synctest bubble, so
// that the answer arrives exactly when it is made to.
func TestRedisAnswerWithinTheGuardIsUsed(t *testing.T) {
	synctest.Test(t, testRedisAnswerWithinTheGuardIsUsed)
}

func testRedisAnswerWithinTheGuardIsUsed(t *testing.T) {
	const maxWait, turnAt, answered = time.Second, 990 * time.Millisecond, 1010 * time.Millisecond
	srv := &fakeRedisServer{next: map[string]int64{}}
	link := &lateTurnLink{fakeLink: fakeLink{srv: srv}, late: answered}
	l := NewRedis(link, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait}, nil)
	start := time.Now()
	key := l.prefix + keyA.String()
	srv.next[key] = start.Add(turnAt).UnixMicro() // the turns queued before
	err := l.Wait(context.Background(), keyA)
	if err != nil || time.Since(start) != answered {
		t.Errorf("a call whose turn, %s out, was answered %s after Redis gave it: %v after %s; want it sent on its answer",
			turnAt, answered, err, time.Since(start))
	}
	if next := time.UnixMicro(srv.next[key]); next.Sub(start) != turnAt+spacing(50, DefaultGuard) {
		t.Errorf("the key's next free slot is %s out; want one turn taken, at %s", next.Sub(start), turnAt)
	}
}

// lateTurnLink is a fakeLink whose first turn is answered late after
// Redis gave it, unless the caller's context ends first.
type lateTurnLink struct {
	fakeLink
	late    time.Duration
	delayed atomic.Bool
}

func (f *lateTurnLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	cmd := f.fakeLink.EvalSha(ctx, sha1, keys, args...)
	if sha1 == takeTurn.Hash() && f.delayed.CompareAndSwap(false, true) {
		if err := sleep(ctx, f.late); err != nil {
			return redis.NewCmdResult(nil, err) // the answer lost to the caller's deadline
		}
	}
	return cmd
}

// TestRedisFreeTurnWithinWakeSlack: a call arriving with its lead left and
// less than wakeSlack more, on a key whose turn is free, goes at once, as
// by Local: there is no wait to wake late from. Refused, it was told the
// account's rate was reached (RESOURCE_EXHAUSTED) with a RetryInfo of a
// millisecond, after which it could not be sent at all.
func TestRedisFreeTurnWithinWakeSlack(t *testing.T) {
	const lead = 50 * time.Millisecond
	opts := Options{Rates: map[Key]float64{keyA: 5}, MaxWait: time.Second, Lead: map[string]time.Duration{keyA.Operation: lead}}
	local := NewLocal(opts)
	l := redisLimiter(t, testenv.RedisPrefix(t), opts)
	firstTurn(t, l)
	time.Sleep(spacing(5, DefaultGuard)) // the key's next turn is free
	for name, lim := range map[string]interface {
		Wait(context.Context, Key) error
	}{"Local": local, "Redis": l} {
		ctx, cancel := context.WithTimeout(context.Background(), lead+2*time.Millisecond)
		err := lim.Wait(ctx, keyA)
		cancel()
		// A TooLateError is this test's own delay on a busy machine:
		// the call arrived with less than its lead left.
		if _, late := errors.AsType[*TooLateError](err); err != nil && !late {
			t.Errorf("%s: a free turn with %s left and a %s lead: %v; want it let go", name, lead+2*time.Millisecond, lead, err)
		}
	}
}
