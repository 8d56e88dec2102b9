package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/backupd/backupd/sharedstate"
)

// takeTurn reserves the next free slot of a key, by Redis' own clock (so
// replicas' clocks need not agree), unless it lies beyond ARGV[2], the
// latest slot the caller can wait for, and is not free at once (as Local
// gives a turn with no wait whatever the patience). KEYS[1]: the key's
// next free slot, in µs since the epoch.
//
// KEYS[2], the state marker, never expires. Its value is the time from
// which, for ARGV[4] µs, no slot is given, so that turns replicas took
// before a loss of data pass first. The script reads the server's run_id
// and start time (INFO server):
//   - no marker (a Redis back empty or flushed, or a first start, which
//     cannot be told apart): no turn until ARGV[4] from now, whoever asks
//     first, a replica that never saw the marker too: turns taken before
//     a flush may still be going out;
//   - a run_id other than the one KEYS[3] keeps (a Redis back from a
//     snapshot, or a promoted replica, which keep the marker but may have
//     lost the latest turns): no turn until ARGV[4] from now, as when the
//     restart happened is not known;
//   - the marker gone from the server this replica saw (ARGV[3]) without
//     a restart: likewise from now;
//   - a server whose data is older than what this replica saw: KEYS[5]
//     counts the holds for a loss or a change of server, and a server
//     that counts fewer than ARGV[6] (the count this replica last saw) is
//     one that failed over and was then answering again with the data it
//     had kept (a primary back from a partition, an endpoint flipping
//     back): its run_id is the one its marker keeps, as if nothing had
//     happened, while another server gave the turns since. Likewise from
//     now, and reported.
//
// Every hold from now counts one more than both counts (KEYS[5]), which
// the answer gives back (gen).
//
// A loss is reported (lost) once per server, by the first call that can
// tell: one whose replica saw another server, or that found KEYS[3]
// naming another; KEYS[4] keeps the run_id reported.
//
// ARGV[1]: the spacing between calls, in µs. ARGV[2]: the latest slot the
// caller can wait for, by Redis' clock (µs since the epoch). ARGV[5]: the
// lead, in µs: no slot sooner than that after now, so that the answer
// reaches a replica whose answers are slow to arrive before its turn does.
// Returns {1, delay, lost, run_id, now, held, gen, 0} for a reserved slot
// delay µs from now (Redis' clock, µs since the epoch), {0, delay, lost,
// run_id, now, held, gen, bylead} for a refusal; held is 1 when the marker
// put the slot where it is (for a refusal: or would have, asked for with
// no lead), bylead 1 when a lead alone did: asked for with no lead, the
// slot (the key's queue or now, held as the marker holds it) would have
// been by ARGV[2], or free at once.
var takeTurn = redis.NewScript(takeTurnSource)

const takeTurnSource = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local latest = tonumber(ARGV[2])
local lead = tonumber(ARGV[5])
local mine = ARGV[3]
local info = redis.call('INFO', 'server')
local run = string.match(info, 'run_id:(%w+)') or ''
-- uptime is a difference of whole seconds: the start is taken as the
-- latest it can have been, so that a hold from it is never cut short.
local started = math.min(now, (tonumber(t[1]) - tonumber(string.match(info, 'uptime_in_seconds:(%d+)') or '0') + 1) * 1000000)
local known = redis.call('GET', KEYS[3])
local markv = redis.call('GET', KEYS[2])
local mark = tonumber(markv or '0')
local lost = 0
local gen = tonumber(redis.call('GET', KEYS[5]) or '0')
local seen = tonumber(ARGV[6]) or 0
local other = (known and known ~= run) or (mine ~= '' and mine ~= run)
if other and redis.call('GET', KEYS[4]) ~= run then
  lost = 1
  redis.call('SET', KEYS[4], run)
end
local from = nil
if known and known ~= run then
  from = now
elseif not markv and mine ~= '' and mine == run then
  lost = 1
  from = now
elseif not markv then
  from = now
elseif seen > gen then
  lost = 1
  redis.call('SET', KEYS[4], run)
  from = now
elseif other then
  from = started
end
if from == now then
  gen = math.max(gen, seen) + 1
  redis.call('SET', KEYS[5], gen)
