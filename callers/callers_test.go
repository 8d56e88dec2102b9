package callers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/config"
)

func TestAuthorize(t *testing.T) {
	a := New([]config.Caller{
		{Name: "orders", TokenSHA256: HashToken("orders-token"), Accounts: []string{"111111111111"}, Operations: []string{"CreateBackup", "GetBackup"}},
		{Name: "platform", TokenSHA256: HashToken("platform-token"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
		// A token REST cannot carry (it is not printable ASCII) does
		// not work over gRPC either.
		{Name: "odd", TokenSHA256: HashToken("t\xe9\tk"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
		{Name: "scraper", TokenSHA256: HashToken("scraper-token"), Accounts: []string{config.Any}, Operations: []string{config.OpMetrics}},
		{Name: "one-account", TokenSHA256: HashToken("one-token"), Accounts: []string{"111111111111"}, Operations: []string{config.Any}},
	})
	tests := []struct {
		name       string
		header     string // authorization metadata; empty: none
		op, acct   string
		wantCaller string
		wantErr    any // nil, *UnauthenticatedError or *DeniedError
		missing    bool
	}{
		{"allowed", "Bearer orders-token", "CreateBackup", "111111111111", "orders", nil, false},
		{"scheme in any case", "bearer orders-token", "GetBackup", "111111111111", "orders", nil, false},
		{"more than one space", "Bearer   orders-token", "GetBackup", "111111111111", "orders", nil, false},
		{"spaces and tabs around, as HTTP drops them", " \tBearer orders-token \t", "GetBackup", "111111111111", "orders", nil, false},
		{"spaces alone", "  ", "CreateBackup", "111111111111", "", &UnauthenticatedError{}, true},
		{"wildcards", "Bearer platform-token", "DeleteBackup", "222222222222", "platform", nil, false},
		{"no header", "", "CreateBackup", "111111111111", "", &UnauthenticatedError{}, true},
		{"unknown token", "Bearer guess", "CreateBackup", "111111111111", "", &UnauthenticatedError{}, false},
		{"not a bearer token", "Basic b3JkZXJzOng=", "CreateBackup", "111111111111", "", &UnauthenticatedError{OtherScheme: true}, false},
		{"bearer without token", "Bearer ", "CreateBackup", "111111111111", "", &UnauthenticatedError{OtherScheme: true}, false},
		{"bearer alone", "Bearer", "CreateBackup", "111111111111", "", &UnauthenticatedError{OtherScheme: true}, false},
		{"a token not printable ASCII", "Bearer t\xe9\tk", "CreateBackup", "111111111111", "", &UnauthenticatedError{OtherScheme: true}, false},
		{"other account", "Bearer orders-token", "CreateBackup", "222222222222", "orders", &DeniedError{}, false},
		{"other operation", "Bearer orders-token", "DeleteBackup", "111111111111", "orders", &DeniedError{AnyAccount: true}, false},
		{"no account named", "Bearer orders-token", "CreateBackup", "", "orders", &DeniedError{}, false},
		{"no account id, echoed by no message", "Bearer orders-token", "CreateBackup", "1111\nlevel=ERROR " + strings.Repeat("A", 1000), "orders", &DeniedError{}, false},
		// GET /metrics asks for every account.
		{"metrics, allowed", "Bearer scraper-token", config.OpMetrics, config.Any, "scraper", nil, false},
		{"metrics, wildcards", "Bearer platform-token", config.OpMetrics, config.Any, "platform", nil, false},
		{"metrics, by a caller of one account", "Bearer one-token", config.OpMetrics, config.Any, "one-account", &DeniedError{}, false},
		{"metrics, not among the operations", "Bearer orders-token", config.OpMetrics, config.Any, "orders", &DeniedError{AnyAccount: true}, false},
		{"metrics caller backing up", "Bearer scraper-token", "CreateBackup", "111111111111", "scraper", &DeniedError{AnyAccount: true}, false},
		// A request's account_id or backup ARN that says "*" names no
		// valid account: only GET /metrics asks for every account.
		{"account id \"*\" in a request", "Bearer one-token", "ListBackups", config.Any, "one-account", &DeniedError{}, false},
		{"account id \"*\" in a request, a caller of one operation", "Bearer orders-token", "GetBackup", config.Any, "orders", &DeniedError{}, false},
		// Which of two headers counts would depend on the proxies between.
		{"two headers", "Bearer orders-token\nBearer guess", "CreateBackup", "111111111111", "", &UnauthenticatedError{Repeated: true}, false},
		{"the same header twice", "Bearer orders-token\nBearer orders-token", "CreateBackup", "111111111111", "", &UnauthenticatedError{Repeated: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.header != "" {
				md := metadata.MD{}
				for _, v := range strings.Split(tt.header, "\n") {
					md.Append("authorization", v)
				}
				ctx = metadata.NewIncomingContext(ctx, md)
			}
			got, err := a.Authorize(ctx, tt.op, tt.acct)
			// Authenticate, which runs before a REST body is read,
			// refuses exactly the requests Authorize refuses as
			// unauthenticated, with the same error, and names the
			// caller of the others as Authorize does.
			_, unauthenticated := tt.wantErr.(*UnauthenticatedError)
			acaller, aerr := a.Authenticate(ctx)
			if (aerr != nil) != unauthenticated || aerr != nil && aerr.Error() != err.Error() {
				t.Errorf("Authenticate = %v, want an error: %v (Authorize: %v)", aerr, unauthenticated, err)
			}
			if acaller != tt.wantCaller {
				t.Errorf("Authenticate named %q, want %q", acaller, tt.wantCaller)
			}
			if got != tt.wantCaller {
				t.Errorf("caller = %q, want %q", got, tt.wantCaller)
			}
			var ue *UnauthenticatedError
			var de *DeniedError
			switch tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Errorf("err = %v, want none", err)
				}
			case *UnauthenticatedError:
				if !errors.As(err, &ue) || ue.Missing != tt.missing || ue.OtherScheme != tt.wantErr.(*UnauthenticatedError).OtherScheme ||
					ue.Repeated != tt.wantErr.(*UnauthenticatedError).Repeated {
					t.Errorf("err = %v, want UnauthenticatedError (missing %v)", err, tt.missing)
				}
			case *DeniedError:
				want := tt.acct
				if !awsname.ValidAccountID(want) && (want != config.Any || tt.op != config.OpMetrics) {
					want = ""
				}
				if !errors.As(err, &de) || de.Caller != tt.wantCaller || de.Operation != tt.op || de.AccountID != want ||
					de.AnyAccount != tt.wantErr.(*DeniedError).AnyAccount || len(err.Error()) > 300 {
					t.Errorf("err = %#v (%d bytes), want DeniedError for %s in %q", err, len(err.Error()), tt.op, want)
				}
				if every := strings.Contains(err.Error(), "allowed every account"); !de.AnyAccount && every != (want == config.Any) {
					t.Errorf("err = %q; says the operation covers every account: %v, want %v", err, every, want == config.Any)
				}
			}
		})
	}
}

func TestNoCallersLetsEveryoneThrough(t *testing.T) {
	a := New(nil)
	if a != nil {
		t.Fatal("New(nil) built an Authorizer")
	}
	if caller, err := a.Authorize(context.Background(), "DeleteBackup", "111111111111"); caller != "" || err != nil {
		t.Errorf("nil Authorizer: %q, %v", caller, err)
	}
	if caller, err := a.Authenticate(context.Background()); caller != "" || err != nil {
		t.Errorf("nil Authorizer: Authenticate = %q, %v", caller, err)
	}
}

// TestAnonymousInTheSandbox: with NewAllowingAnonymous a request without a
// token passes unnamed, and one with a token is checked as ever.
func TestAnonymousInTheSandbox(t *testing.T) {
	a := NewAllowingAnonymous([]config.Caller{
		{Name: "reader", TokenSHA256: HashToken("reader-token"), Accounts: []string{"111111111111"}, Operations: []string{"GetBackup"}},
	})
	with := func(header string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
	}
	var ue *UnauthenticatedError
	var de *DeniedError
	if caller, err := a.Authorize(context.Background(), "CreateBackup", "222222222222"); caller != "" || err != nil {
		t.Errorf("no token: %q, %v; want through unnamed", caller, err)
	}
	if caller, err := a.Authenticate(context.Background()); caller != "" || err != nil {
		t.Errorf("no token: Authenticate = %q, %v; want through unnamed", caller, err)
	}
	if _, err := a.Authenticate(with("Bearer guess")); !errors.As(err, &ue) {
		t.Errorf("unknown token: Authenticate = %v; want UnauthenticatedError", err)
	}
	if caller, err := a.Authenticate(with("Bearer reader-token")); caller != "reader" || err != nil {
		t.Errorf("reader: Authenticate = %q, %v; want reader", caller, err)
	}
	if caller, err := a.Authorize(with("Bearer reader-token"), "GetBackup", "111111111111"); caller != "reader" || err != nil {
		t.Errorf("reader: %q, %v", caller, err)
	}
	if _, err := a.Authorize(with("Bearer reader-token"), "CreateBackup", "111111111111"); !errors.As(err, &de) {
		t.Errorf("reader creating: %v; want DeniedError", err)
	}
	if _, err := a.Authorize(with("Bearer guess"), "GetBackup", "111111111111"); !errors.As(err, &ue) || ue.Missing {
		t.Errorf("unknown token: %v; want UnauthenticatedError", err)
	}
	if _, err := a.Authorize(with("Basic eDp5"), "GetBackup", "111111111111"); !errors.As(err, &ue) {
		t.Errorf("malformed header: %v; want UnauthenticatedError", err)
	}
}

// TestChallenge: a 401's WWW-Authenticate is an RFC 6750 challenge, whose
// values stay within the characters its quoted-strings allow.
func TestChallenge(t *testing.T) {
	tests := []struct {
		name string
		err  *UnauthenticatedError
		want string
	}{
		{"no credentials", &UnauthenticatedError{Missing: true}, `Bearer realm="backupd"`},
		// No bearer token came: the bare realm, as for none (RFC 6750 §3.1).
		{"another scheme", &UnauthenticatedError{OtherScheme: true}, `Bearer realm="backupd"`},
		{"two headers", &UnauthenticatedError{Repeated: true}, `Bearer realm="backupd"`},
		{"unknown token", &UnauthenticatedError{},
			`Bearer realm="backupd", error="invalid_token", error_description="the bearer token is not one backupd knows"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.Challenge()
			if got != tt.want {
				t.Errorf("Challenge() = %s, want %s", got, tt.want)
			}
			params, ok := strings.CutPrefix(got, "Bearer ")
			if !ok {
				t.Fatalf("%s: not a Bearer challenge", got)
			}
			for _, p := range strings.Split(params, ", ") {
				name, value, ok := strings.Cut(p, "=")
				value, quoted := strings.CutPrefix(value, `"`)
				value, closed := strings.CutSuffix(value, `"`)
				if !ok || name == "" || !quoted || !closed || strings.ContainsFunc(value, func(r rune) bool {
					return r < 0x20 || r > 0x7e || r == '"' || r == '\\' // RFC 6750 section 3
				}) {
					t.Errorf("%s: parameter %s is not name=\"value\" in RFC 6750's characters", got, p)
				}
			}
		})
	}
}

