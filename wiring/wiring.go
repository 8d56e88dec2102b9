// Package wiring builds backupd from its configuration and the parts its
// caller builds: the service, with a DynamoDB client per account and
// region, and the gRPC and HTTP servers in front of it. cmd/backupd
// serves what New builds, and package bench measures it: written once,
// the benchmarks cannot drift from what a replica runs. NewState builds
// a replica's own parts, the state it keeps or shares in Redis, which a
// benchmark builds otherwise.
package wiring

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/certreload"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/connlimit"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/server"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/tracing"
)

// handlingSlack is how much longer than upstream_timeout, which bounds a
// request's work, the HTTP server gives a REST request once its body is
// in: a request ended at its deadline still has its answer written,
// rather than its connection closed under it.
const handlingSlack = 10 * time.Second

// Parts are what New wires together besides the configuration. The caller
// builds them, as they are where a replica and a benchmark differ: the
// state kept alone or shared in Redis, who hears of the limiter's
// decisions, where the log goes, and which endpoint AWS is.
type Parts struct {
	// AWS is the base AWS configuration: backupd's own credentials, the
	// default region and, for the sandbox, the fake's endpoint.
	AWS aws.Config
	// Limiter spaces the calls to DynamoDB (see LimiterOptions).
	Limiter accounts.Limiter
	// Results keeps the results of requests with a request_id; nil means
	// an idempotency.Memory, its size exposed in Metrics.
	Results service.Idempotency
	// Metrics counts requests, AWS calls and connections; required.
	Metrics *metrics.Metrics
	// Logger takes the request log and every warning; required.
	Logger *slog.Logger
	// Tracing, when set, makes spans of the calls to backupd and of its
	// calls to AWS.
	Tracing *tracing.Tracing
	// LogCaps makes the Cappers of the listeners' failed TLS handshakes'
	// lines, for the caller to count those left out at exit; nil: none
	// counted.
	LogCaps *logcap.Group
}

// Backupd is backupd wired, not yet serving: its caller serves GRPC, and
// HTTP on a listener wrapped by Conns.Listener, and marks Health ready as
// it starts serving.
type Backupd struct {
	Service *service.Server
	Health  *server.Health
	GRPC    *grpc.Server
	HTTP    *http.Server
	// Conns counts the connections of both listeners under the
	// configured limits: the gRPC server's itself, the HTTP listener's
	// once the caller wraps it (Conns.Listener).
	Conns *connlimit.Limiter
}

// New wires backupd as cfg says, from p.
func New(ctx context.Context, cfg *config.Config, p Parts) (*Backupd, error) {
	svc, err := newService(cfg, p)
	if err != nil {
		return nil, err
	}
	opts, err := serverOptions(cfg, svc, p)
	if err != nil {
		return nil, err
	}
	health := server.NewHealth()
	grpcSrv := server.NewGRPC(opts, health)
	handler, err := rest.NewHandler(ctx, restOptions(opts, svc, p), health, p.Metrics.Handler())
	if err != nil {
		return nil, err
	}
	return &Backupd{
		Service: svc,
		Health:  health,
		GRPC:    grpcSrv,
		HTTP:    rest.NewServer(handler, cfg.UpstreamTimeout+handlingSlack, opts.TLS, p.Logger, p.LogCaps),
		Conns:   opts.Conns,
	}, nil
}

// LimiterOptions are the rate limiter's options as cfg sets them, its
// decisions told to observer: for ratelimit.NewLocal or ratelimit.NewRedis.
func LimiterOptions(cfg *config.Config, observer ratelimit.Observer) ratelimit.Options {
	return ratelimit.Options{Rates: accounts.Rates(cfg.Accounts), MaxWait: cfg.MaxWait, Lead: accounts.Leads(), Observer: observer}
}

// newService builds the service and the accounts' clients it calls, each
// AWS call traced when p has tracing.
func newService(cfg *config.Config, p Parts) (*service.Server, error) {
	awsCfg := p.AWS
	if p.Tracing != nil {
		awsCfg.APIOptions = append(slices.Clone(awsCfg.APIOptions), p.Tracing.AWSMiddleware)
	}
	registry, err := accounts.NewFromConfig(cfg, awsCfg, p.Limiter, p.Metrics, p.Logger)
	if err != nil {
		return nil, err
	}
	results := p.Results
	if results == nil {
		kept := idempotency.NewMemory()
		p.Metrics.HoldRequestIDs(kept.Len)
		results = kept
	}
	svc := service.New(service.Options{Accounts: registry, Logger: p.Logger, DefaultTimeout: cfg.UpstreamTimeout, Idempotency: results})
	p.Metrics.CountRequestIDRuns(svc.RunsGoing)
	return svc, nil
}

// serverOptions are the gRPC server's options: the service, the listeners'
// TLS, the callers' authorizer and the connection limits, as cfg says.
func serverOptions(cfg *config.Config, svc *service.Server, p Parts) (server.Options, error) {
	opts := server.Options{Service: svc, Logger: p.Logger, Metrics: p.Metrics, SendLeads: accounts.Leads(), LogCaps: p.LogCaps}
	if cfg.TLS.Enabled() {
		tlsCfg, err := certreload.TLSConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, p.Logger)
		if err != nil {
			return server.Options{}, err
		}
		opts.TLS = tlsCfg
		p.Metrics.WatchCertificateExpiry(func() time.Time { return certreload.NotAfter(tlsCfg) })
	}
	switch {
	case len(cfg.Callers) > 0 && cfg.AnonymousCallers:
		opts.Authorizer = callers.NewAllowingAnonymous(cfg.Callers)
	case len(cfg.Callers) > 0:
		opts.Authorizer = callers.New(cfg.Callers)
	}
	if p.Tracing != nil { // a nil *tracing.Tracing would be a Tracing that is not nil
		opts.Tracing = p.Tracing
	}
	opts.Conns = newConns(cfg.Listen, p)
	return opts, nil
}

// restOptions are the REST handler's options: the gRPC server's service,
// log, metrics and callers' authorizer, so that a caller is treated alike
// over both, and the service's rules for a request read only in part.
func restOptions(opts server.Options, svc *service.Server, p Parts) rest.Options {
	ro := rest.Options{Service: opts.Service, Logger: opts.Logger, Metrics: opts.Metrics, Authorizer: opts.Authorizer,
		Violations: svc.Violations}
	if p.Tracing != nil { // a nil *tracing.Tracing would be a Tracing that is not nil
		ro.Tracing = p.Tracing
	}
	return ro
}

// newConns is the limiter of both listeners' connections, counted in
// p.Metrics; a limit the process's open-file limit leaves no room for is
// warned of.
func newConns(l config.Listen, p Parts) *connlimit.Limiter {
	if w := connlimit.FileLimitWarning(*l.MaxConnections); w != "" {
		p.Logger.Warn(w)
	}
	conns := connlimit.New(connlimit.Limits{Total: *l.MaxConnections, PerIP: *l.MaxConnectionsPerIP}, p.Metrics, p.Logger)
	p.Metrics.CountConnections(conns.Open)
	return conns
}
