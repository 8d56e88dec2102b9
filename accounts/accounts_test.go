package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/sandbox"
	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/testenv"
)

type staticRoles struct{}

func (staticRoles) Expired(string, string) {}

func (staticRoles) Credentials(string) (aws.CredentialsProvider, bool) {
	return credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""), true
}

// countingLimiter records every key it is asked about and refuses when told.
type countingLimiter struct {
	mu     sync.Mutex
	keys   []ratelimit.Key
	refuse bool
	admit  int   // when > 0, refuse every turn after this many
	fail   error // what a refused turn answers; a LimitedError when nil
	// hold makes a refused turn wait for the call's end and answer as
	// the limiter does then.
	hold bool
}

func (l *countingLimiter) Wait(ctx context.Context, k ratelimit.Key) error {
	l.mu.Lock()
	l.keys = append(l.keys, k)
	refused := l.refuse || l.admit > 0 && len(l.keys) > l.admit
	l.mu.Unlock()
	switch {
	case !refused:
		return nil
	case l.hold:
		<-ctx.Done()
		return &ratelimit.InterruptedError{Key: k, Err: ctx.Err()}
	case l.fail != nil:
		return l.fail
	}
	return &ratelimit.LimitedError{Key: k, RetryAfter: time.Second}
}

// failure is how a fake DynamoDB fails an attempt.
type failure int

const (
	throttle           failure = iota // 400 ThrottlingException: DynamoDB refused, did nothing
	serverError                       // 500 InternalServerError: it may have acted
	dropConnection                    // the request arrived, no answer came back
	unavailable                       // 503 with an error code the SDK does not know: it may have acted
	throttleLong                      // throttle, asking for a retry only after 5 s (X-Amz-Retry-After)
	expiredCredentials                // 400 ExpiredTokenException: the credentials are expired, by DynamoDB's clock
)