end
if from and from > mark then mark = from end
if not markv or (from and mark == from) then redis.call('SET', KEYS[2], mark) end
if known ~= run then redis.call('SET', KEYS[3], run) end
local queued = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = queued
if slot < now + lead then slot = now + lead end
local held = 0
local holdEnd = mark + tonumber(ARGV[4])
if mark > 0 and slot < holdEnd then slot = holdEnd; held = 1 end
local delay = slot - now
-- A slot free at once is given whatever latest says, as Local gives a
-- turn with no delay: latest keeps a wait off the end of the call's
-- patience (a wake-up late past it), and there is no wait; the lead
-- before the deadline is checked again when the answer arrives.
if slot > latest and delay > 0 then
  -- The slot asked for with no lead: the queue, or now, held back by the
  -- marker as the slot is. Within latest, the lead alone refused the call;
  -- held there beyond latest, the hold did, whatever the lead added.
  local bare = queued
  if bare < now then bare = now end
  if mark > 0 and bare < holdEnd then bare = holdEnd; held = 1 end
  local bylead = 0
  if lead > 0 and (bare <= latest or bare == now) then bylead = 1 end
  return {0, delay, lost, run, now, held, gen, bylead}
end
redis.call('SET', KEYS[1], slot + interval, 'PX', math.floor((delay + interval) / 1000) + 1000)
return {1, delay, lost, run, now, held, gen, 0}
`

// Redis limits calls across every replica that shares one Redis server and
// key prefix: each key's next free slot lives in Redis and is taken
// atomically by a script. It spaces calls like Local, so with the guard no
// one-second window holds more than the rate, whichever replicas send them.
// When Redis cannot be reached it refuses (sharedstate.UnavailableError)
// rather than let calls through unlimited.
//
// A Redis that loses data (restarted from a snapshot or empty, or failed
// over) would hand out turns from what it kept while replicas still wait
// on turns taken before: up to twice the rate for MaxWait. The script
// notices (takeTurn) and gives out no turn until every turn taken before
// can have passed.
type Redis struct {
	policy
	client redis.Scripter
	prefix string
	marker string
	// server is the run_id of the Redis server this replica last took a
	// turn from, or found the marker on at start; nil before.
	server atomic.Pointer[string]
	// gen is the count of holds for a loss or a change of server that
	// Redis last answered with (takeTurn's KEYS[5]): a server counting
	// fewer is one this replica left, answering again with older data.
	gen  atomic.Int64
	lost func()
	// clock places Redis' clock, by which turns are given, against this
	// process's.
	clock redisClock
	// renewal is the exchange placing Redis' clock in flight, nil when
	// none is: calls that find the clock's placing too old or too loose
	// at once (a burst after an idle spell) share it, instead of each
	// asking Redis over its own pooled connection, all of which then
	// wait on each other and on the burst and come back too slowly.
	renewal singleflight.Group
	renewed atomic.Uint64 // exchanges done
}

// placeTries is how many exchanges a call may take part in to place Redis'
// clock before it is refused as too slow: the first after an idle spell
// is timed with the burst that follows it (a pool of connections taken at
// once, a scheduler busy with every other call of the burst), the next
// ones are not.
const placeTries = 3

// NewRedis builds a limiter for every key in opts.Rates whose turns live
// under prefix in client. Turns are given by Redis' clock; opts.Now also
// times each exchange with Redis, which places that clock and so each
// turn: with a real Redis it must be a real clock. lost,
// when not nil, is called when a call finds that Redis lost data,
// restarted or failed over: the request_ids kept there may be lost with
// it.
func NewRedis(client redis.Scripter, prefix string, opts Options, lost func()) *Redis {
	l := &Redis{policy: newPolicy(opts), client: client, prefix: prefix + "ratelimit:", marker: prefix + "state", lost: lost}
	l.clock.maxLead = l.maxWait / 2
	if l.guard > 0 {
		l.clock.stepBound = l.maxUncertainty()
	}
	return l
}

// serverOfMarker is the server's run_id when the state marker (KEYS[1])
// is there, and empty when it is not, with the count of holds (KEYS[2]).
var serverOfMarker = redis.NewScript(`
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', gen} end
return {string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or '', gen}
`)

// Prime looks, at start, for the state marker in Redis: a replica that
// has seen it, and the server it was on, notices a Redis that restarts or
// comes back empty later, even if it has taken no turn before. A marker
// that is not there is left to the first turn to create: this replica
// cannot tell a first start from a Redis that lost its data, but a
// replica that saw the marker can.
func (l *Redis) Prime(ctx context.Context) error {
	// EVAL, not EVALSHA first: a Redis user the ACL denies EVAL would
	// pass while the script is cached, and fail every call once Redis
	// restarts without it.
	res, err := serverOfMarker.Eval(ctx, l.client, []string{l.marker, l.marker + ":gen"}).Slice()
	run, gen, perr := markerAnswer(res)
	if err == nil {
		err = perr
	}
	if err != nil {
		return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: fmt.Errorf("look for the shared state: %w", err)}
	}
	if run != "" {
		l.server.Store(&run)
	}
	// A replica whose first turn comes after a failover back to a server
	// with older data tells it by this count, as one that took turns does.
	l.sawGen(gen)
	// Loaded now, the scripts take one round trip (EVALSHA) from the first
	// call on, and the first calls find Redis' clock placed: an exchange
	// of two round trips would place it no better than a slow link.
	for _, script := range []*redis.Script{takeTurn, redisTime, holdTurns} {
		if err := script.Load(ctx, l.client).Err(); err != nil {
			return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: fmt.Errorf("load the rate-limit scripts: %w", err)}
		}
	}
	// By EVALSHA, as every call takes its turn. A failure here is the
	// first call's to report, but for a user the ACL denies EVALSHA.
	if _, _, err := l.readClock(ctx); sharedstate.Refused(err) {
		return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: err}
	}
	return nil
}

// quarantine is how long after Redis lost data no turn is given: the
// furthest ahead a turn can have been taken, and one spacing more.
func (l *Redis) quarantine(interval time.Duration) time.Duration {
	return l.maxWait + interval
}

// Wait returns when the call for k may go, or a *LimitedError at once when
// its turn lies beyond MaxWait or the context's deadline (or beyond how
// long Redis' clock stays placed within maxUncertainty), a
// *sharedstate.UnavailableError when Redis fails or answers too slowly
// to place turns (placeClock), or an *InterruptedError
// when the context ends while waiting, Redis' answer included. A turn
// given up while waiting is not given back: the rate is then undershot,
// never exceeded.
func (l *Redis) Wait(ctx context.Context, k Key) error {
	interval, ok := l.spacing[k]
	if !ok {
		return fmt.Errorf("ratelimit: no rate configured for %s", k)
	}
	until, err := l.patience(ctx, k, l.now())
	if err != nil {
		return err
	}
	// Redis is asked within the call's patience: a slow Redis, with calls
	// queued for its pooled connections, would keep a refusal waiting
	// several of its answers.
	rctx, cancel := context.WithDeadlineCause(ctx, until.Add(l.guard), errPatienceOver)
	defer cancel()
	for waited := false; ; waited = true {
		t, place, ok, err := l.turn(rctx, k, interval, until)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if !t.granted {
			if t.byLead {
				return l.leadTooLong(k, t.lead)
			}
			return l.refuse(k, t.delay, t.held)
		}
		if again, err := l.goAt(ctx, k, t, place, waited); err != nil || !again {
			return err
		}
	}
}

// turn asks Redis for k's next turn, no later than until, and places
// Redis' clock by the answer. ok is false when the answer cannot be used
// and the turn must be asked for again: Redis' clock stepped, or another
// call found it stepped, while the turn was asked for.
func (l *Redis) turn(rctx context.Context, k Key, interval time.Duration, until time.Time) (t turnAnswer, place sample, ok bool, err error) {
	epoch := l.clock.currentEpoch()
	place, err = l.placeClock(rctx, k, until)
	if err != nil {
		return turnAnswer{}, sample{}, false, err
	}
	asked := l.now()
	uncertainty, lead := place.uncertainty(asked), l.clock.currentLead(asked)
	// The latest turn the call can wait for, by Redis' clock, early by as
	// much as that clock may be off, so as not to be late, and no later
	// than the clock is placed closely enough.
	latest := until
	if l.guard > 0 {
		latest = earliest(until, place.placesUntil(l.maxUncertainty()))
	}
	t, err = l.take(rctx, k, interval, place.redis(latest).Add(-uncertainty), l.leadFor(lead))
	if err != nil {
		return turnAnswer{}, sample{}, false, err
	}
	place, _, stepped := l.clock.observe(asked, l.now(), t.now)
	if stepped {
		// The turns given before the step are still sent when they were
		// due; this one, given by the stepped clock, would be due among
		// them: given up, and every replica holds its turns (holdTurns).
		return turnAnswer{}, sample{}, false, l.hold(rctx, k)
	}
	if off, wait := l.clock.unsettled(epoch); off {
		// Another call found the clock stepped (or another server
		// answering) while this one's turn was asked for, or holds the
		// turns still: the turn, given by the stepped clock before the
		// hold reached Redis, may be due among those given before the
		// step. Given up, once the hold is in.
		if wait != nil {
			select {
			case <-wait:
			case <-rctx.Done():
				return turnAnswer{}, sample{}, false, l.failed(rctx, k, context.Cause(rctx))
			}
		}
		return turnAnswer{}, sample{}, false, nil
	}
	return t, place, true, nil
}

// goAt lets a call go at its granted turn t: at once when the turn is
// due, else once it is. again is true when the turn was missed (Redis'
// answer, or the wait, ended more than the slack after it) and a new one
// must be asked for; waited says an earlier turn of the call was missed.
func (l *Redis) goAt(ctx context.Context, k Key, t turnAnswer, place sample, waited bool) (again bool, err error) {
	due := place.local(t.now.Add(t.delay))
	// The turn, by this process's clock, is off by up to uncertainty
	// either way. Every call goes out from maxUncertainty early to
	// slack+uncertainty late: within half the guard, the other half being
	// for jitter on the way to DynamoDB.
	uncertainty := place.uncertainty(due)
	if l.guard > 0 && uncertainty > l.maxUncertainty() {
		return false, l.tooSlow(k, uncertainty)
	}
	slack := l.guard/2 - l.maxUncertainty() - uncertainty
	if due.After(l.now()) {
		return l.await(ctx, k, due, slack)
	}
	if l.lateBy(due, slack) {
		return true, nil // the answer came after the turn: queue again
	}
	if err := l.tooLate(ctx, k, l.now()); err != nil {
		return false, err
	}
	l.admitted(k, waited)
	return false, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// leadFor is how far ahead to ask for a turn, for answers that arrive lead
// after Redis gave them (the clock caps it at half of MaxWait): none for a
// fast link's, which the turn's slack absorbs.
func (l *Redis) leadFor(lead time.Duration) time.Duration {
	if lead < l.guard/10 {
		return 0
	}
	return lead
}

// maxUncertainty is how far off Redis' clock may be placed for a turn to
// be given: an eighth of the guard. A call then goes out from an eighth of
// the guard early to three eighths late at most (await's slack), half the
// guard in all, and the other half is for the jitter between the turn and
// the call's arrival at DynamoDB.
func (l *Redis) maxUncertainty() time.Duration { return l.guard / 8 }

// placeClock returns Redis' clock placed within maxUncertainty, asking
// Redis its time when no recent exchange placed it so, or when a placing
// over a second old would not last until the call can wait no longer
// (until). A replica whose answers all take too long (a slow link, an
// overloaded Redis) would send its calls off their turns, into other
// replicas' seconds, so it takes no turn and the call is refused, with
// nothing sent and no turn used up.
//
// Calls that find the clock to be placed at once (a burst after an idle
// spell, the placing aged past maxUncertainty) share one exchange
// (renew), and try again, up to placeTries exchanges, when it came back
// too slowly: each asking Redis over a pooled connection of its own, all
// of them waiting on each other and on the burst, they had come back in
// 35 to 160 ms and refused the whole burst, with Redis answering in
// under a millisecond.
func (l *Redis) placeClock(ctx context.Context, k Key, until time.Time) (sample, error) {
	for try := 0; ; try++ {
		seen := l.renewed.Load()
		now := l.now()
		place, uncertainty, latest, ok := l.clock.read(now)
		// A placing over a second old is renewed when it would not last
		// until the call can wait no longer: a turn must not lie past it.
		// Not when Redis was asked its time within the second and that
		// did not place the clock better (its answer queued behind a
		// flood's): asking again at once would place it no better, and
		// the turn is taken within the placing that stands (Wait's
		// latest).
		lasts := now.Sub(place.mid) < time.Second || now.Sub(latest) < time.Second ||
			!place.placesUntil(l.maxUncertainty()).Before(until)
		if ok && (l.guard <= 0 || uncertainty <= l.maxUncertainty() && lasts) {
			return place, nil
		}
		if try == placeTries {
			return sample{}, l.tooSlow(k, uncertainty)
		}
		if err := l.renew(ctx, seen); err != nil {
			return sample{}, l.failed(ctx, k, err)
		}
	}
}

// renewBound bounds an exchange placing Redis' clock, which no call's
// context ends (renew).
const renewBound = 5 * time.Second

// renew places Redis' clock anew: it asks Redis its time, or joins the
// exchange in flight. The exchange runs apart from every call's context,
// so that a call that can wait no longer does not end it for the others;
// each call waits for it within its own. It returns the exchange's
// failure, or the call's context's.
//
// seen is how many exchanges had been done when the call read the clock:
// one done since then has placed it anew, to be read again, not asked
// for once more.
func (l *Redis) renew(ctx context.Context, seen uint64) error {
	ch := l.renewal.DoChan("", func() (any, error) {
		if l.renewed.Load() != seen {
			return nil, nil // placed anew since the caller read the clock
		}
		defer l.renewed.Add(1)
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewBound)
		defer cancel()
		_, _, err := l.readClock(xctx)
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tooSlow refuses a call whose turn cannot be placed within
// maxUncertainty. Nothing was sent.
func (l *Redis) tooSlow(k Key, uncertainty time.Duration) error {
	return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: fmt.Errorf(
		"Redis answers too slowly to place a turn for %s: its clock is known only to within %s, more than the %s a turn may be off",
		k, uncertainty.Round(time.Millisecond), l.maxUncertainty())}
}

// leadTooLong refuses a call whose turn only the lead put beyond its
// patience: Redis' answers have been arriving late, so turns are asked
// for that far ahead. Redis is too slow for the call, as for tooSlow's;
// the account's rate is not used up, and a RetryAfter from the lead,
// which falls only slowly, would not say when a call would pass.
func (l *Redis) leadTooLong(k Key, lead time.Duration) error {
	return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: fmt.Errorf(
		"Redis' answers have been arriving up to %s after it gave them, so a turn for %s is asked for that far ahead, later than the call can wait",
		lead.Round(time.Millisecond), k)}
}

// sawGen takes the count of holds an answer carried. The count only
// grows: an answer read late, from a server this replica has since left
// (sent before a failover), must not lower it, or a failover back to
// that server would not be told by it.
func (l *Redis) sawGen(gen int64) {
	for {
		seen := l.gen.Load()
		if gen <= seen || l.gen.CompareAndSwap(seen, gen) {
			return
		}
	}
}

// readClock asks Redis its time and places its clock by the exchange,
// holding every replica's turns when that clock stepped forward (hold).
func (l *Redis) readClock(ctx context.Context) (sample, time.Duration, error) {
	asked := l.now()
	us, err := redisTime.Run(sharedstate.ReadOnly(ctx), l.client, nil).Int64()
	if err != nil {
		return sample{}, 0, fmt.Errorf("read Redis' clock: %w", err)
	}
	recv := l.now()
	place, uncertainty, stepped := l.clock.observe(asked, recv, time.UnixMicro(us))
	l.clock.renewedAt(recv)
	if stepped {
		err := l.holdTurns(ctx)
		l.clock.held(err == nil)
		if err != nil {
			return sample{}, 0, err
		}
	}
	return place, uncertainty, nil
}

// holdTurns sets the state marker to Redis' time now, unless it marks a
// later time already: takeTurn then gives no turn for the quarantine from
// now, as after a loss of data.
var holdTurns = redis.NewScript(holdTurnsSource)

const holdTurnsSource = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], now) end
return now
`

