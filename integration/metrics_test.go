package integration

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestMetricsCountWhatHappened drives the binary against moto through a
// success, a missing table, a wait and refusals, and reads each back from
// GET /metrics.
func TestMetricsCountWhatHappened(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a, CreateRate: 1}}, MaxWait: 1200 * time.Millisecond, Env: motoEnv(moto)})
	ctx := context.Background()

	// Admitted at once, over gRPC; its result is held for its request_id.
	if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "first", RequestId: "metrics-first"}); err != nil {
		t.Fatal(err)
	}
	// Waits its turn (1.1 s at 1/s with the limiter's guard), then moto
	// answers that the table is missing; over REST.
	if code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Missing/backups", `{"backupName":"second"}`); code != http.StatusNotFound {
		t.Fatalf("missing table: %d %s", code, body)
	}
	// Three at once: turns at 2.2, 3.3 and 4.4 s from the first call; with
	// a 1.2 s max wait at most one fits.
	var mu sync.Mutex
	var ok, refused int
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "m3-" + strconv.Itoa(i)})
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				ok++
			case codes.ResourceExhausted:
				refused++
			default:
				t.Errorf("burst: %v", err)
			}
		})
	}
	wg.Wait()
	if refused < 2 {
		t.Fatalf("%d of 3 refused, want at least 2", refused)
	}

	code, _, body := inst.rest(t, "GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	const create = "/backup.v1.BackupService/CreateBackup"
	limit := func(decision string) map[string]string {
		return map[string]string{"account": a, "region": "us-east-1", "operation": "CreateBackup", "decision": decision}
	}
	attempt := func(outcome string) map[string]string {
		return map[string]string{"account": a, "region": "us-east-1", "operation": "CreateBackup", "outcome": outcome}
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   int
	}{
		{"backupd_requests_total", map[string]string{"method": create, "code": "OK", "reason": ""}, 1 + ok},
		{"backupd_requests_total", map[string]string{"method": create, "code": "NotFound", "reason": "TABLE_NOT_FOUND"}, 1},
		{"backupd_requests_total", map[string]string{"method": create, "code": "ResourceExhausted", "reason": "RATE_LIMITED"}, refused},
		{"backupd_request_duration_seconds_count", map[string]string{"method": create}, 5},
		{"backupd_ratelimit_decisions_total", limit("admitted"), 1},
		{"backupd_ratelimit_decisions_total", limit("waited"), 1 + ok},
		{"backupd_ratelimit_decisions_total", limit("refused"), refused},
		{"backupd_dynamodb_attempts_total", attempt("ok"), 1 + ok},
		{"backupd_dynamodb_attempts_total", attempt("TableNotFoundException"), 1},
		{"backupd_sts_assume_role_total", map[string]string{"account": a, "outcome": "ok"}, 1},
		{"backupd_request_ids_held", nil, 1},
	} {
		if got := metricValue(string(body), tt.name, tt.labels); got != float64(tt.want) {
			t.Errorf("%s%v = %v, want %d", tt.name, tt.labels, got, tt.want)
		}
	}
}

// metricValue finds the sample of name whose labels include labels in
// Prometheus' text format (with no labels, the sample of name without
// any), or -1.
func metricValue(body, name string, labels map[string]string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if value, ok := strings.CutPrefix(line, name+" "); ok && labels == nil {
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return -1
			}
			return f
		}
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		lbls, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		all := true
		for k, v := range labels {
			all = all && strings.Contains(","+lbls+",", ","+k+`="`+v+`",`)
		}
		if all {
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}
