package sharedstate

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/testenv"
)

// TestReachability: with backupd's own client options, against a real
// redis-server: the first answer is reported without a line (the start
// logs its own); an error reply is an answer, a command whose context
// ended says nothing; failures count once they have lasted downAfter
// with no answer between, whether Redis refuses to serve (READONLY),
// is gone, or stalls (SIGSTOP: its kernel still accepts connections,
// which say nothing); each loss and each return is one report and one
// line.
func TestReachability(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	logs := &testenv.Buffer{}
	reach, reported := recorded(slog.New(slog.NewJSONHandler(logs, nil)))
	clock := time.Now()
	reach.now = func() time.Time { return clock }
	c, _ := clients(t, config.Redis{Address: addr, KeyPrefix: "backupd:"})
	c.AddHook(reach)
	ctx := context.Background()
	step := func(name string, want []bool, do func()) {
		t.Helper()
		do()
		if got := reported(); !slices.Equal(got, want) {
			t.Fatalf("%s: reported %v; want %v\n%s", name, got, want, logs.String())
		}
	}

	step("an answer, an error reply, a canceled command", []bool{true}, func() {
		_ = c.Ping(ctx).Err()
		_ = c.Do(ctx, "nosuchcommand").Err()
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		_ = c.Ping(canceled).Err()
	})
	if err := r.Client.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	step("READONLY once, then an answer", []bool{true}, func() {
		_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
		clock = clock.Add(2 * downAfter)
		_ = c.Get(ctx, "backupd:x").Err()
	})
	step("READONLY for downAfter", []bool{true, false}, func() {
		_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
		clock = clock.Add(downAfter)
		_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
		_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
	})
	if err := r.Client.ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	step("serving again", []bool{true, false, true}, func() { _ = c.Set(ctx, "backupd:x", 1, time.Minute).Err() })
	step("stalled", []bool{true, false, true, false}, func() {
		if err := r.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = r.Process.Signal(syscall.SIGCONT) }()
		for range 3 {
			if err := c.Ping(ctx).Err(); err == nil {
				t.Fatal("a stopped Redis answered")
			}
			clock = clock.Add(downAfter)
		}
	})
	step("serving after the stall", []bool{true, false, true, false, true}, func() {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	})
	step("gone", []bool{true, false, true, false, true, false}, func() {
		r.Stop()
		for range 3 {
			_ = c.Ping(ctx).Err()
			clock = clock.Add(downAfter)
		}
	})
	step("back", []bool{true, false, true, false, true, false, true}, func() {
		testenv.StartRedis(t, addr)
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if n := len(logs.Lines(`"level":"ERROR"`, "Redis stopped serving", `"failing_for"`)); n != 3 {
		t.Errorf("%d lines of Redis gone; want 3:\n%s", n, logs.String())
	}
	if n := len(logs.Lines(`"level":"INFO"`, "Redis serves again", `"down_for"`)); n != 3 {
		t.Errorf("%d lines of Redis back; want 3:\n%s", n, logs.String())
	}
	if n := len(logs.Lines(`"msg"`)); n != 6 {
		t.Errorf("%d lines; want 6:\n%s", n, logs.String())
	}
}

// TestReachabilityOfARedisThatRefusesBackupd: a Redis that answers every
// command with a refusal (backupd's user denied a command, or gone, so
// that new connections fail their AUTH; Redis full under noeviction)
// does not serve backupd: it is reported gone once that has lasted
// downAfter, and back once it serves again.
func TestReachabilityOfARedisThatRefusesBackupd(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	ctx := context.Background()
	if err := r.Client.Do(ctx, "acl", "setuser", "bk", "on", ">bk-password", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	reach, reported := recorded(slog.New(slog.DiscardHandler))
	clock := time.Now()
	reach.now = func() time.Time { return clock }
	c, _ := clients(t, config.Redis{Address: addr, Username: "bk", Password: "bk-password", KeyPrefix: "backupd:"})
	c.AddHook(reach)
	admin := func(args ...any) {
		t.Helper()
		if err := r.Client.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		refuse, serve func()
	}{
		{"NOPERM", func() { admin("acl", "setuser", "bk", "-set") }, func() { admin("acl", "setuser", "bk", "+set") }},
		{"OOM", func() { admin("config", "set", "maxmemory", "1") }, func() { admin("config", "set", "maxmemory", "0") }},
		// Deleting the user closes its connections; the new ones fail
		// their AUTH (WRONGPASS).
		{"WRONGPASS", func() { admin("acl", "deluser", "bk") }, func() { admin("acl", "setuser", "bk", "on", ">bk-password", "~*", "+@all") }},
	}
	if err := c.Set(ctx, "backupd:x", 1, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	want := []bool{true}
	for _, tt := range tests {
		tt.refuse()
		var last error
		for range 3 {
			last = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
			clock = clock.Add(downAfter)
		}
		if !redis.HasErrorPrefix(last, tt.name) {
			t.Fatalf("%s: the refused SET failed with %v", tt.name, last)
		}
		tt.serve()
		if err := c.Set(ctx, "backupd:x", 1, time.Minute).Err(); err != nil {
			t.Fatalf("%s: SET once served again: %v", tt.name, err)
		}
		want = append(want, false, true)
		got := reported()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: reported %v; want %v", tt.name, got, want)
		}
	}
}

// TestReachabilityOfAStallSeenOnlyByCutCommands: a Redis that stalls
// (SIGSTOP) while every command is cut short by its own context, before
// the 1 s read timeout (the rate limiter's patience with a max_wait under
// a second, callers' short deadlines), is still seen gone: the cut
// commands have a probe wait out the read timeout, and its failure counts
// from when it was sent. Before, such a replica refused every request
// while its gauge said Redis served, and logged nothing of it.
func TestReachabilityOfAStallSeenOnlyByCutCommands(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	logs := &testenv.Buffer{}
	reach, reported := recorded(slog.New(slog.NewJSONHandler(logs, nil)))
	c, _ := clients(t, config.Redis{Address: addr, KeyPrefix: "backupd:"})
	reach.ProbeWith(func(ctx context.Context) error { return c.Ping(ctx).Err() })
	c.AddHook(reach)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	defer func() { _ = r.Process.Signal(syscall.SIGCONT) }()
	for time.Since(stopped) < 8*time.Second && !slices.Equal(reported(), []bool{true, false}) {
		cut, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if err := c.Ping(cut).Err(); err == nil {
			t.Fatal("a stopped Redis answered")
		}
		cancel()
	}
	if got := reported(); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("a Redis stalled for %s, every command cut short: reported %v; want [true false]\n%s", time.Since(stopped).Round(time.Millisecond), got, logs.String())
	}
	if n := len(logs.Lines(`"level":"ERROR"`, "Redis stopped serving")); n != 1 {
		t.Errorf("%d lines of Redis gone; want 1:\n%s", n, logs.String())
	}
	_ = r.Process.Signal(syscall.SIGCONT)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := reported(); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("served again: reported %v; want [true false true]", got)
	}
}

