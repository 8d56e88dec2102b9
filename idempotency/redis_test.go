package idempotency

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

// failWhileDown has every command of s fail, as from a Redis that
// refuses connections, while the switch it returns is set.
func failWhileDown(s *Redis) *atomic.Bool {
	var down atomic.Bool
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if down.Load() {
			cmd.SetErr(errors.New("connection refused"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}))
	return &down
}

// redisStores returns n stores sharing the test Redis under a prefix of
// this test's own: n replicas.
func redisStores(t *testing.T, n int, lease time.Duration) []*Redis {
	t.Helper()
	addr := testenv.RedisAddr(t)
	prefix := testenv.RedisPrefix(t)
	stores := make([]*Redis, n)
	for i := range stores {
		client := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { client.Close() })
		stores[i] = NewRedis(client, prefix, lease, slog.New(slog.DiscardHandler))
	}
	return stores
}

func TestRedisDo(t *testing.T) {
	ctx := context.Background()
	errDefinite := errors.New("table not found")
	s := redisStores(t, 2, time.Minute)
	a, b := s[0], s[1]

	// A repeat on another replica gets the first response.
	first := &counter{resp: []byte("first")}
	if resp, err := a.Do(ctx, key, fpA, first.run); err != nil || string(resp) != "first" {
		t.Fatalf("first: %q, %v", resp, err)
	}
	if resp, err := b.Do(ctx, key, fpA, first.run); err != nil || string(resp) != "first" || first.runs.Load() != 1 {
		t.Errorf("repeat: %q, %v after %d runs; want the first response and 1 run", resp, err, first.runs.Load())
	}
	// Other parameters conflict.
	var ce *ConflictError
	if _, err := b.Do(ctx, key, fpB, first.run); !errors.As(err, &ce) {
		t.Errorf("other parameters: %v; want a ConflictError", err)
	}
	// A definite failure is forgotten: the repeat runs again.
	k2 := Key{Account: key.Account, RequestID: "definite"}
	failing := &counter{err: errDefinite}
	if _, err := a.Do(ctx, k2, fpA, failing.run); !errors.Is(err, errDefinite) {
		t.Fatalf("definite failure: %v", err)
	}
	if _, err := b.Do(ctx, k2, fpA, failing.run); !errors.Is(err, errDefinite) || failing.runs.Load() != 2 {
		t.Errorf("repeat after a definite failure: %v after %d runs; want a second run", err, failing.runs.Load())
	}
	// A final failure is kept: the repeat gets OutcomeUnknownError, no run.
	k3 := Key{Account: key.Account, RequestID: "unsure"}
	unsure := &counter{err: Final(errors.New("connection reset after sending"))}
	if _, err := a.Do(ctx, k3, fpA, unsure.run); err == nil || errors.As(err, new(*finalError)) {
		t.Fatalf("final failure: %v; want its error, unmarked", err)
	}
	var ue *OutcomeUnknownError
	if _, err := b.Do(ctx, k3, fpA, unsure.run); !errors.As(err, &ue) || unsure.runs.Load() != 1 {
		t.Errorf("repeat after an unknown outcome: %v after %d runs; want OutcomeUnknownError and 1 run", err, unsure.runs.Load())
	}
}

// TestRunIsToldWhenItsClaimEnds: a Redis run must end a margin before its
// claim's lease, counted from before the claim was sent, so that a
// process stalled since the claim cannot act after its repeats were told
// the outcome is unknown; a Memory run has no such end.
func TestRunIsToldWhenItsClaimEnds(t *testing.T) {
	const lease = 5 * time.Second
	var until time.Time
	run := func(u time.Time) ([]byte, error) { until = u; return []byte("r"), nil }
	before := time.Now()
	if _, err := redisStores(t, 1, lease)[0].Do(context.Background(), key, fpA, run); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	// A second before the lease: a repeat finds the lease over by Redis'
	// clock, which this replica follows only to within milliseconds.
	const margin = time.Second
	if until.Before(before.Add(lease-margin)) || until.After(after.Add(lease-margin)) {
		t.Errorf("Redis run told to end %s after Do began; want %s (the lease less %s)", until.Sub(before), lease-margin, margin)
	}
	if _, err := NewMemory().Do(context.Background(), key, fpA, run); err != nil || !until.IsZero() {
		t.Errorf("Memory run told to end at %v (%v); want no end", until, err)
	}
}

// TestRedisSettlesALongRun: a run that takes longer than settling may
// still keeps its result; the time to settle starts when the run ends.
func TestRedisSettlesALongRun(t *testing.T) {
	ctx := context.Background()
	s := redisStores(t, 1, time.Minute)[0]
	s.settleTimeout = 200 * time.Millisecond
	slow := &counter{resp: []byte("late"), delay: 3 * s.settleTimeout}
	if _, err := s.Do(ctx, key, fpA, slow.run); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Do(ctx, key, fpA, slow.run); err != nil || string(resp) != "late" || slow.runs.Load() != 1 {
		t.Errorf("repeat: %q, %v after %d runs; want the kept result", resp, err, slow.runs.Load())
	}
}

// TestRedisConcurrentRepeatsAcrossReplicasRunOnce: 40 repeats at once on two
// replicas run the request once and all get its response.
func TestRedisConcurrentRepeatsAcrossReplicasRunOnce(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	var runs atomic.Int32
	run := func(time.Time) ([]byte, error) {
		runs.Add(1)
		time.Sleep(100 * time.Millisecond)
		return []byte("only"), nil
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			resp, err := s[i%2].Do(context.Background(), key, fpA, run)
			if err != nil || string(resp) != "only" {
				t.Errorf("caller %d: %q, %v", i, resp, err)
			}
		})
	}
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Errorf("runs = %d, want 1", got)
	}
}

// TestRedisLeaseRunsOut: a claim whose replica stopped answering is not run
// again once its lease passes; repeats get OutcomeUnknownError.
func TestRedisLeaseRunsOut(t *testing.T) {
	s := redisStores(t, 2, 50*time.Millisecond)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = s[0].Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { close(started); <-release; return nil, nil })
	}()
	<-started
	var ue *OutcomeUnknownError
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // fail, not hang, should the lease never end
	defer cancel()
	_, err := s[1].Do(ctx, key, fpA, func(time.Time) ([]byte, error) { t.Error("ran twice"); return nil, nil })
	if !errors.As(err, &ue) {
		t.Errorf("repeat past the lease: %v; want OutcomeUnknownError", err)
	}
}

