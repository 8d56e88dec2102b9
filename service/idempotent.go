package service

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/awsbase"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/redact"
)

// Idempotency runs a request once per key and answers repeats with the
// first result (package idempotency). Do calls run, if at all, on the
// caller's goroutine before it returns.
type Idempotency interface {
	Do(ctx context.Context, key idempotency.Key, fp idempotency.Fingerprint, run func(until time.Time) ([]byte, error)) ([]byte, error)
	// Wait waits until the results the store keeps in the background
	// (Redis, when it failed) are kept, or ctx has ended.
	Wait(ctx context.Context) error
}

// once does a request that must not be done twice (CreateBackup, restore).
// Without a request_id it simply runs do under the request's deadline.
// With one, it runs do at most once per (account, request_id) and answers
// repeats with the first response; norm gives the request with its
// parameters normalized, whose fingerprint a repeat must match.
//
// The first run is detached from its caller's cancellation: once DynamoDB
// may have the call, it runs to its end and its result is kept, so a caller
// that gave up and retries gets the backup it already has, not a second.
// The caller itself is answered by its deadline (just before it: see
// package intercept's keepTimeToAnswer), over REST too.
func once[Resp proto.Message](ctx context.Context, s *Server, op string, target accounts.Target, requestID string, norm func() proto.Message,
	do func(context.Context) (Resp, error)) (Resp, error) {
	if requestID == "" {
		ctx, cancel := s.withDeadline(ctx)
		defer cancel()
		return do(ctx)
	}
	// The caller waits no longer than a run may take, and a moment for
	// its result: waiting on another replica's claim, it would otherwise
	// wait out the claim's lease, past the REST write timeout and the
	// shutdown drain.
	ctx, cancel := capDeadline(ctx, s.defaultTimeout+resultSlack)
	defer cancel()
	fp, err := fingerprint(norm())
	if err != nil {
		var zero Resp
		return zero, err
	}
	var start runStart
	done := detach(ctx, s, op, target, requestID, fp, &start, do)
	return answer(ctx, op, &start, done)
}

// runStart is where a request_id call's run stands, between its detached
// goroutine and the caller's answer: not started yet (its request_id
// being checked), waiting for another call's run of it, started, or
// forsaken, when the caller was answered first. A caller answered at its
// deadline while its request_id was still being checked (Redis slow or
// gone) is told that it sent nothing; so that this stays true, its run,
// should the store still let it run, does not start. Nor does the run of
// a caller answered while it waited for another's, should that one fail
// without acting.
type runStart struct{ state atomic.Int32 }

const (
	runPending int32 = iota
	runWaiting
	runStarted
	runForsaken
)

// wait records that the store waits for another call's run.
func (r *runStart) wait() { r.state.CompareAndSwap(runPending, runWaiting) }

// begin reports whether the run may start: its caller is still there.
func (r *runStart) begin() bool {
	return r.state.CompareAndSwap(runPending, runStarted) || r.state.CompareAndSwap(runWaiting, runStarted)
}

// forsake answers how the run stood when its caller was answered, and
// from then on lets it start no more.
func (r *runStart) forsake() int32 {
	for {
		s := r.state.Load()
		if s == runStarted || s == runForsaken || r.state.CompareAndSwap(s, runForsaken) {
			return s
		}
	}
}

// runResult is what a request_id run, or the store, answered.
type runResult[Resp proto.Message] struct {
	kept  []byte
	mine  Resp // set when this call ran the request
	ran   bool
	final bool // the run's error is kept for repeats (idempotency.Final)
	err   error
}

