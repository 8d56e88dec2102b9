// Package tracing sends spans of backupd's requests, and of the AWS calls
// each makes, to an OpenTelemetry collector, so that a caller's trace
// shows where its backup's time went: the wait for its account's turn,
// each DynamoDB attempt, an STS refresh. It is off unless the
// environment names an OTLP endpoint, with OpenTelemetry's own variables
// (OTEL_EXPORTER_OTLP_ENDPOINT and the rest), as the AWS SDK's endpoint
// comes from AWS_ENDPOINT_URL: a collector is part of where backupd
// runs, not of what it serves.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/redact"
)

// Name is the instrumentation scope of backupd's own spans.
const Name = "github.com/backupd/backupd/tracing"

// Tracing is the tracer provider spans go to, and the handlers and SDK
// middleware that make them.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	tracer     trace.Tracer
	// Endpoint is the URL spans are posted to.
	Endpoint string
}

// Protocol is the OTLP protocol backupd sends spans with, the only one
// it supports (see otlpClient).
const Protocol = "http/protobuf"

// FromEnv returns the tracing the environment asks for, or nil when it
// asks for none: no OTLP endpoint named (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and OTEL_TRACES_EXPORTER not
// "otlp", or OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none. A
// variable it cannot follow is an error naming it, so that a start
// meant to trace does not run without. It reads the exporter's
// variables (otlpClient); the SDK reads the rest (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*).
func FromEnv(ctx context.Context) (*Tracing, error) {
	return fromEnv(ctx, os.Getenv)
}

// CheckEnv reports the problems FromEnv would, without building anything:
// for a start to name them beside its configuration's.
func CheckEnv() error {
	_, err := settings(os.Getenv)
	return err
}

// settings reads the tracing variables: the exporter's client, nil when
// tracing is off, or every problem found.
func settings(getenv func(string) string) (*otlpClient, error) {
	on, err := enabled(getenv)
	if err == nil && !on {
		return nil, nil
	}
	// With tracing asked for, or unclear, every variable is checked, so
	// that the start names every problem at once.
	client, clientErr := newOTLPClient(getenv)
	if err := errors.Join(err, checkProtocol(getenv), checkSampler(getenv), checkWholeNumbers(getenv), checkResource(getenv), clientErr); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return client, nil
}

func fromEnv(ctx context.Context, getenv func(string) string) (*Tracing, error) {
	client, err := settings(getenv)
	if client == nil || err != nil {
		return nil, err
	}
	exporter, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("backupd")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	limits := sdktrace.NewSpanLimits() // the environment's
	if _, v := lookup(getenv, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"); v == "" {
		limits.AttributeValueLengthLimit = maxAttributeValue
	}
	t := New(sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(limits)))
	t.Endpoint = client.endpoint
	return t, nil
}

// New returns tracing whose spans go to provider, with W3C trace context
// propagated: FromEnv's, with the provider it builds, or a test's.
func New(provider *sdktrace.TracerProvider) *Tracing {
	return &Tracing{provider: provider, propagator: propagation.TraceContext{}, tracer: provider.Tracer(Name)}
}

// maxAttributeValue bounds a span attribute's value, unless the
// environment sets a bound (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
// OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT): OpenTelemetry's default is none,
// and otelhttp's spans repeat what a caller sent (url.path,
// user_agent.original, http.request.method_original), each up to the
// headers' 64 KiB, for every request, a route's or not, a caller's
// backupd knows or not; the exporter's queue holds 2048 spans, and sends
// them 512 to a request, which a collector refuses whole past its own
// bound on a request's size. backupd's own attributes are well under it.
const maxAttributeValue = 1024

// enabled reports whether the environment asks for traces, and what
// keeps it from saying.
func enabled(getenv func(string) string) (bool, error) {
	// OpenTelemetry's booleans are true or false in any case, and any
	// other value false (strconv.ParseBool's 1 and t are not true). Such
	// a value is refused: it may well have been meant as true.
	var disabledErr error
	switch v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); {
	case strings.EqualFold(v, "true"):
		return false, nil
	case v != "" && !strings.EqualFold(v, "false"):
		disabledErr = fmt.Errorf("OTEL_SDK_DISABLED must be true or false; got %q", v)
	}
	// Enumerated values are matched in any case, as OpenTelemetry's
	// configuration specification asks.
	switch v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); strings.ToLower(v) {
	case "none":
		return false, disabledErr
	case "otlp":
		return true, disabledErr
	case "":
		_, endpoint := exporterVar(getenv, "ENDPOINT")
		return endpoint != "", disabledErr
	default:
		return false, errors.Join(disabledErr,
			fmt.Errorf("OTEL_TRACES_EXPORTER must be otlp or none (backupd sends spans over OTLP only); got %q", v))
	}
}

