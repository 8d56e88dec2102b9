package ratelimit

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

// redisLimiter returns a limiter on the test Redis, under a prefix of its
// own, at 50/s for keyA.
func redisLimiter(t *testing.T, prefix string, opts Options) *Redis {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { client.Close() })
	opts.Rates = map[Key]float64{keyA: 50}
	return NewRedis(client, prefix, opts)
}

func testPrefix(t *testing.T) string {
	return "test:" + t.Name() + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
}

// TestRedisKeepsEveryWindowAtFiftyAcrossReplicas: two limiters sharing one
// Redis stand for two replicas; 120 calls through both, at once, are
// granted no more than 50 to any one-second window.
func TestRedisKeepsEveryWindowAtFiftyAcrossReplicas(t *testing.T) {
	prefix := testPrefix(t)
	replicas := []*Redis{redisLimiter(t, prefix, Options{MaxWait: time.Minute}), redisLimiter(t, prefix, Options{MaxWait: time.Minute})}
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	for i := range 120 {
		wg.Go(func() {
			if err := replicas[i%2].Wait(context.Background(), keyA); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			grants = append(grants, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	for i := 50; i < len(grants); i++ {
		if span := grants[i].Sub(grants[i-50]); span < time.Second {
			t.Fatalf("grants %d..%d span %s: 51 calls within one second", i-50, i, span)
		}
	}
	if total := grants[len(grants)-1].Sub(grants[0]); total > 3*time.Second {
		t.Errorf("120 calls took %s; want about 2.5 s at 50/s", total)
	}
}

// TestRedisRefusesBeyondMaxWait: three calls in a row, whose waits are not
// slept, take the turns now, +21 ms and +42 ms; with a 30 ms max wait the
// third is refused.
func TestRedisRefusesBeyondMaxWait(t *testing.T) {
	var got decisions
	l := redisLimiter(t, testPrefix(t), Options{MaxWait: 30 * time.Millisecond, Observer: &got,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	var errs []error
	for range 3 {
		errs = append(errs, l.Wait(context.Background(), keyA))
	}
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("first two: %v; want both admitted (the second after 21 ms)", errs[:2])
	}
	var le *LimitedError
	if !errors.As(errs[2], &le) || le.RetryAfter < 30*time.Millisecond || le.RetryAfter > 45*time.Millisecond {
		t.Errorf("third: %v; want a LimitedError about 42 ms out", errs[2])
	}
	want := decisions{keyA.String() + ":" + Admitted, keyA.String() + ":" + Waited, keyA.String() + ":" + Refused}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("decisions = %v, want %v", got, want)
	}
}

func TestRedisDownRefuses(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer client.Close()
	l := NewRedis(client, "x:", Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second})
	var ue *sharedstate.UnavailableError
	if err := l.Wait(context.Background(), keyA); !errors.As(err, &ue) {
		t.Errorf("Wait with Redis down: %v; want an UnavailableError", err)
	}
	if err := l.Wait(context.Background(), keyB); err == nil {
		t.Error("an unconfigured key was admitted")
	}
}
