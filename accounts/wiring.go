package accounts

import (
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsratelimit "github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/ratelimit"
)

// Observers is told of DynamoDB attempts and AssumeRole calls (package
// metrics).
type Observers interface {
	Observer
	auth.Observer
}

// NewFromConfig builds the registry backupd runs with: every configured
// account's role assumed through STS with awsCfg's own credentials, its
// DynamoDB clients gated by lim, all sharing one pooled HTTP client. obs
// and logger may be nil.
func NewFromConfig(cfg *config.Config, awsCfg aws.Config, lim Limiter, obs Observers, logger *slog.Logger) (*Registry, error) {
	awsCfg.HTTPClient = awsbase.PooledHTTPClient(awsCfg.HTTPClient)
	stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.RateLimiter = awsratelimit.None })
		// backupd's own credentials failing is told apart from STS failing.
		o.Credentials = awsbase.OwnCredentials(o.Credentials)
	})
	roles := make([]auth.Role, len(cfg.Accounts))
	for i, a := range cfg.Accounts {
		roles[i] = auth.Role{AccountID: a.ID, RoleARN: a.RoleARN, ExternalID: a.ExternalID}
	}
	opts := Options{AWS: awsCfg, Accounts: cfg.Accounts, Limiter: lim}
	authOpts := auth.Options{STS: stsClient, Own: stsClient.Options().Credentials, SessionName: cfg.RoleSessionName, Logger: logger}
	if obs != nil {
		opts.Observer, authOpts.Observer = obs, obs
	}
	opts.Roles = auth.NewRoles(authOpts, roles)
	return New(opts)
}

// Rates lists the configured rate of every (account, allowed region,
// operation), the keys the gate asks the limiter about.
func Rates(accounts []config.Account) map[ratelimit.Key]float64 {
	rates := map[ratelimit.Key]float64{}
	for _, a := range accounts {
		for _, region := range a.AllowedRegions {
			for _, op := range config.Operations() {
				rates[ratelimit.Key{Account: a.ID, Region: region, Operation: op}] = a.Limits.Rate(op)
			}
		}
	}
	return rates
}

// SendLead is how long before its deadline a CreateBackup or a restore
// must leave backupd at the latest. Sent later, DynamoDB would most likely
// not answer in time, and the caller would be told that a backup or a
// table may or may not have been made (and, retrying without a
// request_id, could make a second one); refused at once, the caller is
// told that nothing was done. The operations that may be repeated safely
// are sent until the deadline itself.
const SendLead = 50 * time.Millisecond

// Leads gives the limiter SendLead for each operation that is not
// idempotent (ratelimit.Options.Lead).
func Leads() map[string]time.Duration {
	leads := map[string]time.Duration{}
	for _, op := range config.Operations() {
		if !idempotent[op] {
			leads[op] = SendLead
		}
	}
	return leads
}