// holdTurns holds every replica's turns for the quarantine when Redis'
// clock stepped forward. Turns are kept in Redis as times on its clock,
// while each replica sends its calls by its own: the turns given before
// the step are still sent when they were due, and those given after it
// would be placed by the stepped clock, as much sooner, among them.
func (l *Redis) holdTurns(ctx context.Context) error {
	if err := holdTurns.Run(ctx, l.client, []string{l.marker}).Err(); err != nil {
		return fmt.Errorf("hold the turns after Redis' clock stepped forward: %w", err)
	}
	return nil
}

// hold is holdTurns for a call of k, and ends the hold its exchange
// started (redisClock.held) once Redis has answered it. The hold runs
// apart from the call's context, bounded as an exchange placing the clock
// is (renew): the client ends a command by its context's deadline, and a
// hold cut off so, by a call that can wait no longer, would be ended
// (held) before Redis had it, the other calls then taking turns by the
// stepped clock, unheld; or, its context ended before it was written,
// never be sent, and no later exchange would find the step again. The
// call waits for it within its own context. A hold that fails is found
// again by the next exchange (redisClock.held).
func (l *Redis) hold(ctx context.Context, k Key) error {
	done := make(chan error, 1)
	go func() {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewBound)
		defer cancel()
		err := l.holdTurns(hctx)
		l.clock.held(err == nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return l.failed(ctx, k, err)
		}
		return nil
	case <-ctx.Done():
		return l.failed(ctx, k, context.Cause(ctx))
	}
}

