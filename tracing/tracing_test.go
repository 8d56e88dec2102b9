package tracing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		on      bool
		wantErr string // in the error, which names the variable
	}{
		{name: "nothing set", env: nil},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, on: true},
		{name: "otlp exporter named, default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{name: "values in capitals", env: map[string]string{"OTEL_TRACES_EXPORTER": "OTLP", "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/Protobuf",
			"OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP"}, on: true},
		{name: "exporter none in capitals", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "None"}},
		{name: "http/protobuf named", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, on: true},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf (backupd sends OTLP over HTTP; a collector takes it on port 4318); got "grpc"`},
		{name: "sampler ratio", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, on: true},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "sdk not disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, on: true},
		{name: "sdk disabled unreadable", env: map[string]string{"OTEL_SDK_DISABLED": "yes please"}, wantErr: "OTEL_SDK_DISABLED must be true or false"},
		// The specification's booleans: true or false in any case;
		// another value is not true, which backupd does not guess at.
		{name: "sdk disabled in capitals", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "tRUE"}},
		{name: "sdk not disabled in capitals", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "False"}, on: true},
		{name: "sdk disabled 1", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "1"},
			wantErr: `OTEL_SDK_DISABLED must be true or false; got "1"`},
		{name: "other exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: `OTEL_TRACES_EXPORTER must be otlp or none (backupd sends spans over OTLP only); got "zipkin"`},
		{name: "json protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf`},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"},
			wantErr: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be http/protobuf (backupd sends OTLP over HTTP; a collector takes it on port 4318); got "thrift"`},
		{name: "resource attribute without a value", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "team=x,foo"},
			wantErr: `OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs, values percent-encoded; entry 2 is not`},
		{name: "resource attribute not percent-encoded", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "team=100%"},
			wantErr: `OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs, values percent-encoded; entry 1 is not`},
		// Decoded, not UTF-8: every export would fail, no span sent.
		{name: "resource attribute not UTF-8 once decoded", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "team=a,site=%ff"},
			wantErr: `OTEL_RESOURCE_ATTRIBUTES' keys and values must be UTF-8, once percent-decoded; entry 2 is not`},
		{name: "resource attribute key not UTF-8", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "te\xffam=a"},
			wantErr: `OTEL_RESOURCE_ATTRIBUTES' keys and values must be UTF-8, once percent-decoded; entry 1 is not`},
		{name: "service name not UTF-8", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "backupd-\xff"},
			wantErr: `OTEL_SERVICE_NAME must be UTF-8`},
		{name: "resource attribute in UTF-8, percent-encoded", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "team=caf%C3%A9"}, on: true},
		{name: "resource attributes", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": " team=a%20b, deployment.environment=prod "}, on: true},
		{name: "unknown sampler", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "xray"}, wantErr: `OTEL_TRACES_SAMPLER must be one of`},
		{name: "ratio over 1", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			wantErr: `OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1 for traceidratio; got "1.5"`},
		{name: "ratio not a number at all", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "NaN"},
			wantErr: `OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1 for traceidratio; got "NaN"`},
		{name: "batch delay", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "200"}, on: true},
		{name: "batch delay with a unit", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "5s"},
			wantErr: `OTEL_BSP_SCHEDULE_DELAY must be a whole number from 1 to 9223372036854; got "5s"`},
		// The SDK does not trim them: it would replace " 200" by its default.
		{name: "batch delay with a space", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": " 200"},
			wantErr: `OTEL_BSP_SCHEDULE_DELAY must be a whole number from 1 to 9223372036854; got " 200"`},
		// What the SDK cannot follow: it would spin a core on a delay of 0,
		// or of one that wraps around as nanoseconds, and panic on a
		// negative queue or batch size.
		{name: "batch delay 0", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "0"},
			wantErr: `OTEL_BSP_SCHEDULE_DELAY must be a whole number from 1 to 9223372036854; got "0"`},
		{name: "batch delay past its bound", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "9223372036855"},
			wantErr: `OTEL_BSP_SCHEDULE_DELAY must be a whole number from 1 to 9223372036854; got "9223372036855"`},
		{name: "batch delay at its bound", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "9223372036854"}, on: true},
		{name: "negative queue and batch", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_MAX_QUEUE_SIZE": "-1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-5"},
			wantErr: "OTEL_BSP_MAX_QUEUE_SIZE must be a whole number from 1 to 1048576; got \"-1\"\nOTEL_BSP_MAX_EXPORT_BATCH_SIZE must be a whole number from 1 to 1048576; got \"-5\""},
		{name: "queue past its bound", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_MAX_QUEUE_SIZE": "1048577"},
			wantErr: `OTEL_BSP_MAX_QUEUE_SIZE must be a whole number from 1 to 1048576; got "1048577"`},
		{name: "queue and batch at their bound", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_MAX_QUEUE_SIZE": "1048576", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"}, on: true},
		{name: "an export timeout of 0 is none", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_EXPORT_TIMEOUT": "0"}, on: true},
		// As nanoseconds it would wrap around: 18446744073710 ms is 0.45 ms.
		{name: "an export timeout past its bound", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_EXPORT_TIMEOUT": "18446744073710"},
			wantErr: `OTEL_BSP_EXPORT_TIMEOUT must be a whole number from 0 to 9223372036854; got "18446744073710"`},
		// Every problem at once, also when whether to trace is unclear.
		{name: "sdk disabled unreadable, and more", env: map[string]string{"OTEL_SDK_DISABLED": "1", "OTEL_TRACES_EXPORTER": "zipkin", "OTEL_BSP_SCHEDULE_DELAY": "0"},
			wantErr: "tracing: OTEL_SDK_DISABLED must be true or false; got \"1\"\nOTEL_TRACES_EXPORTER must be otlp or none (backupd sends spans over OTLP only); got \"zipkin\"\n" +
				`OTEL_BSP_SCHEDULE_DELAY must be a whole number from 1 to 9223372036854; got "0"`},
		// The SDK takes a sampler in any case, and trims it and its ratio.
		{name: "sampler in capitals, ratio with spaces", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp",
			"OTEL_TRACES_SAMPLER": " ParentBased_TraceIDRatio", "OTEL_TRACES_SAMPLER_ARG": " 0.5 "}, on: true},
		{name: "attribute limit not a number", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "1k"},
			wantErr: `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT must be a whole number; got "1k"`},
		{name: "ratio not a number", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
			wantErr: `OTEL_TRACES_SAMPLER_ARG must be a ratio`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := fromEnv(context.Background(), func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tr != nil; got != tc.on {
				t.Fatalf("tracing on = %v, want %v", got, tc.on)
			}
			if tr != nil {
				if err := tr.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLoggedEndpointHidesSecrets: the start's line names the endpoint
// without a password or a query, where a collector's key may be.
func TestLoggedEndpointHidesSecrets(t *testing.T) {
	for _, tc := range []struct{ endpoint, want string }{
		{"https://collector:4318/v1/traces", "https://collector:4318/v1/traces"},
		{"https://user:s3cret@collector:4318/v1/traces", "https://user:xxxxx@collector:4318/v1/traces"},
		{"https://collector:4318/v1/traces?api_key=s3cret#frag", "https://collector:4318/v1/traces"},
	} {
		tr := &Tracing{Endpoint: tc.endpoint}
		if got := tr.LoggedEndpoint(); got != tc.want {
			t.Errorf("LoggedEndpoint() of %s = %q, want %q", tc.endpoint, got, tc.want)
		}
	}
}

// canned answers every request with status and body, as DynamoDB would.
type canned struct {
	status int
	body   string
}

func (c canned) Do(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: c.status, Request: r,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amzn-Requestid": {"REQ-1"}},
		Body:   io.NopCloser(bytes.NewReader([]byte(c.body)))}, nil
}

// cannedAWS is an AWS config whose calls to endpoint get answer, signed
// with static credentials and traced by tr (and more middleware, if any).
func cannedAWS(tr *Tracing, region, endpoint string, answer canned, more ...func(*middleware.Stack) error) aws.Config {
	return aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(endpoint), HTTPClient: answer,
		APIOptions: append([]func(*middleware.Stack) error{tr.AWSMiddleware}, more...)}
}

// TestAWSMiddlewareSpans checks the spans of an operation DynamoDB
// answers with an error: a client span with the error's code and a
// status without the secret the message quotes, and an attempt under it.
func TestAWSMiddlewareSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := New(provider)
	client := dynamodb.NewFromConfig(cannedAWS(tr, "eu-west-1", "http://dynamodb.test",
		canned{status: 400, body: `{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",` +
			`"message":"Requested resource not found: X-Amz-Security-Token=SESSIONSECRET"}`}))
	_, err := client.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("b")})
	if err == nil {
		t.Fatal("CreateBackup succeeded against a 400")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (operation, attempt)", len(spans))
	}
	attempt, op := spans[0], spans[1]
	if op.Name() != "DynamoDB.CreateBackup" || attempt.Name() != "attempt" {
		t.Fatalf("spans %q, %q", op.Name(), attempt.Name())
	}
	if attempt.Parent().SpanID() != op.SpanContext().SpanID() {
		t.Error("attempt span is not the operation's child")
	}
	attrs := map[string]string{}
	for _, a := range op.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, want := range map[string]string{"rpc.method": "DynamoDB/CreateBackup", "cloud.region": "eu-west-1",
		"aws.error_code": "ResourceNotFoundException", "aws.request_id": "REQ-1", "aws.attempts": "1"} {
		if attrs[k] != want {
			t.Errorf("operation span %s = %q, want %q", k, attrs[k], want)
		}
	}
	if op.Status().Code != codes.Error || attempt.Status().Code != codes.Error {
		t.Errorf("statuses %v, %v; want errors", op.Status(), attempt.Status())
	}
	if strings.Contains(op.Status().Description, "SESSIONSECRET") {
		t.Errorf("status quotes the secret: %q", op.Status().Description)
	}
}

