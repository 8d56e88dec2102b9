package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/testenv"
)

// fakeSTS stands in for STS in these unit tests; the integration tests use moto.
type fakeSTS struct {
	calls atomic.Int32
	mu    sync.Mutex
	last  *sts.AssumeRoleInput
	err   error
	// lifetime of the credentials it gives; zero means an hour.
	lifetime time.Duration
	// budget is how long the last call had, by its context's deadline.
	budget time.Duration
	// delay is how much longer than 10 ms it takes to answer.
	delay time.Duration
}

func (f *fakeSTS) slow(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *fakeSTS) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// AssumeRole gives keys ASIAEXAMPLE1, ASIAEXAMPLE2, ..., one per call.
func (f *fakeSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	call := f.calls.Add(1)
	dl, _ := ctx.Deadline()
	f.mu.Lock()
	delay := f.delay
	f.mu.Unlock()
	select { // let concurrent callers pile up; no answer past the call's bound
	case <-time.After(10*time.Millisecond + delay):
	case <-ctx.Done():
		time.Sleep(time.Millisecond) // a real client returns a moment after its deadline
	}
	f.mu.Lock()
	f.last, f.budget = in, time.Until(dl)+10*time.Millisecond
	err, lifetime := f.err, f.lifetime
	f.mu.Unlock()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr // no answer within the call's bound
	}
	if err != nil {
		return nil, err
	}
	if lifetime == 0 {
		lifetime = time.Hour
	}
	return &sts.AssumeRoleOutput{
		Credentials: &types.Credentials{
			AccessKeyId: aws.String(fmt.Sprint("ASIAEXAMPLE", call)), SecretAccessKey: aws.String("secret"), SessionToken: aws.String("token"),
			Expiration: aws.Time(time.Now().Add(lifetime)),
		},
		AssumedRoleUser: &types.AssumedRoleUser{Arn: aws.String("arn:aws:sts::111111111111:assumed-role/backupd/backupd"), AssumedRoleId: aws.String("AROA:backupd")},
	}, nil
}

// oneRole is the Roles of account 111111111111's role, on stub, logging
// to log (nil for none), and that account's credentials.
func oneRole(stub *fakeSTS, log *slog.Logger) (*Roles, aws.CredentialsProvider) {
	roles := NewRoles(Options{STS: stub, SessionName: "backupd", Logger: log}, []Role{
		{AccountID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/backupd"},
	})
	p, _ := roles.Credentials("111111111111")
	return roles, p
}

func TestConcurrentRetrievalsAssumeOnce(t *testing.T) {
	stub := &fakeSTS{}
	roles := NewRoles(Options{STS: stub, SessionName: "backupd"}, []Role{
		{AccountID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/backupd", ExternalID: "ext-1"},
	})
	p, ok := roles.Credentials("111111111111")
	if !ok {
		t.Fatal("no provider")
	}
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := p.Retrieve(context.Background()); err != nil || !strings.HasPrefix(c.AccessKeyID, "ASIAEXAMPLE") {
				t.Errorf("Retrieve = %v, %v", c, err)
			}
		}()
	}
	wg.Wait()
	if n := stub.calls.Load(); n != 1 {
		t.Errorf("AssumeRole called %d times for 200 concurrent retrievals; want 1", n)
	}
	if in := stub.last; aws.ToString(in.ExternalId) != "ext-1" || aws.ToString(in.RoleSessionName) != "backupd" ||
		aws.ToString(in.RoleArn) != "arn:aws:iam::111111111111:role/backupd" || aws.ToInt32(in.DurationSeconds) != 3600 {
		t.Errorf("AssumeRole input = %+v", in)
	}
	if _, ok := roles.Credentials("222222222222"); ok {
		t.Error("a provider for an unconfigured account")
	}
}

