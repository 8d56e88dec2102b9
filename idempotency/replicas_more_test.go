package idempotency

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

// replLink is a TCP relay between a Redis primary and its replica, so a
// test can make the replica lag: while held, what the primary streams to
// the replica is kept back, while the replica's acknowledgements still
// reach the primary, as on a link that is slow one way. cut drops what was
// held and closes the link, as a primary that dies with writes not yet
// sent would.
type replLink struct {
	lis     net.Listener
	primary string
	mu      sync.Mutex
	held    bool
	cutOff  bool
	conns   []net.Conn
}

func newReplLink(t *testing.T, primaryPort int) *replLink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &replLink{lis: lis, primary: "127.0.0.1:" + strconv.Itoa(primaryPort)}
	t.Cleanup(l.cut)
	go l.serve()
	return l
}

func (l *replLink) port() int { return l.lis.Addr().(*net.TCPAddr).Port }

func (l *replLink) serve() {
	for {
		down, err := l.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.primary)
		if err != nil {
			down.Close()
			continue
		}
		l.mu.Lock()
		if l.cutOff {
			l.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		l.conns = append(l.conns, down, up)
		l.mu.Unlock()
		go func() { _, _ = io.Copy(up, down) }() // acknowledgements
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					l.mu.Lock()
					held := l.held
					l.mu.Unlock()
					if !held {
						if _, err := down.Write(buf[:n]); err != nil {
							return
						}
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// hold keeps back, for good, what the primary streams from now on.
func (l *replLink) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = true
}

func (l *replLink) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cutOff = true
	l.lis.Close()
	for _, c := range l.conns {
		c.Close()
	}
}

// replicatedThrough starts a primary and a replica fed through a replLink,
// waits until the replica confirms a write, and returns a store on the
// primary as cmd/backupd makes it: sharedstate's client (MaxRetries 1,
// 1 s read timeout) over TCP, and its waiter.
func replicatedThrough(t *testing.T, wait time.Duration) (s *Redis, client *redis.Client, primary, replica *testenv.OwnRedis, link *replLink) {
	t.Helper()
	ctx := context.Background()
	primary, replica = testenv.StartRedis(t, testenv.FreeAddr(t)), testenv.StartRedis(t, "")
	link = newReplLink(t, primary.Port)
	if err := replica.Client.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(link.port())).Err(); err != nil {
		t.Fatal(err)
	}
	confirms(t, primary)
	rc := config.Redis{Address: primary.Addr, WaitReplicas: 1, WaitTimeout: wait}
	client, waiter, err := sharedstate.NewRedisClients(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); waiter.Close() })
	s = NewRedis(client, testenv.RedisPrefix(t), time.Minute, slog.New(slog.DiscardHandler))
	s.ConfirmOnReplicas(waiter, rc.WaitReplicas, rc.WaitTimeout)
	return s, client, primary, replica, link
}

// stallWhenSet stalls the primary's main thread for d (a script that
// spins, as a slow command or a fork of a large dataset would) as soon as
// key appears.
func stallWhenSet(t *testing.T, primary *testenv.OwnRedis, key string, d time.Duration) (stalled <-chan struct{}) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: primary.Addr, ReadTimeout: -1})
	t.Cleanup(func() { c.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if n, _ := c.Exists(ctx, key).Result(); n == 1 {
				c.Eval(ctx, `
local t = redis.call('TIME')
local from = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 - from > tonumber(ARGV[1])
return 1`, nil, d.Milliseconds())
				return
			}
		}
	}()
	return done
}

