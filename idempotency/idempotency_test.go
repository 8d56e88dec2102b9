package idempotency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	key = Key{Account: "111111111111", RequestID: "req-1"}
	fpA = Fingerprint{1}
	fpB = Fingerprint{2}
)

// result is what a request answers.
type result struct {
	resp []byte
	err  error
}

// counter is a request that counts its runs.
type counter struct {
	runs  atomic.Int32
	resp  []byte
	err   error
	delay time.Duration // how long each run takes
}

func (c *counter) run(time.Time) ([]byte, error) {
	c.runs.Add(1)
	time.Sleep(c.delay)
	return c.resp, c.err
}

// TestResultsAreKeptADay pins the retention the API promises (README,
// backup_service.proto): a request_id answers its repeats for 24 hours, in
// either store.
func TestResultsAreKeptADay(t *testing.T) {
	const day = 24 * time.Hour
	if TTL != day {
		t.Errorf("TTL = %v; want %v", TTL, day)
	}
	if got := NewMemory().ttl; got != day {
		t.Errorf("NewMemory keeps results for %v; want %v", got, day)
	}
	if got := NewRedis(nil, "x:", time.Minute, slog.New(slog.DiscardHandler)).ttl; got != day {
		t.Errorf("NewRedis keeps results for %v; want %v", got, day)
	}
}

func TestDo(t *testing.T) {
	errDefinite := errors.New("table not found")
	errUnsure := errors.New("connection reset after sending")
	tests := []struct {
		name     string
		first    result
		repeat   Key
		fp       Fingerprint
		after    time.Duration
		wantRuns int32
		wantResp string
		wantErr  error
		conflict bool
	}{
		{"repeat gets the first response", result{resp: []byte("first")}, key, fpA, time.Hour, 1, "first", nil, false},
		{"repeat just before TTL ends", result{resp: []byte("first")}, key, fpA, TTL - time.Second, 1, "first", nil, false},
		{"repeat after TTL runs again", result{resp: []byte("first")}, key, fpA, TTL, 2, "first", nil, false},
		{"other parameters conflict", result{resp: []byte("first")}, key, fpB, time.Minute, 1, "", nil, true},
		{"other account is another request", result{resp: []byte("first")}, Key{Account: "222222222222", RequestID: "req-1"}, fpB, 0, 2, "first", nil, false},
		{"definite failure is forgotten", result{err: errDefinite}, key, fpA, 0, 2, "", errDefinite, false},
		{"final failure is kept", result{err: Final(errUnsure)}, key, fpA, time.Hour, 1, "", errUnsure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{now: time.Unix(1_700_000_000, 0)}
			m := newMemory(c.Now, TTL)
			ctx := context.Background()
			first := &counter{resp: tt.first.resp, err: tt.first.err}
			if _, err := m.Do(ctx, key, fpA, first.run); tt.first.err == nil && err != nil {
				t.Fatalf("first: %v", err)
			}
			c.Advance(tt.after)
			resp, err := m.Do(ctx, tt.repeat, tt.fp, first.run)
			var ce *ConflictError
			if got := errors.As(err, &ce); got != tt.conflict {
				t.Fatalf("conflict = %v (%v), want %v", got, err, tt.conflict)
			}
			if !tt.conflict && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			var fe *finalError
			if errors.As(err, &fe) {
				t.Errorf("the Final marker leaked to the caller: %v", err)
			}
			if string(resp) != tt.wantResp {
				t.Errorf("resp = %q, want %q", resp, tt.wantResp)
			}
			if got := first.runs.Load(); got != tt.wantRuns {
				t.Errorf("runs = %d, want %d", got, tt.wantRuns)
			}
		})
	}
}

// TestConcurrentRepeatsRunOnce sends 50 repeats at once: one runs, the
// others wait for it and get its response.
func TestConcurrentRepeatsRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory()
		release := make(chan struct{})
		var runs atomic.Int32
		run := func(time.Time) ([]byte, error) {
			runs.Add(1)
			<-release
			return []byte("only"), nil
		}
		var wg sync.WaitGroup
		resps := make([]string, 50)
		for i := range resps {
			wg.Go(func() {
				resp, err := m.Do(context.Background(), key, fpA, run)
				if err != nil {
					t.Error(err)
				}
				resps[i] = string(resp)
			})
		}
		synctest.Wait() // one caller runs, and every other one waits for it
		if got := runs.Load(); got != 1 {
			t.Errorf("runs while the first is running = %d, want 1", got)
		}
		close(release)
		wg.Wait()
		if got := runs.Load(); got != 1 {
			t.Errorf("runs = %d, want 1", got)
		}
		for i, r := range resps {
			if r != "only" {
				t.Errorf("caller %d got %q", i, r)
			}
		}
	})
}

