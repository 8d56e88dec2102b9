// Package auth decides who backupd is in each target account: it assumes the
// account's configured role through STS and caches the credentials.
package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/smithy-go"
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
}

// Observer counts AssumeRole calls (package metrics).
type Observer interface {
	ObserveAssumeRole(account string, err error)
}

// Roles holds one credentials cache per account. Built once at start and
// only read afterwards.
type Roles struct {
	providers map[string]aws.CredentialsProvider
}

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
	r := &Roles{providers: make(map[string]aws.CredentialsProvider, len(roles))}
	for _, role := range roles {
		assume := stscreds.NewAssumeRoleProvider(opts.STS, role.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = opts.SessionName
			o.Duration = opts.Duration
			if role.ExternalID != "" {
				o.ExternalID = aws.String(role.ExternalID)
			}
		})
		r.providers[role.AccountID] = aws.NewCredentialsCache(
			&assumer{account: role.AccountID, provider: assume, timeout: opts.Timeout, observer: opts.Observer},
			func(o *aws.CredentialsCacheOptions) {
				o.ExpiryWindow = opts.RefreshBefore
				o.ExpiryWindowJitterFrac = 0.2 // spread refreshes of many accounts
			})
	}
	return r
}

// Credentials returns the account's cached credentials provider.
func (r *Roles) Credentials(accountID string) (aws.CredentialsProvider, bool) {
	p, ok := r.providers[accountID]
	return p, ok
}

// assumer marks failures as role-assumption failures of one account, so the
// error mapping can tell "STS refused us" from "DynamoDB refused us" without
// parsing messages.
type assumer struct {
	account  string
	provider aws.CredentialsProvider
	timeout  time.Duration
	observer Observer
}

func (a *assumer) Retrieve(ctx context.Context) (aws.Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	creds, err := a.provider.Retrieve(ctx)
	if a.observer != nil {
		a.observer.ObserveAssumeRole(a.account, err)
	}
	if err != nil {
		return aws.Credentials{}, &AssumeRoleError{AccountID: a.account, Err: err}
	}
	return creds, nil
}

// AssumeRoleError says backupd could not become itself in an account.
type AssumeRoleError struct {
	AccountID string
	Err       error
}

func (e *AssumeRoleError) Error() string {
	return fmt.Sprintf("assume role in account %s: %v", e.AccountID, e.Err)
}

func (e *AssumeRoleError) Unwrap() error { return e.Err }

// RetryableError stops the DynamoDB client's retryer: the STS client has
// retried AssumeRole already, and each further DynamoDB attempt would ask
// STS again, three times over.
func (e *AssumeRoleError) RetryableError() bool { return false }

// NotSent says the call was not made: without credentials nothing reached
// DynamoDB.
func (e *AssumeRoleError) NotSent() bool { return true }

// Denied reports whether STS refused the role (as opposed to failing to
// answer): the trust policy, ExternalId or backupd's own identity is wrong.
func (e *AssumeRoleError) Denied() bool {
	var api smithy.APIError
	if !errors.As(e.Err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "ExpiredToken",
		"RegionDisabledException", "MalformedPolicyDocument", "PackedPolicyTooLarge",
		"SignatureDoesNotMatch", "UnrecognizedClientException":
		return true
	}
	return false
}
