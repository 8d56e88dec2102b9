package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/backupd/backupd/redact"
)

// otlpClient sends spans to a collector as OTLP over HTTP, in protobuf,
// configured by OpenTelemetry's variables for the OTLP exporter.
// OpenTelemetry's own OTLP/HTTP client (otlptracehttp) is not used: its
// configuration code, shared with the gRPC exporter, imports grpc-go's
// gzip codec, which registers itself for the whole process, backupd's
// gRPC server included. That server would then decompress a caller's
// message before any interceptor sees it, up to 4 MiB a stream from a
// few KiB, where it now refuses compressed messages unread.
type otlpClient struct {
	endpoint string
	headers  http.Header
	timeout  time.Duration
	gzip     bool
	http     *http.Client
}

// Defaults of OpenTelemetry's OTLP exporter specification.
const (
	defaultEndpoint = "http://localhost:4318/v1/traces"
	defaultTimeout  = 10 * time.Second
	// maxAttempts bounds the sends of one batch the collector could not
	// take for now (429, 502, 503, 504, or no answer), within the timeout.
	maxAttempts = 3
)

// newOTLPClient reads the exporter's variables, the traces' own
// (OTEL_EXPORTER_OTLP_TRACES_*) before the general ones.
func newOTLPClient(getenv func(string) string) (*otlpClient, error) {
	c := &otlpClient{headers: http.Header{}, timeout: defaultTimeout}
	var errs []error
	endpoint, err := otlpEndpoint(getenv)
	errs = append(errs, err)
	c.endpoint = endpoint
	if name, v := exporterVar(getenv, "HEADERS"); v != "" {
		errs = append(errs, parseHeaders(c.headers, name, v))
	}
	if name, v := exporterVar(getenv, "TIMEOUT"); v != "" {
		// As nanoseconds, more would wrap around and time every export out.
		ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || ms <= 0 || ms > maxMillis {
			errs = append(errs, fmt.Errorf("%s must be a number of milliseconds from 1 to %d; got %q", name, maxMillis, v))
		}
		c.timeout = time.Duration(ms) * time.Millisecond
	}
	switch name, v := exporterVar(getenv, "COMPRESSION"); strings.ToLower(strings.TrimSpace(v)) {
	case "", "none":
	case "gzip":
		c.gzip = true
	default:
		errs = append(errs, fmt.Errorf("%s must be gzip or none; got %q", name, v))
	}
	tlsCfg, err := otlpTLS(getenv)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.http = exportHTTPClient(tlsCfg)
	return c, nil
}

// exportHTTPClient is the HTTP client of the exports, with tlsCfg (nil
// for the default). It follows no redirect: net/http would send a 301's
// or 302's POST again as a GET, without the spans, and take its answer
// for their receipt; and another host would get the headers, a
// collector's key among them. The 3xx is a failed export.
func exportHTTPClient(tlsCfg *tls.Config) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsCfg
	return &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// otlpEndpoint is the URL spans are posted to: the traces' endpoint as
// it is, or the general one with /v1/traces after its path.
func otlpEndpoint(getenv func(string) string) (string, error) {
	name, v := exporterVar(getenv, "ENDPOINT")
	if v == "" {
		return defaultEndpoint, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold a password: it is not repeated.
		return "", fmt.Errorf("%s must be an http:// or https:// URL with a host", name)
	}
	if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
		return u.JoinPath("v1/traces").String(), nil // before a query it may have
	}
	return v, nil
}

// parseHeaders adds to h the headers v lists as key=value pairs, comma
// separated, values percent-encoded. The values (a collector's API key)
// are not repeated in an error.
func parseHeaders(h http.Header, name, v string) error {
	for i, pair := range strings.Split(v, ",") {
		key, value, ok := strings.Cut(pair, "=")
		key = strings.TrimSpace(key)
		decoded, err := url.PathUnescape(strings.TrimSpace(value))
		// net/http would refuse to send what is not a header, and every
		// export would fail.
		if !ok || !httpguts.ValidHeaderFieldName(key) || err != nil || !httpguts.ValidHeaderFieldValue(decoded) {
			return fmt.Errorf("%s must be comma-separated key=value pairs, values percent-encoded; entry %d is not", name, i+1)
		}
		h.Add(key, decoded)
	}
	return nil
}