// flakyDynamoDB fails the first `failures` calls as f says, then answers.
func flakyDynamoDB(t *testing.T, failures int32, f failure) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if n <= failures {
			switch f {
			case throttle, throttleLong:
				if f == throttleLong {
					w.Header().Set("X-Amz-Retry-After", "5000")
				}
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}`))
			case serverError:
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"try again"}`))
			case dropConnection:
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			case expiredCredentials:
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}`))
			case unavailable:
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"try later"}`))
			}
			return
		}
		_, _ = w.Write([]byte(`{"BackupDetails":{"BackupArn":"arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12","BackupName":"b","BackupStatus":"AVAILABLE","BackupType":"USER","BackupCreationDateTime":1.7e9}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func newRegistry(t *testing.T, endpoint string, lim Limiter) *Registry {
	t.Helper()
	return newRegistryWithRoles(t, endpoint, lim, staticRoles{})
}

func newRegistryWithRoles(t *testing.T, endpoint string, lim Limiter, roles CredentialSource) *Registry {
	t.Helper()
	r, err := New(Options{
		AWS:      aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint)},
		Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1", "eu-west-1"}}},
		Roles:    roles,
		Limiter:  lim,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEveryAttemptPassesTheGate(t *testing.T) {
	srv, calls := flakyDynamoDB(t, 2, throttle)
	lim := &countingLimiter{}
	target, err := newRegistry(t, srv.URL, lim).Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	var submitted time.Time
	before := time.Now()
	if _, err := target.DynamoDB.CreateBackup(WithSubmitTime(context.Background(), &submitted), &dynamodb.CreateBackupInput{
		TableName: aws.String("T"), BackupName: aws.String("b"),
	}); err != nil {
		t.Fatal(err)
	}
	want := ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	if calls.Load() != 3 || len(lim.keys) != 3 || lim.keys[0] != want || lim.keys[2] != want {
		t.Errorf("%d HTTP calls, gate keys %v; want 3 and 3 x %v", calls.Load(), lim.keys, want)
	}
	if submitted.Before(before) {
		t.Errorf("submit time %s not recorded", submitted)
	}
}

func TestRefusedAttemptIsNeitherSentNorRetried(t *testing.T) {
	srv, calls := flakyDynamoDB(t, 0, throttle)
	lim := &countingLimiter{refuse: true}
	target, _ := newRegistry(t, srv.URL, lim).Resolve("111111111111", "eu-west-1")
	_, err := target.DynamoDB.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
	var le *ratelimit.LimitedError
	if !errors.As(err, &le) || le.Key.Region != "eu-west-1" {
		t.Fatalf("err = %v, want a LimitedError for eu-west-1", err)
	}
	if calls.Load() != 0 || len(lim.keys) != 1 {
		t.Errorf("%d HTTP calls and %d gate checks; want 0 and 1", calls.Load(), len(lim.keys))
	}
}

// A retry the limiter does not admit fails with what DynamoDB answered
// the attempt before it: the call was not over the account's rate, and
// its caller must not be told it was.
func TestRetryNotAdmittedFailsWithTheAttemptsError(t *testing.T) {
	arn := aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")
	tests := []struct {
		name     string
		failure  failure
		call     func(context.Context, *dynamodb.Client) error
		wantCode string
		refusal  error // the limiter's; a LimitedError when nil
	}{
		{"DescribeBackup after a 500", serverError, func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: arn})
			return err
		}, "InternalServerError", nil},
		{"DeleteBackup after a 500", serverError, func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn})
			return err
		}, "InternalServerError", nil},
		{"CreateBackup after throttling", throttle, func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			return err
		}, "ThrottlingException", nil},
		{"CreateBackup after throttling, too late for its retry", throttle, func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			return err
		}, "ThrottlingException", &ratelimit.TooLateError{Lead: SendLead}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, 5, tt.failure)
			lim := &countingLimiter{admit: 1, fail: tt.refusal}
			target, err := newRegistry(t, srv.URL, lim).Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			err = tt.call(context.Background(), target.DynamoDB)
			if api, ok := errors.AsType[smithy.APIError](err); !ok || api.ErrorCode() != tt.wantCode {
				t.Errorf("err = %v; want DynamoDB's %s", err, tt.wantCode)
			}
			if _, ok := errors.AsType[*RetryNotMadeError](err); !ok {
				t.Errorf("err = %v; want a RetryNotMadeError", err)
			}
			if _, limited := errors.AsType[*ratelimit.LimitedError](err); limited || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v reads as the limiter's refusal", err)
			}
			if calls.Load() != 1 || len(lim.keys) != 2 {
				t.Errorf("%d HTTP calls and %d turns asked; want 1 and 2", calls.Load(), len(lim.keys))
			}
		})
	}
}

// A retry the deadline cuts off, in its wait for a turn or in the SDK's
// backoff, fails with what DynamoDB answered the attempt before it: the
// call was sent and refused, and the caller must not be told that nothing
// was sent, or only that time ran out.
func TestRetryCutOffByTheDeadlineFailsWithTheAttemptsError(t *testing.T) {
	tests := []struct {
		name    string
		failure failure
		lim     *countingLimiter
		timeout time.Duration // the call's deadline; 0: none
	}{
		// The SDK's first backoff is under 2 s, so the deadline passes
		// while the retry waits for its turn.
		{"waiting for its turn", throttle, &countingLimiter{admit: 1, hold: true}, 3 * time.Second},
		// DynamoDB asks for 5 s before the retry.
		{"in the SDK's backoff", throttleLong, &countingLimiter{}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, 5, tt.failure)
			target, err := newRegistry(t, srv.URL, tt.lim).Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			_, err = target.DynamoDB.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			if api, ok := errors.AsType[smithy.APIError](err); !ok || api.ErrorCode() != "ThrottlingException" {
				t.Errorf("err = %v; want DynamoDB's ThrottlingException", err)
			}
			if _, ok := errors.AsType[*RetryNotMadeError](err); !ok || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v; want a RetryNotMadeError that is not the deadline's", err)
			}
			if calls.Load() != 1 || tt.lim.hold && len(tt.lim.keys) != 2 {
				t.Errorf("%d HTTP calls, %d turns asked; want 1 (and a turn asked for the retry when it waits for one)", calls.Load(), len(tt.lim.keys))
			}
		})
	}
}

// expiringCreds gives credentials that last 50 ms, then fails as STS does
// when AssumeRole outlasts its own timeout.
type expiringCreds struct{ n atomic.Int32 }

func (c *expiringCreds) Retrieve(context.Context) (aws.Credentials, error) {
	if c.n.Add(1) == 1 {
		return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret", CanExpire: true, Expires: time.Now().Add(50 * time.Millisecond)}, nil
	}
	return aws.Credentials{}, &auth.AssumeRoleError{AccountID: "111111111111", Err: fmt.Errorf("operation error STS: AssumeRole: %w", context.DeadlineExceeded)}
}

type expiringRoles struct{ creds *expiringCreds }

func (expiringRoles) Expired(string, string) {}

func (r expiringRoles) Credentials(string) (aws.CredentialsProvider, bool) { return r.creds, true }

// STS's own timeout, on a retry that needs fresh credentials while the
// call's deadline is far, is STS's failure: it is not taken for the
// deadline cutting the retry off.
func TestRetrysSTSTimeoutIsSTSs(t *testing.T) {
	srv, _ := flakyDynamoDB(t, 5, serverError)
	target, err := newRegistryWithRoles(t, srv.URL, &countingLimiter{}, expiringRoles{&expiringCreds{}}).Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = target.DynamoDB.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{
		BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
	if _, ok := errors.AsType[*auth.AssumeRoleError](err); !ok {
		t.Errorf("err = %v; want STS's AssumeRoleError", err)
	}
	if _, wrapped := errors.AsType[*RetryNotMadeError](err); wrapped {
		t.Errorf("err = %v is a RetryNotMadeError", err)
	}
}

// A retry's wait that ends for another reason than the rate or the
// deadline (the caller left, Redis failed) fails with that reason, not
// DynamoDB's answer to the attempt before: the caller's status and the log
// must tell. Redis failing is marked as stopping a retry, so that the
// caller is not told that nothing was sent.
func TestRetryWaitEndedOtherwiseKeepsItsReason(t *testing.T) {
	redisDown := &sharedstate.UnavailableError{Op: "rate limit", Err: errors.New("connection refused")}
	for _, tt := range []struct {
		fail    error
		stopped bool // marked as a retry Redis stopped
	}{
		{&ratelimit.InterruptedError{Err: context.Canceled}, false},
		{redisDown, true},
	} {
		fail := tt.fail
		t.Run(fail.Error(), func(t *testing.T) {
			srv, _ := flakyDynamoDB(t, 5, serverError)
			target, err := newRegistry(t, srv.URL, &countingLimiter{admit: 1, fail: fail}).Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = target.DynamoDB.DescribeBackup(context.Background(), &dynamodb.DescribeBackupInput{
				BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
			if !errors.Is(err, fail) {
				t.Errorf("err = %v; want the wait's own %v", err, fail)
			}
			if _, wrapped := errors.AsType[*RetryNotMadeError](err); wrapped {
				t.Errorf("err = %v is a RetryNotMadeError", err)
			}
			if _, stopped := errors.AsType[*RetryStoppedError](err); stopped != tt.stopped {
				t.Errorf("err = %v: a RetryStoppedError %v, want %v", err, stopped, tt.stopped)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	r := newRegistry(t, "http://127.0.0.1:1", &countingLimiter{})
	tests := []struct {
		account, region string
		wantRegion      string
		wantErr         any
	}{
		{"111111111111", "", "us-east-1", nil},
		{"111111111111", "eu-west-1", "eu-west-1", nil},
		{"111111111111", "ap-south-1", "", &RegionNotAllowedError{}},
		{"222222222222", "", "", &NotConfiguredError{}},
	}
	for _, tt := range tests {
		got, err := r.Resolve(tt.account, tt.region)
		switch want := tt.wantErr.(type) {
		case nil:
			if err != nil || got.Region != tt.wantRegion || got.DynamoDB == nil {
				t.Errorf("Resolve(%s, %q) = %+v, %v", tt.account, tt.region, got, err)
			}
		case *RegionNotAllowedError:
			if !errors.As(err, &want) {
				t.Errorf("Resolve(%s, %q) err = %v, want RegionNotAllowedError", tt.account, tt.region, err)
			}
		case *NotConfiguredError:
			if !errors.As(err, &want) || want.AccountID != tt.account || err.Error() != "account "+tt.account+" is not configured" {
				t.Errorf("Resolve(%s, %q) err = %v, want NotConfiguredError", tt.account, tt.region, err)
			}
		}
	}
	a, _ := r.Resolve("111111111111", "us-east-1")
	b, _ := r.Resolve("111111111111", "")
	if a.DynamoDB != b.DynamoDB {
		t.Error("the same (account, region) got two clients")
	}
}

// A non-idempotent call is sent again only when DynamoDB provably did not
// act on it; an idempotent one is retried on any transient failure.
func TestRetriesNeverRepeatAnAmbiguousCreateBackup(t *testing.T) {
	tests := []struct {
		name      string
		f         failure
		op        string
		wantCalls int32
		unknown   bool
	}{
		{"CreateBackup throttled", throttle, "CreateBackup", 2, false},
		{"CreateBackup 500", serverError, "CreateBackup", 1, true},
		{"CreateBackup dropped connection", dropConnection, "CreateBackup", 1, true},
		{"CreateBackup 503 of an unknown error", unavailable, "CreateBackup", 1, true},
		{"RestoreTableFromBackup dropped connection", dropConnection, "RestoreTableFromBackup", 1, true},
		{"DescribeBackup 500", serverError, "DescribeBackup", 2, false},
		{"ListBackups dropped connection", dropConnection, "ListBackups", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, 1, tt.f)
			target, _ := newRegistry(t, srv.URL, &countingLimiter{}).Resolve("111111111111", "")
			ctx := context.Background()
			var err error
			switch tt.op {
			case "CreateBackup":
				_, err = target.DynamoDB.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			case "RestoreTableFromBackup":
				_, err = target.DynamoDB.RestoreTableFromBackup(ctx, &dynamodb.RestoreTableFromBackupInput{
					BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12"), TargetTableName: aws.String("T2")})
			case "DescribeBackup":
				_, err = target.DynamoDB.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
			case "ListBackups":
				_, err = target.DynamoDB.ListBackups(ctx, &dynamodb.ListBackupsInput{})
			}
			if calls.Load() != tt.wantCalls {
				t.Errorf("%d calls reached DynamoDB, want %d", calls.Load(), tt.wantCalls)
			}
			var unknown *OutcomeUnknownError
			if errors.As(err, &unknown) != tt.unknown {
				t.Errorf("err = %v; want outcome unknown: %v", err, tt.unknown)
			}
			if unknown != nil && (unknown.AccountID != target.AccountID || unknown.Region != target.Region) {
				t.Errorf("outcome unknown in account %q, region %q; want %q, %q", unknown.AccountID, unknown.Region, target.AccountID, target.Region)
			}
			if !tt.unknown && err != nil {
				t.Errorf("retried call failed: %v", err)
			}
		})
	}
}

// Answers that are not DynamoDB's own refusals leave a CreateBackup an
// unknown outcome, sent once: a 5xx whose error code is not a name (here
// not even UTF-8; a proxy in front of DynamoDB may answer anything),
// whose attempt's observer, running after DynamoDB may have acted, must
// not panic; and a 4xx whose body is not DynamoDB's JSON (a proxy's or
// WAF's 403 page, or a JSON answer without DynamoDB's error code), which
// does not say DynamoDB did nothing: such a proxy may refuse the answer
// after passing the request on. Neither is run again under its
// request_id.
func TestProxyAnswersAreUnknownOutcomes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer http.HandlerFunc
	}{
		{"5xx with an odd error code", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Amzn-ErrorType", "Internal\xffError")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{}`))
		}},
		{"429 without an error code", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message":"Too Many Requests"}`))
		}},
		{"403 page", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`<html>forbidden</html>`))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				tt.answer(w, r)
			}))
			t.Cleanup(srv.Close)
			r, err := New(Options{
				AWS:      aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL)},
				Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}},
				Roles:    staticRoles{}, Limiter: &countingLimiter{}, Observer: metrics.New(),
			})
			if err != nil {
				t.Fatal(err)
			}
			target, _ := r.Resolve("111111111111", "")
			_, err = target.DynamoDB.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			if _, ok := errors.AsType[*OutcomeUnknownError](err); !ok || calls.Load() != 1 {
				t.Errorf("err = %v after %d calls; want an unknown outcome after 1", err, calls.Load())
			}
		})
	}
}