func TestAssumeRoleErrorClassification(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		denied bool
	}{
		{"access denied", &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized"}, true},
		{"bad base credentials", &smithy.GenericAPIError{Code: "InvalidClientTokenId"}, true},
		{"STS throttled", &smithy.GenericAPIError{Code: "Throttling"}, false},
		{"STS unreachable", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := &fakeSTS{err: tt.err}
			p, _ := NewRoles(Options{STS: stub, SessionName: "backupd"}, []Role{{AccountID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/backupd"}}).Credentials("111111111111")
			_, err := p.Retrieve(context.Background())
			var are *AssumeRoleError
			if !errors.As(err, &are) || are.AccountID != "111111111111" {
				t.Fatalf("err = %v, want an AssumeRoleError for the account", err)
			}
			if are.Denied() != tt.denied {
				t.Errorf("Denied() = %v, want %v", are.Denied(), tt.denied)
			}
		})
	}
}

// TestFailedRefreshKeepsValidCredentials: the cache refreshes credentials
// in the five minutes before they expire. When STS fails then, requests
// go on with the credentials held while they are valid for over a minute,
// and STS is asked again 15 s later, not by every request meanwhile;
// credentials too close to their end are not kept.
func TestFailedRefreshKeepsValidCredentials(t *testing.T) {
	tests := []struct {
		lifetime time.Duration
		kept     bool
	}{
		{4 * time.Minute, true},
		{70 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.lifetime.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Credentials that expire within the refresh window are due
				// for refresh at once, as every credential is in its last
				// five minutes.
				stub := &fakeSTS{lifetime: tt.lifetime}
				logs := &testenv.Buffer{}
				_, p := oneRole(stub, slog.New(slog.NewJSONHandler(logs, nil)))
				ctx := context.Background()
				if _, err := p.Retrieve(ctx); err != nil {
					t.Fatal(err)
				}
				stub.fail(&smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "STS is down", Fault: smithy.FaultServer})
				for range 20 {
					c, err := p.Retrieve(ctx)
					if tt.kept && (err != nil || !strings.HasPrefix(c.AccessKeyID, "ASIAEXAMPLE")) {
						t.Fatalf("during the outage: %v, %v; want the credentials held", c.AccessKeyID, err)
					}
					if !tt.kept && err == nil {
						t.Fatalf("credentials %s from their end were kept", tt.lifetime)
					}
				}
				time.Sleep(time.Second) // for the refresh apart, if one runs
				if n, want := stub.calls.Load(), int32(2); tt.kept && n != want {
					t.Errorf("STS was asked %d times for 21 retrievals; want %d: the first, and one failed refresh", n, want)
				}
				// A refresh that failed while the held credentials serve is
				// logged, naming the account and STS's code only (its message
				// may quote the signed request); one that fails requests is
				// logged with them.
				warned := strings.Count(logs.String(), `"level":"WARN","msg":"STS did not refresh the account's credentials`)
				if tt.kept && (warned != 1 || !strings.Contains(logs.String(), `"account":"111111111111"`) ||
					!strings.Contains(logs.String(), `"error":"STS answered ServiceUnavailable"`) || strings.Contains(logs.String(), "STS is down")) ||
					!tt.kept && warned != 0 {
					t.Errorf("log:\n%s", logs.String())
				}
				// No request waits for the refresh apart, nor is one made
				// when credentials cannot be kept: both have the full
				// timeout (TestKeptRefreshTimeout).
				stub.mu.Lock()
				budget := stub.budget
				stub.mu.Unlock()
				if budget <= keptRefreshTimeout {
					t.Errorf("the failed refresh could take %s; want the full timeout", budget.Round(time.Millisecond))
				}
			})
		})
	}
}

// TestRefreshRunsApartFromRequests: credentials due for refresh that a
// failed refresh would keep are given at once while one refresh runs
// apart, however long STS takes, and the new ones once it answers; ones
// too close to their end to be kept wait for the refresh.
func TestRefreshRunsApartFromRequests(t *testing.T) {
	for _, tt := range []struct {
		lifetime time.Duration
		apart    bool
	}{{4 * time.Minute, true}, {70 * time.Second, false}} {
		t.Run(tt.lifetime.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := &fakeSTS{lifetime: tt.lifetime} // in the refresh window: due for refresh at once
				_, p := oneRole(stub, nil)
				ctx := context.Background()
				if _, err := p.Retrieve(ctx); err != nil {
					t.Fatal(err)
				}
				stub.slow(2 * time.Second)
				start := time.Now()
				for i := range 50 {
					c, err := p.Retrieve(ctx)
					if err != nil || tt.apart && c.AccessKeyID != "ASIAEXAMPLE1" {
						t.Fatalf("retrieval %d: %v, %v", i, c.AccessKeyID, err)
					}
				}
				if waited := time.Since(start); tt.apart && waited != 0 || !tt.apart && waited < 2*time.Second {
					t.Errorf("50 retrievals during a refresh waited %s; want no wait only when the held credentials can be kept", waited)
				}
				if !tt.apart {
					return
				}
				synctest.Wait() // the refresh has asked STS
				if n := stub.calls.Load(); n != 2 {
					t.Errorf("STS asked %d times; want twice: the first, and one refresh", n)
				}
				time.Sleep(3 * time.Second) // STS answers
				if c, err := p.Retrieve(ctx); err != nil || c.AccessKeyID != "ASIAEXAMPLE2" {
					t.Errorf("after the refresh: %v, %v; want its credentials, ASIAEXAMPLE2", c.AccessKeyID, err)
				}
				time.Sleep(3 * time.Second) // the refresh that retrieval started (they too are due) ends
			})
		})
	}
}

