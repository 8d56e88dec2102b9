package wiring

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/sandbox"
)

// newSandbox wires backupd as `backupd --sandbox` does, to a fake served
// in the test.
func newSandbox(t *testing.T) (*Backupd, *config.Config) {
	t.Helper()
	demo := sandbox.DemoAccounts()
	fake := sandbox.New(sandbox.Options{Accounts: demo})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg := sandbox.DemoConfig(demo)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	b, err := New(context.Background(), cfg, Parts{
		AWS: aws.Config{Region: cfg.DefaultRegion, BaseEndpoint: aws.String(srv.URL),
			Credentials: credentials.StaticCredentialsProvider{Value: fake.BaseCredentials()}},
		Limiter: ratelimit.NewLocal(LimiterOptions(cfg, m)),
		Metrics: m,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Health.SetReady(true)
	return b, cfg
}

// serveHTTP answers one request of b's HTTP server.
func serveHTTP(t *testing.T, b *Backupd, method, path, token, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	b.HTTP.Handler.ServeHTTP(w, r)
	got, err := io.ReadAll(w.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return w.Code, string(got)
}

// TestNewWiresTheConfiguration: the servers New builds call the service
// with the configuration's callers, give a REST answer upstream_timeout
// and handlingSlack once its body is in, and expose the gauges of the
// process's in-memory state.
func TestNewWiresTheConfiguration(t *testing.T) {
	b, cfg := newSandbox(t)
	const create = "/v1/accounts/111111111111/tables/Orders/backups"
	if code, body := serveHTTP(t, b, "POST", create, "", `{"backupName":"wired"}`); code != http.StatusOK {
		t.Errorf("an anonymous CreateBackup: %d %s; want 200, as the sandbox's callers allow", code, body)
	}
	if code, body := serveHTTP(t, b, "POST", create, "not-a-token", `{"backupName":"wired"}`); code != http.StatusUnauthorized {
		t.Errorf("a CreateBackup with an unknown token: %d %s; want 401", code, body)
	}
	if handling := b.HTTP.WriteTimeout - b.HTTP.ReadTimeout; handling != cfg.UpstreamTimeout+handlingSlack {
		t.Errorf("a REST request's handling is given %s; want upstream_timeout and %s, %s", handling, handlingSlack, cfg.UpstreamTimeout+handlingSlack)
	}
	_, exposed := serveHTTP(t, b, "GET", "/metrics", "", "")
	for _, gauge := range []string{"backupd_request_ids_held 0", "backupd_connections_open 0"} {
		if !strings.Contains(exposed, "\n"+gauge+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", gauge, exposed)
		}
	}
}

// TestRESTIsToldTheAccountsRules: a REST request the gateway reads only
// in part is told, beside the field it could not read, of a region its
// account does not allow, which only the service's configuration knows:
// New gives the servers the service's field rules.
func TestRESTIsToldTheAccountsRules(t *testing.T) {
	b, _ := newSandbox(t)
	code, body := serveHTTP(t, b, "POST", "/v1/accounts/111111111111/tables/Orders/backups", "",
		`{"backupName":42,"region":"eu-west-1"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `"field":"backup_name"`) || !strings.Contains(body, `"field":"region"`) {
		t.Errorf("a CreateBackup with a number for a name, in a region the account does not allow: %d %s; "+
			"want 400 naming backup_name and region", code, body)
	}
}

// TestTheServerKnowsTheLimitersLeads: the gRPC server tells a retry it
// could not send in time (pushback -1) by the leads the limiter refuses
// a late call by.
func TestTheServerKnowsTheLimitersLeads(t *testing.T) {
	cfg := sandbox.DemoConfig(sandbox.DemoAccounts())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts, err := serverOptions(cfg, nil, Parts{Metrics: metrics.New(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if lead := LimiterOptions(cfg, nil).Lead; len(lead) == 0 || !maps.Equal(opts.SendLeads, lead) {
		t.Errorf("the server's send leads %v; want the limiter's, %v", opts.SendLeads, lead)
	}
}