// TestReachabilityProbeOfARefusingRedis: a probe's PING, which a Redis
// that refuses backupd's commands still answers (a replica's READONLY),
// does not count as Redis serving: a caller that left while Redis
// refused every write does not hide the refusal from the gauge and the
// log.
func TestReachabilityProbeOfARefusingRedis(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	reach, reported := recorded(slog.New(slog.DiscardHandler))
	var clockMu sync.Mutex
	clock := time.Now()
	reach.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); defer clockMu.Unlock(); clock = clock.Add(d) }
	c, _ := clients(t, config.Redis{Address: addr, KeyPrefix: "backupd:"})
	reach.ProbeWith(func(ctx context.Context) error { return c.Ping(ctx).Err() })
	c.AddHook(reach)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "backupd:x", 1, time.Minute).Err(); !redis.HasErrorPrefix(err, "READONLY") {
		t.Fatalf("SET on a replica: %v", err)
	}
	advance(downAfter / 2)
	left, cancel := context.WithCancel(ctx)
	cancel()
	_ = c.Get(left, "backupd:x").Err() // a caller that left: a probe
	for deadline := time.Now().Add(5 * time.Second); reach.probing.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	advance(downAfter / 2)
	_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
	if got := reported(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("READONLY for downAfter, a probe between: reported %v; want [true false]", got)
	}
}

// recorded is a Reachability logging to log whose reports are kept:
// reported returns them so far, in order.
func recorded(log *slog.Logger) (reach *Reachability, reported func() []bool) {
	var mu sync.Mutex
	var reports []bool
	reach = NewReachability(log, func(up bool) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, up)
	})
	return reach, func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(reports)
	}
}