// TestKeptRefreshTimeout: a refresh apart from the requests has the full
// timeout: an STS that answers in 4 s refreshes the credentials with no
// request waiting, rather than failing at every try until the held ones
// are too close to their end to be kept, and the requests wait for it
// then. A refresh the requests wait for while the held credentials could
// be kept (one that started just as they fell due) waits at most
// keptRefreshTimeout.
func TestKeptRefreshTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{lifetime: 4 * time.Minute} // in the refresh window: due for refresh at once
		roles, p := oneRole(stub, nil)
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		stub.slow(4 * time.Second)
		start := time.Now()
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE1" || time.Since(start) != 0 {
			t.Fatalf("a retrieval due for refresh: %v, %v after %s; want the held credentials at once", c.AccessKeyID, err, time.Since(start))
		}
		time.Sleep(5 * time.Second) // STS answers the refresh apart
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE2" {
			t.Errorf("after a refresh apart that STS answered in 4 s: %v, %v; want its credentials, ASIAEXAMPLE2", c.AccessKeyID, err)
		}
		synctest.Wait()
		time.Sleep(5 * time.Second) // the refresh that retrieval started ends
		// One the requests wait for, with credentials that could be kept.
		stub.slow(0)
		if _, err := roles.accounts["111111111111"].cache.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		stub.mu.Lock()
		budget := stub.budget
		stub.mu.Unlock()
		if budget > keptRefreshTimeout {
			t.Errorf("a refresh requests wait for, with credentials to keep, could take %s; want at most %s", budget.Round(time.Millisecond), keptRefreshTimeout)
		}
	})
	// A refresh apart ends while the held credentials can still be kept,
	// were it to fail: credentials of 82 s leave it 6 s (apartMargin
	// before they no longer can).
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{lifetime: 82 * time.Second}
		_, p := oneRole(stub, nil)
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE1" {
			t.Fatalf("a retrieval due for refresh: %v, %v; want the held credentials", c.AccessKeyID, err)
		}
		synctest.Wait()
		time.Sleep(time.Second)
		stub.mu.Lock()
		budget := stub.budget
		stub.mu.Unlock()
		if want := 82*time.Second - 20*time.Millisecond - keepValidFor - retryRefreshAfter - apartMargin; budget.Round(time.Second) != want.Round(time.Second) {
			t.Errorf("the refresh apart could take %s; want %s", budget.Round(time.Millisecond), want)
		}
	})
}

// TestRefreshNoRequestWaitedForIsHeld: when every request that waited for
// a refresh has left before STS answered, the cache holds the new
// credentials unseen; the next request gets them, not the old ones, which
// were too close to their end to be kept and have expired since.
func TestRefreshNoRequestWaitedForIsHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{lifetime: 70 * time.Second} // too close to their end to be kept
		_, p := oneRole(stub, nil)
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(71 * time.Second) // ASIAEXAMPLE1 has expired
		stub.slow(2 * time.Second)
		stub.mu.Lock()
		stub.lifetime = time.Hour
		stub.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := p.Retrieve(ctx); err == nil {
			t.Fatal("a retrieval that left before STS answered got credentials")
		}
		time.Sleep(2 * time.Second) // STS answers, with none waiting
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE2" {
			t.Errorf("after the refresh: %v, %v; want its credentials, ASIAEXAMPLE2, not the expired ones", c.AccessKeyID, err)
		}
		synctest.Wait()
		if n := stub.calls.Load(); n != 2 {
			t.Errorf("STS asked %d times; want twice", n)
		}
	})
}

