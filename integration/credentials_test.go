package integration

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// expiredWarning is the start of the WARN line auth.Roles.Expired logs.
const expiredWarning = "DynamoDB found the account's credentials expired before backupd's clock did"

// answerExpired answers a DynamoDB call as DynamoDB does when the
// credentials that signed it have expired by AWS's clock: 400 and
// ExpiredTokenException, in the namespace DynamoDB gives its
// authentication errors (as the sandbox fake and the accounts unit tests
// answer).
func answerExpired(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}`))
}

// assumeRolesOf counts the AssumeRole calls the recorder saw for account.
func assumeRolesOf(rec *recorder, account string) int {
	n := 0
	for _, c := range rec.Calls("AssumeRole") {
		if strings.Contains(c.Role, "::"+account+":") {
			n++
		}
	}
	return n
}

// TestExpiredCredentialsAreRenewedOnce: when DynamoDB refuses a
// CreateBackup as signed with expired credentials (backupd's clock behind
// AWS's), backupd drops the account's credentials, logs the WARN that
// says to check the clock, assumes the role again and sends the call once
// more with the new ones, which moto answers: the caller gets its backup,
// and moto holds that one backup. The account's credentials are held
// before the CreateBackup (a ListBackups), so that the one AssumeRole more
// is the renewal's.
func TestExpiredCredentialsAreRenewedOnce(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, db := newAccount(t, moto, "Orders")
	var seen atomic.Int32
	ddb, _ := onCreateBackup(t, moto, func(w http.ResponseWriter, r *http.Request, toMoto http.Handler) {
		if seen.Add(1) == 1 {
			answerExpired(w)
			return
		}
		toMoto.ServeHTTP(w, r)
	})
	rec := newRecorder(t, ddb)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(rec.URL)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := inst.client.ListBackups(ctx, &backupv1.ListBackupsRequest{AccountId: a}); err != nil {
		t.Fatal(err)
	}
	before := assumeRolesOf(rec, a)
	if before == 0 {
		t.Fatal("no AssumeRole for the account reached the recorder: backupd does not act through it")
	}

	resp, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "renewed"})
	if err != nil {
		t.Fatalf("CreateBackup after one ExpiredTokenException: %v", err)
	}
	if got := assumeRolesOf(rec, a) - before; got != 1 {
		t.Errorf("%d AssumeRole calls for the account after the refusal; want 1", got)
	}
	creates := rec.Calls("CreateBackup")
	if len(creates) != 2 {
		t.Fatalf("%d CreateBackup calls reached DynamoDB; want 2, the refused one and its retry", len(creates))
	}
	if first, retry := creates[0].AccessKey, creates[1].AccessKey; first == retry || rec.AccountOf(retry) != a {
		t.Errorf("the retry was signed with access key %q (account %q), the refused call with %q; want new credentials of account %s",
			retry, rec.AccountOf(retry), first, a)
	}
	names := backupNames(t, db, "Orders")
	if len(names) != 1 || names["renewed"] != resp.GetBackupDetails().GetBackupArn() {
		t.Errorf("moto holds backups %v; want the one answered, %s", names, resp.GetBackupDetails().GetBackupArn())
	}
	if lines := inst.logs.Lines(expiredWarning, a); len(lines) != 1 {
		t.Errorf("%d WARN lines saying the account's credentials expired early; want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	} else if !strings.Contains(lines[0], "WARN") {
		t.Errorf("the credentials' line is not at WARN: %s", lines[0])
	}
}

// TestCredentialsExpiredAgainIsUnavailable: when DynamoDB refuses the
// retry with renewed credentials as expired too (the gRPC request's retry
// is signed with new ones; the REST request's, within reassumeEvery of
// that drop, with the same), the caller gets
// UNAVAILABLE with reason CREDENTIALS_EXPIRED (503 over REST), after one
// retry only: two CreateBackup attempts per request, and no backup.
func TestCredentialsExpiredAgainIsUnavailable(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, db := newAccount(t, moto, "Orders")
	ddb, _ := onCreateBackup(t, moto, func(w http.ResponseWriter, _ *http.Request, _ http.Handler) { answerExpired(w) })
	rec := newRecorder(t, ddb)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(rec.URL)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "refused"})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || reasonOf(st) != "CREDENTIALS_EXPIRED" || retryDelay(st) <= 0 {
		t.Errorf("gRPC: %v (reason %s, retry %s); want Unavailable CREDENTIALS_EXPIRED with RetryInfo", err, reasonOf(st), retryDelay(st))
	}
	if creates := rec.Calls("CreateBackup"); len(creates) != 2 {
		t.Errorf("%d CreateBackup attempts reached DynamoDB for one request; want 2, the call and its one retry", len(creates))
	} else if first, retry := creates[0].AccessKey, creates[1].AccessKey; first == retry || rec.AccountOf(retry) != a {
		t.Errorf("the retry was signed with access key %q (account %q), the refused call with %q; want new credentials of account %s",
			retry, rec.AccountOf(retry), first, a)
	}

	before := len(rec.Calls("CreateBackup"))
	code, h, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"refused-rest"}`)
	if code != http.StatusServiceUnavailable || decodeRESTError(t, body).reason() != "CREDENTIALS_EXPIRED" || h.Get("Retry-After") == "" {
		t.Errorf("REST: %d Retry-After %q %s; want 503 CREDENTIALS_EXPIRED with Retry-After", code, h.Get("Retry-After"), body)
	}
	if n := len(rec.Calls("CreateBackup")) - before; n != 2 {
		t.Errorf("%d CreateBackup attempts reached DynamoDB for one REST request; want 2", n)
	}
	if names := backupNames(t, db, "Orders"); len(names) != 0 {
		t.Errorf("moto holds backups %v; want none", names)
	}
}
