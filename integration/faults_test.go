package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/accounts"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// faultyDynamoDB stands between backupd and moto's DynamoDB and fails every
// CreateBackup the way fail says; other calls pass through to moto.
func faultyDynamoDB(t *testing.T, moto string, fail func(w http.ResponseWriter)) (string, *atomic.Int32) {
	t.Helper()
	return onCreateBackup(t, moto, func(w http.ResponseWriter, _ *http.Request, _ http.Handler) { fail(w) })
}

// onCreateBackup stands between backupd and moto's DynamoDB: every
// CreateBackup is counted and handed to handle, with the proxy to moto;
// other calls pass through to moto.
func onCreateBackup(t *testing.T, moto string, handle func(w http.ResponseWriter, r *http.Request, toMoto http.Handler)) (string, *atomic.Int32) {
	t.Helper()
	return onOperation(t, moto, "CreateBackup", handle)
}

// onOperation is onCreateBackup for DynamoDB's operation op.
func onOperation(t *testing.T, moto, op string, handle func(w http.ResponseWriter, r *http.Request, toMoto http.Handler)) (string, *atomic.Int32) {
	t.Helper()
	u, err := url.Parse(moto)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var creates atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), "."+op) {
			creates.Add(1)
			handle(w, r, proxy)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &creates
}

