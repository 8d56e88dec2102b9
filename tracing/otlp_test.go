package tracing

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestOTLPClientConfig(t *testing.T) {
	pem := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(pem, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		endpoint string
		headers  http.Header   // when set, the headers every export sends
		timeout  time.Duration // when set, the timeout of an upload
		wantErr  string
		secret   string // never in the error
	}{
		{name: "default", endpoint: defaultEndpoint},
		{name: "general endpoint gets the path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/"},
			endpoint: "https://collector:4318/v1/traces"},
		{name: "traces endpoint as it is", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom"}, endpoint: "http://collector:4318/custom"},
		{name: "endpoint without scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
			wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL with a host"},
		{name: "endpoint's password not repeated", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://u:hunter22@collector"},
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be", secret: "hunter22"},
		{name: "headers", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20def, x-team=backups"}, endpoint: defaultEndpoint,
			headers: http.Header{"Api-Key": {"abc def"}, "X-Team": {"backups"}}},
		{name: "traces headers win", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=general", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=traces"},
			endpoint: defaultEndpoint, headers: http.Header{"Api-Key": {"traces"}}},
		{name: "headers' value not repeated", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=s3cr3tkey,novalue"},
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_HEADERS must be comma-separated key=value pairs, values percent-encoded; entry 2 is not", secret: "s3cr3tkey"},
		{name: "bad escape", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t%zz"},
			wantErr: "entry 1 is not", secret: "s3cr3t"},
		// Headers net/http would refuse to send, each export failing.
		{name: "key not a header name", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "x-team=backups,api key=s3cr3tkey"},
			wantErr: "entry 2 is not", secret: "s3cr3tkey"},
		{name: "value not a header value", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t%0Akey"},
			wantErr: "entry 1 is not", secret: "s3cr3t"},
		{name: "general endpoint with a query", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp/?tenant=backups"},
			endpoint: "https://collector:4318/otlp/v1/traces?tenant=backups"},
		{name: "default timeout", endpoint: defaultEndpoint, timeout: defaultTimeout},
		{name: "timeout", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, endpoint: defaultEndpoint, timeout: 2500 * time.Millisecond},
		{name: "timeout not a number", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
			wantErr: `OTEL_EXPORTER_OTLP_TIMEOUT must be a number of milliseconds from 1 to 9223372036854; got "10s"`},
		// As nanoseconds it would wrap around, and every export time out.
		{name: "timeout past its bound", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "9223372036855"},
			wantErr: `OTEL_EXPORTER_OTLP_TIMEOUT must be a number of milliseconds from 1 to 9223372036854; got "9223372036855"`},
		{name: "timeout at its bound", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "9223372036854"}, endpoint: defaultEndpoint,
			timeout: 9223372036854 * time.Millisecond},
		{name: "compression", env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
			wantErr: `OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none; got "zstd"`},
		{name: "CA file missing", env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"},
			wantErr: "OTEL_EXPORTER_OTLP_CERTIFICATE: cannot be read: no such file or directory (the path is not repeated"},
		// What the file should hold, put in place of its path, is not
		// repeated: a private key would go to the log.
		{name: "a key in place of its path", env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pem,
			"OTEL_EXPORTER_OTLP_CLIENT_KEY": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAsecretkeymaterial\n-----END PRIVATE KEY-----\n"},
			wantErr: "OTEL_EXPORTER_OTLP_CLIENT_KEY: must be the path of a file; it holds several lines or PEM text (not repeated)", secret: "secretkeymaterial"},
		{name: "a password in place of a path", env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "hunter2-secret"},
			wantErr: "OTEL_EXPORTER_OTLP_CERTIFICATE: cannot be read: no such file or directory (the path is not repeated", secret: "hunter2"},
		{name: "CA file without a certificate", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": pem},
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: " + pem + " holds no PEM certificate"},
		{name: "client certificate without key", env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pem},
			wantErr: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY must be set together"},
		{name: "every problem at once", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "-1", "OTEL_EXPORTER_OTLP_COMPRESSION": "br"},
			wantErr: "OTEL_EXPORTER_OTLP_TIMEOUT must be a number of milliseconds from 1 to 9223372036854; got \"-1\"\nOTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newOTLPClient(envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
					t.Fatalf("err repeats the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.endpoint != tc.endpoint {
				t.Errorf("endpoint %q, want %q", c.endpoint, tc.endpoint)
			}
			if tc.headers != nil && !maps.EqualFunc(c.headers, tc.headers, slices.Equal) {
				t.Errorf("headers %v, want %v", c.headers, tc.headers)
			}
			if tc.timeout != 0 && c.timeout != tc.timeout {
				t.Errorf("timeout %v, want %v", c.timeout, tc.timeout)
			}
		})
	}
}

