package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
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