func TestFaults(t *testing.T) {
	moto := testenv.MotoURL(t)
	dropConnection := func(w http.ResponseWriter) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	throttle := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#LimitExceededException","message":"Too many concurrent control plane operations"}`))
	}
	tests := []struct {
		name       string
		fail       func(http.ResponseWriter)
		stsDown    bool
		code       codes.Code
		reason     string
		httpStatus int
		retryInfo  bool
		calls      func(n int32) bool // how many CreateBackups may reach DynamoDB per request
	}{
		{"connection dropped after CreateBackup was sent", dropConnection, false, codes.Unavailable, "OUTCOME_UNKNOWN", 503, false,
			func(n int32) bool { return n == 1 }},
		{"a success without the backup's details", emptySuccess, false, codes.Unavailable, "OUTCOME_UNKNOWN", 503, false,
			func(n int32) bool { return n == 1 }},
		{"DynamoDB LimitExceeded after retries", throttle, false, codes.ResourceExhausted, "DYNAMODB_THROTTLED", 429, true,
			func(n int32) bool { return n > 1 }},
		{"STS unreachable", throttle, true, codes.Unavailable, "STS_UNAVAILABLE", 503, true,
			func(n int32) bool { return n == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testenv.UniqueAccountID(t)
			ddb, creates := faultyDynamoDB(t, moto, tt.fail)
			sts := moto
			if tt.stsDown {
				// Nothing listens on port 1 (privileged, and assigned to no
				// service in use), as TestRedisDown has it; a port found
				// free and closed could be taken by another process.
				sts = "http://127.0.0.1:1"
			}
			inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
				Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + sts}})

			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
			defer cancel()
			_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "b-1"})
			st := status.Convert(err)
			if st.Code() != tt.code || reasonOf(st) != tt.reason || (retryDelay(st) > 0) != tt.retryInfo {
				t.Errorf("gRPC: %v (reason %s, retry %s); want %s %s, RetryInfo %v", err, reasonOf(st), retryDelay(st), tt.code, tt.reason, tt.retryInfo)
			}
			if n := creates.Load(); !tt.calls(n) {
				t.Errorf("%d CreateBackup calls reached DynamoDB for one request", n)
			}

			before := creates.Load()
			code, h, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"b-2"}`)
			if code != tt.httpStatus || decodeRESTError(t, body).reason() != tt.reason || (h.Get("Retry-After") != "") != tt.retryInfo {
				t.Errorf("REST: %d Retry-After %q %s; want %d %s", code, h.Get("Retry-After"), body, tt.httpStatus, tt.reason)
			}
			if n := creates.Load() - before; !tt.calls(n) {
				t.Errorf("%d CreateBackup calls reached DynamoDB for one REST request", n)
			}
		})
	}
}

// TestFailuresPastTheDeadline: when DynamoDB keeps failing until the
// caller's deadline cuts the SDK's retries short, the caller hears what
// DynamoDB answered (throttling: 429 and when to come back; a 503 with an
// error code the SDK does not model: 503), not that the deadline passed
// before anything was sent.
func TestFailuresPastTheDeadline(t *testing.T) {
	moto := testenv.MotoURL(t)
	answer := func(status int, code string, retryAfterMS string) func(http.ResponseWriter, *http.Request, http.Handler) {
		return func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			if retryAfterMS != "" {
				w.Header().Set("X-Amz-Retry-After", retryAfterMS) // the SDK waits this long before its retry
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#` + code + `","message":"` + code + `"}`))
		}
	}
	tests := []struct {
		name       string
		op         string
		fail       func(http.ResponseWriter, *http.Request, http.Handler)
		code       codes.Code
		reason     string
		httpStatus int
		calls      func(n int32) bool
	}{
		{"CreateBackup throttled, its retry past the deadline", "CreateBackup", answer(400, "ThrottlingException", "5000"),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", 429, func(n int32) bool { return n == 1 }},
		{"DescribeBackup failing with ServiceUnavailable", "DescribeBackup", answer(503, "ServiceUnavailable", ""),
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", 503, func(n int32) bool { return n >= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testenv.UniqueAccountID(t)
			ddb, calls := onOperation(t, moto, tt.op, tt.fail)
			inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
				Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + moto}})
			backupARN := "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders/backup/01700000000000-abcdef12"
			call := func(ctx context.Context) error {
				if tt.op == "CreateBackup" {
					_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "b-1"})
					return err
				}
				_, err := inst.client.GetBackup(ctx, &backupv1.GetBackupRequest{BackupArn: backupARN})
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			st := status.Convert(call(ctx))
			if st.Code() != tt.code || reasonOf(st) != tt.reason || retryDelay(st) <= 0 {
				t.Errorf("gRPC: %v (reason %s, retry %s); want %s %s with RetryInfo", st.Err(), reasonOf(st), retryDelay(st), tt.code, tt.reason)
			}
			if n := calls.Load(); !tt.calls(n) {
				t.Errorf("%d %s calls reached DynamoDB for one request", n, tt.op)
			}

			before := calls.Load()
			method, path, body := "GET", "/v1/backups/"+url.PathEscape(backupARN), ""
			if tt.op == "CreateBackup" {
				method, path, body = "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"b-2"}`
			}
			code, h, resp := inst.restWith(t, method, path, body, http.Header{"Grpc-Timeout": {"3S"}})
			if code != tt.httpStatus || decodeRESTError(t, resp).reason() != tt.reason || h.Get("Retry-After") == "" {
				t.Errorf("REST: %d Retry-After %q %s; want %d %s with Retry-After", code, h.Get("Retry-After"), resp, tt.httpStatus, tt.reason)
			}
			if n := calls.Load() - before; !tt.calls(n) {
				t.Errorf("%d %s calls reached DynamoDB for one REST request", n, tt.op)
			}
		})
	}
}

