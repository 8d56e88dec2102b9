package idempotency

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/sharedstate"
)

// OutcomeUnknownError answers a repeat whose first request may or may not
// have been done: it ended with an unknown outcome, or the replica running
// it stopped before it finished. Running it again could do it twice.
type OutcomeUnknownError struct {
	Key Key
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("the first request with request_id %q in account %s may or may not have been done; "+
		"check (ListBackups and GetBackup for a CreateBackup; the target table, with DynamoDB's DescribeTable, for a restore) before trying again with a new request_id", e.Key.RequestID, e.Key.Account)
}

// Redis keeps results in Redis, shared by every replica that names the same
// server and key prefix, so a repeat may reach any replica. A request is
// claimed by a script that sets its key where nothing stands
// (claimScript), done only if Redis gets to it within claimWithin; the
// claim holds a lease for as long as a run may take. A repeat that finds a
// claim whose lease ran out, because the replica running it stopped, gets
// OutcomeUnknownError, never a second run. When Redis cannot be reached,
// Do refuses with a sharedstate.UnavailableError rather than risk running
// twice.
type Redis struct {
	client redis.Cmdable
	prefix string
	ttl    time.Duration
	lease  time.Duration
	log    *slog.Logger
	// settleTimeout bounds one try to settle a claim once its run has ended.
	settleTimeout time.Duration
	// settleFor is how long a claim that Redis failed to settle or drop
	// is tried again, at least until its lease ends (keepTrying).
	settleFor time.Duration
	// settling is the results being kept in the background (settle),
	// forgetting the claims of runs that did nothing being dropped there,
	// dropping the failed claims being dropped (dropLater).
	settling, forgetting, dropping Going
	// drops holds a token for each claim being dropped.
	drops chan struct{}
	// claimWithin is how long after it is sent, by Redis' clock, a claim
	// may still be done (claim).
	claimWithin time.Duration
	// clock is what this replica last saw of Redis' clock.
	clock redisClock
	// replicas, when above 0, is how many of the server's replicas must
	// hold a claim before its request runs (ConfirmOnReplicas), asked by
	// waiter, up to replicaWait each time.
	replicas    int
	replicaWait time.Duration
	waiter      redis.Cmdable
}

// claimWithin bounds when Redis may still do a claim: a claim queued in a
// stalled Redis, or on a link that stopped, could otherwise be done long
// after its caller was told nothing was sent, and stand, unrun, for 24
// hours, its repeats told the outcome is unknown. Commands answer within a
// second or two, or fail.
const claimWithin = 3 * time.Second

// NewRedis returns a store under prefix in client whose results live for
// TTL; lease bounds how long a run may take before repeats stop waiting
// for it. log hears of results that could not be kept.
func NewRedis(client redis.Cmdable, prefix string, lease time.Duration, log *slog.Logger) *Redis {
	return &Redis{client: client, prefix: prefix + "idempotency:", ttl: TTL, lease: lease, log: log, settleTimeout: 5 * time.Second, settleFor: settleFor,
		drops: make(chan struct{}, maxDrops), claimWithin: claimWithin}
}

// ConfirmOnReplicas makes s run a request only once n of the Redis
// server's replicas hold its claim, as Redis' WAIT tells within wait, and
// log a result they do not confirm in time. Redis sends writes to its
// replicas after it has answered them, so without this a failover to a
// replica loses the claims and results of its last moments, and repeats
// of those requests run again. A claim not confirmed is dropped and its
// request refused (UNAVAILABLE), nothing sent. waiter reaches the same
// server as s's client, with a read timeout longer than wait. Call it
// before the first Do.
func (s *Redis) ConfirmOnReplicas(waiter redis.Cmdable, n int, wait time.Duration) {
	s.waiter, s.replicas, s.replicaWait = waiter, n, wait
}

// unconfirmedError says Redis' replicas did not confirm a claim in time.
type unconfirmedError struct {
	acked, want int64
	wait        time.Duration
	err         error // WAIT's own failure, if any
}

