package intercept

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
)

// TestFailTakesACancelAtTheDeadlineForTheDeadline: a call canceled with
// its deadline due (a gRPC client cancels the stream as its deadline
// passes) is logged and counted as DeadlineExceeded, its error saying
// why; one canceled well before its deadline, or with none, as Canceled.
// Package server's TestCallerDeadlineIsLoggedAsADeadline rarely reaches
// this: the handler's own deadline (keepTimeToAnswer) usually fires
// first.
func TestFailTakesACancelAtTheDeadlineForTheDeadline(t *testing.T) {
	for _, tt := range []struct {
		name string
		left time.Duration // until the deadline; 0 for none
		want codes.Code
	}{
		{"deadline due", 10 * time.Millisecond, codes.DeadlineExceeded},
		{"deadline passed", -time.Second, codes.DeadlineExceeded},
		{"deadline far", time.Minute, codes.Canceled},
		{"no deadline", 0, codes.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.left != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, time.Now().Add(tt.left))
				defer cancel()
			}
			var l Line
			l.Fail(ctx, context.Canceled)
			if l.Code != tt.want {
				t.Errorf("code %v, want %v", l.Code, tt.want)
			}
			if says := l.Err != nil && strings.Contains(l.Err.Error(), "the caller's deadline passed"); says != (tt.want == codes.DeadlineExceeded) {
				t.Errorf("error %v; says the deadline passed: %v, want %v", l.Err, says, !says)
			}
		})
	}
}

func TestKeepTimeToAnswer(t *testing.T) {
	tests := []struct {
		name   string
		left   time.Duration // 0: no deadline; below 0: passed
		sooner time.Duration // how much sooner the handler's deadline is
	}{
		{"no deadline", 0, 0},
		{"a deadline passed", -time.Second, 0},
		{"a tenth of a short deadline", 200 * time.Millisecond, 20 * time.Millisecond},
		{"at most 100 ms", 30 * time.Second, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		// In a bubble, no time passes between the deadline's setting and
		// keepTimeToAnswer's reading of it, however loaded the machine:
		// the handler's deadline is exactly as much sooner as it should be.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				if tt.left != 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.left)
					defer cancel()
				}
				hctx, cancel := keepTimeToAnswer(ctx)
				defer cancel()
				dl, ok := ctx.Deadline()
				hdl, hok := hctx.Deadline()
				if ok != hok {
					t.Fatalf("deadline set %v, handler's %v", ok, hok)
				}
				if got := dl.Sub(hdl); ok && got != tt.sooner {
					t.Errorf("handler's deadline %v sooner; want %v", got, tt.sooner)
				}
			})
		})
	}
}

// TestInServiceAndServes: the tap holds every call under BackupService
// to a caller token, a method it serves or not (an unserved one is
// answered UNIMPLEMENTED once its caller is known); the health and
// reflection services, and a name that only begins alike, are not its.
func TestInServiceAndServes(t *testing.T) {
	for _, tt := range []struct {
		method            string
		inService, serves bool
	}{
		{"/backup.v1.BackupService/CreateBackup", true, true},
		{"/backup.v1.BackupService/RestoreTableFromBackup", true, true},
		{"/backup.v1.BackupService/NoSuchMethod", true, false},
		{"/backup.v1.BackupService/", true, false},
		{"/backup.v1.BackupServiceX/CreateBackup", false, false},
		{"/grpc.health.v1.Health/Check", false, false},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", false, false},
		{"backup.v1.BackupService/CreateBackup", false, false},
	} {
		if got := InService(tt.method); got != tt.inService {
			t.Errorf("InService(%q) = %v; want %v", tt.method, got, tt.inService)
		}
		if got := Serves(tt.method); got != tt.serves {
			t.Errorf("Serves(%q) = %v; want %v", tt.method, got, tt.serves)
		}
	}
}
