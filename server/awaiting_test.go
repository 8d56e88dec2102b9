package server

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestAwaitingCallsAreCutAtTheDrain: at the stop, a BackupService call
// still without its request has drainGrace left for it, then is canceled
// and logged; one whose request arrived, or that ended first, is left
// alone, and so is a call opened after the stop, which gets the same
// grace.
func TestAwaitingCallsAreCutAtTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		stopping, stop := context.WithCancel(context.Background())
		i := &interceptor{log: slog.New(slog.NewJSONHandler(logs, nil)), arrival: requestArrivalTimeout, stopping: stopping}
		i.awaiting = newAwaiting(i, stopping)
		method := backupv1.BackupService_CreateBackup_FullMethodName
		silent := i.holdUntilArrival(context.Background(), method)
		arrived := i.holdUntilArrival(context.Background(), method)
		i.requestArrived(arrived)
		parent, reset := context.WithCancel(context.Background())
		i.holdUntilArrival(parent, method) // reset by its caller
		reset()

		time.Sleep(time.Second)
		stop()
		late := i.holdUntilArrival(context.Background(), method)
		time.Sleep(drainGrace - time.Millisecond)
		if silent.Err() != nil || late.Err() != nil {
			t.Fatalf("a call without its request canceled before its grace ended (%v, %v)", silent.Err(), late.Err())
		}
		time.Sleep(2 * time.Millisecond)
		if silent.Err() == nil || late.Err() == nil {
			t.Errorf("a call without its request outlived its grace (%v, %v)", silent.Err(), late.Err())
		}
		if arrived.Err() != nil {
			t.Error("a call whose request arrived was canceled")
		}
		if lines := logs.Lines(`"method":"`+method+`"`, `"code":"Canceled"`); len(lines) != 1 {
			t.Errorf("want one line for the call cut off (the reset one was answered by grpc-go); log:\n%s", logs.String())
		}
	})
}

// TestAwaitingForgetsEndedCalls: calls reset before their request came
// are swept out, so the calls held stay bounded by those still open.
func TestAwaitingForgetsEndedCalls(t *testing.T) {
	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	i := &interceptor{log: slog.New(slog.DiscardHandler), stopping: stopping}
	i.awaiting = newAwaiting(i, stopping)
	open := i.holdUntilArrival(context.Background(), "m")
	for range 10000 {
		parent, reset := context.WithCancel(context.Background())
		i.holdUntilArrival(parent, "m")
		reset()
	}
	i.awaiting.mu.Lock()
	n := len(i.awaiting.calls)
	_, kept := i.awaiting.calls[open.(*awaitingCall)]
	i.awaiting.mu.Unlock()
	if n > 200 || !kept {
		t.Errorf("%d calls held after 10000 ended (open one kept: %v); want the open one and few others", n, kept)
	}
}