func (e *unconfirmedError) Error() string {
	msg := fmt.Sprintf("%d of the %d Redis replicas that must hold a request_id's claim before its request runs (shared_state.redis.wait_replicas) confirmed it within %s", e.acked, e.want, e.wait)
	if e.err != nil {
		msg += fmt.Sprintf(" (WAIT: %v)", e.err)
	}
	return msg
}

// runConfirmed runs script and then WAIT in one pipeline, on one
// connection, so that WAIT counts the replicas that hold what the script
// wrote. It answers the script's command and how many replicas
// confirmed within wait, or WAIT's error beside the count 0. WAIT ends by
// ctx's deadline: the client does not heed it (no ContextTimeoutEnabled),
// and a request whose caller has gone would otherwise hold its
// connection, and its answer, for the whole wait_timeout.
func (s *Redis) runConfirmed(ctx context.Context, script *redis.Script, keys []string, args ...any) (ran *redis.Cmd, n int64, wait time.Duration, err error) {
	wait = s.replicaWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline))
	}
	wait = max(wait.Truncate(time.Millisecond), time.Millisecond) // WAIT takes ms, and 0 waits for ever
	var acked *redis.Cmd
	_, _ = s.waiter.Pipelined(ctx, func(p redis.Pipeliner) error {
		ran = script.Eval(ctx, p, keys, args...)
		// Pipeliner has no Wait method: WAIT numreplicas timeout-in-ms.
		acked = p.Do(ctx, "wait", s.replicas, wait.Milliseconds())
		return nil
	})
	n, err = acked.Int64()
	return ran, n, wait, err
}

// redisClock follows Redis' clock from the times its scripts answer with,
// so that a deadline for Redis is set by Redis' clock, whatever this
// host's says.
type redisClock struct {
	mu    sync.Mutex
	redis time.Time // Redis' time when last seen
	local time.Time // this replica's, with its monotonic reading, then
}

// now is Redis' time now, as far as this replica can tell: ok is false
// before it has seen Redis' clock.
func (c *redisClock) now() (t time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.local.IsZero() {
		return time.Time{}, false
	}
	return c.redis.Add(time.Since(c.local)), true
}

func (c *redisClock) saw(redisNow time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.redis, c.local = redisNow, time.Now()
}

// claimScript sets the claim (ARGV[1], for ARGV[2] ms) where no record
// stands, unless Redis' clock has passed ARGV[3] (Unix ms): one step, as
// SET NX is, and a claim Redis gets to too late is not
// done. It answers what it did (a claim… constant) and Redis' time in ms,
// and, when it found another request's record, that record. A key found is
// answered however late: it may be this call's own claim (owner ARGV[4]),
// done in time by a first send whose answer was lost and resent, which Do
// must then lead. A running claim of the same request (fingerprint
// ARGV[5]) whose lease is over by Redis' clock is made an unknown outcome
// for good, in the same step (see claimMarked).
var claimScript = redis.NewScript(claimScriptSource)

// redisNowMs sets the Lua variable now to Redis' time in ms, which the
// scripts answer with, for redisClock.
const redisNowMs = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

const claimScriptSource = redisNowMs + `
local v = redis.call('GET', KEYS[1])
if v then
  local read, r = pcall(cjson.decode, v)
  if not read or type(r) ~= 'table' then return {0, now, v} end
  if r['owner'] == ARGV[4] then return {2, now} end
  local lease = tonumber(r['lease_until'])
  if not r['done'] and r['fp'] == ARGV[5] and lease and now > lease then
    redis.call('SET', KEYS[1], cjson.encode({done = true, fp = r['fp'], unknown = true}), 'KEEPTTL')
    return {3, now}
  end
  return {0, now, v}
end
if now > tonumber(ARGV[3]) then return {-1, now} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, now}
`