// redisTime reads Redis' clock, in µs since the epoch.
var redisTime = redis.NewScript(redisTimeSource)

const redisTimeSource = `
local t = redis.call('TIME')
return tonumber(t[1]) * 1000000 + tonumber(t[2])
`

// take asks Redis for the next turn of k, at least lead from when Redis
// gives it and no later than latest (by Redis' clock), and answers whether
// it was given, how far off it is (or the first one free, when it was
// not) and Redis' clock when Redis answered.
func (l *Redis) take(ctx context.Context, k Key, interval time.Duration, latest time.Time, lead time.Duration) (turnAnswer, error) {
	mine := ""
	if p := l.server.Load(); p != nil {
		mine = *p
	}
	res, err := takeTurn.Run(ctx, l.client, []string{l.prefix + k.String(), l.marker, l.marker + ":run_id", l.marker + ":reported", l.marker + ":gen"},
		interval.Microseconds(), latest.UnixMicro(), mine, l.quarantine(interval).Microseconds(), lead.Microseconds(), l.gen.Load()).Slice()
	t, perr := turn(res)
	if err == nil {
		err = perr
	}
	if err != nil {
		return turnAnswer{}, l.failed(ctx, k, fmt.Errorf("take a turn for %s: %w", k, err))
	}
	l.sawGen(t.gen)
	if t.run != mine {
		l.server.Store(&t.run)
		if mine != "" {
			l.clock.reset() // another server's clock
		}
	}
	if t.lost && l.lost != nil {
		l.lost()
	}
	t.lead = lead
	return t, nil
}

