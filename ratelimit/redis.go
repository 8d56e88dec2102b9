package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
)

// takeTurn reserves the next free slot of a key, by Redis' own clock (so
// replicas' clocks need not agree), unless it lies beyond the caller's
// budget. KEYS[1]: the key's next free slot, in µs since the epoch.
// ARGV: the spacing between calls and the budget, in µs. Returns
// {1, delay} for a reserved slot delay µs from now, {0, delay} for a
// refusal.
var takeTurn = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local delay = slot - now
if delay > budget then return {0, delay} end
redis.call('SET', KEYS[1], slot + interval, 'PX', math.floor((delay + interval) / 1000) + 1000)
return {1, delay}
`)

// Redis limits calls across every replica that shares one Redis server and
// key prefix: each key's next free slot lives in Redis and is taken
// atomically by a script. It spaces calls like Local, so with the guard no
// one-second window holds more than the rate, whichever replicas send them.
// When Redis cannot be reached it refuses (sharedstate.UnavailableError)
// rather than let calls through unlimited.
type Redis struct {
	policy
	client redis.Scripter
	prefix string
}

// NewRedis builds a limiter for every key in opts.Rates whose turns live
// under prefix in client. opts.Now is not used: Redis keeps the time.
func NewRedis(client redis.Scripter, prefix string, opts Options) *Redis {
	return &Redis{policy: newPolicy(opts), client: client, prefix: prefix + "ratelimit:"}
}

// Wait returns when the call for k may go, or a *LimitedError at once when
// its turn lies beyond MaxWait or the context's deadline, a
// *sharedstate.UnavailableError when Redis fails, or an *InterruptedError
// when the context ends while waiting, Redis' answer included. A turn given up while waiting is not
// given back: the rate is then undershot, never exceeded.
func (l *Redis) Wait(ctx context.Context, k Key) error {
	interval, ok := l.spacing[k]
	if !ok {
		return fmt.Errorf("ratelimit: no rate configured for %s", k)
	}
	res, err := takeTurn.Run(ctx, l.client, []string{l.prefix + k.String()},
		interval.Microseconds(), l.budget(ctx, time.Now()).Microseconds()).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected answer %v", res)
	}
	if err != nil && ctx.Err() != nil {
		// The caller's deadline, not Redis: nothing reached AWS.
		return &InterruptedError{Key: k, Err: ctx.Err()}
	}
	if err != nil {
		return &sharedstate.UnavailableError{Op: "rate limit", Err: fmt.Errorf("take a turn for %s: %w", k, err)}
	}
	delay := time.Duration(res[1]) * time.Microsecond
	if res[0] == 0 {
		return l.refuse(k, delay)
	}
	if delay == 0 {
		l.observe(k, Admitted)
		return nil
	}
	return l.await(ctx, k, delay)
}
