package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/sharedstate"
)

// State is what the replicas share, or one process keeps: a replica's
// Parts.Limiter and Parts.Results, built on the configured backend, and
// what closes them. A benchmark builds its own.
type State struct {
	Limiter accounts.Limiter
	// Results is nil for the memory backend: New keeps them in the
	// process (Parts.Results).
	Results service.Idempotency
	// Close lets go of the backend's clients and watches, once the
	// servers have stopped.
	Close func()
}

// NewState builds the state on the backend cfg names: for redis, once
// the server has taken backupd's user and its commands
// (sharedstate.CheckStart), its reachability reported to m.
func NewState(ctx context.Context, cfg *config.Config, m *metrics.Metrics, logger *slog.Logger) (State, error) {
	opts := LimiterOptions(cfg, m)
	if cfg.SharedState.Backend != config.BackendRedis {
		// No results: New keeps them in this process.
		return State{Limiter: ratelimit.NewLocal(opts), Close: func() {}}, nil
	}
	return redisState(ctx, cfg, opts, m, logger)
}

// redisState builds the state the replicas share in Redis, once the
// server has taken backupd's user and its commands
// (sharedstate.CheckStart).
func redisState(ctx context.Context, cfg *config.Config, opts ratelimit.Options, m *metrics.Metrics, logger *slog.Logger) (State, error) {
	rc := cfg.SharedState.Redis
	client, waiter, err := sharedstate.NewRedisClients(rc)
	if err != nil {
		return State{}, err
	}
	// Before the start's checks, whose first answer, or none, it takes.
	reach := sharedstate.NewReachability(logger, m.SharedStateUp())
	reach.ProbeWith(func(ctx context.Context) error { return client.Ping(ctx).Err() })
	reach.ProbeWritesWith(func(ctx context.Context) error {
		return client.Set(ctx, rc.KeyPrefix+"reachability", "1", time.Minute).Err()
	})
	client.AddHook(reach)
	if waiter != nil {
		waiter.AddHook(reach)
	}
	closeClients := func() {
		_ = client.Close()
		if waiter != nil {
			_ = waiter.Close()
		}
	}
	if err := sharedstate.CheckStart(ctx, client, rc, logger); err != nil {
		closeClients()
		return State{}, err
	}
	logger.Info("shared state in Redis", slog.String("address", rc.Address), slog.String("key_prefix", rc.KeyPrefix),
		slog.Bool("tls", rc.TLS), slog.String("username", rc.Username))
	lost := func() {
		logger.Error("shared state: Redis restarted, failed over or lost backupd's data: no rate-limit turn is given for max_wait, " +
			"and the latest request_id results it held may be gone, so repeats of those requests may run again")
	}
	limiter := ratelimit.NewRedis(client, rc.KeyPrefix, opts, lost)
	primeCtx, cancelPrime := context.WithTimeout(ctx, 3*time.Second) // its own 3 s, whatever the ping took
	defer cancelPrime()
	if err := limiter.Prime(primeCtx); sharedstate.Refused(err) {
		closeClients()
		return State{}, fmt.Errorf("shared_state.redis: Redis refuses backupd's user the rate limiter's scripts "+
			"(its ACL needs EVAL, EVALSHA and SCRIPT, and the keys ~%s*): %w", rc.KeyPrefix, err)
	} else if err != nil {
		logger.Warn("shared state: not marked yet", slog.String("error", redact.Error(err)))
	}
	results := idempotency.NewRedis(client, rc.KeyPrefix, requestIDLease(cfg.UpstreamTimeout), logger)
	if waiter != nil {
		results.ConfirmOnReplicas(waiter, rc.WaitReplicas, rc.WaitTimeout)
	}
	stopWatch := watchEviction(ctx, client, logger)
	return State{Limiter: limiter, Results: results,
		Close: func() {
			stopWatch() // before the client it reads through closes
			closeClients()
		}}, nil
}

// watchEviction logs, from now until stop returns, each time Redis'
// memory settings come to allow evicting backupd's keys.
func watchEviction(ctx context.Context, client *redis.Client, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		sharedstate.WatchEviction(ctx, client, evictionCheckEvery, func(err error) {
			logger.Error("shared state: Redis may now evict backupd's keys, and with them request_id results (a repeat would make a second backup) and rate-limit turns",
				slog.String("error", redact.Error(err)))
		})
	}()
	return func() {
		cancel()
		<-watched
	}
}

// evictionCheckEvery is how often backupd reads Redis' memory settings
// again after start, for a policy changed since.
const evictionCheckEvery = time.Minute

// requestIDLease is how long a request_id claim in Redis holds off
// repeats: twice upstream_timeout, which bounds a run, and at least a
// minute, saturating rather than overflowing for an upstream_timeout
// past half of time.Duration's range, which config accepts: the run ends
// a second before the lease, and an overflowed lease of 1 min would cut
// every run at 59 s.
func requestIDLease(upstreamTimeout time.Duration) time.Duration {
	if upstreamTimeout > math.MaxInt64/2 {
		return math.MaxInt64
	}
	return max(2*upstreamTimeout, time.Minute)
}
