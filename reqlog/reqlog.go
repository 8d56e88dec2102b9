// Package reqlog carries facts about a request that only its handler learns
// (such as the region it resolved to) back to the interceptor that writes
// the request's single log line.
package reqlog

import "context"

// Fields are the handler-supplied parts of a request's log line.
type Fields struct {
	Account string
	Region  string
}

type key struct{}

// New returns a context holding empty Fields for the handler to fill.
func New(ctx context.Context) (context.Context, *Fields) {
	f := &Fields{}
	return context.WithValue(ctx, key{}, f), f
}

// SetTarget records where the request acts. It does nothing when the context
// carries no Fields (a handler called outside the gRPC server).
func SetTarget(ctx context.Context, account, region string) {
	if f, ok := ctx.Value(key{}).(*Fields); ok {
		f.Account, f.Region = account, region
	}
}