func TestRedisTTL(t *testing.T) {
	s := redisStores(t, 1, time.Minute)
	s[0].ttl = time.Second
	c := &counter{resp: []byte("x")}
	for range 2 {
		if _, err := s[0].Do(context.Background(), key, fpA, c.run); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := s[0].Do(context.Background(), key, fpA, c.run); err != nil || c.runs.Load() != 2 {
		t.Errorf("after the TTL: %v, %d runs; want a second run", err, c.runs.Load())
	}
}

// TestRedisKeepsRecordsADay: a settled record, a result or an unknown
// outcome, lives in Redis for TTL's 24 hours with the store NewRedis
// makes (TestRedisTTL shortens the TTL to see it expire).
func TestRedisKeepsRecordsADay(t *testing.T) {
	ctx := context.Background()
	s := redisStores(t, 1, time.Minute)[0]
	direct := directRedis(t)
	for _, tc := range []struct {
		name string
		run  *counter
	}{
		{"a result", &counter{resp: []byte("x")}},
		{"an unknown outcome", &counter{err: Final(errors.New("connection reset after sending"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := Key{Account: key.Account, RequestID: tc.name}
			_, _ = s.Do(ctx, k, fpA, tc.run.run)
			ttl, err := direct.PTTL(ctx, s.prefix+k.Account+":"+k.RequestID).Result()
			if err != nil || ttl < 24*time.Hour-time.Minute || ttl > 24*time.Hour {
				t.Errorf("the settled record's time to live: %v, %v; want about 24 h", ttl, err)
			}
		})
	}
}

// TestRedisClaimIsSentWithItsTimes: a claim is sent to be done by Redis
// no later than claimWithin after Redis' time when it was sent, and what
// it sets holds a lease of lease from then, by Redis' clock, and lives for
// TTL's 24 hours, as a settled record does: a claim done later could stand,
// unrun, after its caller was told nothing was sent; one with a longer
// lease would keep repeats waiting longer than a run may take; and the
// claim of a replica that stopped must end with its 24 h, not linger.
func TestRedisClaimIsSentWithItsTimes(t *testing.T) {
	ctx := context.Background()
	const lease = time.Minute
	s := redisStores(t, 1, lease)[0]
	direct := directRedis(t)
	k := s.prefix + key.Account + ":" + key.RequestID
	var by atomic.Int64
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if isClaim(cmd) { // evalsha sha 1 key record ttl by owner fingerprint
			n, err := strconv.ParseInt(fmt.Sprint(cmd.Args()[6]), 10, 64)
			if err != nil {
				t.Errorf("the claim's time %v: %v", cmd.Args()[6], err)
			}
			by.Store(n)
		}
		return next(ctx, cmd)
	}))
	before, err := direct.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var claim record
	var ttl time.Duration
	run := func(time.Time) ([]byte, error) {
		b, err := direct.Get(ctx, k).Bytes()
		if err == nil {
			err = json.Unmarshal(b, &claim)
		}
		if err == nil {
			ttl, err = direct.PTTL(ctx, k).Result()
		}
		if err != nil {
			t.Errorf("the claim while its request runs: %v", err)
		}
		return []byte("ran"), nil
	}
	if resp, err := s.Do(ctx, key, fpA, run); err != nil || string(resp) != "ran" {
		t.Fatalf("Do: %q, %v", resp, err)
	}
	after, err := direct.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis' clock, read in ms, when the claim was sent lies between
	// before and after.
	within := func(got int64, d time.Duration) bool {
		return got >= before.Add(d).UnixMilli() && got <= after.Add(d).UnixMilli()
	}
	if !within(by.Load(), claimWithin) {
		t.Errorf("the claim may be done until %s after Redis' time when it was sent; want %s",
			time.Duration(by.Load()-before.UnixMilli())*time.Millisecond, claimWithin)
	}
	if claim.Done || claim.Owner == "" || claim.Fingerprint != hex.EncodeToString(fpA[:]) || !within(claim.LeaseUntil, lease) {
		t.Errorf("the claim: %+v; want a running claim of fpA whose lease ends %s after Redis' time when it was sent, found %s",
			claim, lease, time.Duration(claim.LeaseUntil-before.UnixMilli())*time.Millisecond)
	}
	if ttl < TTL-time.Minute || ttl > TTL {
		t.Errorf("the claim's time to live: %v; want about %v", ttl, TTL)
	}
}

func TestRedisDown(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer client.Close()
	var ue *sharedstate.UnavailableError
	_, err := NewRedis(client, "x:", time.Minute, slog.New(slog.DiscardHandler)).Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
		t.Error("ran without Redis")
		return nil, nil
	})
	if !errors.As(err, &ue) {
		t.Errorf("Do with Redis down: %v; want an UnavailableError", err)
	}
}

// processHook is a go-redis hook that changes only how each command is
// processed: a Redis that misbehaves for one replica.
type processHook func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error

func (h processHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h processHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h processHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return h(ctx, cmd, next) }
}

