// Package metrics exposes backupd's Prometheus metrics: what callers asked
// and what they got, how the per-account limiter treated each call, and
// what STS and DynamoDB answered. Labels name only configured accounts,
// regions, operations and AWS error codes, so their number stays bounded.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/connlimit"
)

// Metrics holds backupd's collectors in a registry of their own.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	limiter      *prometheus.CounterVec
	attempts     *prometheus.CounterVec
	attemptDur   *prometheus.HistogramVec
	assumeRole   *prometheus.CounterVec
	assumeDur    prometheus.Histogram
	connsRefused *prometheus.CounterVec
	inFlight     prometheus.Gauge
	// codes are the AWS error codes labels have named, at most
	// maxErrorCodes (outcome).
	codesMu sync.Mutex
	codes   map[string]bool
}

// maxErrorCodes bounds the AWS error codes the outcome label names. The
// codes come from the answers, which an endpoint between (a proxy) may
// fill with anything: each new one would be a series per account. DynamoDB
// and STS answer a few dozen.
const maxErrorCodes = 100

// New registers backupd's metrics, with the Go runtime's and the process's.
func New() *Metrics {
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		codes: map[string]bool{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backupd_requests_total",
			Help: "Requests answered, by gRPC method (REST requests under the method they map to), status code and the reason of its ErrorInfo (empty for OK).",
		}, []string{"method", "code", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "backupd_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, limiter waits included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 20, 25, 30},
		}, []string{"method"}),
		limiter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backupd_ratelimit_decisions_total",
			Help: "Calls to DynamoDB the per-account limiter admitted at once, admitted after waiting, or refused.",
		}, []string{"account", "region", "operation", "decision"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backupd_dynamodb_attempts_total",
			Help: "Attempts sent to DynamoDB, retries included, by outcome: ok, DynamoDB's error code, deadline_exceeded (no answer within the call's deadline), canceled (its caller left), http_<status> (an answer with no error code), or transport_error (no answer).",
		}, []string{"account", "region", "operation", "outcome"}),
		attemptDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "backupd_dynamodb_attempt_duration_seconds",
			Help: "Time from an attempt's admission by the limiter to DynamoDB's answer, signing included; an attempt has its credentials before the limiter admits it, so an STS refresh is not in it.",
			// Up to the longest upstream_timeout an attempt may take.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30},
		}, []string{"operation"}),
		assumeRole: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backupd_sts_assume_role_total",
			Help: "AssumeRole calls made to refresh an account's credentials, by outcome: ok, STS's error code, deadline_exceeded (no answer within backupd's bound), canceled, http_<status> (an answer with no error code), transport_error (no answer), or no_credentials (not sent: backupd's own credentials failed).",
		}, []string{"account", "outcome"}),
		assumeDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backupd_sts_assume_role_duration_seconds",
			Help: "Time an AssumeRole call sent to STS took, answered or not, every account's together: a slow STS delays the first requests after each refresh.",
			// Up to AssumeRole's 10 s bound.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backupd_connections_refused_total",
			Help: "Connections closed as soon as they were accepted, both listeners' together, by the limit they would have gone over: total (max_connections) or per_ip (max_connections_per_ip).",
		}, []string{"limit"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "backupd_requests_in_flight",
			Help: "BackupService requests in their handler, gRPC and REST alike: those a shutdown's drain waits for, before the request_id runs whose callers left (backupd_request_id_runs_in_flight).",
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.limiter, m.attempts, m.attemptDur, m.assumeRole, m.assumeDur, m.connsRefused, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both limits' series exist from the start, at 0, so that an alert
	// on their rise has something to compare with.
	for _, limit := range []string{connlimit.OverTotal, connlimit.OverPerIP} {
		m.connsRefused.WithLabelValues(limit)
	}
	return m
}

// HoldRequestIDs exposes held, how many request_id results the process
// holds (the memory backend), read at each scrape: each costs heap for 24
// hours, and a caller that sends a new request_id with every retry makes
// them grow at its accounts' rates.
func (m *Metrics) HoldRequestIDs(held func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "backupd_request_ids_held",
		Help: "request_id results this process holds for repeats (memory backend), running requests included; each is kept 24 h.",
	}, func() float64 { return float64(held()) }))
}

// CountRequestIDRuns exposes going, how many request_id runs are going,
// read at each scrape: a run goes on after its caller left, and the
// shutdown's drain waits for it, as backupd_requests_in_flight does not
// show.
func (m *Metrics) CountRequestIDRuns(going func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "backupd_request_id_runs_in_flight",
		Help: "request_id runs (CreateBackup, RestoreTableFromBackup) going, those whose callers left included: a shutdown's drain waits for them too.",
	}, func() float64 { return float64(going()) }))
}

// CountConnections exposes open, how many connections both listeners
// hold open, read at each scrape.
func (m *Metrics) CountConnections(open func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "backupd_connections_open",
		Help: "Connections both listeners hold open; max_connections bounds them.",
	}, func() float64 { return float64(open()) }))
}

// WatchCertificateExpiry exposes notAfter, when the listeners' certificate
// in service expires, read at each scrape: a rotation that fails keeps the
// old certificate serving, and an alert on this gauge comes before every
// client refuses it. A zero time is exposed as 0.
func (m *Metrics) WatchCertificateExpiry(notAfter func() time.Time) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "backupd_tls_certificate_expiry_timestamp_seconds",
		Help: "When the listeners' certificate in service expires, in seconds since the Unix epoch (with tls only).",
	}, func() float64 {
		if t := notAfter(); !t.IsZero() {
			return float64(t.Unix())
		}
		return 0
	}))
}