// TestWaiterRunsAfterDefiniteFailure: a repeat waiting on a first run that
// fails without acting runs the request itself.
func TestWaiterRunsAfterDefiniteFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory()
		release := make(chan struct{})
		go func() {
			_, _ = m.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) {
				<-release
				return nil, errors.New("throttled before acting")
			})
		}()
		synctest.Wait() // the first run has begun
		done := make(chan []byte)
		go func() {
			resp, err := m.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { return []byte("second"), nil })
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		synctest.Wait() // the repeat waits for the first run
		close(release)
		if got := <-done; string(got) != "second" {
			t.Errorf("waiter got %q, want its own run's response", got)
		}
	})
}

func TestWaitBoundedByContext(t *testing.T) {
	m := NewMemory()
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = m.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { close(started); <-release; return nil, nil })
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Do(ctx, key, fpA, func(time.Time) ([]byte, error) { t.Error("ran while the first was running"); return nil, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the deadline", err)
	}
}

// TestPanicIsAnUnknownOutcome: a run that panicked may have been done
// before it did (the panic in decoding the answer, say): its repeat is
// told the outcome is unknown, not run again.
func TestPanicIsAnUnknownOutcome(t *testing.T) {
	m := NewMemory()
	func() {
		defer func() { _ = recover() }()
		_, _ = m.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { panic("boom") })
	}()
	resp, err := m.Do(context.Background(), key, fpA, func(time.Time) ([]byte, error) { t.Error("ran again after a panic"); return nil, nil })
	if _, ok := errors.AsType[*OutcomeUnknownError](err); !ok {
		t.Errorf("after a panic: %q, %v; want an unknown outcome", resp, err)
	}
}

func TestExpiredEntriesAreDropped(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m := newMemory(c.Now, TTL)
	for i := range 1000 {
		k := Key{Account: "111111111111", RequestID: string(rune('a'+i%26)) + time.Duration(i).String()}
		if _, err := m.Do(context.Background(), k, fpA, func(time.Time) ([]byte, error) { return []byte("x"), nil }); err != nil {
			t.Fatal(err)
		}
		c.Advance(TTL / 500)
	}
	// The clock now stands 1000 steps after the first; request i expires
	// 500 steps after it was made, so requests 501..999 remain.
	if got := m.Len(); got != 499 {
		t.Errorf("len = %d after 1000 requests spread over two TTLs, want 499", got)
	}
	c.Advance(TTL)
	if got := m.Len(); got != 0 {
		t.Errorf("len = %d after every TTL passed, want 0", got)
	}
}

// TestExpiryShrinksTheMap: once expiry has emptied most of a large map, the
// entries left move to a fresh one, which Go sizes for them, rather than
// the buckets of the day's peak being held for good.
func TestExpiryShrinksTheMap(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m := newMemory(c.Now, TTL)
	keep := func(id string) {
		t.Helper()
		if _, err := m.Do(context.Background(), Key{Account: "111111111111", RequestID: id}, fpA, func(time.Time) ([]byte, error) { return []byte("x"), nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 * shrinkFrom {
		keep(fmt.Sprint("burst-", i))
	}
	c.Advance(TTL / 2)
	for i := range 100 {
		keep(fmt.Sprint("later-", i))
	}
	before := m.entries
	c.Advance(TTL / 2) // the burst expires
	if got := m.Len(); got != 100 {
		t.Fatalf("Len = %d once the burst expired; want the 100 kept later", got)
	}
	if reflect.ValueOf(m.entries).UnsafePointer() == reflect.ValueOf(before).UnsafePointer() || m.peak != 100 {
		t.Errorf("the burst's map is still held (peak %d)", m.peak)
	}
	if c := cap(m.expiring); c > 4*len(m.expiring) {
		t.Errorf("the expiry list holds room for %d entries after the burst; want about the %d left", c, len(m.expiring))
	}
	resp, err := m.Do(context.Background(), Key{Account: "111111111111", RequestID: "later-0"}, fpA, func(time.Time) ([]byte, error) {
		t.Error("a repeat ran again")
		return nil, nil
	})
	if err != nil || string(resp) != "x" {
		t.Errorf("a repeat after the move: %q, %v; want the kept result", resp, err)
	}
}

// TestMemoryExpiresWhenIdle: kept results leave the store once their
// time is up also when no request_id call comes and no scrape asks Len
// (which expire them as they come): a replica that gets neither would
// otherwise hold its last results, and their heap, for good.
func TestMemoryExpiresWhenIdle(t *testing.T) {
	const ttl = 20 * time.Millisecond
	m := newMemory(time.Now, ttl)
	for _, id := range []string{"a", "b"} {
		if _, err := m.Do(context.Background(), Key{Account: "111111111111", RequestID: id}, Fingerprint{1},
			func(time.Time) ([]byte, error) { return []byte("resp"), nil }); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.entries) // not Len, which expires them itself
	}
	for deadline := time.Now().Add(5 * time.Second); held() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d results still held 5 s past their %s; want none", held(), ttl)
		}
	}
}