// TestRedisConfirmsAResentClaimOnItsReplica: the claim and its WAIT go
// in one pipeline, which go-redis resends (MaxRetries 1) when its answer
// does not come within the read timeout, here because the primary stalled
// for 2 s while its replica lagged. The resend finds the claim the first
// send made (claimOwn) and writes nothing, on a new connection: its WAIT
// must still count the replicas that hold the claim, or the request would
// run with none holding it, and a failover to the replica would run it
// again. Redis (up to 7.0 at least) sets a connection's offset for WAIT
// after every command, read-only ones too, so it does; were it to count
// only the connection's own writes, the claim script would have to write
// in the claimOwn case.
func TestRedisConfirmsAResentClaimOnItsReplica(t *testing.T) {
	s, _, primary, replica, link := replicatedThrough(t, 200*time.Millisecond)
	ctx := context.Background()
	key := Key{Account: "111111111111", RequestID: "resent"}
	var mu sync.Mutex
	runs := 0
	run := func(time.Time) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		runs++
		return []byte("backup-" + strconv.Itoa(runs)), nil
	}

	link.hold() // the replica lags from here on
	stalled := stallWhenSet(t, primary, s.prefix+key.Account+":"+key.RequestID, 2*time.Second)
	start := time.Now()
	resp, err := s.Do(ctx, key, fpA, run)
	<-stalled
	if took := time.Since(start); took < 1200*time.Millisecond {
		t.Fatalf("Do took %s: the primary did not stall past the waiter's read timeout, and the pipeline was not resent", took)
	}
	if err == nil || runs != 0 {
		t.Fatalf("Do with the replica lagging and the primary stalled = %q, %v after %d runs; want it refused, nothing run", resp, err, runs)
	}

	// The primary dies with the claim not sent on; the replica takes over.
	link.cut()
	if err := replica.Client.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	after := NewRedis(replica.Client, s.prefix[:len(s.prefix)-len("idempotency:")], time.Minute, slog.New(slog.DiscardHandler))
	resp, err = after.Do(ctx, key, fpA, run)
	if err != nil || string(resp) != "backup-1" || runs != 1 {
		t.Fatalf("repeat after the failover = %q, %v after %d runs; want backup-1 after 1 run", resp, err, runs)
	}
}

// TestRedisWaitsLeaveTheClientItsConnections: while the replica is
// stopped, each request with a request_id holds a connection for
// wait_timeout in its WAIT. A waiter made with client.WithTimeout shares
// the client's pool, which the rate limiter uses for every request: a
// burst of such requests must not leave it without a connection, or
// requests without a request_id are refused too. The waiter of
// sharedstate.NewRedisClients' waiter has a pool of its own.
func TestRedisWaitsLeaveTheClientItsConnections(t *testing.T) {
	wait := 5 * time.Second
	s, client, _, replica, _ := replicatedThrough(t, wait)
	stop(t, replica)
	ctx := context.Background()
	var wg sync.WaitGroup
	const burst = 40 // twice a pool's 20 connections, on 2 CPUs
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := Key{Account: "111111111111", RequestID: "burst-" + strconv.Itoa(i)}
			_, _ = s.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { return nil, nil })
		}()
	}
	time.Sleep(300 * time.Millisecond) // the WAITs are blocked
	err := client.Get(ctx, "limiter's key").Err()
	wg.Wait()
	if err != nil && err != redis.Nil {
		t.Fatalf("a command beside %d WAITs: %v; want an answer (a shared pool times out)", burst, err)
	}
}

// TestRedisWaitEndsWithTheRequest: a request whose deadline is shorter
// than wait_timeout waits for its replica no longer than its deadline,
// nothing run: WAIT is sent with the time left, not held for the whole
// wait_timeout after its caller has gone (up to 10 s, a connection of the
// waiter's held all along).
func TestRedisWaitEndsWithTheRequest(t *testing.T) {
	s, _, _, replica, _ := replicatedThrough(t, 3*time.Second)
	var mu sync.Mutex
	var waits []int64 // the WAITs' timeouts, in ms
	s.waiter.(*redis.Client).AddHook(pipelineHook(func(cmds []redis.Cmder) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cmds {
			if c.Name() == "wait" {
				waits = append(waits, c.Args()[2].(int64))
			}
		}
	}))
	stop(t, replica)
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ran := false
	_, err := s.Do(ctx, Key{Account: "111111111111", RequestID: "short"}, fpA, func(time.Time) ([]byte, error) { ran = true; return nil, nil })
	mu.Lock()
	defer mu.Unlock()
	if err == nil || ran || len(waits) == 0 {
		t.Fatalf("Do with a %s deadline and its replica stopped = %v, ran %v, %d WAITs; want an error, nothing run", deadline, err, ran, len(waits))
	}
	for _, ms := range waits {
		if ms < 1 || ms > deadline.Milliseconds() {
			t.Errorf("WAIT for %d ms; want 1 to %d, the time the request had left", ms, deadline.Milliseconds())
		}
	}
}

