package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// The README's first command, on free ports: the whole lifecycle against the
// embedded sandbox, over REST as the README shows it, plus gRPC health.
func TestSandboxMode(t *testing.T) {
	inst := startProcess(t, nil, nil, "--sandbox", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if !strings.Contains(inst.logs.String(), "SANDBOX MODE") {
		t.Errorf("no sandbox banner in the log:\n%s", inst.logs.String())
	}

	code, _, body := inst.rest(t, "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"first"}`)
	var created struct {
		BackupDetails struct{ BackupArn, BackupStatus string } `json:"backupDetails"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &created) != nil || created.BackupDetails.BackupStatus != "BACKUP_STATUS_AVAILABLE" {
		t.Fatalf("create: %d %s", code, body)
	}
	p := "/v1/backups/" + escapeARN(created.BackupDetails.BackupArn)
	steps := []struct {
		method, path, body, want string
	}{
		{"GET", p, "", `"sourceTableDetails":{"tableName":"Orders"`},
		{"GET", "/v1/accounts/111111111111/backups?tableName=Orders", "", created.BackupDetails.BackupArn},
		{"GET", "/v1/accounts/222222222222/backups", "", `{"backupSummaries":[],"nextPageToken":""}`},
		{"POST", p + ":restore", `{"targetTableName":"OrdersRestored"}`, `"tableName":"OrdersRestored"`},
		{"DELETE", p, "", "BACKUP_STATUS_DELETED"},
	}
	for _, s := range steps {
		code, _, body := inst.rest(t, s.method, s.path, s.body)
		if code != http.StatusOK || !strings.Contains(string(body), s.want) {
			t.Errorf("%s %s: %d %s; want 200 containing %s", s.method, s.path, code, body, s.want)
		}
	}
	if code, _, _ := inst.rest(t, "GET", p, ""); code != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", code)
	}
	// Busy is always being updated: a table in use, as the README says.
	code, _, body = inst.rest(t, "POST", "/v1/accounts/111111111111/tables/Busy/backups", `{"backupName":"busy"}`)
	if code != http.StatusBadRequest || decodeRESTError(t, body).reason() != "TABLE_IN_USE" {
		t.Errorf("backup of Busy: %d %s; want 400 TABLE_IN_USE", code, body)
	}
	// Slow's backups are CREATING, with no size, for a while, and in use.
	code, _, body = inst.rest(t, "POST", "/v1/accounts/111111111111/tables/Slow/backups", `{"backupName":"slow"}`)
	var slow struct {
		BackupDetails struct {
			BackupArn, BackupStatus string
			BackupSizeBytes         *string
		} `json:"backupDetails"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &slow) != nil || slow.BackupDetails.BackupStatus != "BACKUP_STATUS_CREATING" || slow.BackupDetails.BackupSizeBytes != nil {
		t.Errorf("backup of Slow: %d %s; want 200, BACKUP_STATUS_CREATING and no backupSizeBytes", code, body)
	}
	code, _, body = inst.rest(t, "DELETE", "/v1/backups/"+escapeARN(slow.BackupDetails.BackupArn), "")
	if code != http.StatusBadRequest || decodeRESTError(t, body).reason() != "BACKUP_IN_USE" {
		t.Errorf("delete of a backup of Slow being made: %d %s; want 400 BACKUP_IN_USE", code, body)
	}

	if h, err := healthpb.NewHealthClient(inst.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", h, err)
	}
	if _, err := inst.client.CreateBackup(context.Background(),
		&backupv1.CreateBackupRequest{AccountId: "222222222222", TableName: "Customers", BackupName: "over-grpc"}); err != nil {
		t.Errorf("gRPC CreateBackup in the sandbox: %v", err)
	}

	// Its demo callers: no token passes, a sent token is checked.
	auth := []struct {
		token, method, path, body string
		status                    int
	}{
		{"demo-reader-token", "GET", "/v1/accounts/111111111111/backups", "", http.StatusOK},
		{"demo-reader-token", "POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"denied"}`, http.StatusForbidden},
		{"demo-reader-token", "GET", "/v1/accounts/222222222222/backups", "", http.StatusForbidden},
		{"demo-admin-token", "POST", "/v1/accounts/222222222222/tables/Orders/backups", `{"backupName":"admin"}`, http.StatusOK},
		{"nobody", "GET", "/v1/accounts/111111111111/backups", "", http.StatusUnauthorized},
	}
	for _, a := range auth {
		code, _, body := inst.restWith(t, a.method, a.path, a.body, http.Header{"Authorization": {"Bearer " + a.token}})
		if code != a.status {
			t.Errorf("%s %s as %s: %d %s, want %d", a.method, a.path, a.token, code, body, a.status)
		}
	}
	if logs := inst.logs.String(); !strings.Contains(logs, "principal=sandbox-reader") || strings.Contains(logs, "demo-reader-token") {
		t.Errorf("the log should name the principal, never its token:\n%s", logs)
	}
	bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nobody")
	if _, err := inst.client.ListBackups(bad, &backupv1.ListBackupsRequest{AccountId: "111111111111"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC with an unknown token: %v, want Unauthenticated", err)
	}

	if err := inst.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// A max_wait that upstream_timeout, which bounds every request, makes
// moot is started with, and warned of.
func TestStartWarnsOfMaxWaitPastUpstreamTimeout(t *testing.T) {
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: "111111111111"}}, MaxWait: 2 * time.Second, UpstreamTimeout: time.Second})
	if !strings.Contains(inst.logs.String(), `"level":"WARN","msg":"max_wait is not shorter than upstream_timeout`) {
		t.Errorf("no warning:\n%s", inst.logs.String())
	}
}

// TestHangUpIsIgnored: a SIGHUP, which would end the process at once with
// no drain, is logged and ignored.
func TestHangUpIsIgnored(t *testing.T) {
	inst := startProcess(t, nil, nil, "--sandbox", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if err := inst.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(inst.logs.String(), "SIGHUP ignored") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(inst.logs.String(), "SIGHUP ignored") {
		t.Errorf("no line of the SIGHUP:\n%s", inst.logs.String())
	}
	if code, _, body := inst.rest(t, "GET", "/readyz", ""); code != http.StatusOK {
		t.Errorf("after SIGHUP, /readyz: %d %s", code, body)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	path := t.TempDir() + "/bad.yaml"
	writeFile(t, path, "accounts:\n  - id: \"123\"\n    role_arn: nope\nmax_wait: -1s\nbogus_key: 1\n")
	out, err := exec.Command(binary, "--config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("backupd started with a bad config:\n%s", out)
	}
	// An unknown key is reported with the other problems, not alone.
	for _, want := range []string{"accounts[0].id", "accounts[0].role_arn", "max_wait", "bogus_key is not a configuration key"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out, err := exec.Command(binary, "--sandbox", "--http-listen", "0.0.0.0:0").CombinedOutput(); err == nil || !strings.Contains(string(out), "loopback") {
		t.Errorf("sandbox on a public address: %v\n%s", err, out)
	}
	// A password Redis refuses is a mistake waiting will not mend: the
	// start fails, and names no password.
	writeFile(t, path, fmt.Sprintf("listen: {grpc: %q, http: %q}\nshared_state: {backend: redis, redis: {address: %q, password: hunter2-secret}}\n"+
		"accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n", testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.WrongPassRedis(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err = exec.CommandContext(ctx, binary, "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Redis refused backupd's credentials or database") || strings.Contains(string(out), "hunter2") {
		t.Errorf("a Redis password refused at start: %v\n%s", err, out)
	}
}

// TestStartFailureIsLogged: a failure to start once the log is set up (here
// the gRPC port in use) is a line of the log, in its format, not a plain
// line beside it.
func TestStartFailureIsLogged(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := t.TempDir() + "/config.yaml"
	writeFile(t, path, fmt.Sprintf("listen: {grpc: %q, http: %q}\n"+
		"accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n", taken.Addr(), testenv.FreeAddr(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--config", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("backupd started on a port in use:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var last struct{ Level, Msg, Error string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("the last line is not a JSON log line (%v):\n%s", err, stderr.String())
	}
	if last.Level != "ERROR" || last.Msg != "backupd could not start" ||
		!strings.Contains(last.Error, "gRPC listener") || !strings.Contains(last.Error, "address already in use") {
		t.Errorf("last line = %+v; want an ERROR saying the gRPC listener's address is in use", last)
	}
}
