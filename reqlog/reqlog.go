// Package reqlog carries facts about a request that only its handler learns
// (such as the region it resolved to) back to the interceptor that writes
// the request's single log line, and gives the other lines the handler
// logs for the request (a warning) what ties them to that line.
package reqlog

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Fields are the handler-supplied parts of a request's log line, and the
// method the line names.
type Fields struct {
	Method  string
	Account string
	Region  string
}

type key struct{}

// New returns a context holding the Fields of a call of method (a gRPC
// full method name) for the handler to fill.
func New(ctx context.Context, method string) (context.Context, *Fields) {
	f := &Fields{Method: method}
	return context.WithValue(ctx, key{}, f), f
}

// SetTarget records where the request acts. It does nothing when the context
// carries no Fields (a handler called outside the gRPC server).
func SetTarget(ctx context.Context, account, region string) {
	if f, ok := ctx.Value(key{}).(*Fields); ok {
		f.Account, f.Region = account, region
	}
}

// Attrs are what ties a line the handler logs for a request to the
// request's own line, named as that line names them: the method, the
// account and region once SetTarget has recorded them, and, with tracing
// on, the trace. Without them a warning from the handler could not be
// told apart from those of the requests beside it. A context of no
// request has only its trace, if any.
func Attrs(ctx context.Context) []slog.Attr {
	var attrs []slog.Attr
	if f, ok := ctx.Value(key{}).(*Fields); ok {
		attrs = append(attrs, slog.String("method", f.Method))
		if f.Account != "" {
			attrs = append(attrs, slog.String("account", f.Account), slog.String("region", f.Region))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	return attrs
}