// pipelineHook is a go-redis hook that sees each pipeline's commands
// before they are sent.
type pipelineHook func(cmds []redis.Cmder)

func (h pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h(cmds)
		return next(ctx, cmds)
	}
}

// TestRedisWaitsForTwoReplicas: with wait_replicas 2 and one of the two
// replicas stopped, the request is refused, nothing run; its retry, sent
// at once, while the refused claim may still stand, waits for the drop
// rather than being told OUTCOME_UNKNOWN, and runs once both replicas
// confirm; a failover to either keeps its result.
func TestRedisWaitsForTwoReplicas(t *testing.T) {
	ctx := context.Background()
	primary := testenv.StartRedis(t, testenv.FreeAddr(t))
	replicas := []*testenv.OwnRedis{testenv.StartRedis(t, ""), testenv.StartRedis(t, "")}
	for _, r := range replicas {
		if err := r.Client.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(primary.Port)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	confirms(t, primary, 2)
	prefix := testenv.RedisPrefix(t)
	s := NewRedis(primary.Client, prefix, time.Minute, slog.New(slog.DiscardHandler))
	// A replica resumed from SIGSTOP may confirm only with its next
	// once-a-second acknowledgement: the retry below waits for it.
	s.ConfirmOnReplicas(primary.Client.WithTimeout(4*time.Second), 2, 3*time.Second)
	key := Key{Account: "111111111111", RequestID: "two"}
	var runs atomic.Int32
	run := func(time.Time) ([]byte, error) { runs.Add(1); return []byte("backup"), nil }

	resume := stop(t, replicas[1])
	if _, err := s.Do(ctx, key, fpA, run); err == nil || !strings.Contains(err.Error(), "1 of the 2 Redis replicas") || runs.Load() != 0 {
		t.Fatalf("Do with one of two replicas stopped = %v after %d runs; want 1 of the 2 confirmed, nothing run", err, runs.Load())
	}
	resume()
	if resp, err := s.Do(ctx, key, fpA, run); err != nil || string(resp) != "backup" || runs.Load() != 1 {
		t.Fatalf("retry at once = %q, %v after %d runs; want backup after 1 run", resp, err, runs.Load())
	}
	for i, r := range replicas {
		after := NewRedis(r.Client, prefix, time.Minute, slog.New(slog.DiscardHandler))
		if resp, err := after.Do(ctx, key, fpA, run); err != nil || string(resp) != "backup" || runs.Load() != 1 {
			t.Errorf("repeat on replica %d = %q, %v after %d runs; want backup after 1 run", i, resp, err, runs.Load())
		}
	}
}

// TestRedisWaitOfARequestAboutToEnd: a request with under a millisecond
// left, or just past its deadline, waits 1 ms for the replicas: never
// WAIT 0, which waits for ever (until the waiter's read timeout, holding
// its connection).
func TestRedisWaitOfARequestAboutToEnd(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	waiter := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), ReadTimeout: 3 * time.Second})
	t.Cleanup(func() { waiter.Close() })
	var mu sync.Mutex
	var waits []int64 // the WAITs' timeouts, in ms
	waiter.AddHook(pipelineHook(func(cmds []redis.Cmder) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cmds {
			if c.Name() == "wait" {
				waits = append(waits, c.Args()[2].(int64))
			}
		}
	}))
	s.ConfirmOnReplicas(waiter, 1, 2*time.Second)
	for _, left := range []time.Duration{900 * time.Microsecond, 100 * time.Microsecond, -100 * time.Microsecond} {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(left))
		start := time.Now()
		_, _, _, _ = s.runConfirmed(ctx, dropScript, []string{s.prefix + "about-to-end"}, "owner")
		cancel()
		if took := time.Since(start); took > time.Second {
			t.Errorf("a request %s from its deadline waited %s for the replicas; want about a millisecond", left, took.Round(time.Millisecond))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ms := range waits {
		if ms < 1 {
			t.Errorf("WAIT for %d ms; want at least 1 (0 waits for ever)", ms)
		}
	}
}