// TestChallengeOf: the challenge is found through wrapping, and only for
// an unknown caller: a refused known caller gets no 401.
func TestChallengeOf(t *testing.T) {
	unknown := &UnauthenticatedError{}
	tests := []struct {
		name   string
		err    error
		want   string
		wantOK bool
	}{
		{"nil", nil, "", false},
		{"other error", errors.New("boom"), "", false},
		{"denied", &DeniedError{Caller: "orders"}, "", false},
		{"unknown token", unknown, unknown.Challenge(), true},
		{"wrapped", fmt.Errorf("authorize: %w", &UnauthenticatedError{Missing: true}), `Bearer realm="backupd"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ChallengeOf(tt.err)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ChallengeOf(%v) = %q, %v; want %q, %v", tt.err, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestDeniedErrorSaysWhatToDo: a caller refused an account it names is
// sent to the operators; one whose request names no valid account is told
// that, not refused "in account " with a blank.
func TestDeniedErrorSaysWhatToDo(t *testing.T) {
	tests := []struct {
		err           DeniedError
		want, notWant string
	}{
		{DeniedError{Caller: "orders", Operation: "GetBackup", AccountID: "222222222222"},
			"caller orders may not call GetBackup in account 222222222222; ask backupd's operators", "no valid account"},
		{DeniedError{Caller: "orders", Operation: "GetBackup"},
			"the request names no valid account (in account_id, or in backup_arn", "in account ;"},
		// GET /metrics covers every account.
		{DeniedError{Caller: "one-account", Operation: "Metrics", AccountID: "*"},
			`caller one-account may call Metrics only if it is allowed every account (accounts ["*"])`, "no valid account"},
		// Not allowed the operation at all: which account is beside the point.
		{DeniedError{Caller: "orders", Operation: "DeleteBackup", AnyAccount: true},
			"caller orders may not call DeleteBackup; ask backupd's operators", "account"},
	}
	for _, tt := range tests {
		msg := tt.err.Error()
		if !strings.Contains(msg, tt.want) || strings.Contains(msg, tt.notWant) {
			t.Errorf("%+v: %q; want %q and not %q", tt.err, msg, tt.want, tt.notWant)
		}
	}
}

// TestUnauthenticatedErrorSaysWhatToSend: each way a request comes
// without a usable token is told what to send instead, and none repeats
// the token.
func TestUnauthenticatedErrorSaysWhatToSend(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  UnauthenticatedError
		want string
	}{
		{"no header", UnauthenticatedError{Missing: true}, `no caller credentials: send the header "authorization: Bearer <token>"`},
		{"another scheme", UnauthenticatedError{OtherScheme: true}, `the authorization header holds no bearer token backupd can read`},
		{"two headers", UnauthenticatedError{Repeated: true}, `more than one authorization header: send exactly one`},
		{"unknown token", UnauthenticatedError{}, `the caller's bearer token is not one backupd knows`},
	} {
		if got := tt.err.Error(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: %q, want it to begin %q", tt.name, got, tt.want)
		}
	}
}

// TestPrintableASCII: a bearer token may hold every printable ASCII
// character, the ends of the range (space, '~') included, and nothing
// outside it (controls, DEL, bytes above).
func TestPrintableASCII(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, " ": true, "~": true, "abc-._~+/XYZ019=": true,
		"\x1f": false, "\x7f": false, "\x80": false, "a\tb": false,
	} {
		if got := PrintableASCII(s); got != want {
			t.Errorf("PrintableASCII(%q) = %v, want %v", s, got, want)
		}
	}
}