// TestRedisSettlesAfterAnOutage: when Redis fails as a run ends, the run's
// caller still gets its answer, and the claim is settled once Redis is back
// within the lease: a repeat gets the kept result, or runs again after a
// definite failure, instead of an unknown outcome.
func TestRedisSettlesAfterAnOutage(t *testing.T) {
	errDefinite := errors.New("table not found")
	tests := []struct {
		name     string
		c        *counter
		wantRuns int32
	}{
		{"result kept", &counter{resp: []byte("kept")}, 1},
		{"definite failure forgotten", &counter{err: errDefinite}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redisStores(t, 2, time.Minute)
			a, b := s[0], s[1]
			down := failWhileDown(a) // every command fails while it is set
			run := func(time.Time) ([]byte, error) {
				down.Store(true)                                                   // Redis fails as the run ends...
				time.AfterFunc(300*time.Millisecond, func() { down.Store(false) }) // ...and is back soon
				return tt.c.run(time.Time{})
			}
			first, err := a.Do(context.Background(), key, fpA, run)
			if string(first) != string(tt.c.resp) || !errors.Is(err, tt.c.err) {
				t.Fatalf("first: %q, %v; want the run's own answer", first, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := b.Do(ctx, key, fpA, tt.c.run)
			if string(resp) != string(tt.c.resp) || !errors.Is(err, tt.c.err) || tt.c.runs.Load() != tt.wantRuns {
				t.Errorf("repeat on another replica: %q, %v after %d runs; want the first's answer after %d", resp, err, tt.c.runs.Load(), tt.wantRuns)
			}
			if err := a.Wait(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRedisLeadsItsOwnClaim: a claim whose SET NX answer was lost is this
// call's own; it runs the request instead of waiting for itself until the
// lease runs out.
func TestRedisLeadsItsOwnClaim(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	direct := directRedis(t)
	// The first send of the claim is done, its answer lost; go-redis
	// resends it, and the resend finds the claim.
	var lost atomic.Bool
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if isClaim(cmd) && lost.CompareAndSwap(false, true) {
			redoClaim(t, direct, cmd, claimSet)
		}
		return next(ctx, cmd)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &counter{resp: []byte("mine")}
	if resp, err := s.Do(ctx, key, fpA, c.run); err != nil || string(resp) != "mine" || c.runs.Load() != 1 {
		t.Errorf("Do: %q, %v after %d runs; want the run's answer after 1", resp, err, c.runs.Load())
	}
}

// TestRedisClaimCutShortByTheCaller: a claim still unanswered when its
// caller's deadline passes (Redis stalled) is the caller's end, not
// Redis being unavailable, and says so as a CheckEndedError, which tells
// the service that this call ran nothing.
func TestRedisClaimCutShortByTheCaller(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !isClaim(cmd) {
			return next(ctx, cmd)
		}
		<-ctx.Done()
		cmd.SetErr(errors.New("i/o timeout"))
		return cmd.Err()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c := &counter{resp: []byte("ran")}
	_, err := s.Do(ctx, key, fpA, c.run)
	cut, ok := errors.AsType[*CheckEndedError](err)
	if !ok || !errors.Is(err, context.DeadlineExceeded) || c.runs.Load() != 0 {
		t.Fatalf("Do with its claim cut short: %v after %d runs; want a CheckEndedError wrapping the deadline, nothing run", err, c.runs.Load())
	}
	if !strings.Contains(cut.Error(), "i/o timeout") {
		t.Errorf("error %q; want the command's failure named", cut.Error())
	}
}

// TestRedisFailedClaimIsDropped: a SET NX whose answer failed (a timeout
// while Redis was stalled) may have been done, then or later, when Redis
// resumes with the command queued. The caller is told nothing was sent and
// to retry, so the claim must not outlive the refusal: left there, the
// retry would wait out its lease and then be told the outcome is unknown
// for 24 hours, though nothing ever ran.
func TestRedisFailedClaimIsDropped(t *testing.T) {
	for _, tc := range []struct {
		late   time.Duration
		failed error // what the SET NX answers, having been done
	}{
		{0, errors.New("i/o timeout")},
		{200 * time.Millisecond, errors.New("i/o timeout")},
		{0, context.DeadlineExceeded}, // the context ended while go-redis waited to retry it
		// go-redis' resend of a claim whose answer timed out found no
		// connection free: the error is the resend's, the claim the
		// first send's.
		{0, redis.ErrPoolTimeout},
		{0, &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
	} {
		late := tc.late
		t.Run(fmt.Sprintf("done after %s, then %v", late, tc.failed), func(t *testing.T) {
			s := redisStores(t, 1, time.Minute)[0]
			direct := directRedis(t)
			var failed atomic.Bool
			landed := make(chan struct{}) // closed once Redis did the claim
			s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
				if !isClaim(cmd) || !failed.CompareAndSwap(false, true) {
					return next(ctx, cmd)
				}
				do := func() { redoClaim(t, direct, cmd, claimSet); close(landed) }
				if late == 0 {
					do()
				} else {
					time.AfterFunc(late, do)
				}
				cmd.SetErr(tc.failed)
				return cmd.Err()
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := &counter{resp: []byte("ran")}
			_, err := s.Do(ctx, key, fpA, c.run)
			if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok || c.runs.Load() != 0 {
				t.Fatalf("Do with its claim's answer lost: %v after %d runs; want Redis unavailable, nothing run", err, c.runs.Load())
			}
			<-landed // the late SET NX, however late its timer fires on a loaded machine
			if resp, err := s.Do(ctx, key, fpA, c.run); err != nil || string(resp) != "ran" || c.runs.Load() != 1 {
				t.Errorf("the retry: %q, %v after %d runs; want it run once", resp, err, c.runs.Load())
			}
		})
	}
}

// TestRedisDropOutlastsTheLease: a replica cut off from Redis for longer
// than the lease, after a claim whose answer was lost, still drops the
// claim once Redis is back, as long as no repeat was told the outcome is
// unknown: its caller was told nothing was sent, and a retry runs instead
// of answering OUTCOME_UNKNOWN for 24 hours. The same holds for a result
// kept after the lease. A repeat that came while the owner was cut off,
// past the lease, was told OUTCOME_UNKNOWN, and its caller may have made
// the backup again under another request_id: then the claim stays an
// unknown outcome, and the owner's late try leaves it so.
func TestRedisDropOutlastsTheLease(t *testing.T) {
	for _, tc := range []struct {
		kept, repeatDuringOutage bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("result kept %v, repeat during the outage %v", tc.kept, tc.repeatDuringOutage), func(t *testing.T) {
			const lease = 300 * time.Millisecond
			s := redisStores(t, 2, lease)
			a, b := s[0], s[1]
			a.settleFor = time.Minute // a.Wait returns at the try that succeeds
			logs := captureLog(a)
			direct := directRedis(t)
			var down atomic.Bool // every command of a's fails while it is set
			a.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
				switch {
				case !tc.kept && isClaim(cmd):
					redoClaim(t, direct, cmd, claimSet) // Redis does the claim, and its answer is lost
					down.Store(true)
				case down.Load():
				default:
					return next(ctx, cmd)
				}
				cmd.SetErr(errors.New("i/o timeout"))
				return cmd.Err()
			}))
			c := &counter{resp: []byte("ran")}
			run := func(time.Time) ([]byte, error) {
				down.Store(true) // Redis goes away as the run ends
				return c.run(time.Time{})
			}
			first, err := a.Do(context.Background(), key, fpA, run)
			if tc.kept && (err != nil || string(first) != "ran") {
				t.Fatalf("first: %q, %v; want the run's answer", first, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			time.Sleep(2 * lease) // the lease is over, Redis still away from a
			if tc.repeatDuringOutage {
				if _, err := b.Do(ctx, key, fpA, c.run); !isUnknown(err) {
					t.Fatalf("repeat past the lease, a cut off: %v; want OutcomeUnknownError", err)
				}
			}
			down.Store(false)
			if err := a.Wait(ctx); err != nil { // a's late settle or drop
				t.Fatal(err)
			}
			runs := c.runs.Load()
			resp, err := b.Do(ctx, key, fpA, c.run)
			switch {
			case tc.repeatDuringOutage:
				if !isUnknown(err) || c.runs.Load() != runs {
					t.Errorf("repeat once a is back: %q, %v after %d runs; want OutcomeUnknownError, as told before, and no run", resp, err, c.runs.Load())
				}
			case err != nil || string(resp) != "ran" || c.runs.Load() != 1:
				t.Errorf("repeat once a is back: %q, %v after %d runs; want %q after 1", resp, err, c.runs.Load(), "ran")
			}
			// A result a held and Redis refused is logged with its request_id,
			// and why: a repeat was told the outcome is unknown (not that
			// another run's result stands, which would send the operator
			// looking for a second run).
			wantRefused := 0
			if tc.kept && tc.repeatDuringOutage {
				wantRefused = 1
			}
			if lines := logs.Lines(`"level":"WARN"`, `"request_id":"`+key.RequestID+`"`, "the result was not kept"); len(lines) != wantRefused ||
				wantRefused == 1 && !strings.Contains(lines[0], "a repeat past the claim's lease had been told OUTCOME_UNKNOWN first") {
				t.Errorf("%d lines of a refused result, want %d, saying a repeat was told OUTCOME_UNKNOWN first; log:\n%s", len(lines), wantRefused, logs.String())
			}
		})
	}
}

// TestRedisSettleWhoseAnswerWasLost: a settle Redis did, whose answer was
// lost, is done when tried again, and logged as neither refused nor
// unkept.
func TestRedisSettleWhoseAnswerWasLost(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	a, b := s[0], s[1]
	logs := captureLog(a)
	var lost atomic.Bool
	a.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		args := cmd.Args()
		isSettle := len(args) > 1 && (cmd.Name() == "evalsha" && args[1] == settle.Hash() || cmd.Name() == "eval")
		if !isSettle || isClaim(cmd) || lost.Load() {
			return next(ctx, cmd)
		}
		if err := next(ctx, cmd); err != nil { // not done (NOSCRIPT, say)
			return err
		}
		lost.Store(true)                      // Redis did it...
		cmd.SetErr(errors.New("i/o timeout")) // ...and its answer is lost
		return cmd.Err()
	}))
	c := &counter{resp: []byte("ran")}
	if resp, err := a.Do(context.Background(), key, fpA, c.run); err != nil || string(resp) != "ran" {
		t.Fatalf("Do: %q, %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !lost.Load() {
		t.Fatal("no settle's answer was lost")
	}
	if resp, err := b.Do(ctx, key, fpA, c.run); err != nil || string(resp) != "ran" || c.runs.Load() != 1 {
		t.Errorf("repeat: %q, %v after %d runs; want the result, run once", resp, err, c.runs.Load())
	}
	if lines := logs.Lines(`"request_id":"` + key.RequestID + `"`); len(lines) != 0 {
		t.Errorf("logged: %s", logs.String())
	}
}

func isUnknown(err error) bool {
	_, ok := errors.AsType[*OutcomeUnknownError](err)
	return ok
}

// TestRedisKeepsAResultItsClaimLost: Redis lost the claim (restarted empty,
// flushed) while the request ran; its result is kept all the same, so a
// repeat once it has ended gets it instead of running it again.
func TestRedisKeepsAResultItsClaimLost(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	direct := directRedis(t)
	ctx := context.Background()
	c := &counter{resp: []byte("first")}
	run := func(time.Time) ([]byte, error) {
		if err := direct.Del(ctx, s[0].prefix+key.Account+":"+key.RequestID).Err(); err != nil {
			t.Error(err)
		}
		return c.run(time.Time{})
	}
	if resp, err := s[0].Do(ctx, key, fpA, run); err != nil || string(resp) != "first" {
		t.Fatalf("first: %q, %v", resp, err)
	}
	if resp, err := s[1].Do(ctx, key, fpA, c.run); err != nil || string(resp) != "first" || c.runs.Load() != 1 {
		t.Errorf("repeat after the run: %q, %v after %d runs; want the first's answer after 1", resp, err, c.runs.Load())
	}
}

// TestRedisResultAfterAnotherRunIsLogged: Redis lost a run's claim and
// another replica ran the request meanwhile and kept its result: the first
// run's result is not kept over it, and the line logged says so, that the
// request may have run twice, and not that a repeat was told the outcome
// was unknown.
func TestRedisResultAfterAnotherRunIsLogged(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	a, b := s[0], s[1]
	logs := captureLog(a)
	direct := directRedis(t)
	ctx := context.Background()
	runA := func(time.Time) ([]byte, error) {
		if err := direct.Del(ctx, a.prefix+key.Account+":"+key.RequestID).Err(); err != nil {
			t.Error(err)
		}
		if resp, err := b.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { return []byte("b ran"), nil }); err != nil || string(resp) != "b ran" {
			t.Errorf("b: %q, %v; want its own run", resp, err)
		}
		return []byte("a ran"), nil
	}
	if resp, err := a.Do(ctx, key, fpA, runA); err != nil || string(resp) != "a ran" {
		t.Fatalf("a: %q, %v", resp, err)
	}
	if resp, err := b.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { return nil, errors.New("ran again") }); err != nil || string(resp) != "b ran" {
		t.Errorf("repeat: %q, %v; want b's result", resp, err)
	}
	lines := logs.Lines(`"level":"WARN"`, `"request_id":"`+key.RequestID+`"`, "another run's claim or result", "may have run twice")
	if len(lines) != 1 || strings.Contains(logs.String(), "OUTCOME_UNKNOWN first") {
		t.Errorf("want one WARN line saying another run's result is kept; log:\n%s", logs.String())
	}
}

// isClaim reports whether cmd runs the claim script.
func isClaim(cmd redis.Cmder) bool {
	args := cmd.Args()
	return len(args) > 1 && (cmd.Name() == "evalsha" && args[1] == claimScript.Hash() || cmd.Name() == "eval" && args[1] == claimScriptSource)
}

// redoClaim runs the claim cmd carries, with its arguments, on client, as
// Redis would have done it then, and checks that the script did want
// (claimSet, claimLate, ...). A redo answered otherwise than the
// test means (one slowed past the claim's time, say) would leave the test
// passing without going down its path.
func redoClaim(t *testing.T, client *redis.Client, cmd redis.Cmder, want int64) {
	args := cmd.Args() // evalsha sha 1 key record ttl by owner fingerprint
	res, err := claimScript.Run(context.Background(), client, []string{args[3].(string)}, args[4:]...).Slice()
	if err != nil {
		t.Errorf("claim redone: %v", err)
		return
	}
	if did, _, _, err := claimAnswer(res); err != nil || did != want {
		t.Errorf("claim redone: %v, %v; want %d first", res, err, want)
	}
}

// TestRedisLateClaimIsNotDone: a claim Redis gets to only after its time
// (a stall longer than the drops of failed claims are tried, or more
// failed claims than are dropped) is not done at all, so a retry finds no
// claim to wait for and runs.
func TestRedisLateClaimIsNotDone(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	s.claimWithin = 100 * time.Millisecond
	s.drops = make(chan struct{}) // no drops: the late claim must not land at all
	direct := directRedis(t)
	var held atomic.Pointer[redis.Cmder]
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !isClaim(cmd) || !held.CompareAndSwap(nil, &cmd) {
			return next(ctx, cmd)
		}
		cmd.SetErr(errors.New("i/o timeout"))
		return cmd.Err()
	}))
	ctx := context.Background()
	c := &counter{resp: []byte("ran")}
	if _, err := s.Do(ctx, key, fpA, c.run); err == nil {
		t.Fatal("Do with its claim's answer lost succeeded")
	}
	time.Sleep(300 * time.Millisecond)
	redoClaim(t, direct, *held.Load(), claimLate) // Redis gets to the claim now, too late
	k := s.prefix + key.Account + ":" + key.RequestID
	if n, err := direct.Exists(ctx, k).Result(); err != nil || n != 0 {
		t.Fatalf("a claim done %s after it was sent: %d keys, %v; want none", 300*time.Millisecond, n, err)
	}
	if resp, err := s.Do(ctx, key, fpA, c.run); err != nil || string(resp) != "ran" || c.runs.Load() != 1 {
		t.Errorf("the retry: %q, %v after %d runs; want it run once", resp, err, c.runs.Load())
	}
}

