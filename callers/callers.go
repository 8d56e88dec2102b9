// Package callers authenticates backupd's callers and decides what each may
// do. A caller sends "authorization: Bearer <token>" (gRPC metadata, or the
// HTTP header over REST); backupd knows each token only by its SHA-256, and
// allows the caller the accounts and operations its configuration lists.
package callers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/config"
)

// UnauthenticatedError says a request carried no token, or one backupd does
// not know. It never repeats the token.
type UnauthenticatedError struct {
	// Missing: no authorization header at all. OtherScheme: one that is
	// not "Bearer <token>" (Basic, say), or that could not be read.
	// Repeated: more than one, which a proxy may have added or reordered,
	// so which one counts would be up to the path the request took.
	Missing, OtherScheme, Repeated bool
}

func (e *UnauthenticatedError) Error() string {
	switch {
	case e.Missing:
		return `no caller credentials: send the header "authorization: Bearer <token>"`
	case e.OtherScheme:
		return `the authorization header holds no bearer token backupd can read: send "authorization: Bearer <token>" (printable ASCII)`
	case e.Repeated:
		return `more than one authorization header: send exactly one, "authorization: Bearer <token>"`
	}
	return "the caller's bearer token is not one backupd knows"
}

// Challenge is the WWW-Authenticate value of the request's 401 over REST,
// an RFC 6750 (section 3) challenge, so that an HTTP client can tell
// "send a token" from "your token is not accepted" without parsing prose:
// the bare realm when no credentials came, came in another scheme, or
// came twice, as the RFC asks of a request that did not know it needed a
// bearer token (its invalid_request would make the answer a 400),
// and error="invalid_token" when the header held a bearer token backupd
// does not know. The description is fixed text, so it is always a valid
// quoted-string and never repeats the token.
func (e *UnauthenticatedError) Challenge() string {
	if e.Missing || e.OtherScheme || e.Repeated {
		return `Bearer realm="backupd"`
	}
	return `Bearer realm="backupd", error="invalid_token", error_description="the bearer token is not one backupd knows"`
}

// ChallengeOf is the WWW-Authenticate challenge of err's 401 when err, or
// an error it wraps, refuses an unknown caller (UnauthenticatedError); ok
// is false for every other error, nil included.
func ChallengeOf(err error) (challenge string, ok bool) {
	var u *UnauthenticatedError
	if !errors.As(err, &u) {
		return "", false
	}
	return u.Challenge(), true
}

// DeniedError says an authenticated caller may not make this call.
type DeniedError struct {
	Caller    string
	Operation string
	AccountID string
	// AnyAccount: the caller may not call Operation in any account.
	AnyAccount bool
}

func (e *DeniedError) Error() string {
	if e.AnyAccount {
		return fmt.Sprintf("caller %s may not call %s; ask backupd's operators to allow it", e.Caller, e.Operation)
	}
	if e.AccountID == config.Any {
		return fmt.Sprintf("caller %s may call %s only if it is allowed every account (accounts [\"*\"]): %s covers them all; ask backupd's operators to allow it",
			e.Caller, e.Operation, e.Operation)
	}
	if e.AccountID == "" {
		// A malformed account_id or backup_arn: the caller may only act in
		// the accounts it is allowed, and this request names none.
		return fmt.Sprintf("caller %s may call %s only in accounts it is allowed, and the request names no valid account (in account_id, or in backup_arn as arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/backup/BACKUP_ID)",
			e.Caller, e.Operation)
	}
	return fmt.Sprintf("caller %s may not call %s in account %s; ask backupd's operators to allow it", e.Caller, e.Operation, e.AccountID)
}

// Authorizer holds the configured callers. A nil *Authorizer lets every
// request through unnamed.
type Authorizer struct {
	byHash map[[sha256.Size]byte]*caller
	// anonymous lets a request without a token through unnamed.
	anonymous bool
}

type caller struct {
	name       string
	accounts   map[string]bool // nil: all
	operations map[string]bool // nil: all
}

// New returns an Authorizer for cs, or nil when cs is empty: then nobody is
// asked who they are.
func New(cs []config.Caller) *Authorizer {
	if len(cs) == 0 {
		return nil
	}
	a := &Authorizer{byHash: make(map[[sha256.Size]byte]*caller, len(cs))}
	for _, c := range cs {
		var sum [sha256.Size]byte
		// config.Validate has checked it is 64 hex digits.
		_, _ = hex.Decode(sum[:], []byte(c.TokenSHA256))
		a.byHash[sum] = &caller{name: c.Name, accounts: set(c.Accounts), operations: set(c.Operations)}
	}
	return a
}