// TestTooLittleTimeLeftIsNotSent: a CreateBackup whose caller leaves it
// less than accounts.SendLead before its deadline is not sent, so
// DynamoDB cannot make a backup that the caller is told may or may not
// exist: DEADLINE_EXCEEDED (504 over REST), saying that nothing was done.
// The same call with time to spare, made first so that the account's
// credentials are at hand, reaches DynamoDB.
func TestTooLittleTimeLeftIsNotSent(t *testing.T) {
	moto := testenv.MotoURL(t)
	a := testenv.UniqueAccountID(t)
	ddb, calls := onOperation(t, moto, "CreateBackup", func(w http.ResponseWriter, r *http.Request, toMoto http.Handler) {
		toMoto.ServeHTTP(w, r)
	})
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
		Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + moto}})
	create := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "b-1"})
		return err
	}
	if st := status.Convert(create(3 * time.Second)); st.Code() != codes.NotFound || calls.Load() != 1 {
		t.Fatalf("with 3s left: %v after %d calls reached DynamoDB; want NOT_FOUND (no such table in moto) after one", st.Err(), calls.Load())
	}
	short := accounts.SendLead * 4 / 5
	if st := status.Convert(create(short)); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "nothing was done") {
		t.Errorf("gRPC with %s left: %v; want DEADLINE_EXCEEDED saying nothing was done", short, st.Err())
	}
	code, _, resp := inst.restWith(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"b-2"}`,
		http.Header{"Grpc-Timeout": {strconv.FormatInt(short.Milliseconds(), 10) + "m"}})
	if code != http.StatusGatewayTimeout || !strings.Contains(string(resp), "nothing was done") {
		t.Errorf("REST with %s left: %d %s; want 504 saying nothing was done", short, code, resp)
	}
	if n := calls.Load() - 1; n != 0 {
		t.Errorf("%d CreateBackup calls reached DynamoDB with less than %s left; want none", n, accounts.SendLead)
	}
}

// TestSuccessWithoutItsSubjectIsRefused: an answer of success without
// what it answers with (a proxy between backupd and DynamoDB may send
// one) is not passed on as an empty success: a GetBackup without the
// backup is INTERNAL, and a restore without the new table is
// OUTCOME_UNKNOWN (DynamoDB may have made it), as is a DeleteBackup
// without the deleted backup (the answer says it was deleted). The
// OpenAPI description calls those fields required.
func TestSuccessWithoutItsSubjectIsRefused(t *testing.T) {
	moto := testenv.MotoURL(t)
	backupARN := func(a string) string {
		return "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders/backup/01700000000000-abcdef12"
	}
	for _, tt := range []struct {
		op         string
		call       func(c backupv1.BackupServiceClient, a string) error
		method     string
		path       func(a string) string
		body       string
		code       codes.Code
		reason     string
		httpStatus int
	}{
		{"DescribeBackup", func(c backupv1.BackupServiceClient, a string) error {
			_, err := c.GetBackup(context.Background(), &backupv1.GetBackupRequest{BackupArn: backupARN(a)})
			return err
		}, "GET", func(a string) string { return "/v1/backups/" + url.PathEscape(backupARN(a)) }, "",
			codes.Internal, "INTERNAL", http.StatusInternalServerError},
		{"DeleteBackup", func(c backupv1.BackupServiceClient, a string) error {
			_, err := c.DeleteBackup(context.Background(), &backupv1.DeleteBackupRequest{BackupArn: backupARN(a)})
			return err
		}, "DELETE", func(a string) string { return "/v1/backups/" + url.PathEscape(backupARN(a)) }, "",
			codes.Unavailable, "OUTCOME_UNKNOWN", http.StatusServiceUnavailable},
		{"RestoreTableFromBackup", func(c backupv1.BackupServiceClient, a string) error {
			_, err := c.RestoreTableFromBackup(context.Background(), &backupv1.RestoreTableFromBackupRequest{BackupArn: backupARN(a), TargetTableName: "Copy"})
			return err
		}, "POST", func(a string) string { return "/v1/backups/" + url.PathEscape(backupARN(a)) + ":restore" },
			`{"targetTableName":"Copy2"}`,
			codes.Unavailable, "OUTCOME_UNKNOWN", http.StatusServiceUnavailable},
	} {
		t.Run(tt.op, func(t *testing.T) {
			a := testenv.UniqueAccountID(t)
			ddb, calls := onOperation(t, moto, tt.op, func(w http.ResponseWriter, _ *http.Request, _ http.Handler) { emptySuccess(w) })
			inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
				Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + moto}})
			if st := status.Convert(tt.call(inst.client, a)); st.Code() != tt.code || reasonOf(st) != tt.reason {
				t.Errorf("gRPC: %v; want %v %s", st.Err(), tt.code, tt.reason)
			}
			code, _, body := inst.rest(t, tt.method, tt.path(a), tt.body)
			if code != tt.httpStatus || decodeRESTError(t, body).reason() != tt.reason {
				t.Errorf("REST: %d %s; want %d %s", code, body, tt.httpStatus, tt.reason)
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("%d %s calls for two requests", n, tt.op)
			}
		})
	}
}

// emptySuccess answers a DynamoDB call with success and nothing in it:
// not DynamoDB, but a proxy between may answer so.
func emptySuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write([]byte(`{}`))
}