// checkProtocol refuses an OTLP protocol other than Protocol,
// OpenTelemetry's default: OTLP's gRPC exporter would register grpc-go's
// gzip codec for the whole process (see otlpClient).
func checkProtocol(getenv func(string) string) error {
	if name, v := exporterVar(getenv, "PROTOCOL"); v != "" && !strings.EqualFold(strings.TrimSpace(v), Protocol) {
		return fmt.Errorf("%s must be %s (backupd sends OTLP over HTTP; a collector takes it on port 4318); got %q", name, Protocol, v)
	}
	return nil
}

// checkSampler refuses a sampler the SDK would replace, with a message
// on stderr, by its default (every trace whose parent is sampled).
func checkSampler(getenv func(string) string) error {
	// Trimmed and in any case, as the SDK reads them.
	name := getenv("OTEL_TRACES_SAMPLER")
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
	default:
		return fmt.Errorf("OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off, parentbased_traceidratio; got %q", name)
	}
	arg := getenv("OTEL_TRACES_SAMPLER_ARG")
	if strings.TrimSpace(arg) == "" {
		return nil // the SDK's default ratio, 1
	}
	if r, err := strconv.ParseFloat(strings.TrimSpace(arg), 64); err != nil || !(r >= 0 && r <= 1) { // NaN too
		return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1 for %s; got %q", name, arg)
	}
	return nil
}

// wholeNumbers are the SDK's variables that hold a whole number (of
// milliseconds, spans or bytes), which it would replace by its default,
// silently, when they hold anything else.
var wholeNumbers = []string{
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
	"OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
	"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
}

// bounded are the variables of wholeNumbers that the SDK cannot follow
// outside their bounds: it panics on a negative queue or batch size and
// makes both at start, it spins a core on a schedule delay of 0 or less,
// and a delay or export timeout of so many milliseconds that it wraps
// around as nanoseconds spins it too or times every export out. (An
// export timeout of 0 or less is none.)
var bounded = map[string]struct{ least, most int64 }{
	"OTEL_BSP_SCHEDULE_DELAY":        {1, maxMillis},
	"OTEL_BSP_EXPORT_TIMEOUT":        {0, maxMillis},
	"OTEL_BSP_MAX_QUEUE_SIZE":        {1, maxBatchSpans},
	"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": {1, maxBatchSpans},
}

// maxMillis is the most milliseconds a time.Duration holds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// maxBatchSpans bounds the span queue and batch sizes: the SDK's defaults
// are 2048 and 512, and a queue of this many takes 16 MiB before a span
// is in it.
const maxBatchSpans = 1 << 20

// checkWholeNumbers refuses a variable of wholeNumbers that is set to
// something else, or a bounded one outside its bounds.
func checkWholeNumbers(getenv func(string) string) error {
	var errs []error
	for _, name := range wholeNumbers {
		v := getenv(name)
		if v == "" {
			continue
		}
		// Taken as the SDK takes it, untrimmed: it replaces " 200".
		n, err := strconv.ParseInt(v, 10, 64)
		b, isBounded := bounded[name]
		switch {
		case err != nil && !isBounded:
			errs = append(errs, fmt.Errorf("%s must be a whole number; got %q", name, v))
		case isBounded && (err != nil || n < b.least || n > b.most):
			errs = append(errs, fmt.Errorf("%s must be a whole number from %d to %d; got %q", name, b.least, b.most, v))
		}
	}
	return errors.Join(errs...)
}