// HashToken is a token as the configuration names it (token_sha256): the
// hex SHA-256 of the token, so the token itself is never written down.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewAllowingAnonymous is New for the sandbox: a request without a token
// passes unnamed, so a first run needs none, while a request that presents
// a token is checked as in production, so that a team can try its callers'
// tokens and permissions before it meets a real backupd.
func NewAllowingAnonymous(cs []config.Caller) *Authorizer {
	a := New(cs)
	if a != nil {
		a.anonymous = true
	}
	return a
}

// set returns the members of l, or nil when l holds config.Any.
func set(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, v := range l {
		if v == config.Any {
			return nil
		}
		m[v] = true
	}
	return m
}

// Authorize names the caller of ctx's request and checks that it may call
// operation (an RPC name such as CreateBackup, or config.OpMetrics) in
// account; account config.Any asks for every account, as GET /metrics
// does.
func (a *Authorizer) Authorize(ctx context.Context, operation, account string) (string, error) {
	c, err := a.identify(ctx)
	if c == nil || err != nil {
		return "", err
	}
	if c.operations != nil && !c.operations[operation] {
		return c.name, &DeniedError{Caller: c.name, Operation: operation, AccountID: account, AnyAccount: true}
	}
	if c.accounts != nil && !c.accounts[account] {
		// config.Any asks for every account only as GET /metrics asks
		// (config.OpMetrics): a BackupService request whose account_id
		// or backup ARN says "*" names no valid account, as any other
		// malformed one, and is not told the operation covers them all.
		if !awsname.ValidAccountID(account) && (account != config.Any || operation != config.OpMetrics) {
			account = "" // the message says the request names no valid account, and echoes none
		}
		return c.name, &DeniedError{Caller: c.name, Operation: operation, AccountID: account}
	}
	return c.name, nil
}

// Authenticate checks only that ctx's request comes from a known caller,
// or from none where that is allowed, and names it ("" for none): what can
// be told from its headers, before its body is read. Authorize still
// decides the call.
func (a *Authorizer) Authenticate(ctx context.Context) (string, error) {
	c, err := a.identify(ctx)
	if c == nil || err != nil {
		return "", err
	}
	return c.name, nil
}

// identify returns the caller of ctx's request; nil and no error when
// requests pass unnamed (a nil Authorizer, or no token where that is
// allowed).
func (a *Authorizer) identify(ctx context.Context) (*caller, error) {
	if a == nil {
		return nil, nil
	}
	token, refused := bearer(ctx)
	switch {
	case refused != nil && refused.Missing && a.anonymous:
		return nil, nil
	case refused != nil:
		return nil, refused
	}
	c, ok := a.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return nil, &UnauthenticatedError{}
	}
	return c, nil
}

// bearer returns the request's bearer token, or why it has none.
func bearer(ctx context.Context) (string, *UnauthenticatedError) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) > 1 {
		return "", &UnauthenticatedError{Repeated: true}
	}
	// Spaces and tabs around the value are no part of it, as HTTP takes
	// them off a header's value before the REST gateway sees it: a header
	// that works over one transport works over both.
	var v string
	if len(vals) == 1 {
		v = strings.Trim(vals[0], " \t")
	}
	if v == "" {
		return "", &UnauthenticatedError{Missing: true}
	}
	if !PrintableASCII(v) {
		// As over REST, where such a value is not passed on.
		return "", &UnauthenticatedError{OtherScheme: true}
	}
	scheme, token, _ := strings.Cut(v, " ")
	token = strings.TrimLeft(token, " ") // RFC 6750: one or more spaces
	switch {
	case !strings.EqualFold(scheme, "Bearer"), token == "":
		// No bearer token came: no error code in the challenge (RFC 6750
		// §3.1), and a message that says what to send.
		return "", &UnauthenticatedError{OtherScheme: true}
	}
	return token, nil
}

// PrintableASCII reports whether s holds only printable ASCII, as a
// bearer token does (RFC 6750's b64token, and spaces before it), and as
// gRPC metadata may (the REST gateway's headers become metadata).
func PrintableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
