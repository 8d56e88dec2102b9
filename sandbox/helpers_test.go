package sandbox_test

import (
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/backupd/backupd/sandbox"
)

// env is a Fake served over real HTTP, and the SDK clients that talk to it.
type env struct {
	fake *sandbox.Fake
	srv  *httptest.Server
}

func start(tb testing.TB, opts sandbox.Options) *env {
	tb.Helper()
	f := sandbox.New(opts)
	srv := httptest.NewServer(f)
	tb.Cleanup(srv.Close)
	return &env{fake: f, srv: srv}
}

// config is how a caller wires the SDK to the fake: BaseEndpoint, as
// AWS_ENDPOINT_URL would set it, and nothing else special.
func (e *env) config(creds aws.CredentialsProvider, region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  creds,
		BaseEndpoint: aws.String(e.srv.URL),
		HTTPClient:   e.srv.Client(),
	}
}

func (e *env) operator() aws.CredentialsProvider {
	return credentials.StaticCredentialsProvider{Value: e.fake.BaseCredentials()}
}

func (e *env) sts() *sts.Client {
	return sts.NewFromConfig(e.config(e.operator(), "us-east-1"))
}

// assumed returns cached credentials of the demo role in account, the way
// backupd builds them.
func (e *env) assumed(account, externalID string) aws.CredentialsProvider {
	p := stscreds.NewAssumeRoleProvider(e.sts(), roleARN(account), func(o *stscreds.AssumeRoleOptions) {
		if externalID != "" {
			o.ExternalID = aws.String(externalID)
		}
	})
	return aws.NewCredentialsCache(p)
}

func (e *env) dynamo(creds aws.CredentialsProvider, region string) *dynamodb.Client {
	return dynamodb.NewFromConfig(e.config(creds, region))
}

// in returns a DynamoDB client acting in account's demo role in us-east-1.
func (e *env) in(account string) *dynamodb.Client {
	return e.dynamo(e.assumed(account, ""), "us-east-1")
}

func roleARN(account string) string {
	return "arn:aws:iam::" + account + ":role/backupd-sandbox"
}

// errorCode is the AWS error code of err, or "" for none.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// clock is an injectable clock that can be moved forward and can tick by
// itself on every reading.
type clock struct {
	mu   sync.Mutex
	now  time.Time
	tick time.Duration
}

func newClock(t time.Time, tick time.Duration) *clock {
	return &clock{now: t, tick: tick}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now
	c.now = c.now.Add(c.tick)
	return t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
