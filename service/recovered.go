package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/backupd/backupd/redact"
)

// ErrPanic stands for a panic once Recovered has logged it with its stack:
// like any unexpected error, it is mapped to INTERNAL, logged on the
// request's line and counted.
var ErrPanic = errors.New("panic in handler; the stack is in the log line before")

// Recovered logs p, a panic recovered from a handler (server's
// interceptor) or from a request_id run on a goroutine of its own
// (detach), at ERROR with its stack and where, the method or operation
// that panicked, its value redacted as an error would be (a panic may
// carry a request or credentials); it returns ErrPanic, the request's error instead. Call it
// from the deferred function that recovered p, while the stack is still
// the panic's.
func Recovered(ctx context.Context, log *slog.Logger, p any, where slog.Attr) error {
	log.LogAttrs(ctx, slog.LevelError, "panic in handler", where,
		slog.String("panic", redact.Cut(redact.Secrets(fmt.Sprint(p)), redact.MaxError)), slog.String("stack", string(debug.Stack())))
	return ErrPanic
}
