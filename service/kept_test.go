package service

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/accounts"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/idempotency"
)

// TestKeptUnknownOutcomeHoldsNoExchange: an unknown outcome kept for a
// request_id's repeats (for a day, in the process with the memory
// backend) keeps what its error tells, its text, HTTP status and AWS
// request id, but not the HTTP exchange the SDK's error carried: its
// response, body and request, whose context is the run's and its
// caller's. Kept with them, each such result held about 10 KB of heap
// rather than the 600 bytes the README gives a kept result.
func TestKeptUnknownOutcomeHoldsNoExchange(t *testing.T) {
	s := New(Options{DefaultTimeout: time.Minute, Idempotency: idempotency.NewMemory()})
	var text string
	unknown := unknownOutcomes(t)
	do := func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
		_, err := unknown(ctx)
		text = err.Error()
		return nil, err
	}
	first, err1 := runOnce(context.Background(), s, do)
	repeat, err2 := runOnce(context.Background(), s, func(context.Context) (*backupv1.CreateBackupResponse, error) {
		t.Error("the repeat ran again")
		return nil, nil
	})
	for _, c := range []struct {
		name string
		resp *backupv1.CreateBackupResponse
		err  error
	}{{"first", first, err1}, {"repeat", repeat, err2}} {
		if _, ok := errors.AsType[*accounts.OutcomeUnknownError](c.err); c.resp != nil || !ok {
			t.Fatalf("%s = %v, %v; want the unknown outcome", c.name, c.resp, c.err)
		}
		if c.err.Error() != text {
			t.Errorf("%s's error = %q; want the run's %q", c.name, c.err, text)
		}
		re, ok := errors.AsType[*awshttp.ResponseError](c.err)
		if !ok {
			t.Fatalf("%s's error %v holds no AWS response error", c.name, c.err)
		}
		if re.HTTPStatusCode() != http.StatusInternalServerError || re.ServiceRequestID() != "REQ-500" {
			t.Errorf("%s's error tells HTTP %d, request id %q; want 500, REQ-500", c.name, re.HTTPStatusCode(), re.ServiceRequestID())
		}
		if resp := re.HTTPResponse(); resp.Request != nil || resp.Body != nil || resp.Header != nil {
			t.Errorf("%s's kept error holds the HTTP exchange (request %v, body %v, header %v)", c.name, resp.Request != nil, resp.Body != nil, resp.Header != nil)
		}
	}
}

// unknownOutcomes returns a CreateBackup whose every call DynamoDB (an
// httptest server) answers with a 500, which fails as accounts' gate
// makes a CreateBackup that left and got no definite answer.
func unknownOutcomes(tb testing.TB) func(context.Context) (*backupv1.CreateBackupResponse, error) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Requestid", "REQ-500")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}`))
	}))
	tb.Cleanup(srv.Close)
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: aws.AnonymousCredentials{},
		RetryMaxAttempts: 1, DisableValidateResponseChecksum: true})
	return func(ctx context.Context) (*backupv1.CreateBackupResponse, error) {
		_, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{TableName: aws.String("Orders"), BackupName: aws.String("b1")})
		if err == nil {
			tb.Fatal("the fake's 500 was answered as a success")
		}
		return nil, &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "eu-west-1", Err: err}
	}
}

// BenchmarkKeptUnknownOutcome reports the heap an OUTCOME_UNKNOWN result
// holds in the in-process store for its request_id's repeats (the
// README's figure beside BenchmarkMemoryKeep's for a kept response).
func BenchmarkKeptUnknownOutcome(b *testing.B) {
	s := New(Options{DefaultTimeout: time.Minute, Idempotency: idempotency.NewMemory()})
	do := unknownOutcomes(b)
	norm := func() proto.Message {
		return &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b1"}
	}
	target := accounts.Target{AccountID: "111111111111", Region: "eu-west-1"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		if _, err := once(context.Background(), s, "CreateBackup", target, "rid-"+strconv.Itoa(i), norm, do); err == nil {
			b.Fatal("want the unknown outcome")
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/entry")
	runtime.KeepAlive(s)
}