// TestFailedAssumeRoleAnswersForItself: with no credentials to keep, a
// failed AssumeRole answers the requests of the next second itself, rather
// than each asking an STS that is down or refusing; STS is asked again
// after that.
func TestFailedAssumeRoleAnswersForItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{err: &smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}}
		_, p := oneRole(stub, nil)
		ctx := context.Background()
		for i := range 20 {
			_, err := p.Retrieve(ctx)
			if !errors.As(err, new(*AssumeRoleError)) {
				t.Fatalf("retrieval %d: %v; want the AssumeRoleError", i, err)
			}
			// The failure given again says it is one, not a call of its own.
			if held := strings.Contains(err.Error(), "STS not asked again"); held != (i > 0) {
				t.Errorf("retrieval %d: %v; want it to say it was held: %v", i, err, i > 0)
			}
			time.Sleep(failureHoldOff / 40)
		}
		if n := stub.calls.Load(); n != 1 {
			t.Errorf("STS was asked %d times in half a second after it failed; want once", n)
		}
		time.Sleep(failureHoldOff)
		stub.fail(nil)
		if c, err := p.Retrieve(ctx); err != nil || !strings.HasPrefix(c.AccessKeyID, "ASIAEXAMPLE") {
			t.Errorf("after the hold-off: %v, %v; want STS asked again, and its credentials", c.AccessKeyID, err)
		}
		if n := stub.calls.Load(); n != 2 {
			t.Errorf("STS was asked %d times; want twice", n)
		}
	})
}

// TestExpiredAssumesAgain: credentials DynamoDB refused as expired are
// dropped, so the next retrieval assumes the role again; the calls in flight
// with them, failing together, drop them once every reassumeEvery, and a
// refusal of credentials replaced since drops nothing, however late it
// comes.
func TestExpiredAssumesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{}
		var logs strings.Builder
		roles, p := oneRole(stub, slog.New(slog.NewJSONHandler(&logs, nil)))
		retrieve := func(want int32) {
			t.Helper()
			if _, err := p.Retrieve(context.Background()); err != nil || stub.calls.Load() != want {
				t.Errorf("Retrieve: %v after %d AssumeRole calls; want %d", err, stub.calls.Load(), want)
			}
		}
		retrieve(1)
		roles.Expired("111111111111", "ASIAEXAMPLE1")
		retrieve(2)
		roles.Expired("111111111111", "ASIAEXAMPLE1") // a call in flight with the old ones
		retrieve(2)
		time.Sleep(reassumeEvery)
		roles.Expired("111111111111", "ASIAEXAMPLE1") // one that waited its turn with them
		retrieve(2)
		roles.Expired("111111111111", "ASIAEXAMPLE2")
		retrieve(3)
		time.Sleep(reassumeEvery)
		roles.Expired("111111111111", "") // of a key not known: the held ones
		retrieve(4)
		roles.Expired("999999999999", "ASIAEXAMPLE4") // no such account: nothing to drop
		if n := strings.Count(logs.String(), `"level":"WARN"`); n != 3 {
			t.Errorf("%d WARN lines; want one per drop:\n%s", n, logs.String())
		}
	})
}

// TestExpiredCredentialsAreNotKept: credentials DynamoDB refused as
// expired are not kept by a refresh that fails, even one under way when
// they were refused; with none to keep, a failed AssumeRole answers for
// itself for failureHoldOff and has the full timeout, as when there are
// no credentials at all.
func TestExpiredCredentialsAreNotKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{lifetime: 4 * time.Minute} // in the refresh window: every retrieval refreshes
		roles, p := oneRole(stub, nil)
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		stub.fail(&smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "STS is down", Fault: smithy.FaultServer})
		// The held credentials, while a refresh, failing after 10 ms,
		// runs apart.
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE1" {
			t.Fatalf("a retrieval due for refresh: %v, %v; want the held credentials at once", c.AccessKeyID, err)
		}
		time.Sleep(5 * time.Millisecond)
		roles.Expired("111111111111", "ASIAEXAMPLE1") // while it runs
		if c, err := p.Retrieve(context.Background()); err == nil {
			t.Errorf("a retrieval once DynamoDB refused the credentials: %v; want the failed refresh's error, not them kept", c.AccessKeyID)
		}
		calls := stub.calls.Load()
		if c, err := p.Retrieve(context.Background()); err == nil || stub.calls.Load() != calls {
			t.Errorf("a retrieval within failureHoldOff: %v, %v after %d more calls; want the failure again, without asking STS", c.AccessKeyID, err, stub.calls.Load()-calls)
		}
		time.Sleep(failureHoldOff)
		if _, err := p.Retrieve(context.Background()); err == nil {
			t.Error("after failureHoldOff: credentials; want STS's failure")
		}
		stub.mu.Lock()
		budget := stub.budget
		stub.mu.Unlock()
		if n := stub.calls.Load(); n != calls+1 || budget <= keptRefreshTimeout {
			t.Errorf("after failureHoldOff: %d AssumeRole calls with %s; want one, with the full timeout", n-calls, budget)
		}
	})
}

