package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/backupd/backupd/awsbase"
)

func TestOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "ThrottlingException"}), "ThrottlingException"},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{context.Canceled, "canceled"},
		{errors.New("connection reset by peer"), "transport_error"},
		// An answer whose error code the SDK could not read.
		{fmt.Errorf("op: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 503}},
			Err: errors.New("failed to decode response body")}), "http_503"},
		{&smithy.GenericAPIError{Code: "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"}, "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"},
		{&smithy.GenericAPIError{Code: "Internal\xffError"}, "unrecognized_error_code"},
		{&smithy.GenericAPIError{Code: "Internal Error"}, "unrecognized_error_code"},
		{&smithy.GenericAPIError{Code: ""}, "unrecognized_error_code"},
		{&smithy.GenericAPIError{Code: strings.Repeat("E", 65)}, "unrecognized_error_code"},
		{&smithy.GenericAPIError{Code: strings.Repeat("E", 64)}, strings.Repeat("E", 64)},
		// backupd's own credentials failed (an IMDS without a role answers
		// 404): the AssumeRole was never sent, and STS answered nothing.
		{fmt.Errorf("get identity: %w", &awsbase.OwnCredentialsError{Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 404}}, Err: errors.New("no EC2 IMDS role found")}}), "no_credentials"},
		// smithy's code for an answer that named none (an empty 5xx).
		{fmt.Errorf("op: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 500}},
			Err: &smithy.GenericAPIError{Code: "UnknownError", Message: "UnknownError"}}), "http_500"},
	}
	for _, tt := range tests {
		if got, _ := outcomeOf(tt.err); got != tt.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// The error codes the outcome label names are bounded: an endpoint
// between may answer a new one with every call.
func TestOutcomeLabelsAreBounded(t *testing.T) {
	m := New()
	for i := range maxErrorCodes + 50 {
		code := fmt.Sprintf("Code%d", i)
		if i%2 == 1 {
			code = fmt.Sprintf("http_%d", i) // a code an answer gave, spelled as a status
		}
		m.ObserveAttempt("111111111111", "us-east-1", "CreateBackup", &smithy.GenericAPIError{Code: code}, time.Millisecond)
	}
	m.ObserveAttempt("111111111111", "us-east-1", "CreateBackup", &smithy.GenericAPIError{Code: "Code0"}, time.Millisecond)
	if n := testutil.CollectAndCount(m.attempts); n != maxErrorCodes+1 {
		t.Errorf("%d outcome series; want %d codes and unrecognized_error_code", n, maxErrorCodes+1)
	}
	if got := testutil.ToFloat64(m.attempts.WithLabelValues("111111111111", "us-east-1", "CreateBackup", unrecognized)); got != 50 {
		t.Errorf("unrecognized_error_code counted %v; want the 50 codes over the bound", got)
	}
	if got := testutil.ToFloat64(m.attempts.WithLabelValues("111111111111", "us-east-1", "CreateBackup", "Code0")); got != 2 {
		t.Errorf("Code0 counted %v; want 2: a code seen keeps its label", got)
	}
}

func TestObserve(t *testing.T) {
	m := New()
	const method = "/backup.v1.BackupService/CreateBackup"
	m.ObserveRequest(method, codes.OK, "", 3*time.Millisecond)
	m.ObserveRequest(method, codes.OK, "", 4*time.Millisecond)
	m.ObserveRequest(method, codes.ResourceExhausted, "RATE_LIMITED", time.Second)
	m.ObserveLimit("111111111111", "us-east-1", "CreateBackup", "refused")
	m.ObserveAttempt("111111111111", "us-east-1", "CreateBackup", &smithy.GenericAPIError{Code: "ThrottlingException"}, time.Millisecond)
	m.ObserveAssumeRole("111111111111", nil, 40*time.Millisecond)
	m.ObserveConnRefused("per_ip")
	m.CountConnections(func() int { return 7 })
	m.CountRequestIDRuns(func() int { return 2 })

	for _, tt := range []struct {
		name string
		got  float64
		want float64
	}{
		{"OK requests", testutil.ToFloat64(m.requests.WithLabelValues(method, "OK", "")), 2},
		{"refused requests", testutil.ToFloat64(m.requests.WithLabelValues(method, "ResourceExhausted", "RATE_LIMITED")), 1},
		{"limiter refusals", testutil.ToFloat64(m.limiter.WithLabelValues("111111111111", "us-east-1", "CreateBackup", "refused")), 1},
		{"throttled attempts", testutil.ToFloat64(m.attempts.WithLabelValues("111111111111", "us-east-1", "CreateBackup", "ThrottlingException")), 1},
		{"AssumeRole calls", testutil.ToFloat64(m.assumeRole.WithLabelValues("111111111111", "ok")), 1},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`backupd_request_duration_seconds_count{method="` + method + `"} 3`,
		`backupd_dynamodb_attempt_duration_seconds_count{operation="CreateBackup"} 1`,
		`backupd_sts_assume_role_duration_seconds_bucket{le="0.05"} 1`,
		`backupd_sts_assume_role_duration_seconds_bucket{le="0.025"} 0`,
		`backupd_connections_refused_total{limit="per_ip"} 1`,
		`backupd_connections_refused_total{limit="total"} 0`, // there before the first refusal
		"backupd_connections_open 7",
		"backupd_request_id_runs_in_flight 2",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAssumeRoleNotSentIsNotTimed: an AssumeRole that was never sent,
// backupd's own credentials having failed, is counted (no_credentials)
// but left out of the STS duration histogram, whose alerts would
// otherwise fire on a slow credential chain (an IMDS that does not
// answer) as if STS were slow.
func TestAssumeRoleNotSentIsNotTimed(t *testing.T) {
	m := New()
	m.ObserveAssumeRole("111111111111", fmt.Errorf("get identity: %w", &awsbase.OwnCredentialsError{Err: errors.New("no EC2 IMDS role found")}), 9*time.Second)
	m.ObserveAssumeRole("111111111111", nil, 40*time.Millisecond)
	if got := testutil.ToFloat64(m.assumeRole.WithLabelValues("111111111111", "no_credentials")); got != 1 {
		t.Errorf("no_credentials AssumeRoles = %v, want 1", got)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if want := "backupd_sts_assume_role_duration_seconds_count 1\n"; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %q: the unsent AssumeRole was timed", want)
	}
}
