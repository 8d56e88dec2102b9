package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/testenv"
)

// switchingRedis sends every command to the server it points at now.
type switchingRedis struct{ to atomic.Pointer[redis.Client] }

func (s *switchingRedis) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.to.Load().Eval(ctx, script, keys, args...)
}

func (s *switchingRedis) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.to.Load().EvalSha(ctx, sha1, keys, args...)
}

func (s *switchingRedis) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return s.to.Load().EvalRO(ctx, script, keys, args...)
}

func (s *switchingRedis) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return s.to.Load().EvalShaRO(ctx, sha1, keys, args...)
}

func (s *switchingRedis) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return s.to.Load().ScriptExists(ctx, hashes...)
}

func (s *switchingRedis) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return s.to.Load().ScriptLoad(ctx, script)
}

// failingBack is a failover of the test Redis (a) to a server of the
// test's own (b, a's replica, promoted), through which sw reaches them.
type failingBack struct {
	a, b   *redis.Client
	sw     *switchingRedis
	prefix string
}

func newFailingBack(t *testing.T) *failingBack {
	t.Helper()
	f := &failingBack{a: testRedis(t), b: testenv.StartRedis(t, "").Client, sw: &switchingRedis{}, prefix: testenv.RedisPrefix(t)}
	testenv.EstablishRedis(t, testenv.RedisAddr(t), f.prefix)
	f.sw.to.Store(f.a)
	return f
}

// failOver makes b a replica of a until it holds a's state, promotes it,
// and sends every command to it.
func (f *failingBack) failOver(ctx context.Context, t *testing.T) {
	t.Helper()
	host, port, _ := strings.Cut(testenv.RedisAddr(t), ":")
	if err := f.b.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := f.b.Exists(ctx, f.prefix+"state").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not replicate a")
		}
	}
	if err := f.b.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	f.sw.to.Store(f.b)
}

// queue has l take turns until turns holds n, sleeping out the hold
// after the failover.
func queue(ctx context.Context, t *testing.T, l *Redis, turns *lockedTurns, n int) {
	t.Helper()
	for turns.len() < n {
		waitOutHolds(ctx, t, l, 1)
	}
}

