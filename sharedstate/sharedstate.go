// Package sharedstate connects backupd to the state its replicas share in
// Redis (the rate limits' turns and the results of requests with a
// request_id), and names the failure to reach it.
package sharedstate

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
)

// NewRedisClient returns a client of the configured server. It connects
// lazily: a server that is down at start fails requests, not the start.
// restarts, when not nil, hears the server's run_id on every new
// connection.
func NewRedisClient(c config.Redis, restarts *Restarts) *redis.Client {
	opts := &redis.Options{
		Addr:         c.Address,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		// A request must not wait on a Redis that is gone: fail fast and
		// let the caller retry.
		MaxRetries: 1,
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if restarts != nil {
		opts.OnConnect = restarts.onConnect
	}
	return redis.NewClient(opts)
}

// Restarts notices that the Redis server restarted or failed over, by its
// run_id, which changes on every start and differs on a promoted replica.
// What the server then holds may be older than what the replicas saw: a
// restart from a snapshot, or from an append-only file that had not synced
// its last second, or an asynchronous replica, all lose the latest writes,
// which are the rate limits' latest turns and the newest request_ids.
type Restarts struct {
	mu      sync.Mutex
	runID   string
	pending atomic.Bool
}

// onConnect reads the server's run_id on a new connection. A server that
// does not answer INFO (an ACL that forbids it) is not watched.
func (r *Restarts) onConnect(ctx context.Context, cn *redis.Conn) error {
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return nil
	}
	r.saw(runID(info))
	return nil
}

// saw records the run_id of a connection's server.
func (r *Restarts) saw(id string) {
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runID != "" && id != r.runID {
		r.pending.Store(true)
	}
	r.runID = id
}

// RunID is the server's run_id as last read; empty until a connection
// read it.
func (r *Restarts) RunID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runID
}

// Take reports a restart seen since the last Take, once.
func (r *Restarts) Take() bool { return r.pending.CompareAndSwap(true, false) }

// Again puts back a restart that was taken but could not be acted on.
func (r *Restarts) Again() { r.pending.Store(true) }

// runID finds the run_id line of INFO server's answer.
func runID(info string) string {
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return id
		}
	}
	return ""
}

// UnavailableError says Redis could not be reached or answered an error.
// backupd then cannot tell whether a call is within its account's rate, or
// whether a request_id was seen before, and refuses the request rather than
// guess. It names the operation, never the server's credentials.
type UnavailableError struct {
	// Op is what backupd was doing: "rate limit", "idempotency".
	Op  string
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("shared state (Redis) unavailable for %s: %v", e.Op, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// RetryableError stops the SDK's retryer from repeating an attempt the
// limiter could not admit.
func (e *UnavailableError) RetryableError() bool { return false }

// RedisLogger writes go-redis' own messages (a pool that cannot dial,
// say) into backupd's log as warnings, instead of plain text beside its
// JSON lines. go-redis takes it through redis.SetLogger.
type RedisLogger struct {
	Log *slog.Logger
}

func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.Log.WarnContext(ctx, fmt.Sprintf(format, v...)) // go-redis starts its messages with "redis: "
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