// What the claim script did.
const (
	claimLate  = -1 // Redis' clock had passed the claim's time: nothing done
	claimFound = 0  // another request's record stands; the script answers it
	claimSet   = 1  // the claim is set
	claimOwn   = 2  // the claim is this call's own, set by an earlier send
	// claimMarked: a claim of the same request whose lease had run out
	// (the replica running it stopped, or was cut off from Redis) is now
	// an unknown outcome with no owner, before the repeat is told so. Its
	// owner may yet settle or drop it (keepTrying), and a request_id
	// answered OUTCOME_UNKNOWN must not run later, after its caller has
	// made the backup again under another request_id: the record's owner
	// being gone, those late tries leave it alone.
	claimMarked = 3
)

// errClaimLate says Redis got to a claim only after its time: it was not
// done.
var errClaimLate = errors.New("Redis did the claim only after its time, so not at all: Redis stalled, or was slow to answer")

// redisNow is Redis' time now, asked of Redis the first time.
func (s *Redis) redisNow(ctx context.Context) (time.Time, error) {
	if t, ok := s.clock.now(); ok {
		return t, nil
	}
	t, err := s.client.Time(sharedstate.ReadOnly(ctx)).Result()
	if err != nil {
		return time.Time{}, err
	}
	s.clock.saw(t)
	return t, nil
}

// claim runs the claim script for c with its record, if Redis gets to
// it by c.by, by Redis' clock, and answers what the script did and the
// record it found.
func (s *Redis) claim(ctx context.Context, c claimed, rec []byte) (did int64, found []byte, err error) {
	keys, args := []string{c.k}, []any{rec, s.ttl.Milliseconds(), c.by, c.owner, c.fp}
	var ran *redis.Cmd
	var acked int64
	var waited time.Duration
	var waitErr error
	if s.replicas > 0 {
		ran, acked, waited, waitErr = s.runConfirmed(ctx, claimScript, keys, args...)
	} else {
		ran = claimScript.Run(ctx, s.client, keys, args...)
	}
	res, err := ran.Slice()
	if err != nil {
		return 0, nil, err
	}
	did, now, found, err := claimAnswer(res)
	if err != nil {
		return 0, nil, err
	}
	s.clock.saw(time.UnixMilli(now))
	switch {
	case did == claimLate:
		return 0, nil, errClaimLate
	case (did == claimSet || did == claimOwn) && acked < int64(s.replicas):
		return 0, nil, &unconfirmedError{acked: acked, want: int64(s.replicas), wait: waited, err: waitErr}
	}
	return did, found, nil
}

// claimAnswer reads the claim script's answer.
func claimAnswer(res []any) (did, now int64, found []byte, err error) {
	if len(res) < 2 || len(res) > 3 {
		return 0, 0, nil, fmt.Errorf("claim script answered %v", res)
	}
	did, ok1 := res[0].(int64)
	now, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return 0, 0, nil, fmt.Errorf("claim script answered %v", res)
	}
	if did != claimFound {
		return did, now, nil, nil
	}
	if len(res) != 3 {
		return 0, 0, nil, fmt.Errorf("claim script found a record and answered %v", res)
	}
	v, ok := res[2].(string)
	if !ok {
		return 0, 0, nil, fmt.Errorf("claim script found a record and answered %v", res)
	}
	return did, now, []byte(v), nil
}

// record is what Redis holds for one request.
type record struct {
	Done        bool   `json:"done"`
	Fingerprint string `json:"fp"`
	// Owner and LeaseUntil (Unix ms by Redis' clock, which every replica
	// follows, whatever its own says) belong to a running claim.
	Owner      string `json:"owner,omitempty"`
	LeaseUntil int64  `json:"lease_until,omitempty"`
	// Response is a done request's response; Unknown marks one that ended
	// with a Final error.
	Response []byte `json:"resp,omitempty"`
	Unknown  bool   `json:"unknown,omitempty"`
}

