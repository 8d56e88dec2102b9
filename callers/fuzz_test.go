package callers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/backupd/backupd/config"
)

// FuzzBearer: for any authorization metadata (none, one or two values),
// the authorizer never panics, lets a request through exactly when it
// carries one value "Bearer <known token>" (scheme in any case, one or
// more spaces, spaces and tabs around it as HTTP drops them), and never
// repeats a header value in its error or challenge.
func FuzzBearer(f *testing.F) {
	const token = "orders-token"
	for _, s := range []string{"Bearer orders-token", "bearer   orders-token", "Bearer orders-token ", "Basic b3JkZXJz", "Bearer", "Bearer ", "Bearer\torders-token", "", "BEARER orders-token"} {
		f.Add(s, "", uint8(1), false)
		f.Add(s, "Bearer orders-token", uint8(2), true)
	}
	a := New([]config.Caller{{Name: "orders", TokenSHA256: HashToken(token), Accounts: []string{config.Any}, Operations: []string{config.Any}}})
	anon := NewAllowingAnonymous([]config.Caller{{Name: "orders", TokenSHA256: HashToken(token), Accounts: []string{"111111111111"}, Operations: []string{"GetBackup"}}})
	f.Fuzz(func(t *testing.T, first, second string, n uint8, anonymous bool) {
		vals := []string{first, second}[:int(n)%3]
		ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{"authorization": vals})
		az := a
		if anonymous {
			az = anon
		}
		name, err := az.Authorize(ctx, "GetBackup", "111111111111")
		want, missing := false, len(vals) == 0
		if len(vals) == 1 {
			v := strings.Trim(vals[0], " \t")
			scheme, rest, ok := strings.Cut(v, " ")
			want = ok && strings.EqualFold(scheme, "Bearer") && strings.TrimLeft(rest, " ") == token
			missing = v == ""
		}
		switch {
		case want && (err != nil || name != "orders"):
			t.Errorf("%q refused: %v", vals, err)
		case !want && !(anonymous && missing) && err == nil:
			t.Errorf("%q let through as %q", vals, name)
		case anonymous && missing && (err != nil || name != ""):
			t.Errorf("no token in the sandbox: %q, %v", name, err)
		}
		if err == nil {
			return
		}
		ue, ok := errors.AsType[*UnauthenticatedError](err)
		if !ok {
			t.Fatalf("error %T %v", err, err)
		}
		// Its text is one of the fixed ones: it cannot repeat a header.
		fixed := false
		for _, e := range []*UnauthenticatedError{{}, {Missing: true}, {OtherScheme: true}, {Repeated: true}} {
			fixed = fixed || e.Error() == ue.Error() && e.Challenge() == ue.Challenge()
		}
		if !fixed {
			t.Errorf("error %q / %q for %q is not fixed text", ue.Error(), ue.Challenge(), vals)
		}
	})
}
