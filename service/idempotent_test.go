package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

func TestMayHaveActed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", Err: errors.New("connection reset")}, true},
		{"deadline while DynamoDB had the call", fmt.Errorf("operation error DynamoDB: CreateBackup: %w", context.DeadlineExceeded), true},
		{"refused by the limiter", &ratelimit.LimitedError{RetryAfter: time.Second}, false},
		{"deadline while waiting for a turn", fmt.Errorf("operation error DynamoDB: CreateBackup: %w",
			&ratelimit.InterruptedError{Err: context.DeadlineExceeded}), false},
		{"role refused", &auth.AssumeRoleError{AccountID: "111111111111", Err: context.DeadlineExceeded}, false},
		{"Redis gone", &sharedstate.UnavailableError{Op: "rate limit", Err: context.DeadlineExceeded}, false},
		{"DynamoDB refused", &smithy.GenericAPIError{Code: "TableNotFoundException"}, false},
	}
	for _, tt := range tests {
		if got := mayHaveActed(tt.err); got != tt.want {
			t.Errorf("%s: mayHaveActed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSendErrorSaysWhetherSent checks what the error mapping reads to tell
// a caller whose deadline passed whether DynamoDB may have acted.
func TestSendErrorSaysWhetherSent(t *testing.T) {
	deadline := fmt.Errorf("operation error DynamoDB: CreateBackup: %w", context.DeadlineExceeded)
	canceled := fmt.Errorf("operation error DynamoDB: CreateBackup: %w", context.Canceled)
	tests := []struct {
		name       string
		err        error
		submitted  time.Time
		notSent    bool
		unanswered bool
	}{
		{"never submitted", deadline, time.Time{}, true, false},
		{"submitted", deadline, time.Unix(1700000000, 0), false, true},
		// A caller that left after the call went out is logged as one
		// whose backup may exist.
		{"canceled, never submitted", canceled, time.Time{}, true, false},
		{"canceled after it was submitted", canceled, time.Unix(1700000000, 0), false, true},
		// DynamoDB answered, or may have acted: its error as it is.
		{"refused after it was submitted", &smithy.GenericAPIError{Code: "TableNotFoundException"}, time.Unix(1700000000, 0), false, false},
		{"outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", Err: errors.New("500")}, time.Unix(1700000000, 0), false, false},
		// accounts said so already: said once, not twice.
		{"nothing done, said by accounts", &accounts.NothingDoneError{Err: deadline}, time.Time{}, true, false},
	}
	for _, tt := range tests {
		err := sendError("CreateBackup", tt.err, tt.submitted)
		if n := strings.Count(err.Error(), "DynamoDB did not act on it"); n > 1 {
			t.Errorf("%s: %q says %d times that DynamoDB did not act; want once", tt.name, err, n)
		}
		if _, got := errors.AsType[*accounts.NothingDoneError](err); got != tt.notSent {
			t.Errorf("%s: NotSent = %v, want %v (%v)", tt.name, got, tt.notSent, err)
		}
		if u, got := errors.AsType[*UnansweredError](err); got != tt.unanswered || got && u.Operation != "CreateBackup" {
			t.Errorf("%s: UnansweredError = %v, want %v (%v)", tt.name, got, tt.unanswered, err)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: %v no longer wraps %v", tt.name, err, tt.err)
		}
	}
}

func TestOutcomeUnknownWrapsOnce(t *testing.T) {
	unsure := &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "eu-west-1", Err: errors.New("connection reset")}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"already unknown", fmt.Errorf("operation error DynamoDB: %w", unsure),
			"operation error DynamoDB: CreateBackup in account 111111111111, region eu-west-1: outcome unknown: connection reset"},
		{"deadline", context.DeadlineExceeded,
			"CreateBackup in account 111111111111, region eu-west-1: outcome unknown: context deadline exceeded"},
	}
	for _, tt := range tests {
		err := outcomeUnknown("CreateBackup", accounts.Target{AccountID: "111111111111", Region: "eu-west-1"}, tt.err)
		if _, ok := errors.AsType[*accounts.OutcomeUnknownError](err); !ok || err.Error() != tt.want {
			t.Errorf("%s: outcomeUnknown = %q, want an OutcomeUnknownError %q", tt.name, err, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	restore := func(target, rid string) *backupv1.RestoreTableFromBackupRequest {
		return &backupv1.RestoreTableFromBackupRequest{BackupArn: "arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12",
			TargetTableName: target, RequestId: rid}
	}
	fp := func(m *backupv1.RestoreTableFromBackupRequest) [32]byte {
		f, err := fingerprint(normRestore(m))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if fp(restore("Copy", "a")) != fp(restore("Copy", "b")) {
		t.Error("the request_id changed the fingerprint")
	}
	if fp(restore("Copy", "a")) == fp(restore("Other", "a")) {
		t.Error("another target table has the same fingerprint")
	}
	// A CreateBackup naming its table by name or by ARN is one request.
	target := accounts.Target{AccountID: "111111111111", Region: "us-east-1"}
	var vs violations
	byName := checkTableRef(&vs, "table_name", "Orders", "111111111111", "us-east-1")
	byARN := checkTableRef(&vs, "table_name", "arn:aws:dynamodb:us-east-1:111111111111:table/Orders", "111111111111", "us-east-1")
	a, errA := fingerprint(normCreate(target, byName, "nightly"))
	b, errB := fingerprint(normCreate(target, byARN, "nightly"))
	if errA != nil || errB != nil || len(vs) != 0 || a != b {
		t.Error("a table's name and its ARN give two fingerprints")
	}
	if c, _ := fingerprint(normCreate(target, byName, "other")); c == a {
		t.Error("another backup name has the same fingerprint")
	}
	create, err := fingerprint(&backupv1.CreateBackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if empty, _ := fingerprint(&backupv1.RestoreTableFromBackupRequest{}); create == empty {
		t.Error("two empty requests of different RPCs have the same fingerprint")
	}
	// A fingerprint is kept in Redis and compared by every replica, of
	// this build and the next in a rolling upgrade: its recipe does not
	// change unnoticed (a change makes every request_id in flight
	// REQUEST_ID_REUSED).
	const golden = "71cad3984e6c94bcd20bf6fb0002581638a88b7493e1430aec5931ddd465e2dd"
	if f, err := fingerprint(&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b1"}); err != nil ||
		fmt.Sprintf("%x", f) != golden {
		t.Errorf("fingerprint %x, %v; want %s, as earlier builds made it", f, err, golden)
	}
}

// runOnce calls once for a CreateBackup with request_id "rid", whose run is do.
func runOnce(ctx context.Context, s *Server, do func(context.Context) (*backupv1.CreateBackupResponse, error)) (*backupv1.CreateBackupResponse, error) {
	norm := func() proto.Message {
		return &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b1"}
	}
	return once(ctx, s, "CreateBackup", accounts.Target{AccountID: "111111111111", Region: "eu-west-1"}, "rid", norm, do)
}

// TestOnceAnswersAtTheDeadline: the caller is answered at its deadline
// while the run goes on; Wait waits for the run (one that cannot wait
// names its request_id, whose result would be lost), and the retry gets
// its result without a second run.
func TestOnceAnswersAtTheDeadline(t *testing.T) {
	kept := idempotency.NewMemory()
	logs := &testenv.Buffer{}
	s := New(Options{DefaultTimeout: time.Minute, Idempotency: kept, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	release := make(chan struct{})
	var runs atomic.Int32
	do := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
		runs.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupName: "b1",
			BackupArn: "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12"}}, nil
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := runOnce(short, s, do)
	if _, running := errors.AsType[*StillRunningError](err); !running || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "CreateBackup ") {
		t.Fatalf("first call: %v, want DeadlineExceeded saying the CreateBackup goes on", err)
	}
	if n := s.RunsGoing(); n != 1 {
		t.Errorf("%d runs going after the caller was answered; want its run", n)
	}
	waitShort, cancelWait := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelWait()
	if err := s.Wait(waitShort); err == nil {
		t.Error("Wait returned while the run was still going")
	}
	if lines := logs.Lines(`"level":"ERROR"`, `"account":"111111111111"`, `"request_id":"rid"`, "shut down before the run ended"); len(lines) != 1 {
		t.Errorf("want one ERROR line naming the run's request_id; log:\n%s", logs.String())
	}
	close(release)
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.RunsGoing(); n != 0 {
		t.Errorf("%d runs going after Wait; want none", n)
	}
	// The run that outlived its caller says how it ended.
	// The run that outlived its caller names the backup it made.
	if lines := logs.Lines(`"level":"INFO"`, `"request_id":"rid"`, "a run whose caller left was done",
		`"backup_arn":"arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12"`); len(lines) != 1 {
		t.Errorf("want one line of the run's end; log:\n%s", logs.String())
	}
	// The retry, on a server sharing the store (a WaitGroup that was
	// waited on is not added to again).
	resp, err := runOnce(context.Background(), New(Options{Idempotency: kept}), do)
	if err != nil || resp.GetBackupDetails().GetBackupName() != "b1" || runs.Load() != 1 {
		t.Errorf("retry: %v, %v after %d runs; want the kept result of one run", resp, err, runs.Load())
	}
}

// What the store answered as the deadline passed says whether a run goes
// on: a repeat whose wait for another call's run ended is told that run
// goes on; a call whose check of its request_id was cut short (Redis
// stalled) is told it sent nothing. The store's answer and the deadline
// may come together, and either may be taken.
func TestAnswerAtTheDeadline(t *testing.T) {
	for _, tt := range []struct {
		name    string
		stored  func(ctx context.Context) error
		running bool
	}{
		{"wait ended", func(ctx context.Context) error { return &idempotency.WaitEndedError{Err: ctx.Err()} }, true},
		{"check cut short", func(ctx context.Context) error {
			return &idempotency.CheckEndedError{Err: ctx.Err(), Cause: errors.New("i/o timeout")}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			<-ctx.Done()
			done := make(chan runResult[*backupv1.CreateBackupResponse], 1)
			done <- runResult[*backupv1.CreateBackupResponse]{err: tt.stored(ctx)}
			_, err := answer(ctx, config.OpCreateBackup, &runStart{}, done)
			_, running := errors.AsType[*StillRunningError](err)
			_, unstarted := errors.AsType[*NotStartedError](err)
			if running != tt.running || unstarted == tt.running || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "CreateBackup ") {
				t.Errorf("answer = %v; want DeadlineExceeded saying the run goes on: %v, or that nothing started: %v", err, tt.running, !tt.running)
			}
		})
	}
}

// TestOrphanRunFailureIsLogged: a run that fails after its caller left
// says so, with its error, though no caller is there to be told, and
// whether repeats get that failure (it may have been done) or run the
// request again (nothing was done, and the failure is not kept).
func TestOrphanRunFailureIsLogged(t *testing.T) {
	for _, tt := range []struct {
		name  string
		err   error
		words string
	}{
		{"refused: not kept", &smithy.GenericAPIError{Code: "TableNotFoundException", Message: "Table not found: Orders"},
			"not kept, and a repeat runs the request again"},
		{"may have been done: kept", &accounts.OutcomeUnknownError{Operation: config.OpCreateBackup, AccountID: "111111111111", Err: errors.New("500")},
			"ended in failure; repeats get it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			s := New(Options{DefaultTimeout: time.Minute, Idempotency: idempotency.NewMemory(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			release, started := make(chan struct{}), make(chan struct{})
			do := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
				close(started)
				<-release
				return nil, tt.err
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-started; cancel() }() // the caller leaves once its run has started
			if _, err := runOnce(ctx, s, do); !errors.Is(err, context.Canceled) {
				t.Fatalf("runOnce = %v; want Canceled", err)
			}
			close(release)
			if err := s.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The line names the call as the request's own line does, with its error.
			if lines := logs.Lines(`"level":"WARN"`, `"request_id":"rid"`, `"operation":"CreateBackup"`, `"account":"111111111111"`,
				`"region":"eu-west-1"`, `"error":`, "a run whose caller left", tt.words); len(lines) != 1 {
				t.Errorf("want one WARN line of the run's failure saying %q; log:\n%s", tt.words, logs.String())
			}
			if lines := logs.Lines("a run whose caller left was done"); len(lines) != 0 {
				t.Errorf("a failed run's line says it was done; log:\n%s", logs.String())
			}
		})
	}
}

// A caller that cancels while its request_id run goes on is told, and
// its line says, that the run goes on, as one whose deadline passed.
func TestAnswerOfACallerThatLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var start runStart
	start.begin()
	_, err := answer(ctx, config.OpCreateBackup, &start, make(chan runResult[*backupv1.CreateBackupResponse]))
	if _, running := errors.AsType[*StillRunningError](err); !running || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "CreateBackup ") {
		t.Errorf("answer = %v; want Canceled saying the CreateBackup goes on", err)
	}
}

