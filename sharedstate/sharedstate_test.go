package sharedstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/testenv"
)

// TestUnavailableErrorStopsTheSDKRetrying: the limiter's error passes
// through the SDK's retry middleware, which must not repeat the attempt.
func TestUnavailableErrorStopsTheSDKRetrying(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	retryable := retry.IsErrorRetryables(retry.DefaultRetryables)
	if !retryable.IsErrorRetryable(refused).Bool() {
		t.Fatal("the SDK does not retry a refused connection; this test proves nothing")
	}
	err := &UnavailableError{Op: "rate limit", Err: refused}
	if retryable.IsErrorRetryable(err).Bool() {
		t.Error("the SDK would retry an attempt the limiter could not admit")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("the cause is not unwrapped")
	}
}

// TestWaitingRedisClient: the client that waits for replicas, made only
// with wait_replicas, reads for wait_timeout longer than the other, whose
// reads stay short, and end by the request's deadline, so that a Redis
// that stops answering fails requests fast.
func TestWaitingRedisClient(t *testing.T) {
	c := config.Redis{Address: "redis:6379", Username: "backupd", Password: "pw", DB: 2, WaitReplicas: 1, WaitTimeout: 700 * time.Millisecond}
	plain, waiting := clients(t, c)
	p, w := plain.Options(), waiting.Options()
	if p.ReadTimeout != time.Second || w.ReadTimeout != time.Second+c.WaitTimeout {
		t.Errorf("read timeouts %s and %s (waiting); want 1s and 1.7s", p.ReadTimeout, w.ReadTimeout)
	}
	if !p.ContextTimeoutEnabled || w.ContextTimeoutEnabled {
		t.Errorf("commands end by their context's deadline: %v, and the waiting client's: %v; want true and false", p.ContextTimeoutEnabled, w.ContextTimeoutEnabled)
	}
	c.WaitReplicas = 0
	if _, waiting := clients(t, c); waiting != nil {
		t.Error("a waiting client without wait_replicas")
	}
	if w.Addr != p.Addr || w.Username != p.Username || w.Password != p.Password || w.DB != p.DB || w.MaxRetries != p.MaxRetries {
		t.Errorf("the waiting client reaches %+v; want the server the other reaches, %+v", w, p)
	}
}