// detach runs the request through the idempotency store on a goroutine of
// its own, so that the caller is answered by its deadline
// (DEADLINE_EXCEEDED) while a run it started goes on to its end and keeps
// its result for the caller's retry. Shutdown waits for it (Server.Wait).
func detach[Resp proto.Message](ctx context.Context, s *Server, op string, target accounts.Target, requestID string, fp idempotency.Fingerprint,
	start *runStart, do func(context.Context) (Resp, error)) <-chan runResult[Resp] {
	key := idempotency.Key{Account: target.AccountID, RequestID: requestID}
	done := make(chan runResult[Resp], 1)
	s.detached.Add(key)
	go func() {
		defer s.detached.Done(key)
		awsbase.GrowStack()
		var res runResult[Resp]
		defer func() {
			// Out of the caller's goroutine, a panic would end the
			// process: it is this request's INTERNAL error instead.
			// The idempotency store has kept an unknown outcome for
			// its repeats by now.
			if p := recover(); p != nil {
				res.err = Recovered(ctx, s.log, p, slog.String("operation", op))
			}
			done <- res
		}()
		res.kept, res.err = s.idem.Do(idempotency.OnWait(ctx, start.wait), key, fp, func(until time.Time) ([]byte, error) {
			if !start.begin() {
				// Its caller was told nothing was sent: forgotten, so
				// that a repeat runs it.
				return nil, &accounts.NothingDoneError{Err: fmt.Errorf("%s not started: %w", op, context.Cause(ctx))}
			}
			res.ran = true
			resp, err := runDetached(ctx, s, op, target, until, do)
			if err != nil {
				res.final = idempotency.IsFinal(err)
				return nil, err
			}
			res.mine = resp
			return proto.Marshal(resp)
		})
		if res.ran && ctx.Err() != nil {
			logOrphanRun(ctx, s.log, op, target, requestID, res.mine, res.err, res.final)
		}
	}()
	return done
}

// logOrphanRun logs how a request_id run ended after its caller left: its
// request's own line was written when the caller was answered, and until
// a repeat asks, this line is all that tells of a backup or table made,
// or of a failure.
func logOrphanRun(ctx context.Context, log *slog.Logger, op string, target accounts.Target, requestID string, resp proto.Message, err error, kept bool) {
	attrs := []slog.Attr{slog.String("operation", op), slog.String("account", target.AccountID), slog.String("region", target.Region),
		slog.String("request_id", requestID)}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// The trace its AWS calls' spans are in, as its request's line
		// names it.
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	switch {
	case err != nil && kept:
		log.LogAttrs(ctx, slog.LevelWarn, "request_id: a run whose caller left ended in failure; repeats get it", append(attrs, slog.String("error", redact.Error(err)))...)
		return
	case err != nil:
		log.LogAttrs(ctx, slog.LevelWarn, "request_id: a run whose caller left ended in a failure after which nothing was done; "+
			"it is not kept, and a repeat runs the request again (unless a repeat past its claim's lease was told OUTCOME_UNKNOWN first, as a line of its own then says)",
			append(attrs, slog.String("error", redact.Error(err)))...)
		return
	}
	if key, arn := madeARN(resp); arn != "" {
		attrs = append(attrs, slog.String(key, arn))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "request_id: a run whose caller left was done; repeats get its result", attrs...)
}

// madeARN is the backup a CreateBackup made, or the table a restore
// made, and the log key that names it.
func madeARN(resp proto.Message) (key, arn string) {
	switch r := resp.(type) {
	case *backupv1.CreateBackupResponse:
		return "backup_arn", r.GetBackupDetails().GetBackupArn()
	case *backupv1.RestoreTableFromBackupResponse:
		return "table_arn", r.GetTableDescription().GetTableArn()
	}
	return "", ""
}

// runDetached runs do with upstream_timeout whatever the caller's deadline:
// long enough to finish for a caller that gave up early. It ends by until
// too, when the store sets one: the Redis lease of its claim, at least
// twice as long, counted from the claim, so that a process stalled between
// the claim and now does not call DynamoDB after repeats were told the
// outcome is unknown. A failure after which DynamoDB may have acted is kept
// as final: repeats get OUTCOME_UNKNOWN rather than a second run.
func runDetached[Resp proto.Message](ctx context.Context, s *Server, op string, target accounts.Target, until time.Time,
	do func(context.Context) (Resp, error)) (Resp, error) {
	runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.defaultTimeout)
	defer cancel()
	if !until.IsZero() {
		var cancelLease context.CancelFunc
		runCtx, cancelLease = context.WithDeadline(runCtx, until)
		defer cancelLease()
	}
	resp, err := do(runCtx)
	if err != nil && mayHaveActed(err) {
		err = idempotency.Final(outcomeUnknown(op, target, withoutExchange(err)))
	}
	return resp, err
}

