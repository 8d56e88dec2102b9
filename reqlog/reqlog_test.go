package reqlog

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestAttrs(t *testing.T) {
	const method = "/backup.v1.BackupService/CreateBackup"
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}}))
	tests := []struct {
		name    string
		ctx     func() context.Context
		account string // given to SetTarget, when not ""
		want    []slog.Attr
	}{
		{name: "no request", ctx: context.Background},
		{name: "traced, no request", ctx: func() context.Context { return traced },
			want: []slog.Attr{slog.String("trace_id", "0102030405060708090a0b0c0d0e0f10")}},
		{name: "before the target is known", ctx: func() context.Context { ctx, _ := New(context.Background(), method); return ctx },
			want: []slog.Attr{slog.String("method", method)}},
		{name: "with its target", ctx: func() context.Context { ctx, _ := New(context.Background(), method); return ctx },
			account: "111111111111",
			want:    []slog.Attr{slog.String("method", method), slog.String("account", "111111111111"), slog.String("region", "us-east-1")}},
		{name: "traced, with its target", ctx: func() context.Context { ctx, _ := New(traced, method); return ctx },
			account: "111111111111",
			want: []slog.Attr{slog.String("method", method), slog.String("account", "111111111111"), slog.String("region", "us-east-1"),
				slog.String("trace_id", "0102030405060708090a0b0c0d0e0f10")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx()
			if tt.account != "" {
				SetTarget(ctx, tt.account, "us-east-1")
			}
			if got := Attrs(ctx); !slices.EqualFunc(got, tt.want, slog.Attr.Equal) {
				t.Errorf("Attrs = %v; want %v", got, tt.want)
			}
		})
	}
}
