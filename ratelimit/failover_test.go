package ratelimit

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
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

// ownRedis starts a redis-server of the test's own, on a unix socket, for
// a test that fails the shared one over to it (the executable
// scripts/test.sh runs).
func ownRedis(t *testing.T) *redis.Client {
	t.Helper()
	dir := t.TempDir() // where a replica keeps the data it is sent
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--dir", dir, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { c.Close() })
	for i := 0; ; i++ {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return c
		} else if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisQuarantineAfterFailingBack: Redis fails over from a to b (b,
// a's replica, promoted), and back to a, which kept its data and never
// restarted (a primary back from a partition, an endpoint flipping back).
// a's marker names a's own run_id, as if nothing had happened, while b
// gave a second of turns since; a's slot for the key is from before. The
// replica saw b, and without the count of holds (takeTurn's KEYS[5]) took
// a for a server another replica had already held for: ten turns at once,
// each 5 ms from one of b's.
func TestRedisQuarantineAfterFailingBack(t *testing.T) {
	ctx := context.Background()
	a, b := testRedis(t), ownRedis(t)
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	var turns lockedTurns
	var lost atomic.Int32
	sw := &switchingRedis{}
	sw.to.Store(a)
	l := NewRedis(sw, prefix, Options{Rates: map[Key]float64{keyA: 50}, MaxWait: time.Second, Sleep: turns.sleep, Observer: &turns}, func() { lost.Add(1) })
	if err := l.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(testenv.RedisAddr(t), ":")
	if err := b.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := b.Exists(ctx, prefix+"state").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not replicate a")
		}
	}
	if err := b.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	sw.to.Store(b)
	const queued = 46 // the turn on a, and a second of b's
	for turns.len() < queued {
		err := l.Wait(ctx, keyA)
		if le, ok := errors.AsType[*LimitedError](err); ok && le.Held {
			time.Sleep(le.RetryAfter) // b's hold after the failover
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if lost.Load() != 1 {
		t.Fatalf("%d losses reported on the failover to b; want 1", lost.Load())
	}
	sw.to.Store(a)
	for range 10 {
		err := l.Wait(ctx, keyA)
		if le, ok := errors.AsType[*LimitedError](err); err != nil && (!ok || !le.Held) {
			t.Fatalf("back on a: %v; want a turn, or a refusal for the hold", err)
		}
	}
	if lost.Load() != 2 {
		t.Errorf("%d losses reported; want 2, one for each server that answered anew", lost.Load())
	}
	turns.mu.Lock()
	turns.at = turns.at[1:] // the turn on a before the failover, long past
	turns.mu.Unlock()
	turns.checkAfterStep(t, queued-1, 50)
}