// settle replaces (ARGV[2] not empty) or deletes a claim, if ARGV[1] still
// owns it, and answers 1 when it did, or an earlier try whose answer was
// lost did; otherwise 2 when the record is an unknown outcome (a repeat
// past the lease made it so), and 0 for another run's claim or result. A result is also kept when the claim is gone: Redis lost it
// (restarted empty, flushed) while the request ran, and repeats that come
// once it has ended should find its result, not run it again.
var settle = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[2] then return 1 end
if v then
  local read, r = pcall(cjson.decode, v)
  if not read or type(r) ~= 'table' then return 0 end
  if r['owner'] ~= ARGV[1] then
    if r['done'] and r['unknown'] and not r['resp'] then return 2 end
    return 0
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
if not v then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// Do is Memory.Do across replicas; see Memory.Do. A Final error is kept as
// an OutcomeUnknownError for repeats.
func (s *Redis) Do(ctx context.Context, key Key, fp Fingerprint, run func(until time.Time) ([]byte, error)) ([]byte, error) {
	want := hex.EncodeToString(fp[:])
	pause := 10 * time.Millisecond
	for {
		mine, did, found, err := s.tryClaim(ctx, key, want)
		if err != nil {
			return nil, err
		}
		then, resp, err := judge(mine, did, found)
		switch then {
		case answer:
			return resp, err
		case leadOwn:
			return s.lead(ctx, mine, run)
		}
		waiting(ctx)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, &WaitEndedError{Key: key, Err: ctx.Err()}
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// tryClaim claims key for a run of the request whose fingerprint is want,
// and says what the claim did and the record it found, if any.
func (s *Redis) tryClaim(ctx context.Context, key Key, want string) (mine claimed, did int64, found []byte, err error) {
	redisNow, err := s.redisNow(ctx)
	if err != nil {
		return claimed{}, 0, nil, unavailable(ctx, err)
	}
	mine = claimed{key: key, k: s.prefix + key.Account + ":" + key.RequestID, owner: rand.Text(), fp: want,
		leaseUntil: time.Now().Add(s.lease), by: redisNow.Add(s.claimWithin).UnixMilli()}
	rec, _ := json.Marshal(record{Fingerprint: want, Owner: mine.owner, LeaseUntil: redisNow.Add(s.lease).UnixMilli()})
	did, found, err = s.claim(ctx, mine, rec)
	if err != nil {
		// Any send of the claim may have been done, however the last
		// failed (go-redis resends a command whose answer timed out, and
		// the resend may find no connection), unless Redis said it came
		// too late.
		if !errors.Is(err, errClaimLate) {
			s.dropLater(mine)
		}
		return mine, 0, nil, unavailable(ctx, err)
	}
	return mine, did, found, nil
}

// then is what Do does with what a claim did.
type then int

const (
	answer  then = iota // answer with judge's response and error
	leadOwn             // run the request under its own claim
	waitFor             // another replica runs the request: wait for it
)

// judge says what to do with what mine's claim did and the record it
// found.
func judge(mine claimed, did int64, found []byte) (then, []byte, error) {
	switch did {
	case claimSet, claimOwn:
		return leadOwn, nil, nil
	case claimMarked:
		return answer, nil, &OutcomeUnknownError{Key: mine.key}
	}
	var r record
	if err := json.Unmarshal(found, &r); err != nil {
		return answer, nil, &sharedstate.UnavailableError{Op: sharedstate.OpIdempotency, Err: fmt.Errorf("unreadable record: %w", err)}
	}
	switch {
	case r.Fingerprint != mine.fp:
		return answer, nil, &ConflictError{Key: mine.key}
	case r.Done && r.Unknown:
		return answer, nil, &OutcomeUnknownError{Key: mine.key}
	case r.Done:
		return answer, r.Response, nil
	}
	return waitFor, nil, nil
}

// leaseMargin is how long before its claim's lease a run must have ended:
// a repeat finds the lease over by Redis' clock, which this replica
// follows to within milliseconds, and this replica's clock may run a
// little slower than Redis' over the lease.
const leaseMargin = time.Second

// claimed is a claim this replica holds.
type claimed struct {
	key        Key
	k, owner   string
	fp         string
	leaseUntil time.Time
	// by is when, by Redis' clock (Unix ms), Redis may last do the claim.
	by int64
}

// lead runs the request it claimed, to end before the claim's lease
// does (counted from before the claim was sent, whatever stalled this
// process since), and settles the claim: the response, or
// the Final error, is kept; another error drops the claim so a repeat runs
// again. If run panics the claim is kept as an unknown outcome, as Memory
// keeps it.
func (s *Redis) lead(ctx context.Context, c claimed, run func(time.Time) ([]byte, error)) (resp []byte, err error) {
	settled := false
	defer func() {
		if !settled {
			b, _ := json.Marshal(record{Done: true, Fingerprint: c.fp, Unknown: true})
			s.settle(ctx, c, string(b))
		}
	}()
	resp, err = run(c.leaseUntil.Add(-leaseMargin))
	kept, final, err := outcome(err)
	next := ""
	if kept {
		b, _ := json.Marshal(record{Done: true, Fingerprint: c.fp, Response: resp, Unknown: final})
		next = string(b)
	}
	s.settle(ctx, c, next)
	settled = true
	return resp, err
}

// settle replaces the claim c with next, or drops it when next is empty.
// It runs even when the caller has gone, the result being for its retry.
// When Redis fails it goes on trying in the background, without holding
// up the answer (keepTrying): until the claim's lease ends repeats wait
// for it, and after that they make it an unknown outcome, which a later
// try then leaves alone (refused).
func (s *Redis) settle(ctx context.Context, c claimed, next string) {
	ctx = context.WithoutCancel(ctx)
	outcome, err := s.trySettle(ctx, c, next)
	if err == nil {
		s.refused(c.key, next, outcome)
		return
	}
	going, forget := &s.settling, next == ""
	if forget {
		going = &s.forgetting
	}
	going.Add(c.key)
	go func() {
		defer going.Done(c.key)
		if s.keepTrying(c, 100*time.Millisecond, func() bool { outcome, err = s.trySettle(ctx, c, next); return err == nil }) {
			s.refused(c.key, next, outcome)
			return
		}
		s.unkept(c.key, forget, err.Error())
	}()
}

// refused logs a result (next) that backupd held and Redis did not keep,
// as the settle script's outcome says: a repeat past the claim's lease had
// made the record an unknown outcome first, and was told so; or Redis lost
// the claim (restarted empty, flushed) and holds another run's claim or
// result, which repeats answer with, and the request may have run twice.
// This line is where to find what was done. A forget refused is logged
// only when a repeat made the record an unknown outcome first: the run
// did nothing, but repeats answer OUTCOME_UNKNOWN for 24 h rather than
// run it again, and this line is where to find that nothing was done.
// Otherwise the claim is gone, or another run's stands, and repeats run
// or get that one's answer, as the run's caller was told.
func (s *Redis) refused(k Key, next string, outcome int) {
	var msg string
	switch {
	case outcome == settled:
		return
	case next == "" && outcome == settledUnknown:
		msg = "request_id: the claim of a run that did nothing was not dropped, as a repeat past the claim's lease had been told OUTCOME_UNKNOWN first; repeats answer so until its 24 h end (unless Redis loses its data: then a repeat runs it again), though nothing was done"
	case next == "":
		return
	case outcome == settledUnknown:
		msg = "request_id: the result was not kept, as a repeat past the claim's lease had been told OUTCOME_UNKNOWN first; repeats answer so until its 24 h end (unless Redis loses its data: then a repeat runs it again)"
	default:
		msg = "request_id: the result was not kept, as Redis holds another run's claim or result (it lost this run's claim): repeats answer with that one, and the request may have run twice"
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, msg,
		slog.String("account", k.Account), slog.String("request_id", k.RequestID))
}

// unkept logs a claim that Redis did not settle, as far as backupd knows:
// its request_id answers OUTCOME_UNKNOWN until its 24 h end, whether the
// run's result was to be kept, or the run did nothing and its claim was to
// be dropped (forget).
func (s *Redis) unkept(k Key, forget bool, why string) {
	// Redis may have done the last try whose answer was lost: say "unless".
	msg := "request_id: Redis failed while the result was kept; unless its last try was done, repeats answer OUTCOME_UNKNOWN until its 24 h end (unless Redis loses its data: then a repeat runs it again)"
	if forget {
		msg = "request_id: Redis failed while the claim of a request that did nothing was dropped; " +
			"unless its last try was done, repeats answer OUTCOME_UNKNOWN until its 24 h end (unless Redis loses its data: then a repeat runs it again)"
	}
	s.log.LogAttrs(context.Background(), slog.LevelError, msg,
		slog.String("account", k.Account), slog.String("request_id", k.RequestID), slog.String("error", why))
}

// settleFor is how long a replica goes on trying to settle or drop a claim
// that Redis failed: long enough to outlast a network partition or a
// Redis failover, short enough that a replica does not hold thousands of
// tries for hours.
const settleFor = 10 * time.Minute

// maxDrops bounds the claims being dropped at once (dropLater): while Redis
// stalls, or its answers are lost, every request's claim fails. A drop
// ends once Redis answers it, within claimWithin of its failure, unless
// Redis stays away.
const maxDrops = 4096

// dropScript deletes a claim if ARGV[1] still owns it, and answers whether
// it did (1, else 0) and Redis' time in ms.
var dropScript = redis.NewScript(redisNowMs + `
local v = redis.call('GET', KEYS[1])
if not v then return {0, now} end
local read, r = pcall(cjson.decode, v)
if read and type(r) == 'table' and r['owner'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1, now}
end
return {0, now}
`)

// dropLater drops the claim c whose claim failed, in the background. The
// caller was told nothing was sent and to retry, and the retry must not
// find the claim: it would wait out the lease and then be told the
// outcome is unknown for 24 hours, though nothing ran. Redis may do the
// claim late (it was stalled with the command queued), but not after c.by
// (the claim script then does nothing), so the drop is tried until it
// deletes the claim or finds Redis' clock past c.by, for as long as
// keepTrying allows. A repeat that made the claim an unknown outcome
// first, past its lease, wins: the drop leaves its record alone.
// The claim carries an owner token of its own, so no other request's
// claim is touched. Drops beyond maxDrops, and those left at shutdown, are
// given up: such a claim ends as OUTCOME_UNKNOWN, safe if not true.
func (s *Redis) dropLater(c claimed) {
	select {
	case s.drops <- struct{}{}:
	default:
		s.givenUp(c.key, fmt.Sprintf("%d failed claims are being dropped already", maxDrops))
		return
	}
	s.dropping.Add(c.key)
	go func() {
		defer func() {
			s.dropping.Done(c.key)
			<-s.drops
		}()
		dropped := s.keepTrying(c, 50*time.Millisecond, func() bool {
			// A drop that finds nothing to delete is answered by a Redis
			// that refuses every write: not a sign that it serves.
			ctx, cancel := context.WithTimeout(sharedstate.ReadOnly(context.Background()), s.settleTimeout)
			defer cancel()
			res, err := dropScript.Run(ctx, s.client, []string{c.k}, c.owner).Int64Slice()
			return err == nil && len(res) == 2 && (res[0] == 1 || res[1] > c.by)
		})
		if !dropped {
			s.givenUp(c.key, "Redis did not drop the claim, or answer that it could not be done, before backupd gave up trying")
		}
	}()
}

// givenUp logs a failed claim whose drop was given up: if Redis did it,
// its request_id answers OUTCOME_UNKNOWN until its 24 h end, though its
// caller was told nothing was sent, and this line is where to find why.
func (s *Redis) givenUp(k Key, why string) {
	s.log.LogAttrs(context.Background(), slog.LevelWarn,
		"request_id: a failed claim was not dropped; if Redis did it, repeats answer OUTCOME_UNKNOWN until its 24 h end (unless Redis loses its data: then a repeat runs it again)",
		slog.String("account", k.Account), slog.String("request_id", k.RequestID), slog.String("why", why))
}

// keepTrying calls try after pause, then after pauses doubling to 2 s,
// until it succeeds, or until c's lease and settleFor from now have both
// run out, and reports whether it succeeded. Settling or dropping a claim
// after its lease is safe, and better than leaving it: repeats then get
// the result, or run, instead of OUTCOME_UNKNOWN for 24 hours (a replica
// cut off from Redis for longer than the lease, say).
func (s *Redis) keepTrying(c claimed, pause time.Duration, try func() bool) bool {
	until := time.Now().Add(s.settleFor)
	if c.leaseUntil.After(until) {
		until = c.leaseUntil
	}
	for ; time.Now().Add(pause).Before(until); pause = min(2*pause, 2*time.Second) {
		time.Sleep(pause)
		if try() {
			return true
		}
	}
	return false
}

// The settle script's outcomes.
const (
	settledElsewhere = 0 // the record is another run's claim or result
	settled          = 1 // done, by this try or an earlier one
	settledUnknown   = 2 // the record is an unknown outcome a repeat made
)

// trySettle settles the claim once, bounded by settleTimeout from now: a
// run may have taken as long as the request's deadline. A claim that is no
// longer c's, or not there, is left alone; outcome says which.
func (s *Redis) trySettle(ctx context.Context, c claimed, next string) (outcome int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.settleTimeout)
	defer cancel()
	keys, args := []string{c.k}, []any{c.owner, next, s.ttl.Milliseconds()}
	if s.replicas == 0 || next == "" {
		// A dropped claim needs no replica: a failover that brings it
		// back leaves repeats told OUTCOME_UNKNOWN, never a second run,
		// and a run that did nothing should not wait to say so.
		return settle.Run(ctx, s.client, keys, args...).Int()
	}
	ran, acked, waited, waitErr := s.runConfirmed(ctx, settle, keys, args...)
	outcome, err = ran.Int()
	if err == nil && outcome == settled && acked < int64(s.replicas) {
		why := &unconfirmedError{acked: acked, want: int64(s.replicas), wait: waited, err: waitErr}
		s.log.LogAttrs(context.Background(), slog.LevelWarn,
			"request_id: the result is kept, but fewer of Redis' replicas than wait_replicas confirmed it: a failover to one that lacks it would lose it, and a repeat would run the request again",
			slog.String("account", c.key.Account), slog.String("request_id", c.key.RequestID), slog.String("why", why.Error()))
	}
	return outcome, err
}

// Wait waits until the claims whose settling or making Redis failed are
// settled or dropped, or given up, or until ctx ends: shutdown calls it
// after the request_id runs. Those it cannot wait for are logged as given
// up, by request_id.
func (s *Redis) Wait(ctx context.Context) error {
	unsettled, err := s.settling.Wait(ctx)
	for _, k := range unsettled {
		s.unkept(k, false, "backupd shut down first")
	}
	unforgotten, ferr := s.forgetting.Wait(ctx)
	for _, k := range unforgotten {
		s.unkept(k, true, "backupd shut down first")
	}
	err = cmp.Or(err, ferr)
	undropped, derr := s.dropping.Wait(ctx)
	for _, k := range undropped {
		s.givenUp(k, "backupd shut down first")
	}
	if err = cmp.Or(err, derr); err != nil {
		return fmt.Errorf("request_id claims still being settled or dropped in Redis: %w", err)
	}
	return nil
}

// unavailable is the error of a Redis command that failed: the caller's
// own end when ctx has ended, else Redis being unavailable.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &CheckEndedError{Err: ctx.Err(), Cause: err}
	}
	return &sharedstate.UnavailableError{Op: sharedstate.OpIdempotency, Err: err}
}