// fakeCollector answers export requests with the statuses it is given in
// turn (200 once they run out), and keeps the requests it read.
type fakeCollector struct {
	mu       sync.Mutex
	statuses []int
	// retryAfter, when set, is the Retry-After of every answer that is
	// not 200.
	retryAfter string
	answer     *coltracepb.ExportTraceServiceResponse
	got        []*http.Request
	bodies     []*coltracepb.ExportTraceServiceRequest
}

func (f *fakeCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, _ := io.ReadAll(body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(raw, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.got, f.bodies = append(f.got, r), append(f.bodies, req)
	if len(f.statuses) > 0 {
		status := f.statuses[0]
		f.statuses = f.statuses[1:]
		if status != http.StatusOK {
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			w.WriteHeader(status)
			return
		}
	}
	out, _ := proto.Marshal(f.answer)
	_, _ = w.Write(out)
}

var someSpans = []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "CreateBackup"}}}}}}

func TestOTLPClientUpload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gzip     bool
		statuses []int
		answer   *coltracepb.ExportTraceServiceResponse
		sends    int
		wantErr  string
	}{
		{name: "taken", sends: 1},
		{name: "gzip", gzip: true, sends: 1},
		{name: "busy, then taken", statuses: []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}, sends: 3},
		{name: "busy every time", statuses: []int{503, 503, 503, 503}, sends: maxAttempts, wantErr: "the collector answered 503 Service Unavailable"},
		{name: "refused, not sent again", statuses: []int{http.StatusBadRequest}, sends: 1, wantErr: "the collector answered 400 Bad Request"},
		{name: "partly taken", answer: &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
			RejectedSpans: 1, ErrorMessage: "too old"}}, sends: 1, wantErr: "the collector rejected 1 spans: too old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCollector{statuses: tc.statuses, answer: tc.answer}
			srv := httptest.NewServer(f)
			defer srv.Close()
			env := map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k1"}
			if tc.gzip {
				env["OTEL_EXPORTER_OTLP_COMPRESSION"] = "gzip"
			}
			c, err := newOTLPClient(envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			err = c.UploadTraces(context.Background(), someSpans)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.got) != tc.sends {
				t.Fatalf("%d sends, want %d", len(f.got), tc.sends)
			}
			r := f.got[0]
			if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("Api-Key") != "k1" {
				t.Errorf("request %s %v", r.URL.Path, r.Header)
			}
			if got := (r.Header.Get("Content-Encoding") == "gzip"); got != tc.gzip {
				t.Errorf("gzip %v, want %v", got, tc.gzip)
			}
			if name := f.bodies[0].GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "CreateBackup" {
				t.Errorf("span %q sent", name)
			}
		})
	}
}

// TestOTLPClientTimeout: a collector that does not answer holds an
// upload no longer than the exporter's timeout.
func TestOTLPClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c, err := newOTLPClient(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_TIMEOUT": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UploadTraces(context.Background(), someSpans); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v, want the deadline's", err)
	}
}

