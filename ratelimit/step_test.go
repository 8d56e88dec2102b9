package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/testenv"
)

// offsetKey holds how far (µs) withRedisClockOffset moves Redis' clock.
const offsetKey = "ratelimit-test:clock-offset"

// withRedisClockOffset has the limiter's scripts read Redis' clock moved by
// the offset under offsetKey, as a step of the server's clock would move
// it, for the rest of the test.
func withRedisClockOffset(t *testing.T, client *redis.Client) {
	t.Helper()
	const moved = `local function movedTime()
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
			for len(turns) < 45 {
				err := l.Wait(ctx, keyA)
				if le, ok := errors.AsType[*LimitedError](err); ok && len(turns) == 0 {
					time.Sleep(le.RetryAfter) // a Redis just started holds its first turns
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			queueEnd := turns[len(turns)-1]
			if err := client.Set(ctx, offsetKey, step.Microseconds(), 0).Err(); err != nil {
				t.Fatal(err)
			}
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
