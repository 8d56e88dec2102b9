// Package auth decides who backupd is in each target account: it assumes the
// account's configured role through STS and caches the credentials.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/redact"
)

// Role is one account's role as configured; it never comes from a request.
type Role struct {
	AccountID  string
	RoleARN    string
	ExternalID string
}

// Options configures Roles.
type Options struct {
	// STS is the client that calls AssumeRole with backupd's own credentials.
	STS stscreds.AssumeRoleAPIClient
	// Own are those credentials (STS's client's, an awsbase.OwnCredentials):
	// STS, an emulator or a proxy may quote the session token an AssumeRole
	// carried where no key names it, so the secrets of the last they gave
	// (awsbase.OwnSecrets) are taken out of its errors' text by value. Nil,
	// or another provider, means none to take out.
	Own aws.CredentialsProvider
	// SessionName shows in the target accounts' CloudTrail.
	SessionName string
	// Duration is the lifetime asked of STS; zero means one hour.
	Duration time.Duration
	// RefreshBefore is how long before expiry credentials are refreshed;
	// zero means five minutes.
	RefreshBefore time.Duration
	// Timeout bounds one AssumeRole call. The credentials cache runs the
	// call on behalf of every waiting request, so no single request's
	// deadline applies to it; zero means ten seconds.
	Timeout time.Duration
	// Observer is told of every AssumeRole call; nil means none.
	Observer Observer
	// Logger hears of refreshes that failed while the held credentials
	// still serve, and of credentials DynamoDB found expired early: both
	// warn of trouble before requests fail. Nil means none.
	Logger *slog.Logger
}

// Observer counts AssumeRole calls (package metrics).
type Observer interface {
	ObserveAssumeRole(account string, err error, d time.Duration)
}

// Roles holds one credentials cache per account. Built once at start; the
// map is only read afterwards.
type Roles struct {
	accounts map[string]*cached
	log      *slog.Logger
}

// cached is one account's credentials, as its DynamoDB clients get them
// (Retrieve): from its cache, whose provider is the assumer.
type cached struct {
	cache   *aws.CredentialsCache
	assumer *assumer
	// held is the last credentials the cache gave; refreshing is set
	// while a refresh runs apart from the requests (refreshApart).
	held       atomic.Pointer[aws.Credentials]
	refreshing atomic.Bool
}

// Retrieve gives the account's credentials. Once they are due for
// refresh, while the held ones could still be kept were it to fail
// (keepable), the held ones are given at once and the cache refreshes
// apart from the requests: its own refresh would hold every request of
// the account until STS answered, up to keptRefreshTimeout, at every
// attempt while STS hangs. Otherwise the cache decides, and its refresh
// is waited for.
func (c *cached) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if h := c.held.Load(); h != nil && h.Expired() && c.assumer.keeps(h, time.Now()) {
		c.refreshApart()
		return *h, nil
	}
	creds, err := c.cache.Retrieve(ctx)
	if err == nil {
		c.hold(creds)
	}
	return creds, err
}

// hold keeps creds as the held credentials, when they are new.
func (c *cached) hold(creds aws.Credentials) {
	if h := c.held.Load(); h == nil || *h != creds {
		held := creds
		c.held.Store(&held)
	}
}

// refreshApart has the cache refresh, unless a refresh it started runs:
// the assumer bounds the call, which no request waits for.
func (c *cached) refreshApart() {
	if !c.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.refreshing.Store(false)
		if creds, err := c.cache.Retrieve(context.WithValue(context.Background(), apartKey{}, true)); err == nil {
			c.hold(creds)
		}
	}()
}

// apartKey marks the context of a refresh run apart from the requests
// (refreshApart), which the cache passes on to the assumer: no request
// waits for it, so it is not held to keptRefreshTimeout.
type apartKey struct{}

// ProviderSources passes on where the credentials come from, which the
// SDK names in its User-Agent.
func (c *cached) ProviderSources() []aws.CredentialSource { return c.cache.ProviderSources() }

// NewRoles builds a cached AssumeRole provider for every role. Nothing is
// called until credentials are first needed.
func NewRoles(opts Options, roles []Role) *Roles {
	if opts.Duration == 0 {
		opts.Duration = time.Hour
	}
	if opts.RefreshBefore == 0 {
		opts.RefreshBefore = 5 * time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Roles{log: opts.Logger, accounts: make(map[string]*cached, len(roles))}
	for _, role := range roles {
		assume := stscreds.NewAssumeRoleProvider(opts.STS, role.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = opts.SessionName
			o.Duration = opts.Duration
			if role.ExternalID != "" {
				o.ExternalID = aws.String(role.ExternalID)
			}
		})
		a := &assumer{account: role.AccountID, externalID: role.ExternalID, own: opts.Own, provider: assume, timeout: opts.Timeout, window: opts.RefreshBefore, observer: opts.Observer, log: opts.Logger}
		r.accounts[role.AccountID] = &cached{assumer: a, cache: aws.NewCredentialsCache(a, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = opts.RefreshBefore
			o.ExpiryWindowJitterFrac = 0.2 // spread refreshes of many accounts
		})}
	}
	return r
}

