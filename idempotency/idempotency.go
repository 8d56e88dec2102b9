// Package idempotency makes a request repeated with the same request_id
// return the first request's result instead of acting again: a caller that
// retries a CreateBackup after a timeout gets the backup it already has, not
// a second one. Repeats that arrive while the first is still running wait
// for it.
package idempotency

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// TTL is how long a result answers repeats of its request.
const TTL = 24 * time.Hour

// Key names a request: the account it acts in and the caller's request_id.
// The same request_id in two accounts names two requests.
type Key struct {
	Account   string
	RequestID string
}

// Fingerprint identifies a request's parameters, so that a request_id reused
// for a different request is refused rather than answered with the wrong
// result.
type Fingerprint [sha256.Size]byte

// ConflictError says a request_id was used, within TTL, for a request with
// other parameters.
type ConflictError struct {
	Key Key
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("request_id %q was used in the last %d hours for a different request in account %s; "+
		"send a new request_id for a new request", e.Key.RequestID, int(TTL.Hours()), e.Key.Account)
}

// WaitEndedError says a repeat stopped waiting for the first request with
// its request_id, which goes on: the repeat's context ended (Err).
type WaitEndedError struct {
	Key Key
	Err error
}

func (e *WaitEndedError) Error() string {
	return fmt.Sprintf("waiting for the first request with request_id %q: %v", e.Key.RequestID, e.Err)
}

func (e *WaitEndedError) Unwrap() error { return e.Err }

// CheckEndedError says the caller's context ended (Err) while the store
// was still checking the request_id (a Redis command cut short): this
// call started no run, though another call with the request_id may
// have.
type CheckEndedError struct {
	Err   error // the context's
	Cause error // the command's failure
}

func (e *CheckEndedError) Error() string {
	return fmt.Sprintf("idempotency: %v (Redis: %v)", e.Err, e.Cause)
}

func (e *CheckEndedError) Unwrap() error { return e.Err }

// waitingKey is the context key of OnWait's notice.
type waitingKey struct{}

// OnWait returns ctx carrying f, which Do calls when it finds another
// call's run of the same request_id going on and starts to wait for it.
func OnWait(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, waitingKey{}, f)
}

// waiting tells ctx's OnWait notice, if any, that Do waits for another
// call's run.
func waiting(ctx context.Context) {
	if f, ok := ctx.Value(waitingKey{}).(func()); ok {
		f()
	}
}

// Final marks err as the request's result: repeats get it too instead of
// running the request again. Use it for failures after which the request
// may have been done, where running it again could do it twice. Other
// errors are forgotten, so that a repeat runs the request again.
func Final(err error) error {
	if err == nil {
		return nil
	}
	return &finalError{err: err}
}

// IsFinal reports whether err was marked Final: kept for repeats.
func IsFinal(err error) bool {
	_, ok := errors.AsType[*finalError](err)
	return ok
}

type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// outcome sorts what a run returned: whether it is kept (a response, or a
// Final error), whether the error was Final, and the error without its
// Final mark, for the caller.
func outcome(err error) (kept, final bool, plain error) {
	var f *finalError
	if errors.As(err, &f) {
		return true, true, f.err
	}
	return err == nil, false, err
}

// Memory keeps results in this process: enough for one replica.
type Memory struct {
	now func() time.Time
	ttl time.Duration

	mu      sync.Mutex
	entries map[Key]*entry
	// peak is the most entries held since entries was made: Go maps keep
	// their buckets after deletes, so once expiry has emptied most of a
	// large map, the rest is moved to a fresh one (expire).
	peak int
	// expiring lists kept entries in the order they were kept, which is
	// the order they expire in, since every entry lives for ttl.
	expiring []expiry
	// sweep expires the entries once their time is up, while any are
	// kept (nil otherwise): claim and Len expire them too, but only a
	// request with a request_id or a scrape of the metrics calls them,
	// and a replica that gets neither would hold its last results, and
	// their heap, for good rather than for ttl.
	sweep *time.Timer
}

type entry struct {
	fingerprint Fingerprint
	done        chan struct{} // closed when the first run ends
	// Set before done is closed, read only after it is closed.
	kept bool
	resp []byte
	err  error
}

type expiry struct {
	key Key
	at  time.Time
}

// NewMemory returns an empty in-process store whose results live for TTL.
func NewMemory() *Memory {
	return newMemory(time.Now, TTL)
}

func newMemory(now func() time.Time, ttl time.Duration) *Memory {
	return &Memory{now: now, ttl: ttl, entries: make(map[Key]*entry)}
}