// TestFromEnvListsEveryProblem: a start with several variables wrong is
// told them all, each naming its variable.
func TestFromEnvListsEveryProblem(t *testing.T) {
	_, err := fromEnv(context.Background(), envOf(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER": "sometimes", "OTEL_EXPORTER_OTLP_COMPRESSION": "br"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"tracing: OTEL_EXPORTER_OTLP_PROTOCOL must be", "\nOTEL_TRACES_SAMPLER must be", "\nOTEL_EXPORTER_OTLP_COMPRESSION must be"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestFromEnvBoundsAttributes: a span holds at most maxAttributeValue
// bytes of each attribute, unless the environment sets a limit of its
// own: what a caller sends (a path, a User-Agent, an HTTP method) may run
// to the headers' 64 KiB, and the exporter's queue holds 2048 spans.
func TestFromEnvBoundsAttributes(t *testing.T) {
	long := strings.Repeat("x", 20000)
	for _, tc := range []struct {
		name  string
		limit string // OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT
		want  int
	}{
		{name: "default", want: maxAttributeValue},
		{name: "the environment's", limit: "5000", want: 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			collector := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			defer collector.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
			if tc.limit != "" {
				t.Setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", tc.limit)
			}
			tr, err := FromEnv(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			rec := tracetest.NewSpanRecorder()
			tr.provider.RegisterSpanProcessor(rec)
			h := tr.HTTPHandler(http.NotFoundHandler(), func(*http.Request) bool { return true })
			req := httptest.NewRequest("M"+long, "/"+long, nil)
			req.Header.Set("User-Agent", long)
			h.ServeHTTP(httptest.NewRecorder(), req)
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			longest := 0
			for _, a := range spans[0].Attributes() {
				if n := len(a.Value.String()); n > tc.want {
					t.Errorf("%s holds %d bytes; want at most %d", a.Key, n, tc.want)
				}
				longest = max(longest, len(a.Value.String()))
			}
			if longest != tc.want {
				t.Errorf("longest attribute %d bytes; want %d, cut there", longest, tc.want)
			}
		})
	}
}

// TestAWSMiddlewareSpansOfAnAnswerWithoutACode: an empty 503 gives the
// operation no aws.error_code (smithy would name it UnknownError), and
// its attempt the status that came.
func TestAWSMiddlewareSpansOfAnAnswerWithoutACode(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	cfg := cannedAWS(tr, "eu-west-1", "http://dynamodb.test", canned{status: 503})
	cfg.RetryMaxAttempts = 1
	client := dynamodb.NewFromConfig(cfg)
	if _, err := client.DescribeBackup(context.Background(), &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn")}); err == nil {
		t.Fatal("DescribeBackup succeeded against a 503")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (operation, attempt)", len(spans))
	}
	for _, a := range spans[1].Attributes() {
		if a.Key == "aws.error_code" {
			t.Errorf("operation span has aws.error_code %q", a.Value.AsString())
		}
	}
	status := ""
	for _, a := range spans[0].Attributes() {
		if a.Key == "http.response.status_code" {
			status = a.Value.String()
		}
	}
	if status != "503" || spans[1].Status().Code != codes.Error {
		t.Errorf("attempt's status code %q, operation's status %v; want 503, an error", status, spans[1].Status())
	}
}

// TestAWSMiddlewareSpansOfSTS: an STS refusal's spans carry its code, not
// its message, which may quote the AssumeRole's ExternalId where no key
// names it.
func TestAWSMiddlewareSpansOfSTS(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	client := sts.NewFromConfig(cannedAWS(tr, "us-east-1", "http://sts.test",
		canned{status: 403, body: `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>` +
			`<Message>the external id (EXTIDSECRET) is wrong</Message></Error><RequestId>REQ-2</RequestId></ErrorResponse>`}))
	_, err := client.AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::111111111111:role/x"),
		RoleSessionName: aws.String("backupd"), ExternalId: aws.String("EXTIDSECRET")})
	if err == nil || !strings.Contains(err.Error(), "EXTIDSECRET") {
		t.Fatalf("AssumeRole: %v; want the refusal quoting the ExternalId", err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (operation, attempt)", len(spans))
	}
	for _, s := range spans {
		if s.Status().Code != codes.Error || s.Status().Description != "STS answered AccessDenied" {
			t.Errorf("span %s: status %v; want an error saying STS's code only", s.Name(), s.Status())
		}
	}
}

// TestAWSMiddlewareSpansOfAnSTSRefusalUnderDynamoDB: a DynamoDB call
// whose credentials STS refused has no aws.error_code of its own: STS's
// AccessDenied is on the STS spans under it, and would otherwise read as
// DynamoDB refusing backupd (a DynamoDB permission to fix, rather than the
// role's trust policy).
func TestAWSMiddlewareSpansOfAnSTSRefusalUnderDynamoDB(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	stsClient := sts.NewFromConfig(cannedAWS(tr, "us-east-1", "http://sts.test",
		canned{status: 403, body: `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>` +
			`<Message>not authorized to perform sts:AssumeRole</Message></Error><RequestId>REQ-2</RequestId></ErrorResponse>`}))
	client := dynamodb.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, "arn:aws:iam::111111111111:role/x")),
		BaseEndpoint: aws.String("http://dynamodb.test"),
		HTTPClient:   canned{status: 200, body: `{}`},
		APIOptions:   []func(*middleware.Stack) error{tr.AWSMiddleware},
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	})
	if _, err := client.ListBackups(context.Background(), &dynamodb.ListBackupsInput{}); err == nil {
		t.Fatal("ListBackups succeeded without credentials")
	}
	spans := rec.Ended()
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID().String()] = s
	}
	attr := func(s sdktrace.ReadOnlySpan, key string) string {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value.String()
			}
		}
		return ""
	}
	var seen []string
	for _, s := range spans {
		op := s // the operation an attempt belongs to
		if s.Name() == "attempt" {
			op = byID[s.Parent().SpanID().String()]
		}
		service, _, _ := strings.Cut(attr(op, "rpc.method"), "/")
		code := attr(s, "aws.error_code")
		seen = append(seen, service+" "+s.Name()+" "+code)
		switch {
		case service == "STS" && code != "AccessDenied":
			t.Errorf("STS span %s: aws.error_code %q, want AccessDenied", s.Name(), code)
		case service == "DynamoDB" && code != "":
			t.Errorf("DynamoDB span %s: aws.error_code %q, which STS answered", s.Name(), code)
		}
		if s.Status().Code != codes.Error {
			t.Errorf("span %s: status %v, want an error", s.Name(), s.Status())
		}
	}
	if len(spans) != 4 {
		t.Errorf("spans %q; want 4 (DynamoDB's and STS's operation and attempt)", seen)
	}
}