// Credentials returns the account's cached credentials provider.
func (r *Roles) Credentials(accountID string) (aws.CredentialsProvider, bool) {
	c, ok := r.accounts[accountID]
	if !ok {
		return nil, false
	}
	return c, true
}

// reassumeEvery bounds how often Expired drops an account's credentials:
// the calls in flight when they expired all fail, and the first drop has
// done what every later one would.
const reassumeEvery = 10 * time.Second

// Expired says DynamoDB refused the account's credentials of access key
// accessKeyID as expired (ExpiredTokenException) while the cache held
// them valid: backupd's clock is behind AWS's, so the cache would refresh
// only after they had expired, failing every call of the account in
// between, every hour. The cache drops them, and the next call assumes
// the role again; at most once every reassumeEvery. A refusal of
// credentials STS has replaced since (a call signed with them before the
// drop, sent after it) drops nothing; one of an unknown key ("") is taken
// as of the credentials held.
func (r *Roles) Expired(accountID, accessKeyID string) {
	c, ok := r.accounts[accountID]
	if !ok || !c.assumer.refused(time.Now(), accessKeyID) {
		return
	}
	c.held.Store(nil)
	c.cache.Invalidate()
	r.log.LogAttrs(context.Background(), slog.LevelWarn,
		"DynamoDB found the account's credentials expired before backupd's clock did; assuming the role again (check this host's clock)",
		slog.String("account", accountID))
}

// When a refresh fails, the credentials the cache holds are kept while
// they would still be valid for keepValidFor when STS is asked again,
// retryRefreshAfter later: an STS outage in the minutes before expiry, when the
// cache refreshes, then fails no request, and the requests that arrive
// meanwhile do not each call STS.
// A refresh that requests wait for while the held credentials could be
// kept (one that started just as they fell due, before the refresh apart
// did) waits at most keptRefreshTimeout: an STS that hangs would hold
// them for the full timeout. A refresh apart has the full timeout, or
// less to end while the held credentials can still be kept, but not under
// keptRefreshTimeout: cut short to keptRefreshTimeout always, an STS
// that answers in a few seconds would fail every refresh apart, and then
// the one the requests wait for, once the held credentials are too close
// to their end to be kept.
const (
	keepValidFor       = time.Minute
	retryRefreshAfter  = 15 * time.Second
	keptRefreshTimeout = 3 * time.Second
	// apartMargin is what a refresh apart cut short leaves between its
	// deadline and the end of keepable: its failure, at the deadline, is
	// judged keepable (HandleFailToRefresh) a moment after it.
	apartMargin = time.Second
)

// failureHoldOff is how long a failed AssumeRole answers for itself when
// there are no credentials to keep: requests that arrive meanwhile get its
// error at once, rather than each asking an STS that is down or refusing
// (each ask being three attempts). It is the RetryInfo STS_UNAVAILABLE
// gives.
const failureHoldOff = time.Second

// assumer marks failures as role-assumption failures of one account, so the
// error mapping can tell "STS refused us" from "DynamoDB refused us" without
// parsing messages. Its cache calls it for one refresh at a time.
type assumer struct {
	account    string
	externalID string                  // kept out of its errors' text
	own        aws.CredentialsProvider // whose secrets are kept out too
	provider   aws.CredentialsProvider
	timeout    time.Duration
	window     time.Duration // the cache's refresh window (Options.RefreshBefore)
	observer   Observer
	log        *slog.Logger

	mu sync.Mutex
	// expires is when the last credentials STS gave really expire (the
	// cache holds them with an earlier time, to refresh before).
	expires time.Time
	// retryAt, when set, is when to ask STS again: the credentials of a
	// failed refresh are kept until then, not refreshed early.
	retryAt time.Time
	// failed answers for the last AssumeRole until failedUntil.
	failed      *AssumeRoleError
	failedUntil time.Time
	// refusedAt is when refused last took DynamoDB's refusal.
	refusedAt time.Time
	// key is the access key id of the last credentials STS gave.
	key string
	// shortAt is when credentials due for refresh on arrival were last
	// logged (short).
	shortAt time.Time
}