// Do runs run once for key and returns its response, or its error when that
// error is Final; a repeat of key within TTL gets the same without running.
// A repeat that arrives while run is running waits for it, as long as its
// ctx allows. When run fails with an error that is not Final, the entry is
// dropped and the next repeat runs again. A repeat whose fingerprint
// differs gets a ConflictError.
//
// run is given the time by which it must have ended, or the zero time
// when it has none (Memory waits for a run however long it takes): past
// it, a store whose claims hold a lease (Redis) answers repeats that the
// outcome is unknown, and a run that acted after that could act twice.
func (m *Memory) Do(ctx context.Context, key Key, fp Fingerprint, run func(until time.Time) ([]byte, error)) ([]byte, error) {
	for {
		e, lead := m.claim(key, fp)
		if e.fingerprint != fp {
			return nil, &ConflictError{Key: key}
		}
		if lead {
			return m.lead(key, e, run)
		}
		waiting(ctx)
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, &WaitEndedError{Key: key, Err: ctx.Err()}
		}
		if e.kept {
			return e.resp, e.err
		}
		// The first run failed without acting; run again, or wait for
		// whichever repeat got there first.
	}
}

// claim returns key's entry, making a new one that the caller must run
// (lead) when there is none.
func (m *Memory) claim(key Key, fp Fingerprint) (e *entry, lead bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	if e, ok := m.entries[key]; ok {
		return e, false
	}
	e = &entry{fingerprint: fp, done: make(chan struct{})}
	m.entries[key] = e
	m.peak = max(m.peak, len(m.entries))
	return e, true
}

// lead runs the request for e and settles e, even if run panics: then as
// an unknown outcome, the panic having perhaps come after the request was
// done (in decoding its answer, say), so that no repeat runs it again.
func (m *Memory) lead(key Key, e *entry, run func(time.Time) ([]byte, error)) (resp []byte, err error) {
	settled := false
	defer func() {
		if !settled {
			m.settle(key, e, nil, &OutcomeUnknownError{Key: key}, true)
		}
	}()
	resp, err = run(time.Time{})
	kept, _, err := outcome(err)
	m.settle(key, e, resp, err, kept)
	settled = true
	return resp, err
}

func (m *Memory) settle(key Key, e *entry, resp []byte, err error, kept bool) {
	m.mu.Lock()
	if kept {
		e.kept, e.resp, e.err = true, resp, err
		m.expiring = append(m.expiring, expiry{key: key, at: m.now().Add(m.ttl)})
		if m.sweep == nil {
			m.sweep = time.AfterFunc(m.ttl+m.sweepSlack(), m.sweepExpired)
		}
	} else {
		delete(m.entries, key)
	}
	m.mu.Unlock()
	close(e.done)
}

// expire drops entries whose time is up. Called with m.mu held.
//
// An expiry's key still holds the entry it was listed for: a kept entry
// leaves entries only here, and while it is there claim makes no other
// for its key.
func (m *Memory) expire() {
	now := m.now()
	n := 0
	for n < len(m.expiring) && !now.Before(m.expiring[n].at) {
		delete(m.entries, m.expiring[n].key)
		n++
	}
	clear(m.expiring[:n]) // let the expired keys be collected
	m.expiring = m.expiring[n:]
	if m.peak >= shrinkFrom && len(m.entries) < m.peak/4 {
		fresh := make(map[Key]*entry, len(m.entries))
		maps.Copy(fresh, m.entries)
		m.entries, m.peak = fresh, len(fresh)
		// The slice's array, too, would be held until appends used up
		// what lies beyond its end.
		m.expiring = slices.Clone(m.expiring)
	}
}

// sweepExpired expires the entries whose time is up, and sets the sweep
// for the next one's, if any is left.
func (m *Memory) sweepExpired() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	m.sweep = nil
	if len(m.expiring) > 0 {
		m.sweep = time.AfterFunc(max(m.expiring[0].at.Sub(m.now()), 0)+m.sweepSlack(), m.sweepExpired)
	}
}

// sweepSlack is how long after the first kept entry's end the sweep
// comes: later entries, kept within it, go in the same sweep. A minute,
// or ttl when shorter.
func (m *Memory) sweepSlack() time.Duration { return min(time.Minute, m.ttl) }

// shrinkFrom is the least peak at which expire moves the entries left to a
// fresh map: below it the buckets kept are worth less than the copy.
const shrinkFrom = 4096

// Wait returns at once: Memory keeps every result before Do returns, and
// nothing in the background.
func (m *Memory) Wait(context.Context) error { return nil }

// Len reports how many requests the store holds, running or kept: the
// metric backupd_request_ids_held, since each costs heap for TTL.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	return len(m.entries)
}