func TestNewRedisClientsKeepThePasswordOutOfErrors(t *testing.T) {
	addr := testenv.WrongPassRedis(t)
	c, _ := clients(t, config.Redis{Address: addr, Password: "hunter2-secret", DB: 3})
	if o := c.Options(); o.Addr != addr || o.Password != "hunter2-secret" || o.DB != 3 {
		t.Errorf("options = %+v", o)
	}
	err := c.Ping(context.Background()).Err()
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("ping: %v; want the server's refusal of the password", err)
	}
	if msg := (&UnavailableError{Op: "idempotency", Err: err}).Error(); strings.Contains(msg, "hunter2") {
		t.Errorf("error holds the password: %s", msg)
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"wrong password", redisError("WRONGPASS invalid username-password pair or user is disabled."), true},
		{"password needed", redisError("NOAUTH Authentication required."), true},
		{"password sent to an old server without one", redisError("ERR Client sent AUTH, but no password is set"), true},
		{"no such database", redisError("ERR DB index is out of range"), true},
		{"user may not run the command", redisError("NOPERM this user has no permissions to run the 'evalsha' command"), true},
		{"not up yet", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{"loading", redisError("LOADING Redis is loading the dataset in memory"), false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Refused(tt.err); got != tt.want {
				t.Errorf("Refused(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	// And as the client returns it, from the stand-in that refuses the password.
	c, _ := clients(t, config.Redis{Address: testenv.WrongPassRedis(t), Password: "x"})
	if err := c.Ping(context.Background()).Err(); !Refused(err) {
		t.Errorf("Refused(%v) = false for the client's own error", err)
	}
}

// clients are NewRedisClients' of c, closed when t ends.
func clients(t *testing.T, c config.Redis) (client, waiter *redis.Client) {
	t.Helper()
	client, waiter, err := NewRedisClients(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		if waiter != nil {
			waiter.Close()
		}
	})
	return client, waiter
}

// redisError is an error Redis answered, as go-redis reports one.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// While Redis is down go-redis says the same for every request: the log
// keeps one line of each kind per interval, and the next says how many it
// left out.
func TestRedisLoggerWritesEachKindOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	l := NewRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	now := time.Now()
	l.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 5 {
		l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", i+1, errors.New("connection refused"))
	}
	l.Printf(ctx, "redis: discarding bad PubSub connection: %v", errors.New("EOF"))
	// Messages go-redis formats itself come as "%s": each is its own kind.
	l.Printf(ctx, "%s", "redis: circuit breaker opened for endpoint 10.0.0.1:6379")
	l.Printf(ctx, "%s", "redis: maintenance notification: MOVING to 10.0.0.2:6379")
	// One kind whichever connection it names.
	for i := range 3 {
		l.Printf(ctx, "%s", fmt.Sprintf("conn[%d] handoff failed", 1000+i))
	}
	now = now.Add(10 * time.Second) // the interval has passed
	l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: %v", 6, errors.New("connection refused"))

	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r struct {
			Level, Msg string
			LeftOut    *int `json:"left_out"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		left := "-"
		if r.LeftOut != nil {
			left = strconv.Itoa(*r.LeftOut)
		}
		got = append(got, r.Level+" "+r.Msg+" left_out="+left)
	}
	want := []string{
		"WARN redis: connection pool: failed to dial after 1 attempts: connection refused left_out=-",
		"WARN redis: discarding bad PubSub connection: EOF left_out=-",
		"WARN redis: circuit breaker opened for endpoint 10.0.0.1:6379 left_out=-",
		"WARN redis: maintenance notification: MOVING to 10.0.0.2:6379 left_out=-",
		"WARN conn[1000] handoff failed left_out=-",
		"WARN redis: connection pool: failed to dial after 6 attempts: connection refused left_out=4",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A go-redis message that quotes a secret (a credentials provider's token
// in a re-authentication error, say) is logged without it.
func TestRedisLoggerTakesSecretsOut(t *testing.T) {
	var buf bytes.Buffer
	l := NewRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	l.Printf(context.Background(), "redis: re-authentication failed: %v", errors.New(`provider answered {"access_token": "eyJhbGciOi.secret"}`))
	if strings.Contains(buf.String(), "eyJhbGciOi") || !strings.Contains(buf.String(), "[redacted]") {
		t.Errorf("log line %s; want the token redacted", buf.String())
	}
}

// fakeInfo answers INFO memory with its text, or its error.
type fakeInfo struct {
	text string
	err  error
}

func (f fakeInfo) Info(ctx context.Context, _ ...string) *redis.StringCmd {
	cmd := redis.NewStringCmd(ctx, "info", "memory")
	cmd.SetVal(f.text)
	cmd.SetErr(f.err)
	return cmd
}

// TestCheckEviction: a server with a maxmemory and any policy but
// noeviction may evict backupd's keys; one without a maxmemory, or with
// noeviction, may not; an INFO that cannot be read or lacks the fields
// is an error of its own.
func TestCheckEviction(t *testing.T) {
	info := func(maxMemory, policy string) string {
		return "# Memory\r\nused_memory:1048576\r\nmaxmemory:" + maxMemory + "\r\nmaxmemory_human:4.00M\r\nmaxmemory_policy:" + policy + "\r\n"
	}
	tests := []struct {
		name  string
		info  fakeInfo
		evict bool
		err   bool
	}{
		{"no maxmemory", fakeInfo{text: info("0", "volatile-lru")}, false, false},
		{"noeviction", fakeInfo{text: info("4194304", "noeviction")}, false, false},
		{"volatile-lru", fakeInfo{text: info("4194304", "volatile-lru")}, true, true},
		{"allkeys-lfu", fakeInfo{text: info("4194304", "allkeys-lfu")}, true, true},
		{"volatile-ttl", fakeInfo{text: info("1", "volatile-ttl")}, true, true},
		{"fields missing", fakeInfo{text: "# Memory\r\nused_memory:1\r\n"}, false, true},
		{"policy missing", fakeInfo{text: "# Memory\r\nused_memory:1\r\nmaxmemory:4194304\r\n"}, false, true},
		{"INFO refused", fakeInfo{err: errors.New("NOPERM this user has no permissions to run the 'info' command")}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEviction(t.Context(), tt.info)
			mayEvict, ok := errors.AsType[*MayEvictError](err)
			if ok != tt.evict || (err != nil) != tt.err {
				t.Fatalf("checkEviction = %v; want eviction %v, an error %v", err, tt.evict, tt.err)
			}
			if ok && (!strings.Contains(err.Error(), mayEvict.Policy) || !strings.Contains(err.Error(), "noeviction")) {
				t.Errorf("message %q names neither the policy nor the fix", err)
			}
		})
	}
}

// TestCheckReplicas: a server with fewer replicas connected than asked
// for is reported with both numbers; an INFO that cannot be read, or
// lacks the field, is an error of its own.
func TestCheckReplicas(t *testing.T) {
	info := func(n string, states ...string) string {
		s := "# Replication\r\nrole:master\r\nconnected_slaves:" + n + "\r\n"
		for i, state := range states {
			s += fmt.Sprintf("slave%d:ip=10.0.0.%d,port=6379,state=%s,offset=8191,lag=0\r\n", i, i+2, state)
		}
		return s + "master_failover_state:no-failover\r\n"
	}
	tests := []struct {
		name string
		info fakeInfo
		want int
		few  bool
		err  bool
	}{
		{"enough", fakeInfo{text: info("2", "online", "online")}, 2, false, false},
		{"more", fakeInfo{text: info("3", "online", "online", "online")}, 1, false, false},
		{"too few", fakeInfo{text: info("1", "online")}, 2, true, true},
		{"one still syncing", fakeInfo{text: info("2", "online", "wait_bgsave")}, 2, true, true},
		{"none", fakeInfo{text: info("0")}, 1, true, true},
		{"field missing", fakeInfo{text: "# Replication\r\nrole:master\r\n"}, 1, false, true},
		{"INFO refused", fakeInfo{err: errors.New("NOPERM this user has no permissions to run the 'info' command")}, 1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkReplicas(t.Context(), tt.info, tt.want)
			few, ok := errors.AsType[*FewReplicasError](err)
			if ok != tt.few || (err != nil) != tt.err {
				t.Fatalf("checkReplicas = %v; want too few %v, an error %v", err, tt.few, tt.err)
			}
			if ok && (few.Want != tt.want || !strings.Contains(err.Error(), "wait_replicas is "+strconv.Itoa(tt.want))) {
				t.Errorf("message %q does not name wait_replicas %d", err, tt.want)
			}
		})
	}
}

// TestCheckEvictionReadsARealServer: the test's redis-server, run
// without a maxmemory, evicts nothing, as INFO memory says.
func TestCheckEvictionReadsARealServer(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { client.Close() })
	if err := checkEviction(t.Context(), client); err != nil {
		t.Fatalf("checkEviction of the test's Redis: %v", err)
	}
}

// switchingInfo answers INFO memory with the text set last.
type switchingInfo struct {
	mu       sync.Mutex
	text     string
	readOnly bool // every INFO was asked ReadOnly
	asked    int
}

func (s *switchingInfo) set(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.text = text
}

func (s *switchingInfo) Info(ctx context.Context, _ ...string) *redis.StringCmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	if s.asked == 1 {
		s.readOnly = true
	}
	s.readOnly = s.readOnly && ctx.Value(readOnlyKey{}) != nil
	cmd := redis.NewStringCmd(ctx, "info", "memory")
	cmd.SetVal(s.text)
	if s.text == "" {
		cmd.SetErr(errors.New("i/o timeout"))
	}
	return cmd
}

// TestWatchEvictionReportsAPolicyChangedLater: a policy that may evict,
// set after start, is reported once, and again only after it was undone
// and set once more.
func TestWatchEvictionReportsAPolicyChangedLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const safe, evicting = "maxmemory:4194304\r\nmaxmemory_policy:noeviction\r\n", "maxmemory:4194304\r\nmaxmemory_policy:allkeys-lru\r\n"
		info := &switchingInfo{text: safe}
		var reports []error
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			WatchEviction(ctx, info, time.Minute, func(err error) { reports = append(reports, err) })
		}()
		step := func(text string, want int) {
			t.Helper()
			info.set(text)
			time.Sleep(time.Minute)
			synctest.Wait()
			if len(reports) != want {
				t.Fatalf("%d reports; want %d", len(reports), want)
			}
		}
		step(safe, 0)
		step(evicting, 1)
		step(evicting, 1)
		step(safe, 1)
		step(evicting, 2)
		// A check that fails says nothing: the policy found before stands.
		step("", 2)
		step(evicting, 2)
		if _, ok := errors.AsType[*MayEvictError](reports[1]); !ok {
			t.Errorf("report %v; want a *MayEvictError", reports[1])
		}
		// INFO's answer does not show that Redis serves backupd's writes.
		if !info.readOnly {
			t.Error("INFO asked without ReadOnly: its answers would keep a Redis that refuses writes reported up")
		}
		cancel()
		<-done
	})
}

// TestCheckAccessOfReplicasStartingTogether: replicas that start at once
// check their access each on a key of its own, so that none takes
// another's away and reports a healthy Redis as failing.
func TestCheckAccessOfReplicasStartingTogether(t *testing.T) {
	r := testenv.StartRedis(t, "")
	errs := make(chan error, 50)
	for range cap(errs) {
		go func() { errs <- checkAccess(context.Background(), r.Client, "backupd:") }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("checkAccess = %v", err)
		}
	}
	if keys, err := r.Client.Keys(context.Background(), "backupd:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left behind: %q, %v", keys, err)
	}
}

// failingDel is a Redis client whose DEL fails.
type failingDel struct{ *redis.Client }

func (c failingDel) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return redis.NewIntResult(0, errors.New("i/o timeout"))
}

// TestCheckAccessKeyExpires: the access check's key, left behind when its
// DEL fails, expires within a minute.
func TestCheckAccessKeyExpires(t *testing.T) {
	r := testenv.StartRedis(t, "")
	ctx := context.Background()
	if err := checkAccess(ctx, failingDel{r.Client}, "backupd:"); err == nil || !strings.Contains(err.Error(), "DEL") {
		t.Fatalf("checkAccess with DEL failing: %v; want DEL's failure", err)
	}
	keys, err := r.Client.Keys(ctx, "backupd:access-check:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys left: %v, %v; want the check's", keys, err)
	}
	if ttl, err := r.Client.TTL(ctx, keys[0]).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("the check's key lives %v (%v); want at most a minute", ttl, err)
	}
}

// TestCheckStartOfARedisNotUpYet: a Redis that does not answer at start
// is logged once, and the start goes on: its other checks, which would
// each fail and be logged too, wait for the next start.
func TestCheckStartOfARedisNotUpYet(t *testing.T) {
	cfg := config.Redis{Address: testenv.FreeAddr(t), KeyPrefix: "backupd:"}
	client, _ := clients(t, cfg)
	logs := &testenv.Buffer{}
	if err := CheckStart(context.Background(), client, cfg, slog.New(slog.NewJSONHandler(logs, nil))); err != nil {
		t.Fatalf("CheckStart of a Redis not up: %v; want the start to go on", err)
	}
	if lines := logs.Lines(`"level":"ERROR"`); len(lines) != 1 || !strings.Contains(lines[0], "does not answer yet") {
		t.Errorf("want one line, that Redis does not answer yet; log:\n%s", logs.String())
	}
}

// TestCheckStartOfAnUntrustedCertificate: a Redis whose TLS certificate
// backupd cannot verify (tls_ca_file not set to its CA) fails the start,
// saying so: waiting will not mend it, and every request would be
// refused.
func TestCheckStartOfAnUntrustedCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler()) // a TLS server whose certificate no CA of ours signed
	defer srv.Close()
	cfg := config.Redis{Address: srv.Listener.Addr().String(), KeyPrefix: "backupd:", TLS: true}
	client, _ := clients(t, cfg)
	err := CheckStart(context.Background(), client, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "TLS certificate was not accepted") {
		t.Errorf("CheckStart of a Redis with an untrusted certificate: %v; want the start failed, naming the certificate", err)
	}
}

// deniedTime is a Redis client whose ACL allows every keyed command of
// checkAccess but TIME.
type deniedTime struct{}

func (deniedTime) Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd {
	return redis.NewStatusResult("OK", nil)
}
func (deniedTime) Get(ctx context.Context, key string) *redis.StringCmd {
	return redis.NewStringResult("1", nil)
}
func (deniedTime) Exists(ctx context.Context, keys ...string) *redis.IntCmd {
	return redis.NewIntResult(1, nil)
}
func (deniedTime) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return redis.NewIntResult(1, nil)
}
func (deniedTime) Time(ctx context.Context) *redis.TimeCmd {
	cmd := redis.NewTimeCmd(ctx)
	cmd.SetErr(errors.New("NOPERM this user has no permissions to run the 'time' command"))
	return cmd
}

// TestCheckAccessNamesTIMEWithoutAKey: the start's refusal names the
// command as it was sent, and TIME takes no key: an operator reading
// "TIME backupd:access-check:..." would look for a keyed command.
func TestCheckAccessNamesTIMEWithoutAKey(t *testing.T) {
	err := checkAccess(context.Background(), deniedTime{}, "backupd:")
	if err == nil || !strings.HasPrefix(err.Error(), "TIME: NOPERM") {
		t.Errorf("checkAccess with TIME denied = %v; want it to begin %q", err, "TIME: NOPERM")
	}
}