// TestRedisResentLateClaimIsLed: go-redis resends a command whose answer
// timed out. When the first send set the claim in time and the resend
// reaches Redis after the claim's time, the resend must find the claim,
// this call's own, and lead it, rather than answer too late and leave the
// claim standing with nobody to run it.
func TestRedisResentLateClaimIsLed(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	s.claimWithin = time.Second
	direct := directRedis(t)
	var first atomic.Bool
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if isClaim(cmd) && first.CompareAndSwap(false, true) {
			redoClaim(t, direct, cmd, claimSet) // the first send, done in time, its answer lost
			time.Sleep(1500 * time.Millisecond) // the resend comes after the claim's time
		}
		return next(ctx, cmd)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &counter{resp: []byte("ran")}
	if resp, err := s.Do(ctx, key, fpA, c.run); err != nil || string(resp) != "ran" || c.runs.Load() != 1 {
		t.Errorf("Do: %q, %v after %d runs; want its own claim led, run once", resp, err, c.runs.Load())
	}
}

// TestRedisDropEndsOnceTheClaimCannotBeDone: the drop of a failed claim
// that Redis never did ends once Redis' clock has passed the claim's time,
// rather than asking Redis until the lease ends: while Redis' answers are
// lost, thousands of claims fail, and each is dropped.
func TestRedisDropEndsOnceTheClaimCannotBeDone(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	s.claimWithin = 100 * time.Millisecond
	var failed atomic.Bool
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !isClaim(cmd) || !failed.CompareAndSwap(false, true) {
			return next(ctx, cmd)
		}
		cmd.SetErr(errors.New("i/o timeout")) // never done
		return cmd.Err()
	}))
	if _, err := s.Do(context.Background(), key, fpA, (&counter{}).run); err == nil {
		t.Fatal("Do with its claim failed succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.drops) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the drop still running 5 s after its claim's time of %s", s.claimWithin)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisDropGivenUpIsLogged: a failed claim that cannot be dropped (too
// many being dropped already) is logged with its request_id, since its
// repeats may answer OUTCOME_UNKNOWN though its caller was told nothing was
// sent.
func TestRedisDropGivenUpIsLogged(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	logs := captureLog(s)
	s.drops = make(chan struct{}) // no room
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !isClaim(cmd) {
			return next(ctx, cmd)
		}
		cmd.SetErr(errors.New("i/o timeout"))
		return cmd.Err()
	}))
	if _, err := s.Do(context.Background(), key, fpA, (&counter{}).run); err == nil {
		t.Fatal("Do with its claim failed succeeded")
	}
	if lines := logs.Lines(`"level":"WARN"`, `"request_id":"`+key.RequestID+`"`, "not dropped"); len(lines) != 1 {
		t.Errorf("want one WARN line naming the request_id; log:\n%s", logs.String())
	}
}