// checkResource refuses an OTEL_RESOURCE_ATTRIBUTES the SDK cannot read:
// an entry without "=", on which it fails the start (after a
// --check-config that knew nothing of it), or a value not
// percent-encoded, which it keeps as written after printing the error
// with the standard logger, outside backupd's log; and a key or value
// that is not UTF-8 once decoded (%ff), or an OTEL_SERVICE_NAME that is
// not, which the SDK takes: protobuf's strings are UTF-8, so every batch
// would be encoded twice, the second time with the value mended
// (toValidUTF8), and the collector would get a name no one set. The
// values are not repeated.
func checkResource(getenv func(string) string) error {
	var errs []error
	if !utf8.ValidString(getenv("OTEL_SERVICE_NAME")) {
		errs = append(errs, errors.New("OTEL_SERVICE_NAME must be UTF-8"))
	}
	v := strings.TrimSpace(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if v == "" {
		return errors.Join(errs...)
	}
	for i, pair := range strings.Split(v, ",") {
		key, value, ok := strings.Cut(pair, "=")
		decoded, err := url.PathUnescape(strings.TrimSpace(value))
		if !ok || err != nil {
			errs = append(errs, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs, values percent-encoded; entry %d is not", i+1))
			break
		}
		if !utf8.ValidString(key) || !utf8.ValidString(decoded) {
			errs = append(errs, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES' keys and values must be UTF-8, once percent-decoded; entry %d is not", i+1))
			break
		}
	}
	return errors.Join(errs...)
}

// lookup returns the first of names that getenv sets, and its value; the
// last of names and "" when it sets none of them.
func lookup(getenv func(string) string, names ...string) (name, value string) {
	for _, name = range names {
		if value = getenv(name); value != "" {
			return name, value
		}
	}
	return name, ""
}

// exporterVar is the OTLP exporter's variable of the given suffix
// (ENDPOINT, HEADERS, ...): its OTEL_EXPORTER_OTLP_TRACES_ form when set,
// else its general OTEL_EXPORTER_OTLP_ form.
func exporterVar(getenv func(string) string, suffix string) (name, value string) {
	return lookup(getenv, "OTEL_EXPORTER_OTLP_TRACES_"+suffix, "OTEL_EXPORTER_OTLP_"+suffix)
}

// Shutdown sends the spans still held and stops the exporter; ctx bounds
// how long it may take, the flush and the stop together. Its error is
// that of sending the spans held at exit, when it failed: the SDK's own
// shutdown hands it only to the error handler, whose lines come at most
// once every 10 s, so that spans lost at exit went unsaid. (An export the
// batch's timer made before stays the handler's.)
func (t *Tracing) Shutdown(ctx context.Context) error {
	flushErr := t.provider.ForceFlush(ctx)
	if err := t.provider.Shutdown(ctx); err != nil && flushErr == nil {
		return err
	}
	return flushErr
}

// GRPCStatsHandler makes a server span of every gRPC call but health
// checks and reflection, the child of the span its caller sent in
// traceparent metadata.
func (t *Tracing) GRPCStatsHandler() stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()), // backupd's metrics are Prometheus'
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return !strings.HasPrefix(info.FullMethodName, "/"+grpc_health_v1.Health_ServiceDesc.ServiceName+"/") &&
				!strings.HasPrefix(info.FullMethodName, "/grpc.reflection.")
		}))
}

// HTTPHandler makes a server span of every request h serves that traced
// reports true of, the child of the span its caller sent in a traceparent
// header. The span is named by the request's method until the REST call
// it makes names its route; a method HTTP does not define, which a
// caller may make as long as the headers' 64 KiB, is named HTTP, as
// OpenTelemetry names it.
func (t *Tracing) HTTPHandler(h http.Handler, traced func(*http.Request) bool) http.Handler {
	return otelhttp.NewHandler(h, "backupd",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithFilter(traced),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if !httpMethods[r.Method] {
				return "HTTP"
			}
			return r.Method
		}))
}

// httpMethods are the methods HTTP defines (RFC 9110, RFC 5789).
var httpMethods = map[string]bool{
	http.MethodConnect: true, http.MethodDelete: true, http.MethodGet: true, http.MethodHead: true,
	http.MethodOptions: true, http.MethodPatch: true, http.MethodPost: true, http.MethodPut: true, http.MethodTrace: true,
}

// ErrorHandler logs what OpenTelemetry could not do (a batch of spans the
// collector did not take), at most once every 10 s: a collector that is
// down would otherwise add a line with every batch. A span dropped from
// a full queue is not reported to it: the SDK only counts those. Its
// Capper is made by caps, for the count of those left out at exit.
func ErrorHandler(logger *slog.Logger, caps *logcap.Group) otel.ErrorHandler {
	capper := caps.New(10 * time.Second)
	return otel.ErrorHandlerFunc(func(err error) {
		leftOut, ok := capper.Admit(exportFailed, time.Now())
		if !ok {
			return
		}
		logger.LogAttrs(context.Background(), slog.LevelWarn, exportFailed,
			append([]slog.Attr{slog.String("error", redact.Error(err))}, logcap.LeftOut(leftOut)...)...)
	})
}

// exportFailed is the line of what OpenTelemetry could not do, and its
// kind.
const exportFailed = "tracing: OpenTelemetry failed; spans may be lost"

// LoggedEndpoint is where spans go, for the start's log line: without a
// password or query it may carry.
func (t *Tracing) LoggedEndpoint() string {
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return ""
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}