// otlpTLS is the TLS configuration the variables ask for: a CA file to
// trust, and a client certificate and key; nil for the system's roots
// and none.
func otlpTLS(getenv func(string) string) (*tls.Config, error) {
	caName, caFile := exporterVar(getenv, "CERTIFICATE")
	certName, certFile := exporterVar(getenv, "CLIENT_CERTIFICATE")
	keyName, keyFile := exporterVar(getenv, "CLIENT_KEY")
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := redact.ReadNamedFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caName, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", caName, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s and %s must be set together", certName, keyName)
	}
	if certFile != "" {
		certPEM, err := redact.ReadNamedFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certName, err)
		}
		keyPEM, err := redact.ReadNamedFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyName, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", certName, keyName, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c *otlpClient) Start(context.Context) error { return nil }

func (c *otlpClient) Stop(context.Context) error {
	c.http.CloseIdleConnections()
	return nil
}

// UploadTraces posts spans, sending them again while the collector
// answers that it cannot take them for now, within the timeout.
func (c *otlpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	body, err := c.encode(spans)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		again, after, err := c.post(ctx, body)
		if err == nil || !again || attempt == maxAttempts {
			return err
		}
		wait := time.Duration(attempt) * 500 * time.Millisecond
		if after > 0 {
			wait = after // the collector's Retry-After
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // no time left to send it again
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (c *otlpClient) encode(spans []*tracepb.ResourceSpans) ([]byte, error) {
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: spans}
	body, err := proto.Marshal(req)
	if err != nil {
		// A string that is not UTF-8, which protobuf refuses, fails the
		// whole batch: one caller's User-Agent or path (HTTP takes bytes
		// over 0x7f in both) would lose every span sent with it. Such
		// strings are mended, as the SDK's own exporter does not.
		toValidUTF8(req.ProtoReflect())
		body, err = proto.Marshal(req)
	}
	if err != nil || !c.gzip {
		return body, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// post sends one export request. again reports whether the failure is
// one to try again after: no answer, or an answer that the collector is
// busy or unavailable, with after the time its Retry-After asks for.
func (c *otlpClient) post(ctx context.Context, body []byte) (again bool, after time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Without the URL, which net/http's error quotes with its
		// query, where a collector's key may be. (The exporter puts
		// "traces export: " before the error.)
		if ue, ok := errors.AsType[*url.Error](err); ok {
			return true, 0, ue.Err
		}
		return true, 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return false, 0, partialSuccess(answer, err)
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return true, retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("the collector answered %s", resp.Status)
	}
	return false, 0, fmt.Errorf("the collector answered %s", resp.Status)
}

// retryAfter is the wait a Retry-After header asks for, in seconds or
// until a date; 0 when it asks for none.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(time.Until(at), 0)
	}
	return 0
}

// partialSuccess is the error of a collector's answer that took only
// some of the spans, or nil.
func partialSuccess(answer []byte, readErr error) error {
	var out coltracepb.ExportTraceServiceResponse
	if readErr != nil || proto.Unmarshal(answer, &out) != nil {
		return nil // taken; what it said about them is unreadable
	}
	if ps := out.GetPartialSuccess(); ps.GetRejectedSpans() > 0 {
		return fmt.Errorf("the collector rejected %d spans: %s", ps.GetRejectedSpans(), ps.GetErrorMessage())
	}
	return nil
}

// toValidUTF8 replaces, in m and every message within it, each string
// that is not UTF-8 by one whose invalid bytes are U+FFFD.
func toValidUTF8(m protoreflect.Message) {
	valid := func(v protoreflect.Value) (protoreflect.Value, bool) {
		if s := v.String(); !utf8.ValidString(s) {
			return protoreflect.ValueOfString(strings.ToValidUTF8(s, "\uFFFD")), false
		}
		return v, true
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		message := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					toValidUTF8(mv.Message())
					return true
				})
			}
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch {
				case message:
					toValidUTF8(l.Get(i).Message())
				case fd.Kind() == protoreflect.StringKind:
					if mended, ok := valid(l.Get(i)); !ok {
						l.Set(i, mended)
					}
				}
			}
		case message:
			toValidUTF8(v.Message())
		case fd.Kind() == protoreflect.StringKind:
			if mended, ok := valid(v); !ok {
				m.Set(fd, mended)
			}
		}
		return true
	})
}