// TestExportFailureLogHidesTheEndpointsSecrets: the warning of an export
// that failed (a collector down) repeats neither the endpoint's password
// nor its query, which the start's line leaves out too (LoggedEndpoint),
// and says once what failed.
func TestExportFailureLogHidesTheEndpointsSecrets(t *testing.T) {
	tr := toADownCollector(t, "10")
	logs := &testenv.Buffer{}
	defer otel.SetErrorHandler(otel.GetErrorHandler())
	otel.SetErrorHandler(ErrorHandler(slog.New(slog.NewJSONHandler(logs, nil)), nil))
	_, span := tr.tracer.Start(context.Background(), "CreateBackup")
	span.End()
	for start := time.Now(); !strings.Contains(logs.String(), "connection refused") && time.Since(start) < 10*time.Second; {
		time.Sleep(10 * time.Millisecond) // the batch goes out within 10 ms, and fails
	}
	_ = tr.Shutdown(context.Background())
	got := logs.String()
	if !strings.Contains(got, "connection refused") {
		t.Fatalf("no export failure logged:\n%s", got)
	}
	for _, secret := range []string{"hunter22", "s3cr3tkey"} {
		if strings.Contains(got, secret) {
			t.Errorf("the log repeats %q:\n%s", secret, got)
		}
	}
	if strings.Count(got, "traces export") != 1 {
		t.Errorf("want the failure named once:\n%s", got)
	}
}

// TestShutdownReturnsTheExitsExportFailure: the spans held at exit that
// cannot be sent are Shutdown's error, which the exit logs (redacted as the
// handler's lines are), not left to the handler, which may be holding its
// lines back. The batch's timer is an hour, so that only Shutdown sends
// the span.
func TestShutdownReturnsTheExitsExportFailure(t *testing.T) {
	tr := toADownCollector(t, "3600000")
	_, span := tr.tracer.Start(context.Background(), "GetBackup")
	span.End()
	err := tr.Shutdown(context.Background())
	if err == nil || !strings.Contains(redact.Error(err), "connection refused") {
		t.Fatalf("Shutdown = %v; want the exit's export failure", err)
	}
	for _, secret := range []string{"hunter22", "s3cr3tkey"} {
		if strings.Contains(redact.Error(err), secret) {
			t.Errorf("Shutdown's error, redacted, repeats %q: %s", secret, redact.Error(err))
		}
	}
}

// toADownCollector is tracing whose spans go to a collector that refuses
// connections, at an endpoint with a password and a key in its query,
// with the batch's timer at scheduleDelay milliseconds (which the SDK
// reads from the process's environment).
func toADownCollector(t *testing.T, scheduleDelay string) *Tracing {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close()
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", scheduleDelay)
	tr, err := fromEnv(context.Background(), envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://user:hunter22@" + down + "/v1/traces?api_key=s3cr3tkey",
		"OTEL_EXPORTER_OTLP_TIMEOUT":         "100",
	}))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestOTLPClientDoesNotFollowRedirects: a collector's redirect is a
// failed export, not followed: net/http would send a 301's or 302's POST
// again as a GET without its spans, taking whatever answered it for the
// spans' receipt, and another host's the headers, a collector's key
// among them.
func TestOTLPClientDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			elsewhere.Store(0)
			var sends atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sends.Add(1)
				http.Redirect(w, r, other.URL+"/v1/traces", status)
			}))
			defer srv.Close()
			c, err := newOTLPClient(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k1"}))
			if err != nil {
				t.Fatal(err)
			}
			err = c.UploadTraces(context.Background(), someSpans)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the collector answered %d", status)) {
				t.Errorf("err = %v; want the redirect's", err)
			}
			if sends.Load() != 1 || elsewhere.Load() != 0 {
				t.Errorf("%d sends, %d elsewhere; want 1, none elsewhere", sends.Load(), elsewhere.Load())
			}
		})
	}
}

// TestOTLPClientHeedsRetryAfter: a collector that asks for more time than
// the batch has left is not sent the batch again; one that asks for a
// second within it is.
func TestOTLPClientHeedsRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		sends      int
	}{
		{name: "a minute, past the timeout", retryAfter: "60", sends: 1},
		{name: "a date past the timeout", retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), sends: 1},
		{name: "a second", retryAfter: "1", sends: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCollector{statuses: []int{http.StatusServiceUnavailable}, retryAfter: tc.retryAfter}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c, err := newOTLPClient(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_TIMEOUT": "3000"}))
			if err != nil {
				t.Fatal(err)
			}
			err = c.UploadTraces(context.Background(), someSpans)
			if tc.sends == 1 && (err == nil || !strings.Contains(err.Error(), "503")) || tc.sends > 1 && err != nil {
				t.Fatalf("err = %v", err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.got) != tc.sends {
				t.Fatalf("%d sends, want %d", len(f.got), tc.sends)
			}
		})
	}
}