// slowRoles hands out credentials only when the call's context ends: STS
// did not answer in time.
type slowRoles struct{}

func (slowRoles) Expired(string, string) {}

func (slowRoles) Credentials(string) (aws.CredentialsProvider, bool) {
	return aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		<-ctx.Done()
		return aws.Credentials{}, ctx.Err()
	}), true
}

// The submit time is when the last attempt left for DynamoDB, and zero
// after a failure only when DynamoDB cannot have acted on any attempt: what
// tells a request_id run whose deadline passed whether its repeat may run.
func TestSubmitTimeSaysWhetherDynamoDBMayHaveActed(t *testing.T) {
	tests := []struct {
		name      string
		f         failure
		failures  int32
		roles     CredentialSource
		timeout   time.Duration
		wantCalls int32 // 0: none; -1: some
		wantSent  bool
	}{
		{"answered", throttle, 0, staticRoles{}, 5 * time.Second, 1, true},
		{"throttled, then answered", throttle, 1, staticRoles{}, 5 * time.Second, 2, true},
		{"throttled until the deadline", throttle, 1000, staticRoles{}, time.Second, -1, false},
		{"500", serverError, 1, staticRoles{}, 5 * time.Second, 1, true},
		{"503 of an unknown error", unavailable, 1, staticRoles{}, 5 * time.Second, 1, true},
		{"dropped connection", dropConnection, 1, staticRoles{}, 5 * time.Second, 1, true},
		{"STS too slow", throttle, 0, slowRoles{}, 100 * time.Millisecond, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, tt.failures, tt.f)
			target, _ := newRegistryWithRoles(t, srv.URL, &countingLimiter{}, tt.roles).Resolve("111111111111", "")
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			var submitted time.Time
			before := time.Now()
			_, err := target.DynamoDB.CreateBackup(WithSubmitTime(ctx, &submitted), &dynamodb.CreateBackupInput{
				TableName: aws.String("T"), BackupName: aws.String("b")})
			if n := calls.Load(); n != tt.wantCalls && (tt.wantCalls >= 0 || n == 0) {
				t.Errorf("%d calls reached DynamoDB, want %d (err %v)", n, tt.wantCalls, err)
			}
			wantSent := tt.wantSent
			if tt.wantCalls < 0 && errors.Is(err, context.DeadlineExceeded) && !errors.As(err, new(*RetryNotMadeError)) {
				// The deadline cut an attempt in flight, not the wait
				// between attempts: one that had its connection may have
				// been written, and its submit time is rightly kept.
				wantSent = !submitted.IsZero()
			}
			if sent := !submitted.IsZero(); sent != wantSent || sent && submitted.Before(before) {
				t.Errorf("submit time %v (err %v); want one after %v: %v", submitted, err, before, tt.wantSent)
			}
		})
	}
}

