package tracing

import (
	"context"
	"errors"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/backupd/backupd/redact"
)

// AWSMiddleware adds to an AWS SDK client's middleware stack (as one of
// aws.Config's APIOptions) a client span around each operation, named
// as the AWS SDK names it ("DynamoDB.CreateBackup"), and inside it a
// span around each attempt, the first and each retry: an attempt's wait
// for credentials (an STS call's span) and for the rate limit fall in
// its span, so that the trace shows which attempt waited.
func (t *Tracing) AWSMiddleware(stack *middleware.Stack) error {
	if err := stack.Initialize.Add(&operationSpan{tracer: t.tracer}, middleware.After); err != nil {
		return err
	}
	return stack.Finalize.Insert(&attemptSpan{tracer: t.tracer}, "Retry", middleware.After)
}

// operationSpan spans an operation, from the end of its initialization
// (the SDK's service metadata set) to its result.
type operationSpan struct{ tracer trace.Tracer }

func (*operationSpan) ID() string { return "backupd.TraceOperation" }

// attemptsKey holds the number of an operation's attempts so far.
type attemptsKey struct{}

func (s *operationSpan) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
	middleware.InitializeOutput, middleware.Metadata, error,
) {
	service, op := awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)
	ctx, span := s.tracer.Start(ctx, service+"."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("rpc.system.name", "aws-api"),
		attribute.String("rpc.method", service+"/"+op),
		attribute.String("cloud.region", awsmiddleware.GetRegion(ctx))))
	defer span.End()
	attempts := new(int)
	out, md, err := next.HandleInitialize(context.WithValue(ctx, attemptsKey{}, attempts), in)
	span.SetAttributes(attribute.Int("aws.attempts", *attempts))
	if id, ok := awsmiddleware.GetRequestIDMetadata(md); ok {
		span.SetAttributes(attribute.String("aws.request_id", id))
	}
	failed(span, service, err)
	return out, md, err
}

// attemptSpan spans one attempt of an operation, from the retry loop's
// turn to the answer.
type attemptSpan struct{ tracer trace.Tracer }

func (*attemptSpan) ID() string { return "backupd.TraceAttempt" }

func (s *attemptSpan) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	n := 1
	if attempts, ok := ctx.Value(attemptsKey{}).(*int); ok {
		*attempts++
		n = *attempts
	}
	ctx, span := s.tracer.Start(ctx, "attempt", trace.WithAttributes(attribute.Int("aws.attempt", n)))
	defer span.End()
	out, md, err := next.HandleFinalize(ctx, in)
	if resp, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok && resp != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	if id, ok := awsmiddleware.GetRequestIDMetadata(md); ok {
		span.SetAttributes(attribute.String("aws.request_id", id))
	}
	if notSent(err) {
		// Not an attempt that went out: the operation's aws.attempts
		// counts those that did.
		if attempts, ok := ctx.Value(attemptsKey{}).(*int); ok {
			*attempts--
		}
	}
	failed(span, awsmiddleware.GetServiceID(ctx), err)
	return out, md, err
}

// notSent reports whether err says its call was not sent: backupd's own
// refusals (the account's rate, the shared state, credentials that could
// not be had), which a search for failed AWS calls must be able to leave
// out.
func notSent(err error) bool {
	u, ok := errors.AsType[interface {
		error
		NotSent() bool
	}](err)
	return ok && u.NotSent()
}

// failed marks span as failed with err, if not nil: its AWS error code,
// and its message with anything secret-shaped taken out. STS's message is
// left out: STS, an emulator or a proxy may quote the AssumeRole it
// refused, ExternalId and all, where no key names it (backupd's log has
// it without, from auth.AssumeRoleError).
func failed(span trace.Span, service string, err error) {
	if err == nil {
		return
	}
	if notSent(err) {
		span.SetAttributes(attribute.Bool("backupd.not_sent", true))
	}
	// "UnknownError" is smithy's name for an answer that named no code
	// (an empty 5xx): the attempt's http.response.status_code says what
	// came, as the metrics' http_<status> does.
	api, isAPI := ownAPIError(err, service)
	if isAPI && api.ErrorCode() != "UnknownError" {
		span.SetAttributes(attribute.String("aws.error_code", api.ErrorCode()))
	}
	if isAPI && service == "STS" {
		span.SetStatus(codes.Error, "STS answered "+api.ErrorCode())
		return
	}
	span.SetStatus(codes.Error, redact.Error(err))
}

// ownAPIError is the error code service itself answered in err, if any:
// not the code of another service's call made on the way, such as STS's
// AccessDenied for the AssumeRole that a DynamoDB call waited on for its
// credentials, which would read as DynamoDB refusing backupd (that code
// is on the STS span, under this one). Another service's call shows in
// err as a smithy.OperationError of that service around its answer.
func ownAPIError(err error, service string) (smithy.APIError, bool) {
	for err != nil {
		if op, ok := err.(*smithy.OperationError); ok && op.Service() != service {
			return nil, false
		}
		if api, ok := err.(smithy.APIError); ok {
			return api, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if api, ok := ownAPIError(e, service); ok {
					return api, true
				}
			}
			return nil, false
		default:
			return nil, false
		}
	}
	return nil, false
}