// TestOncePanic: a run's panic is its request's error, not the process's
// end. It may have come after DynamoDB acted (in decoding the answer, in
// an observer of the attempt), so the request_id keeps an unknown outcome
// and its repeat does not run the request again. The panic is logged with
// its stack, as the interceptor (package intercept) logs a handler's.
func TestOncePanic(t *testing.T) {
	logs := &testenv.Buffer{}
	s := New(Options{Idempotency: idempotency.NewMemory(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	var runs atomic.Int32
	do := func(context.Context) (*backupv1.CreateBackupResponse, error) {
		runs.Add(1)
		panic("boom")
	}
	_, err := runOnce(context.Background(), s, do)
	if !errors.Is(err, ErrPanic) {
		t.Errorf("err = %v, want ErrPanic", err)
	}
	if lines := logs.Lines(`"level":"ERROR","msg":"panic in handler","operation":"CreateBackup","panic":"boom","stack":"goroutine `); len(lines) != 1 {
		t.Errorf("want the panic logged once with its stack; log:\n%s", logs)
	}
	_, err = runOnce(context.Background(), s, do)
	if _, ok := errors.AsType[*idempotency.OutcomeUnknownError](err); !ok || runs.Load() != 1 {
		t.Errorf("repeat: err = %v after %d runs; want the kept unknown outcome after 1", err, runs.Load())
	}
}

// A call gets the caller's deadline, but never more than DefaultTimeout:
// a run that outlasted it would outlast the REST write timeout, the Redis
// lease of its request_id and the shutdown drain. A request_id run gets
// DefaultTimeout even when its caller's deadline is shorter, so that it
// finishes for the caller's retry.
func TestDeadlineIsBoundedByDefaultTimeout(t *testing.T) {
	const def = 5 * time.Second
	tests := []struct {
		name      string
		requestID string
		caller    time.Duration // 0: no deadline
		want      time.Duration // the deadline the run gets, from now
	}{
		{"no deadline", "", 0, def},
		{"a shorter deadline", "", time.Second, time.Second},
		{"a deadline of an hour", "", time.Hour, def},
		{"request_id, no deadline", "rid", 0, def},
		{"request_id, a shorter deadline", "rid", time.Second, def},
		{"request_id, a deadline of an hour", "rid", time.Hour, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{DefaultTimeout: def})
			ctx := context.Background()
			if tt.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.caller)
				defer cancel()
			}
			var got time.Duration
			// do may run on a goroutine of its own (a request_id's run),
			// where t.Fatal must not be called.
			do := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
				dl, ok := ctx.Deadline()
				if !ok {
					return nil, errors.New("the run has no deadline")
				}
				got = time.Until(dl)
				return &backupv1.CreateBackupResponse{}, nil
			}
			norm := func() proto.Message { return &backupv1.CreateBackupRequest{AccountId: "111111111111"} }
			if _, err := once(ctx, s, "CreateBackup", accounts.Target{AccountID: "111111111111", Region: "eu-west-1"}, tt.requestID, norm, do); err != nil {
				t.Fatal(err)
			}
			if got > tt.want || got < tt.want-time.Second {
				t.Errorf("the run's deadline is %v from now, want %v", got, tt.want)
			}
		})
	}
}

