package idempotency

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

// replicated starts a Redis server of the test's own with one replica, and
// returns a store on the server that waits for the replica to hold its
// claims.
func replicated(t *testing.T) (s *Redis, primary, replica *testenv.OwnRedis) {
	t.Helper()
	ctx := context.Background()
	primary, replica = testenv.StartRedis(t, testenv.FreeAddr(t)), testenv.StartRedis(t, "")
	if err := replica.Client.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(primary.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	// A replica fed without a file (diskless) is streamed to only after
	// its first acknowledgement, which it sends once a second.
	confirms(t, primary)
	s = NewRedis(primary.Client, testenv.RedisPrefix(t), time.Minute, slog.New(slog.DiscardHandler))
	// Long enough for a replica starved of CPU by the other tests to
	// confirm: each wait for a stopped one takes all of it.
	const wait = 2 * time.Second
	s.ConfirmOnReplicas(primary.Client.WithTimeout(time.Second+wait), 1, wait)
	return s, primary, replica
}

// confirms waits until n of primary's replicas confirm a write (1 when n
// is left out).
func confirms(t *testing.T, primary *testenv.OwnRedis, n ...int) {
	t.Helper()
	want := 1
	if len(n) > 0 {
		want = n[0]
	}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var acked *redis.Cmd
		_, _ = primary.Client.Pipelined(ctx, func(p redis.Pipeliner) error { // WAIT counts this connection's writes
			p.Set(ctx, "replicated", "1", 0)
			acked = p.Do(ctx, "wait", want, 100)
			return nil
		})
		if got, _ := acked.Int(); got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replicas did not confirm a write within 10 s", want)
		}
	}
}

// stop pauses r's process (SIGSTOP) until the test ends or resume is
// called: a replica that stops acknowledging, as one cut off would.
func stop(t *testing.T, r *testenv.OwnRedis) (resume func()) {
	t.Helper()
	if err := r.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume = func() { _ = r.Process.Signal(syscall.SIGCONT) }
	t.Cleanup(resume)
	return resume
}

// TestRedisRunsOnlyOnceItsReplicaHoldsTheClaim: with wait_replicas 1, a
// request whose claim the replica does not confirm is refused, nothing
// run, and its claim dropped, so its retry runs; once it has run, a
// failover to the replica keeps its result, and the repeat sent to the
// replica, now the primary, gets it instead of running again.
func TestRedisRunsOnlyOnceItsReplicaHoldsTheClaim(t *testing.T) {
	s, primary, replica := replicated(t)
	logs := captureLog(s)
	ctx := context.Background()
	key := Key{Account: "111111111111", RequestID: "r1"}
	runs := 0
	run := func(time.Time) ([]byte, error) { runs++; return []byte("backup-1"), nil }

	resume := stop(t, replica)
	_, err := s.Do(ctx, key, fpA, run)
	var unavailable *sharedstate.UnavailableError
	if !errors.As(err, &unavailable) || !strings.Contains(err.Error(), "0 of the 1 Redis replicas") {
		t.Fatalf("Do with the replica stopped = %v, want UnavailableError saying 0 of the 1 replicas confirmed the claim", err)
	}
	if runs != 0 {
		t.Fatalf("the request ran %d times though its claim was not confirmed", runs)
	}
	resume()
	k := s.prefix + key.Account + ":" + key.RequestID
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := primary.Client.Exists(ctx, k).Result(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim that was not confirmed was not dropped")
		}
	}
	// A replica resumed may confirm only with its next acknowledgement,
	// up to a second later: the retry's 200 ms would not always see it.
	confirms(t, primary)

	if resp, err := s.Do(ctx, key, fpA, run); err != nil || string(resp) != "backup-1" || runs != 1 {
		t.Fatalf("retry = %q, %v after %d runs; want backup-1 after 1 run", resp, err, runs)
	}
	if err := replica.Client.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	after := NewRedis(replica.Client, strings.TrimSuffix(s.prefix, "idempotency:"), time.Minute, slog.New(slog.DiscardHandler))
	if resp, err := after.Do(ctx, key, fpA, run); err != nil || string(resp) != "backup-1" || runs != 1 {
		t.Fatalf("repeat after the failover = %q, %v after %d runs; want backup-1 after 1 run", resp, err, runs)
	}
	if lines := logs.Lines(`"level":"WARN"`); len(lines) != 0 {
		t.Errorf("logged %q, want no warning", lines)
	}
}

// TestRedisLogsAResultItsReplicaDidNotConfirm: a result kept while the
// replica has stopped is answered, and the warning names its request_id,
// as a failover now would lose it.
func TestRedisLogsAResultItsReplicaDidNotConfirm(t *testing.T) {
	s, _, replica := replicated(t)
	logs := captureLog(s)
	key := Key{Account: "111111111111", RequestID: "r2"}
	resp, err := s.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
		stop(t, replica)
		return []byte("backup-2"), nil
	})
	if err != nil || string(resp) != "backup-2" {
		t.Fatalf("Do = %q, %v; want backup-2", resp, err)
	}
	if lines := logs.Lines(`"level":"WARN"`, `"request_id":"r2"`, "0 of the 1 Redis replicas"); len(lines) != 1 {
		t.Errorf("want one warning naming r2 and the replicas that confirmed the result; log:\n%s", logs.String())
	}
}

// TestRedisDropsAClaimWithoutWaiting: a run that failed for sure drops
// its claim without waiting for the replicas, which, stopped, would hold
// its answer for wait_timeout: a claim a failover brings back answers
// OUTCOME_UNKNOWN, never a second run.
func TestRedisDropsAClaimWithoutWaiting(t *testing.T) {
	s, primary, replica := replicated(t)
	var mu sync.Mutex
	waits := 0
	s.waiter.(*redis.Client).AddHook(pipelineHook(func(cmds []redis.Cmder) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cmds {
			if c.Name() == "wait" {
				waits++
			}
		}
	}))
	failed := errors.New("table not found")
	key := Key{Account: "111111111111", RequestID: "r3"}
	_, err := s.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
		stop(t, replica)
		return nil, failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Do = %v; want the run's failure", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if waits != 1 {
		t.Errorf("%d WAITs sent; want 1, for the claim only", waits)
	}
	if n, _ := primary.Client.Exists(context.Background(), s.prefix+key.Account+":"+key.RequestID).Result(); n != 0 {
		t.Error("the claim of the run that failed is still there")
	}
}