// failingRoles is STS refusing to answer: every retrieval fails, counted.
type failingRoles struct{ calls *atomic.Int32 }

func (failingRoles) Expired(string, string) {}

func (r failingRoles) Credentials(account string) (aws.CredentialsProvider, bool) {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		r.calls.Add(1)
		return aws.Credentials{}, &auth.AssumeRoleError{AccountID: account, Err: errors.New("connection refused")}
	}), true
}

// A call that cannot get credentials asks STS once, not once per DynamoDB
// attempt, and takes no turn from the limiter: the turns are for calls
// that can reach DynamoDB.
func TestCredentialFailureIsNotRetriedAndTakesNoTurn(t *testing.T) {
	srv, calls := flakyDynamoDB(t, 0, throttle)
	lim := &countingLimiter{}
	var assumes atomic.Int32
	target, _ := newRegistryWithRoles(t, srv.URL, lim, failingRoles{&assumes}).Resolve("111111111111", "")
	_, err := target.DynamoDB.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
	if _, ok := errors.AsType[*auth.AssumeRoleError](err); !ok {
		t.Fatalf("err = %v, want an AssumeRoleError", err)
	}
	if assumes.Load() != 1 || len(lim.keys) != 0 || calls.Load() != 0 {
		t.Errorf("%d credential retrievals, %d limiter turns, %d DynamoDB calls; want 1, 0, 0", assumes.Load(), len(lim.keys), calls.Load())
	}
}