// withoutExchange lets go of the HTTP exchange that err's answers from
// AWS carry, and returns err: an error kept for a request_id's repeats
// is held for idempotency.TTL (in the process, with the memory backend),
// and an SDK's response error holds the whole exchange: the
// *http.Response, its body and connection buffers, and its request, whose
// context is the run's and so its caller's (the gRPC stream or REST
// request, its metadata included). Kept so, an unknown outcome cost
// about 10 KB of heap for a day, where a kept response costs 600 bytes.
// Each answer is replaced by one of its status alone: what its error
// tells (Error, HTTPStatusCode, and the AWS request id, which
// awshttp.ResponseError keeps apart) stays as it was. The run has ended:
// nothing else reads the exchange.
func withoutExchange(err error) error {
	var strip func(error)
	strip = func(e error) {
		for e != nil {
			if re, ok := e.(*smithyhttp.ResponseError); ok && re.Response != nil && re.Response.Response != nil {
				re.Response = &smithyhttp.Response{Response: &http.Response{Status: re.Response.Status, StatusCode: re.Response.StatusCode}}
			}
			if re, ok := e.(*awshttp.ResponseError); ok && re.ResponseError != nil {
				strip(re.ResponseError)
			}
			switch u := e.(type) {
			case interface{ Unwrap() []error }:
				for _, inner := range u.Unwrap() {
					strip(inner)
				}
				return
			case interface{ Unwrap() error }:
				e = u.Unwrap()
			default:
				return
			}
		}
	}
	strip(err)
	return err
}

// answer waits for the run's result, or for the caller's deadline, and
// gives the caller its response: its own when this call ran the request,
// the kept one decoded otherwise.
func answer[Resp proto.Message](ctx context.Context, op string, start *runStart, done <-chan runResult[Resp]) (Resp, error) {
	var zero Resp
	var r runResult[Resp]
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // finished as the deadline passed: answer it
		default:
			if start.forsake() == runPending {
				// Still checking the request_id: this call sent
				// nothing, and its run will not start.
				return zero, &NotStartedError{Operation: op, Err: ctx.Err()}
			}
			// Its caller's deadline passed, or it left: the run, its
			// own or the one it waited for, goes on.
			return zero, &StillRunningError{Operation: op, Err: ctx.Err()}
		}
	}
	if w, ok := errors.AsType[*idempotency.WaitEndedError](r.err); ok && errors.Is(w.Err, context.DeadlineExceeded) {
		// A repeat whose wait for another call's run ended with its
		// deadline, as the deadline's own case above: the run goes on.
		return zero, &StillRunningError{Operation: op, Err: w.Err}
	}
	if cut, ok := errors.AsType[*idempotency.CheckEndedError](r.err); ok && !r.ran {
		// The deadline, or the caller leaving, cut the check of the
		// request_id short: this call ran nothing.
		return zero, &NotStartedError{Operation: op, Err: cut.Err}
	}
	switch {
	case r.err != nil:
		return zero, r.err
	case r.ran: // this call ran it: its own response, not a copy decoded back
		return r.mine, nil
	}
	out := zero.ProtoReflect().New().Interface().(Resp)
	if err := proto.Unmarshal(r.kept, out); err != nil {
		return zero, fmt.Errorf("decode the kept %s response: %w", op, err)
	}
	return out, nil
}

// resultSlack is how much longer than its run a request_id caller waits,
// so that a run that ends at its deadline is still answered: the run's
// upstream_timeout starts only once the request_id is claimed (a round
// trip to Redis, or more when it is slow), and another replica's run the
// caller waits for is answered through Redis. The README's and config's
// upstream_timeout say so.
const resultSlack = time.Second

// RunsGoing is how many request_id runs are going, those whose callers
// still wait and those whose callers left: a shutdown's drain waits for
// them all (Wait), after the requests in flight.
func (s *Server) RunsGoing() int { return s.detached.Len() }

// Wait waits until every detached request_id run has ended and kept its
// result, or ctx has: shutdown calls it after the servers have drained, so
// that a run whose caller gave up still keeps its result. A store that
// keeps results in the background (Redis, when it failed) is waited for
// too. The runs it cannot wait for are logged, by request_id: their
// results are lost.
func (s *Server) Wait(ctx context.Context) error {
	going, err := s.detached.Wait(ctx)
	for _, k := range going {
		s.log.LogAttrs(ctx, slog.LevelError, "request_id: backupd shut down before the run ended; its result is not kept, "+
			"and whether DynamoDB acted on it is not known", slog.String("account", k.Account), slog.String("request_id", k.RequestID))
	}
	// At once when ctx has ended, logging what it leaves.
	err = cmp.Or(err, s.idem.Wait(ctx))
	if err != nil {
		return fmt.Errorf("request_id runs or results still going: %w", err)
	}
	return nil
}