// failed is the error of a call to Redis that failed: the caller's
// deadline when it has passed, Redis otherwise (failing, or not answering
// within the call's patience). Nothing reached AWS.
func (l *Redis) failed(ctx context.Context, k Key, err error) error {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errPatienceOver) {
		return &InterruptedError{Key: k, Err: ctx.Err()}
	}
	return &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: err}
}

// errPatienceOver ends the asking of Redis for a call that can wait no
// longer: Redis too slow, not the caller's deadline.
var errPatienceOver = errors.New("Redis did not answer while the call could wait")

// turnAnswer is takeTurn's answer.
type turnAnswer struct {
	granted, lost bool
	// held says the hold after a loss of data or a step of Redis'
	// clock put the turn where it is.
	held  bool
	delay time.Duration
	run   string
	now   time.Time // Redis' clock
	gen   int64     // the holds for a loss or a change of server, counted
	// lead is how far ahead of Redis' clock the turn was asked for (take).
	lead time.Duration
	// byLead says a refused turn lay beyond the call's patience only
	// because of the lead it was asked with: the key's queue, or a hold,
	// would have given it in time. A turn the queue or a hold put beyond
	// it too is the account's rate's refusal (held or not), whatever the
	// lead added, as a replica without a lead refuses it.
	byLead bool
}