// An attempt that never gets a connection (a TLS certificate backupd does
// not trust) was not sent: its submit time stays zero, and it is not an
// unknown outcome.
func TestAttemptWithoutAConnectionWasNotSent(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	target, _ := newRegistry(t, srv.URL, &countingLimiter{}).Resolve("111111111111", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var submitted time.Time
	_, err := target.DynamoDB.CreateBackup(WithSubmitTime(ctx, &submitted), &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
	if err == nil || calls.Load() != 0 {
		t.Fatalf("err %v after %d calls; want a TLS failure before any call", err, calls.Load())
	}
	if _, unknown := errors.AsType[*OutcomeUnknownError](err); unknown || !submitted.IsZero() {
		t.Errorf("err %v, submit time %v; want neither an unknown outcome nor a submit time", err, submitted)
	}
}

// A DeleteBackup retried after an attempt that went unanswered, and may
// have deleted the backup, says so when the retry finds no backup; after
// an attempt DynamoDB refused, or on the first attempt, not finding the
// backup is plain BackupNotFound.
func TestDeleteRetriedAfterAnUnansweredAttempt(t *testing.T) {
	const notFound = `{"__type":"com.amazonaws.dynamodb.v20120810#BackupNotFoundException","message":"Backup not found"}`
	tests := []struct {
		name        string
		first       failure // how the first attempt fails; -1: it finds no backup
		wantDeleted bool
	}{
		{"dropped connection, then not found", dropConnection, true},
		{"500, then not found", serverError, true},
		{"throttled, then not found", throttle, false},
		{"not found at once", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failing, _ := flakyDynamoDB(t, 1, tt.first)
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 && tt.first >= 0 {
					failing.Config.Handler.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(notFound))
			}))
			t.Cleanup(srv.Close)
			target, _ := newRegistry(t, srv.URL, &countingLimiter{}).Resolve("111111111111", "")
			_, err := target.DynamoDB.DeleteBackup(context.Background(), &dynamodb.DeleteBackupInput{
				BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
			if _, ok := errors.AsType[*types.BackupNotFoundException](err); !ok {
				t.Fatalf("err = %v, want BackupNotFound", err)
			}
			if _, deleted := errors.AsType[*DeletedEarlierError](err); deleted != tt.wantDeleted {
				t.Errorf("err = %v; want DeletedEarlierError: %v", err, tt.wantDeleted)
			}
			if want := int32(2); tt.first < 0 {
				if calls.Load() != 1 {
					t.Errorf("%d calls, want 1", calls.Load())
				}
			} else if calls.Load() != want {
				t.Errorf("%d calls, want %d", calls.Load(), want)
			}
		})
	}
}

// A DeleteBackup that fails after an attempt went unanswered may have
// deleted the backup, and says so (MayHaveDeletedError); one whose
// attempts DynamoDB refused, or that never reached it, does not.
func TestDeleteFailingAfterAnUnansweredAttempt(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // every dial refused
	tests := []struct {
		name     string
		endpoint func(t *testing.T) string
		want     bool
	}{
		{"every attempt 500", func(t *testing.T) string { srv, _ := flakyDynamoDB(t, 100, serverError); return srv.URL }, true},
		{"every attempt dropped", func(t *testing.T) string { srv, _ := flakyDynamoDB(t, 100, dropConnection); return srv.URL }, true},
		{"every attempt throttled", func(t *testing.T) string { srv, _ := flakyDynamoDB(t, 100, throttle); return srv.URL }, false},
		{"no attempt reached DynamoDB", func(*testing.T) string { return closed.URL }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, _ := newRegistry(t, tt.endpoint(t), &countingLimiter{}).Resolve("111111111111", "")
			_, err := target.DynamoDB.DeleteBackup(context.Background(), &dynamodb.DeleteBackupInput{
				BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
			if err == nil {
				t.Fatal("DeleteBackup succeeded")
			}
			if _, may := errors.AsType[*MayHaveDeletedError](err); may != tt.want {
				t.Errorf("err = %v; want MayHaveDeletedError: %v", err, tt.want)
			}
		})
	}
}

// closeFirst closes the first connection it accepts at once, before any
// TLS handshake: an attempt that never had a connection.
type closeFirst struct {
	net.Listener
	closed atomic.Bool
}

func (l *closeFirst) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.closed.CompareAndSwap(false, true) {
		c.Close()
		return l.Listener.Accept()
	}
	return c, err
}

// A DeleteBackup whose first attempt failed its TLS handshake sent
// nothing: the retry's not-found is plain BackupNotFound.
func TestDeleteRetriedAfterAFailedHandshake(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#BackupNotFoundException","message":"Backup not found"}`))
	}))
	srv.Listener = &closeFirst{Listener: srv.Listener}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	target := targetWith(t, srv.URL, srv.Client())
	_, err := target.DynamoDB.DeleteBackup(context.Background(), &dynamodb.DeleteBackupInput{
		BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")})
	if _, ok := errors.AsType[*types.BackupNotFoundException](err); !ok {
		t.Fatalf("err = %v, want BackupNotFound after a retry", err)
	}
	if _, deleted := errors.AsType[*DeletedEarlierError](err); deleted {
		t.Errorf("err = %v; the failed handshake sent nothing, so nothing may have been deleted", err)
	}
}

// targetWith resolves account 111111111111's client in us-east-1, on
// endpoint through client.
func targetWith(t *testing.T, endpoint string, client aws.HTTPClient) Target {
	t.Helper()
	r, err := New(Options{
		AWS:      aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), HTTPClient: client},
		Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}},
		Roles:    staticRoles{},
		Limiter:  &countingLimiter{},
	})
	if err != nil {
		t.Fatal(err)
	}
	target, err := r.Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// TestExpiredCredentialsAreAssumedAgain: DynamoDB refuses as expired the