// heldClaim stands for a request_id claimed by another replica that
// stopped: Do waits until the claim's lease ends, or ctx does.
type heldClaim struct{ lease time.Duration }

func (heldClaim) Wait(context.Context) error { return nil }

func (h heldClaim) Do(ctx context.Context, _ idempotency.Key, _ idempotency.Fingerprint, _ func(time.Time) ([]byte, error)) ([]byte, error) {
	select {
	case <-time.After(h.lease):
		return nil, &idempotency.OutcomeUnknownError{}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A repeat waiting on another replica's claim waits no longer than
// DefaultTimeout and a moment, however long its own deadline: not the
// claim's lease, which outlasts the REST write timeout and the drain.
func TestRepeatWaitsNoLongerThanDefaultTimeout(t *testing.T) {
	const def = 200 * time.Millisecond
	s := New(Options{DefaultTimeout: def, Idempotency: heldClaim{lease: 10 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	start := time.Now()
	_, err := runOnce(ctx, s, func(context.Context) (*backupv1.CreateBackupResponse, error) {
		return &backupv1.CreateBackupResponse{}, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the repeat waited %v, with DefaultTimeout %v", waited, def)
	}
}

// TestRunWithinUpstreamTimeoutIsAnswered: a request_id caller with a
// long deadline waits as long as its run may take (upstream_timeout) and
// a moment more: a run that ends within upstream_timeout is answered
// with its result, not cut off as still running.
func TestRunWithinUpstreamTimeoutIsAnswered(t *testing.T) {
	const def = 2 * time.Second
	logs := &testenv.Buffer{}
	s := New(Options{DefaultTimeout: def, Idempotency: idempotency.NewMemory(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	resp, err := runOnce(ctx, s, func(context.Context) (*backupv1.CreateBackupResponse, error) {
		time.Sleep(def * 3 / 4)
		return &backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupName: "b1"}}, nil
	})
	if err != nil || resp.GetBackupDetails().GetBackupName() != "b1" {
		t.Errorf("a run of %v with upstream_timeout %v: %v, %v; want its result", def*3/4, def, resp, err)
	}
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Its caller was answered: no line says the caller left.
	if lines := logs.Lines("a run whose caller left"); len(lines) != 0 {
		t.Errorf("a line of an orphan run, whose caller was there; log:\n%s", logs.String())
	}
}

// TestDetachedRunEndsByItsClaim: a request_id run takes upstream_timeout
// whatever its caller's deadline, but ends by the time its store's claim
// ends, when that comes first: a process stalled between the claim and
// the run must not call DynamoDB after repeats were told the outcome is
// unknown.
func TestDetachedRunEndsByItsClaim(t *testing.T) {
	const upstream = time.Minute
	s := &Server{defaultTimeout: upstream}
	soon := time.Now().Add(time.Second)
	for _, tt := range []struct {
		name  string
		until time.Time
		want  func(start time.Time) (earliest, latest time.Time)
	}{
		{"no claim end", time.Time{}, func(start time.Time) (time.Time, time.Time) {
			return start.Add(upstream), time.Now().Add(upstream)
		}},
		{"claim ends first", soon, func(time.Time) (time.Time, time.Time) { return soon, soon }},
		{"claim ends later", time.Now().Add(2 * upstream), func(start time.Time) (time.Time, time.Time) {
			return start.Add(upstream), time.Now().Add(upstream)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond) // the caller's: not the run's
			defer cancel()
			start := time.Now()
			var deadline time.Time
			_, err := runDetached(ctx, s, "CreateBackup", accounts.Target{}, tt.until, func(ctx context.Context) (*emptypb.Empty, error) {
				deadline, _ = ctx.Deadline()
				return &emptypb.Empty{}, nil
			})
			earliest, latest := tt.want(start)
			if err != nil || deadline.Before(earliest) || deadline.After(latest) {
				t.Errorf("run's deadline %s from its start (%v); want %s to %s", deadline.Sub(start), err, earliest.Sub(start), latest.Sub(start))
			}
		})
	}
}

// TestMadeARN: an orphan run's line names the backup a CreateBackup made
// and the table a restore made.
func TestMadeARN(t *testing.T) {
	const backup, table = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01", "arn:aws:dynamodb:us-east-1:111111111111:table/Copy"
	for _, tt := range []struct {
		resp          proto.Message
		wantKey, want string
	}{
		{&backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupArn: backup}}, "backup_arn", backup},
		{&backupv1.RestoreTableFromBackupResponse{TableDescription: &backupv1.TableDescription{TableArn: table}}, "table_arn", table},
		{&backupv1.DeleteBackupResponse{}, "", ""},
		{nil, "", ""},
	} {
		if key, got := madeARN(tt.resp); key != tt.wantKey || got != tt.want {
			t.Errorf("madeARN(%T) = %q, %q; want %q, %q", tt.resp, key, got, tt.wantKey, tt.want)
		}
	}
}

// stalledStore is an idempotency store whose check of a request_id takes
// until its caller's deadline, as a claim sent to a stopped Redis does;
// with lateRun, the check then lets the request run after all, once
// proceed is closed, as a claim whose answer came after its caller's.
type stalledStore struct {
	lateRun bool
	proceed chan struct{}
	ran     chan error // what a late run returned
}

func (st *stalledStore) Do(ctx context.Context, key idempotency.Key, fp idempotency.Fingerprint, run func(time.Time) ([]byte, error)) ([]byte, error) {
	<-ctx.Done()
	if st.lateRun {
		<-st.proceed
		_, err := run(time.Now().Add(time.Minute))
		st.ran <- err
		return nil, err
	}
	return nil, &idempotency.CheckEndedError{Err: ctx.Err(), Cause: errors.New("i/o timeout")}
}

func (st *stalledStore) Wait(context.Context) error { return nil }

// TestDeadlineWhileTheRequestIDIsChecked: a caller whose deadline passes
// while its request_id is still being checked (Redis stalled) is told it
// sent nothing, not that a run goes on; and no run starts after it was
// told so.
func TestDeadlineWhileTheRequestIDIsChecked(t *testing.T) {
	for _, lateRun := range []bool{false, true} {
		st := &stalledStore{lateRun: lateRun, proceed: make(chan struct{}), ran: make(chan error, 1)}
		s := New(Options{DefaultTimeout: time.Minute, Idempotency: st, Logger: slog.New(slog.DiscardHandler)})
		var runs atomic.Int32
		do := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
			runs.Add(1)
			return &backupv1.CreateBackupResponse{}, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := runOnce(ctx, s, do)
		cancel()
		if _, ok := errors.AsType[*NotStartedError](err); !ok || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "CreateBackup ") {
			t.Errorf("lateRun=%v: runOnce = %v; want DeadlineExceeded saying the CreateBackup was not started", lateRun, err)
		}
		close(st.proceed) // the caller has its answer
		if err := s.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if lateRun {
			if err := <-st.ran; !errors.As(err, new(*accounts.NothingDoneError)) || idempotency.IsFinal(err) {
				t.Errorf("the late run answered %v; want a NothingDoneError, not kept, so that a repeat runs", err)
			}
		}
		if n := runs.Load(); n != 0 {
			t.Errorf("lateRun=%v: the request ran %d times after its caller was told nothing was sent", lateRun, n)
		}
	}
}

// TestDeadlineWhileWaitingForAnotherRun: a repeat whose deadline passes
// while another call's run goes on is told so; if that run then ends
// without acting, the repeat, already answered, does not run the request.
func TestDeadlineWhileWaitingForAnotherRun(t *testing.T) {
	kept := idempotency.NewMemory()
	s := New(Options{DefaultTimeout: time.Minute, Idempotency: kept, Logger: slog.New(slog.DiscardHandler)})
	release := make(chan struct{})
	started := make(chan struct{})
	first := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
		close(started)
		<-release
		return nil, &accounts.NothingDoneError{Err: errors.New("throttled, nothing done")}
	}
	go runOnce(context.Background(), s, first) //nolint:errcheck // its answer is not this test's
	<-started
	var runs atomic.Int32
	repeat := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
		runs.Add(1)
		return &backupv1.CreateBackupResponse{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := runOnce(ctx, s, repeat)
	if _, ok := errors.AsType[*StillRunningError](err); !ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("repeat: %v; want DeadlineExceeded saying the run goes on", err)
	}
	close(release)
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("the repeat ran the request %d times after its caller was answered", n)
	}
}

// TestAnswerOfAnUnknownOutcomeAtTheDeadline: a repeat answered, as its
// deadline passed, with another call's run kept as an unknown outcome
// (Memory answers that run's error, which wraps its own deadline) gets
// that outcome, not word that nothing was started.
func TestAnswerOfAnUnknownOutcomeAtTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	kept := &accounts.OutcomeUnknownError{Operation: config.OpCreateBackup, AccountID: "111111111111", Region: "eu-west-1",
		Err: fmt.Errorf("operation error DynamoDB: CreateBackup: %w", context.DeadlineExceeded)}
	done := make(chan runResult[*backupv1.CreateBackupResponse], 1)
	done <- runResult[*backupv1.CreateBackupResponse]{err: kept}
	var start runStart
	start.wait()
	_, err := answer(ctx, config.OpCreateBackup, &start, done)
	if _, ok := errors.AsType[*accounts.OutcomeUnknownError](err); !ok {
		t.Errorf("answer = %v; want the kept unknown outcome", err)
	}
}