// markerAnswer reads serverOfMarker's answer.
func markerAnswer(res []any) (run string, gen int64, err error) {
	if len(res) != 2 {
		return "", 0, fmt.Errorf("unexpected answer %v", res)
	}
	run, ok1 := res[0].(string)
	gen, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return "", 0, fmt.Errorf("unexpected answer %v", res)
	}
	return run, gen, nil
}

// turn reads takeTurn's answer.
func turn(res []any) (turnAnswer, error) {
	if len(res) != 8 {
		return turnAnswer{}, fmt.Errorf("unexpected answer %v", res)
	}
	granted, ok1 := res[0].(int64)
	us, ok2 := res[1].(int64)
	found, ok3 := res[2].(int64)
	run, ok4 := res[3].(string)
	now, ok5 := res[4].(int64)
	held, ok6 := res[5].(int64)
	gen, ok7 := res[6].(int64)
	byLead, ok8 := res[7].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || !ok8 {
		// Not read as a refusal with no delay, which would have the
		// call ask again at once, over and over.
		return turnAnswer{}, fmt.Errorf("unexpected answer %v", res)
	}
	return turnAnswer{granted: granted == 1, delay: time.Duration(us) * time.Microsecond, lost: found == 1,
		run: run, now: time.UnixMicro(now), held: held == 1, gen: gen, byLead: byLead == 1}, nil
}