// ObserveConnRefused counts a connection closed as soon as it was
// accepted, over the limit named: "total" or "per_ip".
func (m *Metrics) ObserveConnRefused(limit string) {
	m.connsRefused.WithLabelValues(limit).Inc()
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SharedStateUp makes the gauge of whether Redis answers backupd, and
// returns its setter (sharedstate.Reachability's report). Only a Redis
// backend has it.
func (m *Metrics) SharedStateUp() func(up bool) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "backupd_shared_state_up",
		Help: "1 while the Redis of the shared state serves backupd's commands, 0 once it has failed them for a second (requests that need it are refused).",
	})
	m.reg.MustRegister(g)
	return func(up bool) {
		if up {
			g.Set(1)
		} else {
			g.Set(0)
		}
	}
}

// ObserveRequest counts one answered request. Its reason tells causes of
// one code apart (Redis gone from DynamoDB failing, both UNAVAILABLE);
// backupd's reasons are a fixed set, so the label's values are bounded.
func (m *Metrics) ObserveRequest(method string, code codes.Code, reason string, d time.Duration) {
	m.requests.WithLabelValues(method, code.String(), reason).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

// InFlight moves the count of requests in their handler by delta.
func (m *Metrics) InFlight(delta int) {
	m.inFlight.Add(float64(delta))
}

// ObserveLimit counts one decision of the limiter: "admitted", "waited" or
// "refused".
func (m *Metrics) ObserveLimit(account, region, operation, decision string) {
	m.limiter.WithLabelValues(account, region, operation, decision).Inc()
}

// ObserveAttempt counts one attempt DynamoDB answered, or failed to.
func (m *Metrics) ObserveAttempt(account, region, operation string, err error, d time.Duration) {
	m.attempts.WithLabelValues(account, region, operation, m.outcome(err)).Inc()
	m.attemptDur.WithLabelValues(operation).Observe(d.Seconds())
}

// outcomeNoCredentials is the outcome of a call never sent, backupd's own
// credentials having failed (outcomeOf), which ObserveAssumeRole does not
// time.
const outcomeNoCredentials = "no_credentials"

// ObserveAssumeRole counts one AssumeRole call for account, which took d.
// One never sent (no_credentials: backupd's own credentials failed) is
// counted but not timed: d is then the credential chain's, an IMDS's that
// does not answer say, not STS's, which the histogram is for.
func (m *Metrics) ObserveAssumeRole(account string, err error, d time.Duration) {
	outcome := m.outcome(err)
	m.assumeRole.WithLabelValues(account, outcome).Inc()
	if outcome != outcomeNoCredentials {
		m.assumeDur.Observe(d.Seconds())
	}
}

// outcome is outcomeOf as a label value: an error code beyond the first
// maxErrorCodes seen is unrecognized_error_code.
func (m *Metrics) outcome(err error) string {
	o, code := outcomeOf(err)
	if !code || o == unrecognized {
		return o
	}
	m.codesMu.Lock()
	defer m.codesMu.Unlock()
	if !m.codes[o] {
		if len(m.codes) >= maxErrorCodes {
			return unrecognized
		}
		m.codes[o] = true
	}
	return o
}

// unrecognized labels an error code that is not one (errorCode), or one
// over maxErrorCodes.
const unrecognized = "unrecognized_error_code"

// outcomeOf names how an AWS call ended: "ok", the service's error code,
// "deadline_exceeded" when its deadline passed, "canceled" when it was
// canceled (its caller left), "http_<status>"
// when an answer came without an error code the SDK could read (a proxy's
// HTML page, say), "transport_error" when no answer came, or
// "no_credentials" when backupd's own credentials failed and the call
// (an AssumeRole) was never sent; and whether
// it is an error code from the answer (which outcome bounds) rather than
// one of a few fixed names or an HTTP status.
func outcomeOf(err error) (outcome string, code bool) {
	var (
		api  smithy.APIError
		resp *smithyhttp.ResponseError
	)
	status := func() (string, bool) {
		if errors.As(err, &resp) && resp.HTTPStatusCode() >= 100 && resp.HTTPStatusCode() <= 599 {
			return "http_" + strconv.Itoa(resp.HTTPStatusCode()), true
		}
		return "", false
	}
	switch {
	case err == nil:
		return "ok", false
	case errors.As(err, new(*awsbase.OwnCredentialsError)):
		// The call was never sent: backupd's own credentials failed,
		// whatever an IMDS or credential process inside answered.
		return outcomeNoCredentials, false
	case errors.As(err, &api):
		if s, ok := status(); ok && api.ErrorCode() == "UnknownError" {
			// smithy's name for an answer that named no code (an empty
			// 5xx): no code DynamoDB or STS gave.
			return s, false
		}
		return errorCode(api.ErrorCode()), true
	case errors.Is(err, context.DeadlineExceeded):
		// No answer within the call's deadline: a slow or stalled
		// upstream, told apart from callers that left.
		return "deadline_exceeded", false
	case errors.Is(err, context.Canceled):
		return "canceled", false
	}
	if s, ok := status(); ok {
		return s, false
	}
	return "transport_error", false
}

// maxErrorCode bounds an error code kept as a label; AWS's longest are
// under 50 characters.
const maxErrorCode = 64

// errorCode is code as a label value, or "unrecognized_error_code" when
// it is not a short name of letters, digits and "_.:#-". The code comes
// from the answer (a header or the body), which a proxy in front of AWS
// may fill with anything: a label value that is not UTF-8 makes the
// Prometheus client panic, after the call was made, and a free-form one
// would grow the series without bound.
func errorCode(code string) string {
	if code == "" || len(code) > maxErrorCode {
		return unrecognized
	}
	for _, c := range []byte(code) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.:#-", c) >= 0) {
			return unrecognized
		}
	}
	return code
}
