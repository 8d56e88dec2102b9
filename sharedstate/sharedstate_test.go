package sharedstate

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/backupd/backupd/config"
)

// TestUnavailableErrorStopsTheSDKRetrying: the limiter's error passes
// through the SDK's retry middleware, which must not repeat the attempt.
func TestUnavailableErrorStopsTheSDKRetrying(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	retryable := retry.IsErrorRetryables(retry.DefaultRetryables)
	if !retryable.IsErrorRetryable(refused).Bool() {
		t.Fatal("the SDK does not retry a refused connection; this test proves nothing")
	}
	err := &UnavailableError{Op: "rate limit", Err: refused}
	if retryable.IsErrorRetryable(err).Bool() {
		t.Error("the SDK would retry an attempt the limiter could not admit")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("the cause is not unwrapped")
	}
}

func TestNewRedisClientKeepsThePasswordOutOfErrors(t *testing.T) {
	c := NewRedisClient(config.Redis{Address: "127.0.0.1:1", Password: "hunter2-secret", DB: 3})
	defer c.Close()
	if o := c.Options(); o.Addr != "127.0.0.1:1" || o.Password != "hunter2-secret" || o.DB != 3 {
		t.Errorf("options = %+v", o)
	}
	err := c.Ping(context.Background()).Err()
	if err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	if msg := (&UnavailableError{Op: "idempotency", Err: err}).Error(); strings.Contains(msg, "hunter2") {
		t.Errorf("error holds the password: %s", msg)
	}
}