// refusedHere is backupd's own refusal of a call it did not send (over
// the account's rate, say).
type refusedHere struct{}

func (refusedHere) Error() string { return "rate limit reached" }
func (refusedHere) NotSent() bool { return true }

// TestAWSMiddlewareSpansOfACallNotSent: a call backupd refused itself,
// sending nothing, is marked backupd.not_sent, and its operation counts
// no attempt: a search for failed DynamoDB calls can leave it out.
func TestAWSMiddlewareSpansOfACallNotSent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	refuse := func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("refuse", func(context.Context, middleware.FinalizeInput, middleware.FinalizeHandler) (
			middleware.FinalizeOutput, middleware.Metadata, error,
		) {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, refusedHere{}
		}), middleware.After)
	}
	cfg := cannedAWS(tr, "eu-west-1", "http://dynamodb.test", canned{status: 200, body: "{}"}, refuse)
	cfg.RetryMaxAttempts = 1
	client := dynamodb.NewFromConfig(cfg)
	if _, err := client.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("b")}); err == nil {
		t.Fatal("CreateBackup succeeded though refused")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (operation, attempt)", len(spans))
	}
	for _, s := range spans {
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		if attrs["backupd.not_sent"] != "true" {
			t.Errorf("span %s: backupd.not_sent %q, want true", s.Name(), attrs["backupd.not_sent"])
		}
		if s.Name() == "DynamoDB.CreateBackup" && attrs["aws.attempts"] != "0" {
			t.Errorf("operation span: aws.attempts %q, want 0 (nothing went out)", attrs["aws.attempts"])
		}
	}
}
