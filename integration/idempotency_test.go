package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// firstCreateBackupHeld stands between backupd and moto and holds the
// first CreateBackup for hold before passing it on; later ones, and every
// other call, pass at once. released tells when the hold ended.
func firstCreateBackupHeld(t *testing.T, moto string, hold time.Duration) (url string, released func() time.Time) {
	t.Helper()
	var n atomic.Int32
	var mu sync.Mutex
	var at time.Time
	url, _ = onCreateBackup(t, moto, func(w http.ResponseWriter, r *http.Request, toMoto http.Handler) {
		if n.Add(1) == 1 {
			time.Sleep(hold)
			mu.Lock()
			at = time.Now()
			mu.Unlock()
		}
		toMoto.ServeHTTP(w, r)
	})
	return url, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// timedCall is one call of a burst: when it was sent and answered.
type timedCall struct {
	name       string
	sent, done time.Time
}

// wantAllWaited checks that every call of a burst sent at once with one
// request_id, while the first CreateBackup was held for hold, was answered
// only once the hold had ended (released), having waited most of it: each
// arrived while the first run was going and waited for its result, none
// ran the request again or failed fast.
func wantAllWaited(t *testing.T, calls []timedCall, hold time.Duration, released time.Time) {
	t.Helper()
	if released.IsZero() {
		t.Fatal("no CreateBackup was held: the burst never reached DynamoDB")
	}
	for _, c := range calls {
		if took := c.done.Sub(c.sent); took < hold*3/4 || c.done.Before(released) {
			t.Errorf("%s answered %v after it was sent, %v before the held CreateBackup went on; want it to wait out the %v hold",
				c.name, took.Round(time.Millisecond), released.Sub(c.done).Round(time.Millisecond), hold)
		}
	}
}

// TestRequestIDMakesOneBackup repeats one CreateBackup with the same
// request_id, 30 times at once over gRPC and REST and then again later, and
// proves that moto saw one CreateBackup, holds one backup, and every repeat
// got the first response. The first CreateBackup is held on its way to
// DynamoDB, so that every repeat of the burst arrives while it runs, and
// waits for it.
func TestRequestIDMakesOneBackup(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, dbA := newAccount(t, moto, "Orders")
	b, dbB := newAccount(t, moto, "Orders")
	const hold = 2 * time.Second
	held, released := firstCreateBackupHeld(t, moto, hold)
	rec := newRecorder(t, held)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, Env: motoEnv(rec.URL)})
	ctx := context.Background()
	const rid = "6f1c2a7e-9d4b-4c1e-8a3f-1b2c3d4e5f60"
	req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "once", RequestId: rid}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var calls []timedCall
	timed := func(name string, sent time.Time) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, timedCall{name: name, sent: sent, done: time.Now()})
	}
	arns := make(chan string, 30)
	for i := range 20 {
		wg.Go(func() {
			sent := time.Now()
			resp, err := inst.client.CreateBackup(ctx, req)
			timed("gRPC call "+strconv.Itoa(i), sent)
			if err != nil {
				t.Errorf("gRPC repeat: %v", err)
				return
			}
			arns <- resp.GetBackupDetails().GetBackupArn()
		})
	}
	for i := range 10 {
		wg.Go(func() {
			sent := time.Now()
			code, _, body, err := inst.tryREST("POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"once","requestId":"`+rid+`"}`, nil)
			timed("REST call "+strconv.Itoa(i), sent)
			var r struct {
				BackupDetails struct{ BackupArn string } `json:"backupDetails"`
			}
			if err != nil || code != http.StatusOK || json.Unmarshal(body, &r) != nil {
				t.Errorf("REST repeat: %d %s %v", code, body, err)
				return
			}
			arns <- r.BackupDetails.BackupArn
		})
	}
	wg.Wait()
	close(arns)
	seen := map[string]int{}
	for arn := range arns {
		seen[arn]++
	}
	if len(seen) != 1 {
		t.Fatalf("30 repeats answered %d different backups: %v", len(seen), seen)
	}
	if n := len(rec.Calls("CreateBackup")); n != 1 {
		t.Errorf("moto saw %d CreateBackup calls for one request_id, want 1", n)
	}
	wantAllWaited(t, calls, hold, released())
	if names := backupNames(t, dbA, "Orders"); len(names) != 1 || names["once"] == "" {
		t.Errorf("account A holds %v, want the one backup", names)
	}

	// A later repeat gets the first response whole, consistency window included.
	first, err := inst.client.CreateBackup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := inst.client.CreateBackup(ctx, req)
	if err != nil || !proto.Equal(first, again) {
		t.Errorf("later repeats differ: %v / %v (%v)", first, again, err)
	}

	// The table named by its ARN is the same table: the same request.
	byARN := proto.CloneOf(req)
	byARN.TableName = "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders"
	if resp, err := inst.client.CreateBackup(ctx, byARN); err != nil || !proto.Equal(resp, first) {
		t.Errorf("repeat naming the table by its ARN: %v, %v; want the first answer", resp, err)
	}

	// The same request_id for another backup name is refused, and calls nothing.
	other := proto.CloneOf(req)
	other.BackupName = "other"
	_, err = inst.client.CreateBackup(ctx, other)
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || reasonOf(st) != "REQUEST_ID_REUSED" {
		t.Errorf("reused request_id over gRPC: %v", err)
	}
	code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"other","requestId":"`+rid+`"}`)
	if code != http.StatusConflict || decodeRESTError(t, body).reason() != "REQUEST_ID_REUSED" {
		t.Errorf("reused request_id over REST: %d %s", code, body)
	}
	if n := len(rec.Calls("CreateBackup")); n != 1 {
		t.Errorf("moto saw %d CreateBackup calls after the refusals, want 1", n)
	}

	// The same request_id in account B is B's own request.
	inB := proto.CloneOf(req)
	inB.AccountId = b
	if _, err := inst.client.CreateBackup(ctx, inB); err != nil {
		t.Fatalf("same request_id in account B: %v", err)
	}
	if names := backupNames(t, dbB, "Orders"); len(names) != 1 || names["once"] == "" {
		t.Errorf("account B holds %v, want its own backup", names)
	}

	// A request that failed without acting is run again by its repeat.
	later := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Later", BackupName: "later", RequestId: "later-1"}
	if _, err := inst.client.CreateBackup(ctx, later); status.Code(err) != codes.NotFound {
		t.Fatalf("backup of a missing table: %v, want NotFound", err)
	}
	createTable(t, dbA, "Later")
	if resp, err := inst.client.CreateBackup(ctx, later); err != nil || resp.GetBackupDetails().GetBackupName() != "later" {
		t.Errorf("repeat after the table exists: %v, %v", resp, err)
	}

	// Restores too: one table, one call, the same description.
	arn := first.GetBackupDetails().GetBackupArn()
	restore := &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "OnceRestored", RequestId: "restore-1"}
	r1, err := inst.client.RestoreTableFromBackup(ctx, restore)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := inst.client.RestoreTableFromBackup(ctx, restore)
	if err != nil || !proto.Equal(r1, r2) {
		t.Errorf("restore repeat: %v, %v; want the first answer, not TABLE_ALREADY_EXISTS", r2, err)
	}
	if n := len(rec.Calls("RestoreTableFromBackup")); n != 1 {
		t.Errorf("moto saw %d restores for one request_id, want 1", n)
	}
	// A CreateBackup's request_id reused for a restore is another request.
	_, err = inst.client.RestoreTableFromBackup(ctx, &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Nope", RequestId: rid})
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("restore under a CreateBackup's request_id: %v, want AlreadyExists", err)
	}
}

// slowDynamoDB forwards to moto, holding every CreateBackup for delay first.
func slowDynamoDB(t *testing.T, moto string, delay time.Duration) (string, *atomic.Int32) {
	t.Helper()
	return onCreateBackup(t, moto, func(w http.ResponseWriter, r *http.Request, toMoto http.Handler) {
		time.Sleep(delay)
		toMoto.ServeHTTP(w, r)
	})
}

// slowInstance is backupd acting in a new account with table Orders, whose
// CreateBackup calls reach moto after delay; creates counts them.
func slowInstance(t *testing.T, moto string, delay time.Duration) (string, *dynamodb.Client, *instance, *atomic.Int32) {
	t.Helper()
	a, db := newAccount(t, moto, "Orders")
	ddb, creates := slowDynamoDB(t, moto, delay)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
		Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + moto}})
	return a, db, inst, creates
}

// wantOneBackup checks that one CreateBackup call reached DynamoDB and
// that moto holds one backup of Orders.
func wantOneBackup(t *testing.T, creates *atomic.Int32, db *dynamodb.Client) {
	t.Helper()
	if n := creates.Load(); n != 1 {
		t.Errorf("%d CreateBackup calls reached DynamoDB, want 1", n)
	}
	if names := backupNames(t, db, "Orders"); len(names) != 1 {
		t.Errorf("moto holds %v, want one backup", names)
	}
}

// TestRequestIDSurvivesFaults: a caller that gives up before DynamoDB
// answers, or whose call ends with an unknown outcome, can repeat its
// request_id without making a second backup.
func TestRequestIDSurvivesFaults(t *testing.T) {
	moto := testenv.MotoURL(t)
	ctx := context.Background()

	t.Run("caller deadline passes while DynamoDB works", func(t *testing.T) {
		a, db, inst, creates := slowInstance(t, moto, 1500*time.Millisecond)
		req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "patient", RequestId: "slow-1"}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		// backupd answers before the client's own deadline ends the call
		// (100 ms of this one), so the caller reads what happened.
		_, err := inst.client.CreateBackup(short, req)
		if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "it goes on under its request_id") {
			t.Fatalf("first call: %v, want backupd's DeadlineExceeded saying the run goes on", err)
		}
		resp, err := inst.client.CreateBackup(ctx, req)
		if err != nil || resp.GetBackupDetails().GetBackupName() != "patient" {
			t.Fatalf("repeat: %v, %v", resp, err)
		}
		wantOneBackup(t, creates, db)
	})

	t.Run("REST caller's deadline passes while DynamoDB works", func(t *testing.T) {
		const delay = 1500 * time.Millisecond
		a, db, inst, creates := slowInstance(t, moto, delay)
		path, body := "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"patient","requestId":"slow-rest-1"}`
		start := time.Now()
		code, _, _ := inst.restWith(t, "POST", path, body, http.Header{"Grpc-Timeout": {"300m"}})
		// Answered at the caller's deadline, not when DynamoDB answered the
		// run that goes on without it.
		if took := time.Since(start); code != http.StatusGatewayTimeout || took >= delay {
			t.Fatalf("first call: %d after %v, want 504 before DynamoDB answered (%v)", code, took, delay)
		}
		code, _, got := inst.rest(t, "POST", path, body)
		if code != http.StatusOK || !strings.Contains(string(got), `"backupName":"patient"`) {
			t.Fatalf("repeat: %d %s", code, got)
		}
		wantOneBackup(t, creates, db)
	})

	t.Run("SIGTERM waits for a run its caller left", func(t *testing.T) {
		a, db, inst, _ := slowInstance(t, moto, time.Second)
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "left", RequestId: "left-1"}
		if _, err := inst.client.CreateBackup(short, req); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("first call: %v, want DeadlineExceeded", err)
		}
		// Nothing is in flight at the servers: only the detached run.
		if err := inst.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", err)
		}
		if names := backupNames(t, db, "Orders"); names["left"] == "" {
			t.Errorf("moto holds %v: the run was cut off by the shutdown", names)
		}
	})

	t.Run("STS answers after the run's deadline: nothing was sent, the repeat runs", func(t *testing.T) {
		a, db := newAccount(t, moto, "Orders")
		ddb, creates := slowDynamoDB(t, moto, 0)
		// The first AssumeRole is held past the run's deadline
		// (upstream_timeout); later ones pass at once.
		u, err := url.Parse(moto)
		if err != nil {
			t.Fatal(err)
		}
		toMoto := httputil.NewSingleHostReverseProxy(u)
		var assumes atomic.Int32
		sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if assumes.Add(1) == 1 {
				time.Sleep(2 * time.Second)
			}
			toMoto.ServeHTTP(w, r)
		}))
		t.Cleanup(sts.Close)
		inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, UpstreamTimeout: time.Second,
			Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + sts.URL}})
		req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "late-sts", RequestId: "late-sts-1"}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := inst.client.CreateBackup(short, req); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("first call: %v, want DeadlineExceeded", err)
		}
		// The detached run ends at upstream_timeout, before any attempt left.
		time.Sleep(1200 * time.Millisecond)
		resp, err := inst.client.CreateBackup(ctx, req)
		if err != nil || resp.GetBackupDetails().GetBackupName() != "late-sts" {
			t.Fatalf("repeat: %v, %v; want it run, since nothing reached DynamoDB the first time", resp, err)
		}
		wantOneBackup(t, creates, db)
	})

	t.Run("connection dropped after CreateBackup was sent", func(t *testing.T) {
		a, _ := newAccount(t, moto)
		ddb, creates := faultyDynamoDB(t, moto, func(w http.ResponseWriter) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		})
		inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}},
			Env: []string{"AWS_ENDPOINT_URL_DYNAMODB=" + ddb, "AWS_ENDPOINT_URL_STS=" + moto}})
		req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "dropped", RequestId: "drop-1"}
		for i := range 3 {
			_, err := inst.client.CreateBackup(ctx, req)
			if st := status.Convert(err); st.Code() != codes.Unavailable || reasonOf(st) != "OUTCOME_UNKNOWN" {
				t.Errorf("attempt %d: %v, want OUTCOME_UNKNOWN", i, err)
			}
		}
		if n := creates.Load(); n != 1 {
			t.Errorf("%d CreateBackup calls reached DynamoDB for three attempts with one request_id, want 1", n)
		}
	})
}