// unsent is an error that says its call was not made: nothing reached
// DynamoDB (the limiter refused it or was still waiting, STS gave no
// credentials, Redis could not be asked).
type unsent interface {
	error
	NotSent() bool
}

// mayHaveActed reports whether a failed call may still have been done by
// DynamoDB: its outcome is unknown, or the detached run's own deadline
// passed after the call left the limiter, Redis and STS behind. A deadline
// that passed while the call waited for its turn comes as an error that
// says it was not sent.
func mayHaveActed(err error) bool {
	if _, ok := errors.AsType[*accounts.NothingDoneError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*accounts.OutcomeUnknownError](err); ok {
		return true
	}
	if u, ok := errors.AsType[unsent](err); ok && u.NotSent() {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// sendError classifies the error of a call that must not be done twice by
// whether it may have reached DynamoDB, which submitted (see
// accounts.WithSubmitTime) tells: zero when it cannot have.
func sendError(op string, err error, submitted time.Time) error {
	switch {
	case submitted.IsZero():
		if _, ok := errors.AsType[*accounts.NothingDoneError](err); ok {
			return err // accounts said so already
		}
		return &accounts.NothingDoneError{Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &UnansweredError{Operation: op, Err: err}
	}
	return err
}

// StillRunningError says the caller's deadline passed, or the caller
// canceled, while its request_id's run went on: a repeat with the same
// request_id gets the run's result.
type StillRunningError struct {
	Operation string
	Err       error
}

func (e *StillRunningError) Error() string {
	end := "the deadline passed"
	if errors.Is(e.Err, context.Canceled) {
		end = "its caller canceled"
	}
	return fmt.Sprintf("%s still running under its request_id when %s (a repeat with the same request_id gets its result): %v", e.Operation, end, e.Err)
}

func (e *StillRunningError) Unwrap() error { return e.Err }

// NotStartedError says the caller's deadline passed, or the caller
// canceled, before this call's request_id run started: backupd was still
// checking the request_id in its store (a slow or stalled Redis). This
// call sent nothing to DynamoDB, and never will; another call with the
// same request_id may have.
type NotStartedError struct {
	Operation string
	Err       error
}

func (e *NotStartedError) Error() string {
	return fmt.Sprintf("%s not started under its request_id before its caller's end (its request_id still being checked): "+
		"this call sent nothing to DynamoDB: %v", e.Operation, e.Err)
}

func (e *NotStartedError) Unwrap() error { return e.Err }

// UnansweredError says the deadline passed, or the caller canceled, after
// a CreateBackup or a restore had left for DynamoDB: it may or may not
// have been done, which the log line of a caller that left says too.
type UnansweredError struct {
	Operation string
	Err       error
}

func (e *UnansweredError) Error() string {
	end := "the deadline"
	if errors.Is(e.Err, context.Canceled) {
		end = "the call was canceled"
	}
	return fmt.Sprintf("%s was sent to DynamoDB but not answered before %s, and may or may not have been done: %v", e.Operation, end, e.Err)
}

func (e *UnansweredError) Unwrap() error { return e.Err }

// outcomeUnknown is err as an *accounts.OutcomeUnknownError: err itself
// when it already is one, so that its message says so once.
func outcomeUnknown(op string, target accounts.Target, err error) error {
	if _, ok := errors.AsType[*accounts.OutcomeUnknownError](err); ok {
		return err
	}
	return &accounts.OutcomeUnknownError{Operation: op, AccountID: target.AccountID, Region: target.Region, Err: err}
}

// fingerprint hashes a request's type and parameters. The request_id is
// not among them: norm carries none.
func fingerprint(norm proto.Message) (idempotency.Fingerprint, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(norm)
	if err != nil {
		return idempotency.Fingerprint{}, fmt.Errorf("fingerprint: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(norm.ProtoReflect().Descriptor().FullName()))
	h.Write([]byte{0})
	h.Write(b)
	return idempotency.Fingerprint(h.Sum(nil)), nil
}
