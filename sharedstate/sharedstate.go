// Package sharedstate connects backupd to the state its replicas share in
// Redis (the rate limits' turns and the results of requests with a
// request_id), and names the failure to reach it.
package sharedstate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/redact"
)

// NewRedisClients returns the clients of the configured server, made of
// one reading of its options (tls_ca_file included). Both connect
// lazily: a server that is down at start fails requests, not the start.
//
// client serves every command but WAIT. A command of it ends by its
// context's deadline (the request's, or how long a call may wait for its
// turn), not only by the read timeout: a Redis that stalls (stopped, or
// swapping) would otherwise hold a request up to a second past its
// caller's deadline. A command cut off so is an answer lost, as at the
// read timeout: its connection is closed, and backupd treats the command
// as maybe done.
//
// waiter, with wait_replicas only (nil without), runs the commands that
// wait for the replicas (WAIT, up to wait_timeout): its read timeout is
// that much longer, and it has a pool of its own, so that while a replica
// is down, requests waiting for it hold none of the connections that
// every other request's rate-limit turn needs.
func NewRedisClients(c config.Redis) (client, waiter *redis.Client, err error) {
	opts, err := redisOptions(c)
	if err != nil {
		return nil, nil, err
	}
	if c.WaitReplicas > 0 {
		w := *opts
		w.ReadTimeout += c.WaitTimeout
		waiter = redis.NewClient(&w)
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), waiter, nil
}

func redisOptions(c config.Redis) (*redis.Options, error) {
	opts := &redis.Options{
		Addr:         c.Address,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		// A request must not wait on a Redis that is gone: fail fast and
		// let the caller retry. go-redis would otherwise dial five times,
		// 100 ms apart, before failing each request (about 0.8 s).
		MaxRetries:    1,
		DialerRetries: 1,
	}
	if c.TLS {
		// Read by config.Parse: an error here is a Redis built otherwise,
		// whose file cannot be read.
		roots, err := c.RootCAs()
		if err != nil {
			return nil, fmt.Errorf("shared_state.redis.tls_ca_file: %w", err)
		}
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	}
	return opts, nil
}

// UnavailableError says Redis could not be reached or answered an error.
// backupd then cannot tell whether a call is within its account's rate, or
// whether a request_id was seen before, and refuses the request rather than
// guess. It names the operation, never the server's credentials.
type UnavailableError struct {
	// Op is what backupd was doing: OpRateLimit or OpIdempotency.
	Op  string
	Err error
}