func (a *assumer) Retrieve(ctx context.Context) (aws.Credentials, error) {
	timeout := a.timeout
	a.mu.Lock()
	if time.Now().Before(a.failedUntil) {
		held := *a.failed
		held.Held = true
		a.mu.Unlock()
		return aws.Credentials{}, &held
	}
	if ctx.Value(apartKey{}) != nil {
		// Ends, where it can, while the held credentials can still be
		// kept, were it to fail: apartMargin before they no longer can,
		// as its failure is taken after its deadline.
		timeout = min(timeout, max(time.Until(a.expires)-keepValidFor-retryRefreshAfter-apartMargin, keptRefreshTimeout))
	} else if a.keepable(time.Now().Add(keptRefreshTimeout)) {
		timeout = min(timeout, keptRefreshTimeout)
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	creds, err := a.provider.Retrieve(ctx)
	if a.observer != nil {
		a.observer.ObserveAssumeRole(a.account, err, time.Since(start))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		failed := &AssumeRoleError{AccountID: a.account, Err: err, secrets: a.secrets()}
		if !a.keepable(time.Now()) {
			a.failed, a.failedUntil = failed, time.Now().Add(failureHoldOff)
		}
		return aws.Credentials{}, failed
	}
	a.expires, a.retryAt, a.failed, a.failedUntil = creds.Expires, time.Time{}, nil, time.Time{}
	a.key = creds.AccessKeyID
	a.short(creds)
	return creds, nil
}

// secrets are the values to take out of the text of the failed
// AssumeRole's err: the role's ExternalId, and the session tokens and
// secret keys of the own credentials that last signed a call (those that
// signed this one among them, were they replaced since: fetching the
// current ones would miss them, and could wait on a refresh).
func (a *assumer) secrets() []string {
	return append([]string{a.externalID}, awsbase.OwnSecrets(a.own)...)
}

// shortEvery bounds how often short logs an account's credentials.
const shortEvery = 10 * time.Minute

// short warns, at most once every shortEvery, of credentials that live
// no longer than the refresh window: they are due for refresh as they
// arrive, so every request of the account has STS asked again. AWS STS
// gives the hour backupd asks for; an emulator or an STS-compatible
// endpoint may give less. The caller holds a.mu.
func (a *assumer) short(creds aws.Credentials) {
	lifetime := time.Until(creds.Expires)
	if !creds.CanExpire || lifetime > a.window || time.Since(a.shortAt) < shortEvery {
		return
	}
	a.shortAt = time.Now()
	a.log.LogAttrs(context.Background(), slog.LevelWarn,
		"STS gave the account's credentials for no longer than backupd refreshes them before their end: every request of the account has STS asked again (check the STS endpoint, or the role's session duration)",
		slog.String("account", a.account), slog.Duration("valid_for", lifetime.Round(time.Second)), slog.Duration("refresh_before", a.window))
}

// HandleFailToRefresh is called by the cache when Retrieve failed: it
// keeps prev, the credentials the cache holds, until STS is asked again
// retryRefreshAfter from now, when they would still be valid for
// keepValidFor (keepable). Otherwise it returns err. The cache then moves
// their expiry to that retry (AdjustExpiresBy).
func (a *assumer) HandleFailToRefresh(_ context.Context, prev aws.Credentials, err error) (aws.Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if !prev.HasKeys() || !prev.CanExpire || !a.keepable(now) {
		return aws.Credentials{}, err
	}
	a.retryAt = now.Add(retryRefreshAfter)
	a.log.LogAttrs(context.Background(), slog.LevelWarn,
		"STS did not refresh the account's credentials; the held ones serve until they are about to expire, and STS is asked again",
		slog.String("account", a.account), slog.Time("expires", a.expires), slog.Duration("retry_in", retryRefreshAfter),
		slog.String("error", failure(err)))
	return prev, nil
}

// failure names what went wrong with an AssumeRole for the log: STS's
// error code when it answered (its message may quote the signed request),
// else the error, which then never reached STS or got no answer, without
// the secrets a credential provider's error may quote (backupd's own
// credentials, failing, can be what printed them).
func failure(err error) string {
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		return "STS answered " + api.ErrorCode()
	}
	return redact.Error(err)
}

// refused forgets when the last credentials expire: DynamoDB refused
// them (of access key key) as expired, so they are not kept after a failed
// refresh, even one under way (keepable), and a failed AssumeRole answers
// for itself as when there are none (failureHoldOff). It takes a refusal
// at now at most once every reassumeEvery, and only of the last
// credentials STS gave, and reports whether it took this one.
func (a *assumer) refused(now time.Time, key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if key != "" && key != a.key || now.Sub(a.refusedAt) < reassumeEvery {
		return false
	}
	a.refusedAt, a.expires, a.retryAt = now, time.Time{}, time.Time{}
	return true
}

