package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/redact"
)

// TestLeads: the operations DynamoDB cannot safely be asked twice go no
// later than SendLead before their deadline; the others may go until it.
func TestLeads(t *testing.T) {
	tests := []struct {
		op   string
		want time.Duration
	}{
		// The README's 50 ms, written out: SendLead itself would agree with any value.
		{config.OpCreateBackup, 50 * time.Millisecond},
		{config.OpRestoreTableFromBackup, 50 * time.Millisecond},
		{config.OpDescribeBackup, 0},
		{config.OpListBackups, 0},
		{config.OpDeleteBackup, 0},
	}
	leads := Leads()
	for _, tt := range tests {
		if got := leads[tt.op]; got != tt.want {
			t.Errorf("lead of %s = %s; want %s", tt.op, got, tt.want)
		}
	}
	if len(leads) != 2 {
		t.Errorf("leads = %v; want CreateBackup's and RestoreTableFromBackup's only", leads)
	}
}

// TestOwnCredentialsFailingIsNotSTSFailing: when backupd's own credentials
// fail (an IMDS without a role answers 404), the AssumeRole is never sent,
// and its metric says so (no_credentials), not that STS answered 404 or
// could not be reached.
func TestOwnCredentialsFailingIsNotSTSFailing(t *testing.T) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sent.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	imds404 := &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 404}},
		Err: errors.New("no EC2 IMDS role found")}
	own := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, fmt.Errorf("failed to refresh cached credentials, %w", imds404)
	})
	m := metrics.New()
	cfg := &config.Config{RoleSessionName: "backupd", Accounts: []config.Account{{ID: "111111111111",
		RoleARN: "arn:aws:iam::111111111111:role/backupd", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}}}
	r, err := NewFromConfig(cfg, aws.Config{Region: "us-east-1", Credentials: own, BaseEndpoint: aws.String(srv.URL)},
		&countingLimiter{}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, err := r.Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := target.DynamoDB.ListBackups(t.Context(), &dynamodb.ListBackupsInput{}); err == nil {
		t.Fatal("ListBackups succeeded without credentials")
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("%d requests sent; want none", n)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "backupd_sts_assume_role_total{") &&
			line != `backupd_sts_assume_role_total{account="111111111111",outcome="no_credentials"} 1` {
			t.Errorf("got %s; want the AssumeRole counted as no_credentials", line)
		}
	}
	if !strings.Contains(rec.Body.String(), `outcome="no_credentials"} 1`) {
		t.Errorf("no AssumeRole counted as no_credentials:\n%s", rec.Body.String())
	}
}

// TestOwnSessionTokenQuotedBareIsNotLogged: STS, or an endpoint standing
// in for it, that quotes the session token of backupd's own credentials
// where no key names it has it taken out of the error backupd logs (and
// puts in a span), as written and URL-escaped.
func TestOwnSessionTokenQuotedBareIsNotLogged(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjEOwnSessionToken+/longenough=="
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Amz-Security-Token")
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>`+
			`<Message>session %s (%s) may not assume the role</Message></Error><RequestId>r</RequestId></ErrorResponse>`,
			got, url.QueryEscape(got))
	}))
	t.Cleanup(srv.Close)
	own := credentials.NewStaticCredentialsProvider("ASIAOWNEXAMPLE", "own-secret-access-key-example", token)
	logged := loggedSTSRefusal(t, own, srv.URL)
	if strings.Contains(logged, token) || strings.Contains(logged, url.QueryEscape(token)) {
		t.Errorf("logged %q; want it without backupd's own session token", logged)
	}
}

// TestRates: every (account, allowed region, operation) has the rate its
// account configures for the operation, and no other key is listed.
func TestRates(t *testing.T) {
	create, list := 2.0, 5.0
	rates := Rates([]config.Account{
		{ID: "111111111111", AllowedRegions: []string{"us-east-1", "eu-west-1"}, Limits: config.Limits{CreateBackup: &create, ListBackups: &list}},
		{ID: "222222222222", AllowedRegions: []string{"us-east-1"}},
	})
	if want := 3 * len(config.Operations()); len(rates) != want {
		t.Errorf("%d rates, want %d: %v", len(rates), want, rates)
	}
	for _, tt := range []struct {
		account, region, op string
		want                float64
	}{
		{"111111111111", "eu-west-1", config.OpCreateBackup, 2},
		{"111111111111", "us-east-1", config.OpListBackups, 5},
		{"111111111111", "us-east-1", config.OpDeleteBackup, 0},
		{"222222222222", "us-east-1", config.OpCreateBackup, 0},
	} {
		k := ratelimit.Key{Account: tt.account, Region: tt.region, Operation: tt.op}
		if got, ok := rates[k]; !ok || got != tt.want {
			t.Errorf("rate of %v = %v (listed %v), want %v", k, got, ok, tt.want)
		}
	}
}

// TestOwnSessionTokenRotatedBeforeTheFailureIsNotLogged: the own
// credentials that signed the AssumeRole expire while STS takes its time
// to refuse it, quoting their session token; the token taken out of the
// error must be the one that signed the call, not the next one.
func TestOwnSessionTokenRotatedBeforeTheFailureIsNotLogged(t *testing.T) {
	const first = "IQoJb3JpZ2luX2VjEFirstOwnSessionToken+/longenough=="
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Amz-Security-Token")
		time.Sleep(400 * time.Millisecond)
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>`+
			`<Message>session %s may not assume the role</Message></Error><RequestId>r</RequestId></ErrorResponse>`, got)
	}))
	t.Cleanup(srv.Close)
	var n atomic.Int32
	own := aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		if n.Add(1) == 1 {
			return aws.Credentials{AccessKeyID: "ASIAOWNFIRST", SecretAccessKey: "own-first-secret-access-key-example",
				SessionToken: first, CanExpire: true, Expires: time.Now().Add(200 * time.Millisecond)}, nil
		}
		return aws.Credentials{AccessKeyID: "ASIAOWNSECOND", SecretAccessKey: "own-second-secret-access-key-example",
			SessionToken: "IQoJb3JpZ2luX2VjESecondOwnSessionToken==", CanExpire: true, Expires: time.Now().Add(time.Hour)}, nil
	}))
	logged := loggedSTSRefusal(t, own, srv.URL)
	if strings.Contains(logged, first) {
		t.Errorf("logged %q; want it without the session token that signed the AssumeRole", logged)
	}
}

// loggedSTSRefusal makes a call of an account whose role STS at url
// refuses, signing AssumeRole with own, and returns its error as backupd
// logs it (and puts it in a span); STS's message must be in it.
func loggedSTSRefusal(t *testing.T, own aws.CredentialsProvider, url string) string {
	t.Helper()
	cfg := &config.Config{RoleSessionName: "backupd", Accounts: []config.Account{{ID: "111111111111",
		RoleARN: "arn:aws:iam::111111111111:role/backupd", DefaultRegion: "us-east-1", AllowedRegions: []string{"us-east-1"}}}}
	r, err := NewFromConfig(cfg, aws.Config{Region: "us-east-1", Credentials: own, BaseEndpoint: aws.String(url)},
		&countingLimiter{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, err := r.Resolve("111111111111", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = target.DynamoDB.ListBackups(t.Context(), &dynamodb.ListBackupsInput{})
	if err == nil {
		t.Fatal("ListBackups succeeded though STS refused the role")
	}
	logged := redact.Error(err)
	if !strings.Contains(logged, "may not assume the role") {
		t.Fatalf("logged %q; want STS's message", logged)
	}
	return logged
}