// credentials the cache holds valid (this host's clock is behind AWS's).
// The call is retried with the role assumed again, and succeeds without a
// second backup; later calls use the new credentials.
func TestExpiredCredentialsAreAssumedAgain(t *testing.T) {
	var ahead atomic.Int64 // how far the fake's clock is ahead of this host's
	fake := sandbox.New(sandbox.Options{Accounts: sandbox.DemoAccounts(),
		Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	awsCfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.StaticCredentialsProvider{Value: fake.BaseCredentials()}}
	logs := &testenv.Buffer{}
	reg, err := NewFromConfig(sandbox.DemoConfig(sandbox.DemoAccounts()), awsCfg, &countingLimiter{}, nil,
		slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	target, err := reg.Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	backup := func(name string) error {
		_, err := target.DynamoDB.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{
			TableName: aws.String("Orders"), BackupName: aws.String(name)})
		return err
	}
	if err := backup("before"); err != nil || fake.AssumeRoleCalls() != 1 {
		t.Fatalf("first backup: %v after %d AssumeRole calls", err, fake.AssumeRoleCalls())
	}
	// The hour's credentials have expired by AWS's clock; by this host's,
	// the cache would keep them for 55 minutes more.
	ahead.Store(int64(time.Hour + time.Minute))
	for _, name := range []string{"after", "later"} {
		if err := backup(name); err != nil || fake.AssumeRoleCalls() != 2 {
			t.Errorf("backup %q: %v after %d AssumeRole calls; want it done, the role assumed once more", name, err, fake.AssumeRoleCalls())
		}
	}
	out, err := target.DynamoDB.ListBackups(context.Background(), &dynamodb.ListBackupsInput{TableName: aws.String("Orders")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.BackupSummaries) != 3 {
		t.Errorf("ListBackups: %d backups; want 3, one per call", len(out.BackupSummaries))
	}
	if lines := logs.Lines(`"level":"WARN"`, `"account":"111111111111"`, "expired before backupd's clock did"); len(lines) != 1 {
		t.Errorf("want one WARN line; log:\n%s", logs.String())
	}
}

// countingRoles is staticRoles that counts the refusals of its credentials
// as expired, and keeps the access keys they name.
type countingRoles struct {
	staticRoles
	expired atomic.Int32
	mu      sync.Mutex
	keys    []string
}

func (r *countingRoles) Expired(_, accessKeyID string) {
	r.expired.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, accessKeyID)
}

// TestExpiredTokenIsRetriedOnce: a call whose credentials DynamoDB refuses
// as expired is retried once, with the role assumed again; refused again,
// it fails with DynamoDB's refusal rather than taking the account's turns
// for the rest of its attempts. Each refusal names the access key the
// refused attempt was signed with.
func TestExpiredTokenIsRetriedOnce(t *testing.T) {
	for _, tt := range []struct {
		failures  int32
		wantErr   bool
		wantCalls int32
	}{
		{1, false, 2}, // refused once: retried, done
		{99, true, 2}, // refused for good: one retry only
	} {
		t.Run(fmt.Sprint(tt.failures, " refusals"), func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, tt.failures, expiredCredentials)
			roles := &countingRoles{}
			lim := &countingLimiter{}
			target, err := newRegistryWithRoles(t, srv.URL, lim, roles).Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = target.DynamoDB.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("T"), BackupName: aws.String("b")})
			if (err != nil) != tt.wantErr || calls.Load() != tt.wantCalls || len(lim.keys) != int(tt.wantCalls) {
				t.Errorf("CreateBackup: %v after %d attempts, %d turns; want error %v after %d", err, calls.Load(), len(lim.keys), tt.wantErr, tt.wantCalls)
			}
			if api, ok := errors.AsType[smithy.APIError](err); tt.wantErr && (!ok || api.ErrorCode() != "ExpiredTokenException") {
				t.Errorf("err = %v; want DynamoDB's ExpiredTokenException", err)
			}
			if _, unsure := errors.AsType[*OutcomeUnknownError](err); unsure {
				t.Errorf("err = %v: a refusal taken for an unknown outcome", err)
			}
			if n := roles.expired.Load(); n != min(tt.failures, tt.wantCalls) {
				t.Errorf("the credentials were reported expired %d times; want once per refusal", n)
			}
			for _, key := range roles.keys {
				if key != "AKID" {
					t.Errorf("a refusal reported of access key %q; want AKID, which signed the attempt", key)
				}
			}
		})
	}
}

// A LimitExceededException over a standing quota of the account is not
// retried (each retry would be refused the same way, and take a turn);
// one over table operations at once is, as throttling.
func TestLimitExceededOverAQuotaIsNotRetried(t *testing.T) {
	for _, tt := range []struct {
		msg       string
		wantCalls int32
	}{
		{"Subscriber limit exceeded: There is a limit of 2500 tables per subscriber", 1},
		{"Subscriber limit exceeded: Only 10 tables can be created, updated, or deleted simultaneously", 2},
	} {
		t.Run(tt.msg, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				if calls.Add(1) > 1 {
					_, _ = w.Write([]byte(`{"TableDescription":{"TableName":"Copy","TableStatus":"CREATING"}}`))
					return
				}
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#LimitExceededException","message":"` + tt.msg + `"}`))
			}))
			t.Cleanup(srv.Close)
			target, _ := newRegistry(t, srv.URL, &countingLimiter{}).Resolve("111111111111", "")
			_, _ = target.DynamoDB.RestoreTableFromBackup(context.Background(), &dynamodb.RestoreTableFromBackupInput{
				BackupArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12"), TargetTableName: aws.String("Copy")})
			if calls.Load() != tt.wantCalls {
				t.Errorf("%d calls; want %d", calls.Load(), tt.wantCalls)
			}
		})
	}
}

