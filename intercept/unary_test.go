package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// The package's own tests of what both transports rely on, without
// either: the server and rest packages test it again through theirs.

// authorizer refuses with err, or lets the caller "alice" through.
type authorizer struct{ err error }

func (a authorizer) Authorize(context.Context, string, string) (string, error) {
	if _, ok := a.err.(*callers.UnauthenticatedError); ok {
		return "", a.err
	}
	return "alice", a.err
}

// counter records what the interceptor counted.
type counter struct {
	mu       sync.Mutex
	counted  []string
	inFlight int
}

func (c *counter) ObserveRequest(method string, code codes.Code, reason string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counted = append(c.counted, method+" "+code.String()+" "+reason)
}

func (c *counter) InFlight(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight += delta
}

type originKey struct{}

// TestUnary: a call is authorized before its handler runs, its panic is
// recovered, its error mapped, and it is logged once and counted once;
// a call from in process is timed and named by its Origin.
func TestUnary(t *testing.T) {
	const account = "111111111111"
	req := &backupv1.CreateBackupRequest{AccountId: account, Region: "us-east-1", TableName: "Orders", BackupName: "b1", RequestId: "rid-1"}
	undecodable := &badrequest.Error{Violations: []badrequest.Violation{{Field: "backup_name", Description: "unreadable"}}}
	for _, tt := range []struct {
		name        string
		authz       error // the authorizer's refusal
		undecodable error // what the transport could not decode
		handlerErr  error
		panics      bool
		want        codes.Code
		ran         bool     // whether the handler ran
		line        []string // what the request's line says
		notInLine   []string
	}{
		{name: "ok", want: codes.OK, ran: true,
			line: []string{`"level":"INFO"`, `"account":"111111111111"`, `"principal":"alice"`, `"request_id":"rid-1"`, `"caller":"rest:192.0.2.1"`, `"forwarded_for":"198.51.100.7"`}},
		{name: "handler fails", handlerErr: undecodable, want: codes.InvalidArgument, ran: true,
			line: []string{`"code":"InvalidArgument"`, `"reason":"INVALID_ARGUMENT"`}},
		{name: "handler panics", panics: true, want: codes.Internal, ran: true,
			line: []string{`"level":"ERROR"`, `"code":"Internal"`}},
		{name: "unknown caller", authz: &callers.UnauthenticatedError{Missing: true}, want: codes.Unauthenticated,
			line: []string{`"code":"Unauthenticated"`, `"account":""`}, notInLine: []string{"rid-1", "alice"}},
		{name: "account refused", authz: &callers.DeniedError{Caller: "alice", Operation: "CreateBackup", AccountID: account},
			want: codes.PermissionDenied, line: []string{`"code":"PermissionDenied"`}},
		// A known caller is told what is wrong with a request it sent
		// undecodable, rather than refused the account it cannot name.
		{name: "undecodable, account refused", undecodable: undecodable,
			authz: &callers.DeniedError{Caller: "alice", Operation: "CreateBackup", AccountID: account}, want: codes.InvalidArgument},
		{name: "undecodable, operation refused", undecodable: undecodable,
			authz: &callers.DeniedError{Caller: "alice", Operation: "CreateBackup", AnyAccount: true}, want: codes.PermissionDenied},
		{name: "undecodable", undecodable: undecodable, want: codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			metrics := &counter{}
			i := New(Options{
				Logger:      slog.New(slog.NewJSONHandler(&logs, nil)),
				Metrics:     metrics,
				Authorizer:  authorizer{tt.authz},
				Undecodable: func(any) error { return tt.undecodable },
				Origin: func(ctx context.Context) *Origin {
					o, _ := ctx.Value(originKey{}).(*Origin)
					return o
				},
			})
			arrived := time.Now().Add(-time.Second) // the body took a second to come
			ctx := context.WithValue(t.Context(), originKey{},
				&Origin{Start: arrived, Caller: "rest:192.0.2.1", ForwardedFor: "198.51.100.7"})
			ran := false
			info := &grpc.UnaryServerInfo{FullMethod: backupv1.BackupService_CreateBackup_FullMethodName}
			_, err := i.Unary(ctx, req, info, func(context.Context, any) (any, error) {
				ran = true
				if tt.panics {
					panic("boom")
				}
				return &backupv1.CreateBackupResponse{}, tt.handlerErr
			})
			if got := status.Code(err); got != tt.want || ran != tt.ran {
				t.Fatalf("code %v, handler ran %v; want %v, %v (err %v)", got, ran, tt.want, tt.ran, err)
			}
			var lines []string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, `"msg":"request"`) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d request lines; want 1:\n%s", len(lines), logs.String())
			}
			for _, w := range tt.line {
				if !strings.Contains(lines[0], w) {
					t.Errorf("line lacks %s: %s", w, lines[0])
				}
			}
			for _, w := range tt.notInLine {
				if strings.Contains(lines[0], w) {
					t.Errorf("line has %s: %s", w, lines[0])
				}
			}
			var line struct{ Duration time.Duration }
			if err := json.Unmarshal([]byte(lines[0]), &line); err != nil || line.Duration < time.Second {
				t.Errorf("duration %v (%v); want it from the Origin's start, a second or more", line.Duration, err)
			}
			if len(metrics.counted) != 1 || !strings.HasPrefix(metrics.counted[0], info.FullMethod+" "+tt.want.String()) || metrics.inFlight != 0 {
				t.Errorf("counted %q, %d in flight; want the call once, as %v, and none in flight", metrics.counted, metrics.inFlight, tt.want)
			}
			if tt.panics && !strings.Contains(logs.String(), `"msg":"panic in handler"`) {
				t.Errorf("the panic was not logged:\n%s", logs.String())
			}
		})
	}
}

// TestRecordOnlyCountsOnce: a call a transport answers itself is logged
// and counted by Record as Unary would, once.
func TestRecordOnlyCountsOnce(t *testing.T) {
	var logs strings.Builder
	metrics := &counter{}
	i := New(Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: metrics})
	st := i.Record(t.Context(), Finished{Method: backupv1.BackupService_GetBackup_FullMethodName, Account: "not an account",
		Start: time.Now(), Err: errors.New("boom")})
	if st.Code() != codes.Internal || strings.Count(logs.String(), `"msg":"request"`) != 1 || len(metrics.counted) != 1 {
		t.Errorf("status %v, counted %q; log:\n%s", st, metrics.counted, logs.String())
	}
	if !strings.Contains(logs.String(), `"account":""`) {
		t.Errorf("an account that is not one is named: %s", logs.String())
	}
}