// TestRedisQuarantineAfterFailingBack: Redis fails over from a to b (b,
// a's replica, promoted), and back to a, which kept its data and never
// restarted (a primary back from a partition, an endpoint flipping back).
// a's marker names a's own run_id, as if nothing had happened, while b
// gave a second of turns since; a's slot for the key is from before. The
// replica saw b, and without the count of holds (takeTurn's KEYS[5]) took
// a for a server another replica had already held for: ten turns at once,
// each 5 ms from one of b's. The return to a is reported even when a loss
// of a's was reported before (a's KEYS[4] names a): the count of holds
// alone tells it.
func TestRedisQuarantineAfterFailingBack(t *testing.T) {
	for _, reportedBefore := range []bool{false, true} {
		t.Run(fmt.Sprintf("a loss of a's reported before %v", reportedBefore), func(t *testing.T) {
			ctx := context.Background()
			f := newFailingBack(t)
			var turns lockedTurns
			var lost atomic.Int32
			l := NewRedis(f.sw, f.prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}, func() { lost.Add(1) })
			primed(ctx, t, l)
			if err := l.Wait(ctx, keyA); err != nil {
				t.Fatal(err)
			}
			f.failOver(ctx, t)
			const queued = 46 // the turn on a, and a second of b's
			queue(ctx, t, l, &turns, queued)
			if lost.Load() != 1 {
				t.Fatalf("%d losses reported on the failover to b; want 1", lost.Load())
			}
			if reportedBefore { // as a restart of a's, reported, leaves it; b does not see it
				run, err := f.a.Get(ctx, f.prefix+"state:run_id").Result()
				if err == nil {
					err = f.a.Set(ctx, f.prefix+"state:reported", run, 0).Err()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			f.sw.to.Store(f.a)
			turnsOrHolds(ctx, t, l, 10) // back on a
			if lost.Load() != 2 {
				t.Errorf("%d losses reported; want 2, one for each server that answered anew", lost.Load())
			}
			turns.dropFirst() // the turn on a before the failover, long past
			turns.checkAfterStep(t, queued-1, 50)
		})
	}
}

// TestRedisQuarantineAfterFailingBackSeenFirstByANewReplica: as above, but
// the first turn back on a is a replica's that started on b after its
// hold and took no turn there: it knows the count of holds from Prime.
func TestRedisQuarantineAfterFailingBackSeenFirstByANewReplica(t *testing.T) {
	ctx := context.Background()
	f := newFailingBack(t)
	var turns lockedTurns
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}
	first := NewRedis(f.sw, f.prefix, opts, nil)
	primed(ctx, t, first)
	if err := first.Wait(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	f.failOver(ctx, t)
	const queued = 46
	queue(ctx, t, first, &turns, queued)
	var lost atomic.Int32
	started := NewRedis(f.sw, f.prefix, opts, func() { lost.Add(1) })
	primed(ctx, t, started)
	f.sw.to.Store(f.a)
	turnsOrHolds(ctx, t, started, 10) // back on a
	if lost.Load() != 1 {
		t.Errorf("%d losses reported by the replica that started on b; want 1", lost.Load())
	}
	turns.dropFirst()
	turns.checkAfterStep(t, queued-1, 50)
}

// TestRedisHoldFromTheStartOfAServerInUse: a replica that took its turns
// from another server (a failover) and finds one whose marker names it
// (other replicas took turns there already) holds its turns until a
// quarantine after that server started, by the latest it can have
// started: its turns taken before may be going out until then. Once that
// is past, a replica arriving so takes its turn at once, not held again
// from its own arrival.
func TestRedisHoldFromTheStartOfAServerInUse(t *testing.T) {
	ctx := context.Background()
	const maxWait = 2 * time.Second
	const quarantine = maxWait + 20*time.Millisecond // at 50/s
	var goes time.Time                               // when the last call given a turn went
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait,
		Sleep: func(_ context.Context, d time.Duration) error { goes = time.Now().Add(d); return nil }}
	// Started half a second into a second: Redis tells its start in whole
	// seconds (uptime_in_seconds), which must not place it earlier.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
	started := time.Now()
	r := testenv.StartRedis(t, testenv.FreeAddr(t))
	upBy := time.Now()
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, r.Addr, prefix)
	elsewhere := "1111111111111111111111111111111111111111"
	arrive := func() error {
		l := NewRedis(r.Client, prefix, opts, nil)
		l.server.Store(&elsewhere)
		goes = time.Now()
		return l.Wait(ctx, keyA)
	}
	// A turn, or the refusal's retry, no sooner than the quarantine from
	// the start (give or take how far off the turn may go: guard/8).
	err := arrive()
	if le, ok := errors.AsType[*LimitedError](err); ok && le.Held {
		goes = time.Now().Add(le.RetryAfter)
	} else if err != nil {
		t.Fatal(err)
	}
	if goes.Before(started.Add(quarantine - 20*time.Millisecond)) {
		t.Fatalf("first call from a replica that saw another server, %s after the start: %v, goes %s after the start; want it held until %s after the start",
			time.Since(started).Round(time.Millisecond), err, goes.Sub(started).Round(time.Millisecond), quarantine)
	}
	// Redis places the start no later than the whole second after it.
	time.Sleep(time.Until(upBy.Truncate(time.Second).Add(time.Second + quarantine + 100*time.Millisecond)))
	if err := arrive(); err != nil || time.Until(goes) > 100*time.Millisecond {
		t.Errorf("a replica arriving so after the quarantine from the start: %v, goes in %s; want a turn at once (a turn or two out: it asks again once its clock is reset)", err, time.Until(goes).Round(time.Millisecond))
	}
}

// TestRedisFailoverToAServerWhoseClockIsAhead: Redis fails over to a
// server whose clock reads 5 s ahead of the first's (another host's). The
// first call there asked for its turn by the first server's clock: the
// answer, by the new one's, is not used, and the call asks again by the
// new server's clock, which it places anew. Taken for a step of the first
// server's clock, it held every replica's turns; used as it came, it
// refused the call ("retry after 1ms").
func TestRedisFailoverToAServerWhoseClockIsAhead(t *testing.T) {
	ctx := context.Background()
	a := testRedis(t)
	withRedisClockOffset(t, a)
	b := testenv.StartRedis(t, testenv.FreeAddr(t))
	stepRedisClock(t, b.Client, 5*time.Second)
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	testenv.EstablishRedis(t, b.Addr, prefix) // other replicas use b already
	sw := &switchingRedis{}
	sw.to.Store(a)
	const maxWait = 300 * time.Millisecond
	l := NewRedis(sw, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait, Sleep: func(context.Context, time.Duration) error { return nil }}, nil)
	primed(ctx, t, l)
	if err := l.Wait(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	// b has been up longer than a hold from its start lasts (at most a
	// second after it, in whole seconds, and the quarantine).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(2*time.Second + maxWait)))
	sw.to.Store(b.Client)
	if err := l.Wait(ctx, keyA); err != nil {
		t.Errorf("the first call after the failover to b: %v; want a turn", err)
	}
	// The marker names b's start, long past; a hold made now names now.
	bNow := time.Now().Add(5 * time.Second)
	if mark, err := b.Client.Get(ctx, prefix+"state").Int64(); err != nil || time.UnixMicro(mark).After(bNow.Add(-time.Second)) {
		t.Errorf("b's state marker: %s, %v; want b's start, not a hold from now (%s by b's clock)",
			time.UnixMicro(mark).Format("15:04:05.000"), err, bNow.Format("15:04:05.000"))
	}
}