// TestReachabilityOfAnIdleReplicaAfterRefusals: a replica with no
// requests once Redis, which refused its writes (READONLY), takes them
// again, reaches Redis only by its background reads (the eviction watch's
// INFO), whose answers do not count while writes were refused (ReadOnly):
// they have it write, and see Redis serve again. Before, its gauge stayed
// 0, and its log silent, until its next request.
func TestReachabilityOfAnIdleReplicaAfterRefusals(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	ctx := context.Background()
	reach, reported := recorded(slog.New(slog.DiscardHandler))
	c, _ := clients(t, config.Redis{Address: addr, KeyPrefix: "backupd:"})
	reach.ProbeWritesWith(func(ctx context.Context) error { return c.Set(ctx, "backupd:reachability", "1", time.Minute).Err() })
	c.AddHook(reach)
	if err := c.Set(ctx, "backupd:x", 1, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	// Refused writes, and reads answered between them, for over a second.
	for range 5 {
		_ = c.Set(ctx, "backupd:x", 1, time.Minute).Err()
		_ = checkEviction(ReadOnly(ctx), c)
		time.Sleep(300 * time.Millisecond)
	}
	if got := reported(); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("writes refused for 1.5 s: reported %v; want [true false]", got)
	}
	if err := r.Client.ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	WatchEviction(wctx, c, 100*time.Millisecond, func(error) {})
	if got := reported(); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("Redis took writes again, the replica idle but for its eviction watch, for 2 s: reported %v; want [true false true]", got)
	}
}

// TestReachabilityTimesFailures: Redis' first outcome, a failure, reports
// it gone at once, without a line (the start's own check logs it).
// Afterwards failures count from when their command was sent, or from
// the last answer when that came later (a command that waited out its
// read timeout while another was answered), and Redis is gone once they
// have lasted downAfter, no sooner.
func TestReachabilityTimesFailures(t *testing.T) {
	logs := &testenv.Buffer{}
	reach, reported := recorded(slog.New(slog.NewJSONHandler(logs, nil)))
	base := time.Unix(1_800_000_000, 0)
	clock := base
	reach.now = func() time.Time { return clock }
	at := func(d time.Duration) time.Time { return base.Add(d) }
	errGone := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	step := func(name string, want []bool, lines int) {
		t.Helper()
		if got := reported(); !slices.Equal(got, want) || len(logs.Lines("shared state")) != lines {
			t.Fatalf("%s: reported %v; want %v, and %d lines; log:\n%s", name, got, want, lines, logs.String())
		}
	}
	reach.failed(errGone, at(0))
	step("a failure first", []bool{false}, 0)
	clock = at(100 * time.Millisecond)
	reach.answered()
	step("an answer", []bool{false, true}, 1)
	clock = at(1050 * time.Millisecond)
	reach.failed(errGone, at(0)) // sent before the answer
	step("a failure 950 ms after the last answer", []bool{false, true}, 1)
	clock = at(1099 * time.Millisecond)
	reach.failed(errGone, at(1090*time.Millisecond))
	step("failures for 999 ms", []bool{false, true}, 1)
	clock = at(1100 * time.Millisecond)
	reach.failed(errGone, at(1095*time.Millisecond))
	step("failures for a second", []bool{false, true, false}, 2)
}

// TestReachabilityWriteProbesAtMostOncePerDownAfter: while Redis refuses
// backupd's commands, reads answered have Redis written to (a write
// probe), at most once per downAfter however many reads are answered.
// A command cut short by its own context says nothing of Redis.
func TestReachabilityWriteProbesAtMostOncePerDownAfter(t *testing.T) {
	ctx := context.Background()
	reach, reported := recorded(slog.New(slog.DiscardHandler))
	base := time.Unix(1_800_000_000, 0)
	clock := base
	reach.now = func() time.Time { return clock }
	var writes atomic.Int32
	reach.ProbeWritesWith(func(context.Context) error { writes.Add(1); return nil })
	reach.observe(ctx, nil, base)
	reach.observe(ctx, redisError("READONLY You can't write against a read only replica."), base)
	for range 5 {
		reach.observe(ReadOnly(ctx), nil, clock)
		for reach.writing.Load() { // the probe runs apart; let it end
			time.Sleep(time.Millisecond)
		}
	}
	if n := writes.Load(); n != 1 {
		t.Errorf("five reads answered within downAfter: %d write probes; want 1", n)
	}
	// A command whose own context ended, a second after the last answer.
	cut, cancel := context.WithCancel(ctx)
	cancel()
	reach.observe(ctx, nil, clock)
	clock = clock.Add(2 * downAfter)
	reach.observe(cut, context.Canceled, clock.Add(-2*downAfter))
	if got := reported(); !slices.Equal(got, []bool{true}) {
		t.Errorf("a command cut short by its caller: reported %v; want [true]", got)
	}
}