// A call whose deadline passes while its first attempt waits for its turn
// (a stalled Redis, say) sent nothing to DynamoDB, and says so of the
// whole call (NothingDoneError), for GetBackup, ListBackups and
// DeleteBackup alike. One whose earlier attempt went out does not, even
// when that attempt failed with an error that reads as a deadline (an
// HTTP client's own timeout) and its retry's wait is what the deadline
// cut off: DynamoDB may have acted on that attempt.
func TestDeadlineBeforeAnyTurnSaysNothingWasSent(t *testing.T) {
	arn := aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/T/backup/01700000000000-abcdef12")
	calls := map[string]func(context.Context, *dynamodb.Client) error{
		"DescribeBackup": func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.DescribeBackup(ctx, &dynamodb.DescribeBackupInput{BackupArn: arn})
			return err
		},
		"ListBackups": func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.ListBackups(ctx, &dynamodb.ListBackupsInput{})
			return err
		},
		"DeleteBackup": func(ctx context.Context, c *dynamodb.Client) error {
			_, err := c.DeleteBackup(ctx, &dynamodb.DeleteBackupInput{BackupArn: arn})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name+" first turn", func(t *testing.T) {
			srv, sent := flakyDynamoDB(t, 0, throttle)
			target, err := newRegistry(t, srv.URL, &countingLimiter{refuse: true, hold: true}).Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err = call(ctx, target.DynamoDB)
			if _, ok := errors.AsType[*NothingDoneError](err); !ok || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v; want a NothingDoneError wrapping the deadline", err)
			}
			if sent.Load() != 0 {
				t.Errorf("%d HTTP calls; want none", sent.Load())
			}
		})
		t.Run(name+" retry's turn", func(t *testing.T) {
			// The first attempt outlasts the HTTP client's timeout, which
			// the SDK retries; the retry waits for a turn until the
			// deadline.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(time.Second):
				}
			}))
			t.Cleanup(srv.Close)
			lim := &countingLimiter{admit: 1, hold: true}
			r, err := New(Options{
				AWS: aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
					HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}},
				Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}},
				Roles:    staticRoles{},
				Limiter:  lim,
			})
			if err != nil {
				t.Fatal(err)
			}
			target, err := r.Resolve("111111111111", "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err = call(ctx, target.DynamoDB)
			if _, ok := errors.AsType[*NothingDoneError](err); ok || err == nil {
				t.Errorf("err = %v; want an error that does not say nothing was sent", err)
			}
			if len(lim.keys) < 2 {
				t.Errorf("%d turns asked; want the retry's too", len(lim.keys))
			}
		})
	}
}

// TestThrottling: each of DynamoDB's refusals that say it throttled the
// call is one (backupd's mapping answers it DYNAMODB_THROTTLED, to be
// retried, and the retry bookkeeping holds it not acted on); no other is.
func TestThrottling(t *testing.T) {
	for code, want := range map[string]bool{
		"ThrottlingException": true, "LimitExceededException": true, "RequestLimitExceeded": true,
		"ProvisionedThroughputExceededException": true,
		"ValidationException":                    false, "InternalServerError": false, "": false, "throttlingexception": false,
	} {
		if got := Throttling(code); got != want {
			t.Errorf("Throttling(%q) = %v, want %v", code, got, want)
		}
	}
}

// TestRefused: an attempt whose connection could not be made (a dial
// error), or that DynamoDB answered with a client error or throttling,
// was certainly not acted on; one that failed after its connection was
// made, or got a 5xx, may have been.
func TestRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"dial refused", fmt.Errorf("send: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), true},
		{"connection reset while reading", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, false},
		{"a client error", &smithy.GenericAPIError{Code: "ValidationException", Fault: smithy.FaultClient}, true},
		{"throttled", &smithy.GenericAPIError{Code: "RequestLimitExceeded", Fault: smithy.FaultServer}, true},
		{"a server fault", &smithy.GenericAPIError{Code: "InternalServerError", Fault: smithy.FaultServer}, false},
		{"no error code", &smithy.GenericAPIError{Code: "UnknownError", Fault: smithy.FaultClient}, false},
	} {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAttemptsPerCall: a call that keeps failing transiently is sent
// MaxAttempts times, 5 when Options leaves it 0 (as NewFromConfig does),
// each attempt passing the gate. The backoff between attempts is cut
// short for the test; the count is the registry's.
func TestAttemptsPerCall(t *testing.T) {
	for _, tt := range []struct {
		maxAttempts int
		want        int32
	}{
		{0, 5},
		{2, 2},
	} {
		t.Run(fmt.Sprint(tt.maxAttempts), func(t *testing.T) {
			srv, calls := flakyDynamoDB(t, 100, serverError)
			lim := &countingLimiter{}
			r, err := New(Options{
				AWS:         aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL)},
				Accounts:    []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}},
				Roles:       staticRoles{},
				Limiter:     lim,
				MaxAttempts: tt.maxAttempts,
			})
			if err != nil {
				t.Fatal(err)
			}
			target, _ := r.Resolve("111111111111", "")
			_, err = target.DynamoDB.DescribeBackup(t.Context(), &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn")},
				func(o *dynamodb.Options) { o.Retryer = retry.AddWithMaxBackoffDelay(o.Retryer, time.Millisecond) })
			if err == nil {
				t.Fatal("DescribeBackup succeeded against a DynamoDB that always fails")
			}
			if calls.Load() != tt.want || len(lim.keys) != int(tt.want) {
				t.Errorf("%d attempts sent, %d turns asked; want %d of each", calls.Load(), len(lim.keys), tt.want)
			}
		})
	}
}