// An AssumeRole failure's text, which the log keeps, holds no copy of the
// role's ExternalId, in whatever form STS, an emulator or a proxy quoted
// it, also when the failure is given again without asking STS.
func TestAssumeRoleErrorHoldsNoExternalID(t *testing.T) {
	const id = "Ext+Id=Secret/42"
	quoted := "the external id (" + id + ") is wrong; request Action=AssumeRole&ExternalId=" + url.QueryEscape(id) +
		"; quoted: Action%3DAssumeRole%26ExternalId%3D" + url.QueryEscape(url.QueryEscape(id)) + "; path /" + url.PathEscape(id)
	stub := &fakeSTS{err: &smithy.GenericAPIError{Code: "AccessDenied", Message: quoted}}
	p, _ := NewRoles(Options{STS: stub, SessionName: "backupd"}, []Role{
		{AccountID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/backupd", ExternalID: id},
	}).Credentials("111111111111")
	for i := range 2 {
		_, err := p.Retrieve(context.Background())
		if !errors.As(err, new(*AssumeRoleError)) {
			t.Fatalf("retrieval %d: %v; want the AssumeRoleError", i, err)
		}
		text := fmt.Sprintf("%v", fmt.Errorf("operation error DynamoDB: CreateBackup: %w", err))
		for _, form := range []string{id, url.QueryEscape(id), url.PathEscape(id), url.QueryEscape(url.QueryEscape(id)), "Secret"} {
			if strings.Contains(text, form) {
				t.Errorf("retrieval %d: the error holds the ExternalId as %q: %s", i, form, text)
			}
		}
		if !strings.Contains(text, "is wrong") {
			t.Errorf("retrieval %d: the error lost STS's words: %s", i, text)
		}
	}
}

// TestRefreshApartThatTimesOutIsKept: STS hangs; a refresh apart cut
// short so as to end while the held credentials can be kept, failing at
// that bound, keeps them: the requests go on with them, not waiting for
// STS.
func TestRefreshApartThatTimesOutIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &fakeSTS{lifetime: 82 * time.Second}
		_, p := oneRole(stub, nil)
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		stub.slow(time.Minute) // STS hangs
		if c, err := p.Retrieve(context.Background()); err != nil || c.AccessKeyID != "ASIAEXAMPLE1" {
			t.Fatalf("a retrieval due for refresh: %v, %v; want the held credentials", c.AccessKeyID, err)
		}
		time.Sleep(8 * time.Second) // the refresh apart timed out, at 6 s: 74 s of validity left, kept until the retry 15 s on
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := p.Retrieve(ctx)
		if err != nil || c.AccessKeyID != "ASIAEXAMPLE1" || time.Since(start) != 0 {
			t.Errorf("after a refresh apart timed out at its bound: %q, %v after %s; want the held credentials, kept, at once",
				c.AccessKeyID, err, time.Since(start))
		}
		time.Sleep(3 * time.Minute) // the STS calls end
	})
}

// TestShortCredentialsAreLogged: credentials that live no longer than the
// refresh window have STS asked again by every request; that is logged,
// once every shortEvery, and an hour's credentials are not.
func TestShortCredentialsAreLogged(t *testing.T) {
	for _, tt := range []struct {
		lifetime time.Duration
		warned   int
	}{{4 * time.Minute, 2}, {time.Hour, 0}} {
		t.Run(tt.lifetime.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stub := &fakeSTS{lifetime: tt.lifetime}
				logs := &testenv.Buffer{}
				_, p := oneRole(stub, slog.New(slog.NewJSONHandler(logs, nil)))
				for _, wait := range []time.Duration{0, time.Second, time.Second, shortEvery} {
					time.Sleep(wait)
					if _, err := p.Retrieve(context.Background()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Second) // the refresh apart, if one runs
				}
				lines := strings.Count(logs.String(), `"level":"WARN","msg":"STS gave the account's credentials for no longer than`)
				if lines != tt.warned || tt.warned > 0 && (stub.calls.Load() < 4 || !strings.Contains(logs.String(), `"account":"111111111111"`)) {
					t.Errorf("%d WARN lines, %d AssumeRole calls; want %d lines, once every %s:\n%s", lines, stub.calls.Load(), tt.warned, shortEvery, logs.String())
				}
			})
		})
	}
}