// TestReachabilityRunsOneProbeAtATime: commands cut short while a probe
// is under way start no other.
func TestReachabilityRunsOneProbeAtATime(t *testing.T) {
	reach, _ := recorded(slog.New(slog.DiscardHandler))
	var started atomic.Int32
	release := make(chan struct{})
	reach.ProbeWith(func(context.Context) error { started.Add(1); <-release; return nil })
	cut, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		reach.observe(cut, context.Canceled, time.Now())
	}
	// The probe runs on a goroutine of its own: wait for the first, then
	// give any others as long to start.
	for deadline := time.Now().Add(5 * time.Second); started.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	if n := started.Load(); n != 1 {
		t.Errorf("three commands cut short during a probe: %d probes; want 1", n)
	}
}

// TestReachabilityOfEachReply: a reply of a Redis that serves none of
// backupd's commands (loading, a replica without its primary, busy with
// a script, refusing writes, refusing backupd's user) is a failure, and
// one that lasts downAfter reports Redis gone; any other reply is an
// answer. A pool with no connection free, or a client closed, says
// nothing of Redis.
func TestReachabilityOfEachReply(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{redisError("LOADING Redis is loading the dataset in memory"), true},
		{redisError("READONLY You can't write against a read only replica."), true},
		{redisError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{redisError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), true},
		{redisError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), true},
		{redisError("OOM command not allowed when used memory > 'maxmemory'."), true},
		{redisError("NOPERM User backupd has no permissions to run the 'evalsha' command"), true},
		{redisError("WRONGPASS invalid username-password pair or user is disabled."), true},
		{redisError("NOAUTH Authentication required."), true},
		{redisError("ERR unknown command 'nosuchcommand'"), false},
		{redis.ErrPoolTimeout, false},
		{redis.ErrClosed, false},
	} {
		reach, reported := recorded(slog.New(slog.DiscardHandler))
		clock := time.Unix(1_800_000_000, 0)
		reach.now = func() time.Time { return clock }
		reach.observe(ctx, nil, clock)
		start := clock
		clock = clock.Add(downAfter)
		reach.observe(ctx, tc.err, start)
		want := []bool{true}
		if tc.gone {
			want = append(want, false)
		}
		if got := reported(); !slices.Equal(got, want) {
			t.Errorf("%v for %s: reported %v; want %v", tc.err, downAfter, got, want)
		}
	}
}

// TestReachabilityAfterAnAnswer: an answer ends the failures before it,
// so that those after it count from their own start, and ends a refusal:
// once Redis served again, a read answered (INFO, TIME) says it serves,
// as any answer does.
func TestReachabilityAfterAnAnswer(t *testing.T) {
	ctx := context.Background()
	reach, reported := recorded(slog.New(slog.DiscardHandler))
	base := time.Unix(1_800_000_000, 0)
	clock := base
	reach.now = func() time.Time { return clock }
	at := func(d time.Duration) time.Time { return base.Add(d) }
	errGone := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	reach.observe(ctx, nil, at(0))
	clock = at(100 * time.Millisecond)
	reach.observe(ctx, errGone, at(0))
	clock = at(500 * time.Millisecond)
	reach.observe(ctx, nil, at(400*time.Millisecond))
	clock = at(1200 * time.Millisecond)
	reach.observe(ctx, errGone, at(1100*time.Millisecond))
	if got := reported(); !slices.Equal(got, []bool{true}) {
		t.Fatalf("failures at 0 and 1.1 s, an answer at 0.4 s: reported %v; want [true]", got)
	}
	// A refusal, gone for it, an answer; then gone again, unreachable.
	clock = at(3 * time.Second)
	reach.observe(ctx, redisError("READONLY You can't write against a read only replica."), at(1100*time.Millisecond))
	clock = at(4 * time.Second)
	reach.observe(ctx, nil, at(4*time.Second))
	clock = at(6 * time.Second)
	reach.observe(ctx, errGone, at(4500*time.Millisecond))
	clock = at(7 * time.Second)
	reach.observe(ReadOnly(ctx), nil, at(7*time.Second))
	if got := reported(); !slices.Equal(got, []bool{true, false, true, false, true}) {
		t.Errorf("a read answered once Redis served again after a refusal: reported %v; want [true false true false true]", got)
	}
}