// TestClientSignsForItsRegion: each (account, region) client signs for
// its own region, whatever the base configuration's, as DynamoDB refuses
// a signature for another region.
func TestClientSignsForItsRegion(t *testing.T) {
	var scope atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"BackupSummaries":[]}`))
	}))
	t.Cleanup(srv.Close)
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		target, err := newRegistry(t, srv.URL, &countingLimiter{}).Resolve("111111111111", region)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := target.DynamoDB.ListBackups(t.Context(), &dynamodb.ListBackupsInput{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := scope.Load().(string); !strings.Contains(got, "/"+region+"/dynamodb/aws4_request") {
			t.Errorf("the %s client signed %q; want its own region in the credential scope", region, got)
		}
	}
}

// noRoles has credentials for no account.
type noRoles struct{}

func (noRoles) Expired(string, string) {}

func (noRoles) Credentials(string) (aws.CredentialsProvider, bool) { return nil, false }

// TestNewWithoutARole: an account without a role is refused at start, by
// its id, not served with no credentials.
func TestNewWithoutARole(t *testing.T) {
	r, err := New(Options{
		Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}},
		Roles:    noRoles{},
		Limiter:  &countingLimiter{},
	})
	if err == nil || r != nil || !strings.Contains(err.Error(), "111111111111") {
		t.Errorf("New = %v, %v; want an error naming the account", r, err)
	}
}

// attemptLog records the attempts an Observer is told of.
type attemptLog struct {
	mu       sync.Mutex
	attempts []string
}

func (l *attemptLog) ObserveAttempt(account, region, operation string, err error, _ time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, fmt.Sprintf("%s %s %s %v", account, region, operation, err != nil))
}

// TestEveryAttemptIsObserved: the Observer (backupd's metrics) is told of
// each attempt sent to DynamoDB, retries included, by account, region and
// operation, and whether it failed.
func TestEveryAttemptIsObserved(t *testing.T) {
	srv, _ := flakyDynamoDB(t, 1, throttle)
	obs := &attemptLog{}
	r, err := New(Options{
		AWS:      aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL)},
		Accounts: []config.Account{{ID: "111111111111", DefaultRegion: "eu-west-1", AllowedRegions: []string{"eu-west-1"}}},
		Roles:    staticRoles{},
		Limiter:  &countingLimiter{},
		Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := r.Resolve("111111111111", "")
	if _, err := target.DynamoDB.DescribeBackup(t.Context(), &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn")},
		func(o *dynamodb.Options) { o.Retryer = retry.AddWithMaxBackoffDelay(o.Retryer, time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"111111111111 eu-west-1 DescribeBackup true", "111111111111 eu-west-1 DescribeBackup false"}
	if !slices.Equal(obs.attempts, want) {
		t.Errorf("observed %q; want %q", obs.attempts, want)
	}
}

type tokenRoles struct{ token string }

func (tokenRoles) Expired(string, string) {}

func (r tokenRoles) Credentials(string) (aws.CredentialsProvider, bool) {
	return credentials.NewStaticCredentialsProvider("ASIAROLEEXAMPLE", "SECRET", r.token), true
}

// TestSessionTokenQuotedByDynamoDBIsTakenOut: an endpoint standing in for
// DynamoDB (a proxy, an emulator) that quotes the role's session token
// where no key names it has it taken out of the message the caller is
// given (the APIError's) and of the error's text, which the log and a
// span keep; the code stays the answer's.
func TestSessionTokenQuotedByDynamoDBIsTakenOut(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjRoleSessionToken+/example=="
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"com.amazon.coral.validate#ValidationException","message":"session %s is not valid here"}`,
			r.Header.Get("X-Amz-Security-Token"))
	}))
	t.Cleanup(srv.Close)
	r := newRegistryWithRoles(t, srv.URL, &countingLimiter{}, tokenRoles{token})
	target, err := r.Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = target.DynamoDB.ListBackups(t.Context(), &dynamodb.ListBackupsInput{})
	api, ok := errors.AsType[smithy.APIError](err)
	if !ok {
		t.Fatalf("err = %v; want DynamoDB's answer", err)
	}
	if api.ErrorCode() != "ValidationException" || api.ErrorMessage() != "session [redacted] is not valid here" {
		t.Errorf("answer %s: %q; want ValidationException without the token", api.ErrorCode(), api.ErrorMessage())
	}
	if strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "session [redacted] is not valid here") {
		t.Errorf("err = %q; want the message without the token", err)
	}
}