// The operations an UnavailableError names.
const (
	OpRateLimit   = "rate limit"
	OpIdempotency = "idempotency"
)

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("shared state (Redis) unavailable for %s: %v", e.Op, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// RetryableError stops the SDK's retryer from repeating an attempt the
// limiter could not admit.
func (e *UnavailableError) RetryableError() bool { return false }

// NotSent says the call was not made: backupd refuses before AWS.
func (e *UnavailableError) NotSent() bool { return true }

// RedisLogger writes go-redis' own messages (a pool that cannot dial,
// say) into backupd's log as warnings, instead of plain text beside its
// JSON lines. go-redis takes it through redis.SetLogger. While Redis is
// down go-redis says the same thing for every request, which would bury
// the log's one line per request: each kind of message (its format) is
// written at most once per interval, and the next one of its kind says
// how many were left out. Make one with NewRedisLogger.
type RedisLogger struct {
	log *slog.Logger
	cap *logcap.Capper
	now func() time.Time
}

// NewRedisLogger returns a RedisLogger that writes each kind of message
// at most once in 10 s, capped by a Capper of caps, for the count of
// those left out at exit.
func NewRedisLogger(log *slog.Logger, caps *logcap.Group) *RedisLogger {
	return &RedisLogger{log: log, cap: caps.New(10 * time.Second), now: time.Now}
}

// Printf is the one method of go-redis' logger interface, so that
// redis.SetLogger takes a RedisLogger. go-redis calls it for events of its
// own, mostly trouble that no command's error shows (a pool that cannot
// dial, a bad connection dropped, a recovered panic). Its messages carry
// no level, so each is logged as a warning, formatted as go-redis formats
// it, with any secret it names taken out (its re-authentication
// messages may quote what a credentials provider gave).
func (l *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := redact.Secrets(fmt.Sprintf(format, v...))
	leftOut, ok := l.cap.Admit(kindOf(format, msg), l.now())
	if !ok {
		return
	}
	l.log.LogAttrs(ctx, slog.LevelWarn, msg, logcap.LeftOut(leftOut)...) // go-redis starts its messages with "redis: "
}

// kindOf is a message's kind: its format, or, for go-redis' messages
// formatted elsewhere and passed as "%s" (its circuit breaker's, its
// maintenance notifications'), their first words, so that one such message
// does not take the others' turn.
func kindOf(format, msg string) string {
	if format != "%s" {
		return format
	}
	const prefix = 40
	if len(msg) > prefix {
		msg = msg[:prefix]
	}
	// Without its digits: a message that names a connection
	// ("conn[1234] ...") is one kind whichever connection it names.
	return format + strings.Map(func(r rune) rune {
		if '0' <= r && r <= '9' {
			return -1
		}
		return r
	}, msg)
}

// Refused reports whether err, from a first command, says Redis refused
// backupd's credentials or database: a mistake in the config that waiting
// will not mend, unlike a server that is not up yet.
func Refused(err error) bool {
	for _, prefix := range []string{"WRONGPASS", "NOAUTH", "NOPERM",
		"Client sent AUTH", // Redis before 6: a password sent to a server with none
		"DB index is out of range", "invalid DB index"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// accessor is what checkAccess asks of a Redis client.
type accessor interface {
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	Get(ctx context.Context, key string) *redis.StringCmd
	Exists(ctx context.Context, keys ...string) *redis.IntCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	Time(ctx context.Context) *redis.TimeCmd
}

// checkAccess runs, on a key of its own under prefix, each plain command
// backupd's requests send (SET, GET, EXISTS, DEL and TIME; the scripts'
// commands are run by the rate limiter's Prime), and returns the first
// failure, naming the command: with Refused, a Redis user whose ACL lacks
// backupd's keys or one of those commands, which would have every request
// refused for as long as backupd runs. The key is this check's own, so
// that replicas starting together do not take each other's away, and
// expires within a minute should its DEL fail.
func checkAccess(ctx context.Context, c accessor, prefix string) error {
	key := prefix + "access-check:" + rand.Text()
	for _, step := range []struct {
		name string // the command as sent: TIME takes no key
		run  func() error
	}{
		{"SET " + key, func() error { return c.Set(ctx, key, "1", time.Minute).Err() }},
		{"GET " + key, func() error { return c.Get(ctx, key).Err() }},
		{"EXISTS " + key, func() error { return c.Exists(ctx, key).Err() }},
		{"DEL " + key, func() error { return c.Del(ctx, key).Err() }},
		{"TIME", func() error { return c.Time(ctx).Err() }},
	} {
		if err := step.run(); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return nil
}

// MayEvictError says the Redis server drops keys when its memory is full:
// it has a maxmemory and an eviction policy other than noeviction. Every
// key backupd keeps there expires, so every one may go, under any such
// policy: a request_id's result, whose repeat would then make a second
// backup, or a turn, which would let calls past the rate, with nothing
// to tell that they went. Under noeviction a full Redis refuses writes
// instead, and backupd refuses requests (UNAVAILABLE) with nothing sent.
type MayEvictError struct {
	Policy    string
	MaxMemory int64 // bytes
}

func (e *MayEvictError) Error() string {
	return fmt.Sprintf("Redis may evict backupd's keys (maxmemory %d bytes, maxmemory-policy %s): an evicted request_id result lets a repeat make a second backup; set maxmemory-policy noeviction",
		e.MaxMemory, e.Policy)
}

// infoReader is what checkEviction asks of a Redis client.
type infoReader interface {
	Info(ctx context.Context, section ...string) *redis.StringCmd
}

// checkEviction reads the server's memory settings (INFO memory) and
// returns a *MayEvictError when it may evict keys. A server without a
// maxmemory evicts none, whatever its policy.
func checkEviction(ctx context.Context, c infoReader) error {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return fmt.Errorf("read Redis' memory settings (INFO memory): %w", err)
	}
	policy, maxMemory := infoField(info, "maxmemory_policy"), infoField(info, "maxmemory")
	n, err := strconv.ParseInt(maxMemory, 10, 64)
	if err != nil || policy == "" {
		return fmt.Errorf("read Redis' memory settings: INFO memory gives maxmemory %q, maxmemory_policy %q", maxMemory, policy)
	}
	if n > 0 && policy != "noeviction" {
		return &MayEvictError{Policy: policy, MaxMemory: n}
	}
	return nil
}

// FewReplicasError says the Redis server has fewer replicas online than
// wait_replicas asks to hold each request_id's claim: until more are,
// requests with a request_id are refused.
type FewReplicasError struct {
	Online, Want int
}

func (e *FewReplicasError) Error() string {
	return fmt.Sprintf("Redis has %d replicas online and shared_state.redis.wait_replicas is %d: requests with a request_id are refused (UNAVAILABLE) until %d hold their claims",
		e.Online, e.Want, e.Want)
}

// checkReplicas reads how many replicas the server streams to (INFO
// replication) and returns a *FewReplicasError when they are fewer than
// want. A replica still syncing is connected but confirms nothing yet, so
// only those online count, as WAIT counts them.
func checkReplicas(ctx context.Context, c infoReader, want int) error {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("read Redis' replicas (INFO replication): %w", err)
	}
	field := infoField(info, "connected_slaves")
	connected, err := strconv.Atoi(field)
	if err != nil {
		return fmt.Errorf("read Redis' replicas: INFO replication gives connected_slaves %q", field)
	}
	online := 0
	for i := range connected {
		if strings.Contains(infoField(info, "slave"+strconv.Itoa(i)), "state=online") {
			online++
		}
	}
	if online < want {
		return &FewReplicasError{Online: online, Want: want}
	}
	return nil
}

// infoField is the value of field in INFO's "field:value" lines, or "".
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// WatchEviction checks the server's memory settings every interval until
// ctx ends, and calls report with a *MayEvictError each time it finds a
// policy that may evict backupd's keys where the check before found
// none: checkEviction at start does not see a policy changed later (an
// operator's CONFIG SET, a managed service's parameter group). A check
// that cannot be made reports nothing; the requests of a Redis that does
// not answer are refused anyway.
func WatchEviction(ctx context.Context, c infoReader, every time.Duration, report func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	evicting := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := checkEviction(ReadOnly(ctx), c)
		_, now := errors.AsType[*MayEvictError](err)
		if now && !evicting {
			report(err)
		}
		if now || err == nil {
			evicting = now
		}
	}
}