// keeps reports whether held, credentials due for refresh, could be kept
// at t (keepable): only the last credentials STS gave can. Older ones are
// held when the cache has refreshed since without telling (the requests
// that waited for that refresh all left before it ended, or one gave its
// credentials to hold after another gave the newer ones), and may have
// expired. For a caller that does not hold a.mu.
func (a *assumer) keeps(held *aws.Credentials, t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return held.AccessKeyID == a.key && a.keepable(t)
}

// keepable reports whether the last credentials, kept at t after a failed
// refresh, would still be valid for keepValidFor when STS is next asked.
// The caller holds a.mu.
func (a *assumer) keepable(t time.Time) bool {
	return a.expires.Sub(t) >= keepValidFor+retryRefreshAfter
}

// AdjustExpiresBy is how the cache moves expiry earlier, to refresh
// before it (by d, negative): as usual for new credentials, and for kept
// ones to retryAt.
func (a *assumer) AdjustExpiresBy(creds aws.Credentials, d time.Duration) (aws.Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !creds.CanExpire {
		return creds, nil
	}
	if !a.retryAt.IsZero() {
		creds.Expires = a.retryAt
	} else {
		creds.Expires = creds.Expires.Add(d)
	}
	return creds, nil
}

// AssumeRoleError says backupd could not become itself in an account.
type AssumeRoleError struct {
	AccountID string
	Err       error
	// Held marks the failure of an AssumeRole moments ago, given again
	// without asking STS (failureHoldOff): its log line must not read as
	// a call of its own, with attempts of its own.
	Held bool
	// secrets are taken out of the text of Err: the role's ExternalId and
	// backupd's own session token and secret key. STS, an emulator or a
	// proxy may quote the request it refused.
	secrets []string
}

func (e *AssumeRoleError) Error() string {
	cause := e.Err.Error()
	for _, s := range e.secrets {
		cause = redact.Value(cause, s)
	}
	if e.Held {
		return fmt.Sprintf("assume role in account %s: STS not asked again within %s of its last failure, which was: %s", e.AccountID, failureHoldOff, cause)
	}
	return fmt.Sprintf("assume role in account %s: %s", e.AccountID, cause)
}

func (e *AssumeRoleError) Unwrap() error { return e.Err }

// RetryableError stops the DynamoDB client's retryer: the STS client has
// retried AssumeRole already, and each further DynamoDB attempt would ask
// STS again, three times over.
func (e *AssumeRoleError) RetryableError() bool { return false }

// NotSent says the call was not made: without credentials nothing reached
// DynamoDB.
func (e *AssumeRoleError) NotSent() bool { return true }

// Invalid reports whether STS refused the AssumeRole call itself as
// invalid (ValidationError: the session asked for is longer than the role
// allows, say), which a retry meets again. Other client errors are not
// the request's own (throttling, timeouts, STS's trouble with an identity
// provider, refusals of the credentials backupd itself holds).
func (e *AssumeRoleError) Invalid() bool {
	op, ok := errors.AsType[*smithy.OperationError](e.Err)
	if !ok || op.OperationName != "AssumeRole" {
		return false
	}
	if _, nested := errors.AsType[*smithy.OperationError](op.Err); nested {
		return false // the call that fetched backupd's own credentials failed
	}
	api, ok := errors.AsType[smithy.APIError](op.Err)
	return ok && api.ErrorCode() == "ValidationError"
}

// OwnCredentialsRefused reports whether STS refused the credentials
// backupd signed the AssumeRole call with (unknown, expired, or a secret
// that does not match the key), rather than the role: what to fix is then
// backupd's own identity, not the account's trust policy.
func (e *AssumeRoleError) OwnCredentialsRefused() bool {
	api, ok := errors.AsType[smithy.APIError](e.Err)
	if !ok {
		return false
	}
	switch api.ErrorCode() {
	case "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "UnrecognizedClientException":
		return true
	}
	return false
}

// Denied reports whether STS refused the role (as opposed to failing to
// answer): the trust policy, ExternalId or backupd's own identity is wrong.
func (e *AssumeRoleError) Denied() bool {
	var api smithy.APIError
	if !errors.As(e.Err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
		"RegionDisabledException", "MalformedPolicyDocument", "PackedPolicyTooLarge",
		"SignatureDoesNotMatch", "UnrecognizedClientException":
		return true
	}
	return false
}