// TestOrphanRunLineNamesItsTrace: the line of a run whose caller left
// names the trace its AWS calls' spans are in, when it is traced, as its
// request's line does, and the backup it made.
func TestOrphanRunLineNamesItsTrace(t *testing.T) {
	const backup = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID,
		SpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled}))
	for _, tt := range []struct {
		name  string
		ctx   context.Context
		trace bool
	}{
		{"traced", traced, true},
		{"not traced", context.Background(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			logOrphanRun(tt.ctx, slog.New(slog.NewJSONHandler(logs, nil)), config.OpCreateBackup, accounts.Target{AccountID: "111111111111", Region: "eu-west-1"},
				"rid", &backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupArn: backup}}, nil, false)
			if n := len(logs.Lines(`"level":"INFO"`, "a run whose caller left was done", `"backup_arn":"`+backup+`"`, `"request_id":"rid"`)); n != 1 {
				t.Errorf("%d lines of the run; want 1:\n%s", n, logs.String())
			}
			if got := strings.Contains(logs.String(), `"trace_id":"`+traceID.String()+`"`); got != tt.trace || !tt.trace && strings.Contains(logs.String(), "trace_id") {
				t.Errorf("trace named: %v, want %v:\n%s", got, tt.trace, logs.String())
			}
		})
	}
}