// TestRedisWaitNamesWhatShutdownLeaves: a shutdown that cannot wait for
// Redis to come back names each request_id whose result Redis has yet to
// keep, or whose failed claim it has yet to drop: an operator then knows
// which requests will answer OUTCOME_UNKNOWN.
func TestRedisWaitNamesWhatShutdownLeaves(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	logs := captureLog(s)
	// Redis fails every command on a request_id once it is marked down
	// (each stays so, whatever the others do), and none once back is set.
	var down sync.Map
	var back atomic.Bool
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		for _, arg := range cmd.Args() {
			if a, ok := arg.(string); ok && !back.Load() {
				if _, isDown := down.Load(a[strings.LastIndexByte(a, ':')+1:]); isDown {
					cmd.SetErr(errors.New("connection refused"))
					return cmd.Err()
				}
			}
		}
		return next(ctx, cmd)
	}))
	t.Cleanup(func() { // Redis back: what was left settles, and ends
		back.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	unsettled, undropped := Key{Account: key.Account, RequestID: "unsettled"}, Key{Account: key.Account, RequestID: "undropped"}
	unforgotten := Key{Account: key.Account, RequestID: "unforgotten"}
	run := func(time.Time) ([]byte, error) {
		down.Store("unsettled", true) // Redis fails as the run ends, and stays away
		return []byte("kept"), nil
	}
	if resp, err := s.Do(context.Background(), unsettled, fpA, run); err != nil || string(resp) != "kept" {
		t.Fatalf("run: %q, %v; want its own answer", resp, err)
	}
	errDefinite := errors.New("table not found")
	failing := func(time.Time) ([]byte, error) {
		down.Store("unforgotten", true)
		return nil, errDefinite // did nothing: its claim is to be dropped
	}
	if _, err := s.Do(context.Background(), unforgotten, fpA, failing); !errors.Is(err, errDefinite) {
		t.Fatalf("run: %v; want its own error", err)
	}
	down.Store("undropped", true)
	if _, err := s.Do(context.Background(), undropped, fpA, (&counter{}).run); err == nil {
		t.Fatal("Do with Redis down succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with Redis down: %v; want the deadline", err)
	}
	for _, want := range [][]string{
		{`"level":"ERROR"`, `"request_id":"unsettled"`, "while the result was kept", "backupd shut down first"},
		{`"level":"ERROR"`, `"request_id":"unforgotten"`, "a request that did nothing was dropped", "backupd shut down first"},
		{`"level":"WARN"`, `"request_id":"undropped"`, "backupd shut down first"},
	} {
		if lines := logs.Lines(want...); len(lines) != 1 {
			t.Errorf("want one line with %q; log:\n%s", want, logs.String())
		}
	}
}

// captureLog makes s log as JSON into the buffer it returns.
func captureLog(s *Redis) *testenv.Buffer {
	logs := &testenv.Buffer{}
	s.log = slog.New(slog.NewJSONHandler(logs, nil))
	return logs
}

// directRedis is a client of the test's Redis beside the stores', to act
// on Redis as no store would.
func directRedis(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisClaimFindsARecord: what a claim does with each record it can
// find under its request_id, in one step: the record is answered, waited
// for, or, for a claim of the same request whose lease is over by Redis'
// clock, made an unknown outcome that keeps its time to live.
func TestRedisClaimFindsARecord(t *testing.T) {
	ctx := context.Background()
	direct := directRedis(t)
	redisNow, err := direct.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	running := func(fp Fingerprint, leaseFromNow time.Duration) string {
		b, _ := json.Marshal(record{Fingerprint: hex.EncodeToString(fp[:]), Owner: "another", LeaseUntil: redisNow.Add(leaseFromNow).UnixMilli()})
		return string(b)
	}
	done, _ := json.Marshal(record{Done: true, Fingerprint: hex.EncodeToString(fpA[:]), Response: []byte("kept")})
	unknown, _ := json.Marshal(record{Done: true, Fingerprint: hex.EncodeToString(fpA[:]), Unknown: true})
	for _, tc := range []struct {
		name, stored string
		wantResp     string
		wantErr      func(error) bool
		// wantStored is the record after the claim; empty means unchanged.
		wantStored string
	}{
		{name: "a result", stored: string(done), wantResp: "kept", wantErr: func(err error) bool { return err == nil }},
		{name: "an unknown outcome", stored: string(unknown), wantErr: isUnknown},
		{name: "another request's claim past its lease", stored: running(fpB, -time.Second), wantErr: isConflict},
		{name: "a running claim of the same request", stored: running(fpA, time.Minute),
			wantErr: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "a claim of the same request past its lease", stored: running(fpA, -time.Second),
			wantErr: isUnknown, wantStored: string(unknown)},
		{name: "not JSON", stored: "garbage", wantErr: func(err error) bool {
			var ue *sharedstate.UnavailableError
			return errors.As(err, &ue) && strings.Contains(err.Error(), "unreadable record")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redisStores(t, 1, time.Minute)[0]
			k := s.prefix + key.Account + ":" + key.RequestID
			if err := direct.Set(ctx, k, tc.stored, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			waiting, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			c := &counter{resp: []byte("ran")}
			resp, err := s.Do(waiting, key, fpA, c.run)
			if string(resp) != tc.wantResp || !tc.wantErr(err) || c.runs.Load() != 0 {
				t.Errorf("Do: %q, %v after %d runs", resp, err, c.runs.Load())
			}
			want := cmp.Or(tc.wantStored, tc.stored)
			got, err := direct.Get(ctx, k).Result()
			var r, w record
			if err != nil || (got != want && (json.Unmarshal([]byte(got), &r) != nil || json.Unmarshal([]byte(want), &w) != nil || !reflect.DeepEqual(r, w))) {
				t.Errorf("record after the claim: %s, %v; want %s", got, err, want)
			}
			if ttl, err := direct.PTTL(ctx, k).Result(); err != nil || ttl < 59*time.Minute {
				t.Errorf("time to live after the claim: %v, %v; want the hour it had", ttl, err)
			}
		})
	}
}

func isConflict(err error) bool {
	var ce *ConflictError
	return errors.As(err, &ce)
}

// TestRedisScriptsTakeAnyRecord: a record that is not one of backupd's
// (written by hand, or by another program under the prefix) is another
// run's to each script, not a script error: a settle or drop that failed
// on it would be tried again for settleFor.
func TestRedisScriptsTakeAnyRecord(t *testing.T) {
	ctx := context.Background()
	direct := directRedis(t)
	k := testenv.RedisPrefix(t) + "idempotency:any"
	fp := hex.EncodeToString(fpA[:])
	for _, stored := range []string{"garbage", "5", `"text"`, "[]", `{"owner":7}`, `{"fp":"` + fp + `","lease_until":"soon"}`, `{"fp":"` + fp + `","lease_until":null}`} {
		if err := direct.Set(ctx, k, stored, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := settle.Run(ctx, direct, []string{k}, "owner", `{"done":true}`, 1000).Int(); err != nil || n != settledElsewhere {
			t.Errorf("settle on %s: %d, %v; want %d", stored, n, err, settledElsewhere)
		}
		if n, err := settle.Run(ctx, direct, []string{k}, "owner", "", 1000).Int(); err != nil || n != settledElsewhere {
			t.Errorf("forget on %s: %d, %v; want %d", stored, n, err, settledElsewhere)
		}
		if res, err := dropScript.Run(ctx, direct, []string{k}, "owner").Int64Slice(); err != nil || len(res) != 2 || res[0] != 0 {
			t.Errorf("drop on %s: %v, %v; want not dropped", stored, res, err)
		}
		res, err := claimScript.Run(ctx, direct, []string{k}, `{"fp":"`+fp+`"}`, 1000, time.Now().Add(time.Hour).UnixMilli(), "owner", fp).Slice()
		if did, _, found, aerr := claimAnswer(res); err != nil || aerr != nil || did != claimFound || string(found) != stored {
			t.Errorf("claim on %s: %v, %v; want the record found and answered", stored, res, cmp.Or(err, aerr))
		}
		if got, err := direct.Get(ctx, k).Result(); err != nil || got != stored {
			t.Errorf("record after the scripts: %q, %v; want %q unchanged", got, err, stored)
		}
	}
}

// TestRedisPanicIsAnUnknownOutcome: as in Memory, a run that panicked is
// kept as an unknown outcome, on every replica, not run again.
func TestRedisPanicIsAnUnknownOutcome(t *testing.T) {
	stores := redisStores(t, 2, time.Minute)
	func() {
		defer func() { _ = recover() }()
		_, _ = stores[0].Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { panic("boom") })
	}()
	// At once, not once the claim's lease has run out.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := stores[1].Do(ctx, key, fpA, func(time.Time) ([]byte, error) { t.Error("ran again after a panic"); return nil, nil })
	if _, ok := errors.AsType[*OutcomeUnknownError](err); !ok {
		t.Errorf("repeat on another replica after a panic: %v; want an unknown outcome, before the lease ends", err)
	}
}

// TestRedisForgetAfterAnUnknownOutcomeIsLogged: a run that did nothing but
// ended past its claim's lease (its process stalled), after a repeat was
// told OUTCOME_UNKNOWN, cannot drop its claim: repeats answer
// OUTCOME_UNKNOWN for 24 h. The log says so, by request_id, and that
// nothing was done; otherwise the only line of it (the service's) says a
// repeat runs the request again.
func TestRedisForgetAfterAnUnknownOutcomeIsLogged(t *testing.T) {
	const lease = 300 * time.Millisecond
	s := redisStores(t, 2, lease)
	a, b := s[0], s[1]
	logs := captureLog(a)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(time.Time) ([]byte, error) {
		time.Sleep(2 * lease) // stalled past the lease
		if _, err := b.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { t.Error("ran twice"); return nil, nil }); !isUnknown(err) {
			t.Errorf("repeat past the lease: %v; want OutcomeUnknownError", err)
		}
		return nil, errors.New("nothing done")
	}
	if _, err := a.Do(ctx, key, fpA, run); err == nil || isUnknown(err) {
		t.Fatalf("a: %v; want its run's error", err)
	}
	if _, err := b.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { t.Error("ran twice"); return nil, nil }); !isUnknown(err) {
		t.Errorf("repeat once a's run ended: %v; want OutcomeUnknownError, as told before", err)
	}
	if lines := logs.Lines(`"level":"WARN"`, `"request_id":"`+key.RequestID+`"`, "was not dropped", "told OUTCOME_UNKNOWN first", "nothing was done"); len(lines) != 1 {
		t.Errorf("want one WARN line saying the claim stays an unknown outcome though nothing was done; log:\n%s", logs.String())
	}
}

// TestRedisThatRefusesWritesIsSeenGone: a Redis that refuses every write
// but still answers reads (a replica after a failover: READONLY) refuses
// every request with a request_id, and is reported gone once that has
// lasted a second, though the drop of each refused claim, which finds
// nothing to delete, is answered. Before, those answers kept
// backupd_shared_state_up at 1, and the log silent, while every request
// was refused.
func TestRedisThatRefusesWritesIsSeenGone(t *testing.T) {
	r := testenv.StartRedis(t, testenv.FreeAddr(t))
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { client.Close() })
	var mu sync.Mutex
	var reports []bool
	reported := func() []bool { mu.Lock(); defer mu.Unlock(); return append([]bool(nil), reports...) }
	reach := sharedstate.NewReachability(slog.New(slog.DiscardHandler), func(up bool) { mu.Lock(); defer mu.Unlock(); reports = append(reports, up) })
	client.AddHook(reach)
	s := NewRedis(client, "backupd:", time.Minute, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	run := func(time.Time) ([]byte, error) { return []byte("ran"), nil }
	if _, err := s.Do(ctx, Key{Account: key.Account, RequestID: "before"}, fpA, run); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40 && !slices.Equal(reported(), []bool{true, false}); i++ {
		_, err := s.Do(ctx, Key{Account: key.Account, RequestID: fmt.Sprintf("refused-%d", i)}, fpA, run)
		if _, ok := errors.AsType[*sharedstate.UnavailableError](err); !ok {
			t.Fatalf("request %d on a replica: %v; want UnavailableError", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := reported(); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("every write refused (READONLY) for 2 s: reported %v; want [true false]", got)
	}
	if err := r.Client.ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(ctx, Key{Account: key.Account, RequestID: "after"}, fpA, run); err != nil {
		t.Fatal(err)
	}
	if got := reported(); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("served again: reported %v; want [true false true]", got)
	}
}

// TestRedisKeepsTheResultOfACallerThatLeft: the caller goes (its context
// ends) while its request runs; the result is kept all the same, for its
// retry, which reaches another replica and gets it, nothing run again.
func TestRedisKeepsTheResultOfACallerThatLeft(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	k := Key{Account: "111111111111", RequestID: "caller-left"}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s[0].Do(ctx, k, fpA, func(time.Time) ([]byte, error) { cancel(); return []byte("made"), nil }); err != nil {
		t.Fatal(err)
	}
	retry, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	c := &counter{resp: []byte("again")}
	got, err := s[1].Do(retry, k, fpA, c.run)
	if err != nil || string(got) != "made" || c.runs.Load() != 0 {
		t.Errorf("retry of a request whose caller left: %q, %v after %d runs; want the first run's response, nothing run", got, err, c.runs.Load())
	}
}

// runFor starts a request of k on st whose run takes d and answers
// "made", and returns once it has claimed k; the channel gets the time its
// run ended.
func runFor(st *Redis, k Key, d time.Duration) <-chan time.Time {
	claimed := make(chan struct{})
	ended := make(chan time.Time, 1)
	go func() {
		_, _ = st.Do(context.Background(), k, fpA, func(time.Time) ([]byte, error) {
			close(claimed)
			time.Sleep(d)
			ended <- time.Now()
			return []byte("made"), nil
		})
	}()
	<-claimed
	return ended
}

// TestRedisRepeatAnswersSoonAfterTheRun: a repeat that waits for another
// replica's run asks Redis at least every 200 ms, so it answers soon after
// that run ends, however long it ran.
func TestRedisRepeatAnswersSoonAfterTheRun(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	k := Key{Account: "111111111111", RequestID: "long-run"}
	ended := runFor(s[0], k, 1400*time.Millisecond)
	c := &counter{resp: []byte("again")}
	got, err := s[1].Do(context.Background(), k, fpA, c.run)
	if err != nil || string(got) != "made" || c.runs.Load() != 0 {
		t.Fatalf("repeat: %q, %v after %d runs; want the first run's response", got, err, c.runs.Load())
	}
	if late := time.Since(<-ended); late > 500*time.Millisecond {
		t.Errorf("the repeat answered %s after the run ended; want within about 200 ms", late.Round(time.Millisecond))
	}
}

// TestRedisForgetOfALostClaimIsNotLogged: a run that did nothing (an error
// that is not final) drops its claim, which Redis lost meanwhile and
// another run's claim, or nothing, stands: repeats run, as its caller was
// told, and there is nothing to log, least of all that a result was not
// kept and the request may have run twice.
func TestRedisForgetOfALostClaimIsNotLogged(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	a, b := s[0], s[1]
	logs := captureLog(a)
	direct := directRedis(t)
	ctx := context.Background()
	errNotDone := errors.New("table not found")
	for _, other := range []bool{false, true} {
		k := Key{Account: "111111111111", RequestID: fmt.Sprintf("forget-lost-%v", other)}
		_, err := a.Do(ctx, k, fpA, func(time.Time) ([]byte, error) {
			if err := direct.Del(ctx, a.prefix+k.Account+":"+k.RequestID).Err(); err != nil {
				t.Error(err)
			}
			if other {
				if _, err := b.Do(ctx, k, fpA, func(time.Time) ([]byte, error) { return []byte("b ran"), nil }); err != nil {
					t.Error(err)
				}
			}
			return nil, errNotDone
		})
		if !errors.Is(err, errNotDone) {
			t.Fatalf("a (another run's record %v): %v; want its run's error", other, err)
		}
	}
	if logs.String() != "" {
		t.Errorf("want nothing logged; log:\n%s", logs.String())
	}
}

// TestRedisDropsFailedClaimsAtOnce: several claims whose answers were lost
// at once (Redis stalled under many requests) are all dropped, each in
// the background: their callers were told nothing was sent, and their
// retries run, none told OUTCOME_UNKNOWN.
func TestRedisDropsFailedClaimsAtOnce(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	direct := directRedis(t)
	s.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !isClaim(cmd) {
			return next(ctx, cmd)
		}
		redoClaim(t, direct, cmd, claimSet) // done, its answer lost
		cmd.SetErr(errors.New("i/o timeout"))
		return cmd.Err()
	}))
	ctx := context.Background()
	const n = 8
	for i := range n {
		k := Key{Account: "111111111111", RequestID: fmt.Sprintf("lost-%d", i)}
		if _, err := s.Do(ctx, k, fpA, func(time.Time) ([]byte, error) { return nil, nil }); err == nil {
			t.Fatalf("claim %d: answered; want its answer lost", i)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	left, err := direct.Keys(ctx, s.prefix+"*").Result()
	if err != nil || len(left) != 0 {
		t.Errorf("claims left after their drops: %v, %v; want none", left, err)
	}
}

// TestRedisSettlesUntilTheLeaseEnds: a claim that Redis failed to settle
// is tried again until its lease ends, even past settleFor: until then
// repeats wait for it, and would otherwise wait out the lease and be told
// the outcome is unknown.
func TestRedisSettlesUntilTheLeaseEnds(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	a, b := s[0], s[1]
	a.settleFor = 50 * time.Millisecond // shorter than the outage, and than the lease
	down := failWhileDown(a)
	c := &counter{resp: []byte("kept")}
	run := func(time.Time) ([]byte, error) {
		down.Store(true)
		time.AfterFunc(300*time.Millisecond, func() { down.Store(false) })
		return c.run(time.Time{})
	}
	if _, err := a.Do(context.Background(), key, fpA, run); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := b.Do(ctx, key, fpA, c.run)
	if string(resp) != "kept" || err != nil || c.runs.Load() != 1 {
		t.Errorf("repeat on another replica: %q, %v after %d runs; want the kept result after 1", resp, err, c.runs.Load())
	}
	if err := a.Wait(ctx); err != nil {
		t.Error(err)
	}
}

// TestRedisWaitReportsAnUnforgottenClaim: a shutdown that ends while only
// the drop of a claim whose run did nothing is still being tried (Redis
// away) says it did not finish, as it does for a result or a failed claim.
func TestRedisWaitReportsAnUnforgottenClaim(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	down := failWhileDown(s)
	t.Cleanup(func() {
		down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	errDefinite := errors.New("table not found")
	if _, err := s.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
		down.Store(true)
		return nil, errDefinite
	}); !errors.Is(err, errDefinite) {
		t.Fatalf("run: %v; want its own error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a claim's drop left: %v; want the deadline", err)
	}
}

// TestRedisSettleGivenUpIsLogged: a result that Redis failed to keep,
// tried again until the claim's lease and settleFor have both run out, is
// logged as given up, with its request_id: repeats answer OUTCOME_UNKNOWN
// until its 24 h end, and this line is where to find why.
func TestRedisSettleGivenUpIsLogged(t *testing.T) {
	s := redisStores(t, 1, 200*time.Millisecond)[0]
	s.settleFor = 100 * time.Millisecond
	logs := captureLog(s)
	down := failWhileDown(s)
	if _, err := s.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
		down.Store(true) // and stays away
		return []byte("kept"), nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{`"level":"ERROR"`, `"request_id":"` + key.RequestID + `"`, "while the result was kept", "connection refused"}
	if lines := logs.Lines(want...); len(lines) != 1 {
		t.Errorf("want one line with %q; log:\n%s", want, logs.String())
	}
}

// TestRedisFollowsRedisClockFromItsAnswers: a replica that took Redis'
// clock for a minute behind what it is (a failover to a server whose
// clock is set otherwise) has its first claim refused as late, and
// follows Redis' clock from that answer on: the retry runs. Redis' clock
// is asked for (TIME) only once; the scripts' answers keep it.
func TestRedisFollowsRedisClockFromItsAnswers(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	s.clock.saw(time.Now().Add(-time.Minute))
	c := &counter{resp: []byte("ran")}
	if _, err := s.Do(context.Background(), key, fpA, c.run); !errors.Is(err, errClaimLate) || c.runs.Load() != 0 {
		t.Fatalf("first claim, by a clock a minute behind: %v after %d runs; want it refused as late, nothing run", err, c.runs.Load())
	}
	if resp, err := s.Do(context.Background(), key, fpA, c.run); err != nil || string(resp) != "ran" || c.runs.Load() != 1 {
		t.Errorf("the retry: %q, %v after %d runs; want it run", resp, err, c.runs.Load())
	}
}

// TestRedisFirstCheckEndedByTheCaller: a caller gone before Redis' clock
// was first read (TIME) is told its check ended, not that Redis is
// unavailable.
func TestRedisFirstCheckEndedByTheCaller(t *testing.T) {
	s := redisStores(t, 1, time.Minute)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &counter{}
	if _, err := s.Do(ctx, key, fpA, c.run); !errors.As(err, new(*CheckEndedError)) || c.runs.Load() != 0 {
		t.Errorf("Do with its context ended: %v after %d runs; want a CheckEndedError, nothing run", err, c.runs.Load())
	}
}

// TestRedisRepeatOfAShortRun: a repeat that finds another replica's run
// going on says so (OnWait's notice), and answers soon after that run
// ends. Redis' clock is read (TIME) once; the scripts' answers keep it.
func TestRedisRepeatOfAShortRun(t *testing.T) {
	s := redisStores(t, 2, time.Minute)
	var times atomic.Int32
	for _, st := range s {
		st.client.(*redis.Client).AddHook(processHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
			if cmd.Name() == "time" {
				times.Add(1)
			}
			return next(ctx, cmd)
		}))
	}
	ended := runFor(s[0], key, 100*time.Millisecond)
	var waited atomic.Int32
	c := &counter{resp: []byte("again")}
	got, err := s[1].Do(OnWait(context.Background(), func() { waited.Add(1) }), key, fpA, c.run)
	if err != nil || string(got) != "made" || c.runs.Load() != 0 || waited.Load() == 0 {
		t.Fatalf("repeat: %q, %v after %d runs, %d notices; want the first run's response, and a notice that it waited", got, err, c.runs.Load(), waited.Load())
	}
	if late := time.Since(<-ended); late > 250*time.Millisecond {
		t.Errorf("the repeat answered %s after a 100 ms run ended; want within about 50 ms", late.Round(time.Millisecond))
	}
	for range 3 {
		if _, err := s[1].Do(context.Background(), key, fpA, c.run); err != nil {
			t.Fatal(err)
		}
	}
	if n := times.Load(); n != 2 {
		t.Errorf("%d TIME commands from two replicas; want one each", n)
	}
}