// TestRedisFailBackHeldAndReportedOnce: a replica that counted more holds
// (takeTurn's KEYS[5]) than the server it finds now (a failover back to a
// server with older data) holds the turns and reports the loss once; the
// hold is then counted beyond what it saw, so that its next turn, after
// the quarantine, is neither held nor reported again, and a replica that
// comes from the other server later finds the loss reported already.
func TestRedisFailBackHeldAndReportedOnce(t *testing.T) {
	ctx := context.Background()
	client := testRedis(t)
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	const maxWait = 300 * time.Millisecond
	opts := Options{Rates: map[Key]float64{keyA: 50}, MaxWait: maxWait, Sleep: func(context.Context, time.Duration) error { return nil }}
	var lost atomic.Int32
	replica := func() *Redis { return NewRedis(client, prefix, opts, func() { lost.Add(1) }) }
	l := replica()
	primed(ctx, t, l)
	l.sawGen(5) // the holds it saw on the other server; this one counts none
	err := l.Wait(ctx, keyA)
	le, ok := errors.AsType[*LimitedError](err)
	if !ok || !le.Held || lost.Load() != 1 {
		t.Fatalf("first turn back on the server with older data: %v, %d losses; want a held refusal and one loss", err, lost.Load())
	}
	time.Sleep(le.RetryAfter + 20*time.Millisecond)
	if err := l.Wait(ctx, keyA); err != nil || lost.Load() != 1 {
		t.Errorf("the next turn, after the quarantine: %v, %d losses; want a turn and still one loss", err, lost.Load())
	}
	other := "1111111111111111111111111111111111111111"
	c := replica()
	c.server.Store(&other)
	c.sawGen(5)
	if err := c.Wait(ctx, keyA); !heldOrTurn(err) || lost.Load() != 1 {
		t.Errorf("a replica coming from the other server: %v, %d losses; want still one loss", err, lost.Load())
	}
}

// TestRedisFailoverForgetsTheLead: a replica whose answers from Redis
// arrived 150 ms after Redis gave them asks for its turns that far ahead
// (the lead). Redis fails over to a server whose answers arrive at once:
// the lead measured on the first is forgotten with its clock, and the
// second call after the failover, made when the first goes, gets the next
// turn, one spacing later. Kept, the lead held it back 133 ms, and every
// call for the second and a half it took to fall. In a synctest bubble,
// with fake servers, so that the answers take exactly what they are given.
func TestRedisFailoverForgetsTheLead(t *testing.T) {
	synctest.Test(t, testRedisFailoverForgetsTheLead)
}

func testRedisFailoverForgetsTheLead(t *testing.T) {
	a := &runLink{fakeLink: fakeLink{srv: &fakeRedisServer{next: map[string]int64{}}}, run: "a", lag: 150 * time.Millisecond}
	b := &runLink{fakeLink: fakeLink{srv: &fakeRedisServer{next: map[string]int64{}}}, run: "b"}
	var sw failoverLink
	sw.to.Store(a)
	l := NewRedis(&sw, "p:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second}, nil)
	ctx := context.Background()
	if err := l.Wait(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	if lead := l.clock.currentLead(time.Now()); lead != a.lag {
		t.Fatalf("lead on a: %s; want %s, how late its answers arrive", lead, a.lag)
	}
	sw.to.Store(b)
	if err := l.Wait(ctx, keyA); err != nil {
		t.Fatalf("the first call after the failover: %v", err)
	}
	start := time.Now()
	if err := l.Wait(ctx, keyA); err != nil || time.Since(start) > spacing(50, DefaultGuard) {
		t.Errorf("the second call after the failover: %v after %s; want the next turn, %s later", err, time.Since(start), spacing(50, DefaultGuard))
	}
}

// runLink is a fakeLink to a server whose run_id is run, whose turns are
// answered lag after they are given.
type runLink struct {
	fakeLink
	run string
	lag time.Duration
}

func (r *runLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	cmd := r.fakeLink.EvalSha(ctx, sha1, keys, args...)
	if sha1 != takeTurn.Hash() {
		return cmd
	}
	time.Sleep(r.lag)
	res, err := cmd.Slice()
	if err != nil {
		return cmd
	}
	res[3] = r.run
	return redis.NewCmdResult(res, nil)
}

// failoverLink sends every script to the server it points at now.
type failoverLink struct {
	redis.Scripter
	to atomic.Pointer[runLink]
}

func (f *failoverLink) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return f.to.Load().EvalSha(ctx, sha1, keys, args...)
}