// keptBytes is an idempotency store that answers every request_id with
// kept bytes, as a repeat's answer is, without running it.
type keptBytes []byte

func (keptBytes) Wait(context.Context) error { return nil }

func (k keptBytes) Do(context.Context, idempotency.Key, idempotency.Fingerprint, func(time.Time) ([]byte, error)) ([]byte, error) {
	return k, nil
}

// TestKeptResponseIsDecoded: a repeat is answered with the kept
// response, decoded; kept bytes that do not decode (a store's corruption)
// are an error, not an empty response.
func TestKeptResponseIsDecoded(t *testing.T) {
	run := func(context.Context) (*backupv1.CreateBackupResponse, error) {
		t.Error("a kept request_id ran again")
		return nil, errors.New("ran")
	}
	kept, _ := proto.Marshal(&backupv1.CreateBackupResponse{BackupDetails: &backupv1.BackupDetails{BackupName: "b1"}})
	resp, err := runOnce(context.Background(), New(Options{Idempotency: keptBytes(kept)}), run)
	if err != nil || resp.GetBackupDetails().GetBackupName() != "b1" {
		t.Errorf("repeat = %v, %v; want the kept response", resp, err)
	}
	resp, err = runOnce(context.Background(), New(Options{Idempotency: keptBytes{0xff}}), run)
	if err == nil || resp != nil || !strings.Contains(err.Error(), "decode the kept CreateBackup response") {
		t.Errorf("repeat of bytes that do not decode = %v, %v; want an error", resp, err)
	}
}
