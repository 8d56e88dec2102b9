package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/callers"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestCallersAuthenticatedAndAuthorized runs the binary with two callers:
// orders, allowed CreateBackup and GetBackup in account A, and platform,
// allowed everything. Over gRPC and REST, requests without a known token
// are 401, requests outside a caller's rights are 403, and neither reaches
// AWS.
func TestCallersAuthenticatedAndAuthorized(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	b, _ := newAccount(t, moto, "Orders")
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, Env: motoEnv(rec.URL), Callers: `callers:
  - {name: orders, token_sha256: ` + callers.HashToken("orders-token") + `, accounts: ["` + a + `"], operations: [CreateBackup, GetBackup]}
  - {name: platform, token_sha256: ` + callers.HashToken("platform-token") + `, accounts: ["*"], operations: ["*"]}
`})
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	}
	create := func(ctx context.Context, acct string) (*backupv1.CreateBackupResponse, error) {
		return inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: acct, TableName: "Orders", BackupName: "authz"})
	}

	_, err := create(context.Background(), a)
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || reasonOf(st) != "UNAUTHENTICATED" {
		t.Errorf("gRPC without a token: %v", err)
	}
	if _, err := create(as("guess"), a); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC with an unknown token: %v", err)
	}
	_, err = create(as("orders-token"), b)
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || reasonOf(st) != "CALLER_NOT_ALLOWED" {
		t.Errorf("orders in account B: %v", err)
	}
	if _, err := create(as("orders-token"), a); err != nil {
		t.Fatalf("orders in account A: %v", err)
	}
	inB, err := create(as("platform-token"), b)
	if err != nil {
		t.Fatalf("platform in account B: %v", err)
	}
	twice := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer platform-token", "authorization", "Bearer guess")
	if _, err := create(twice, a); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC with two authorization values: %v", err)
	}
	// The ARN's account is authorized like account_id.
	_, err = inst.client.GetBackup(as("orders-token"), &backupv1.GetBackupRequest{BackupArn: inB.GetBackupDetails().GetBackupArn()})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("orders reading account B's backup: %v", err)
	}

	for _, tt := range []struct {
		token, method, path, body string
		want                      int
	}{
		{"", "POST", "/v1/accounts/" + a + "/tables/Orders/backups", `{"backupName":"rest"}`, http.StatusUnauthorized},
		{"orders-token", "POST", "/v1/accounts/" + b + "/tables/Orders/backups", `{"backupName":"rest"}`, http.StatusForbidden},
		{"orders-token", "GET", "/v1/accounts/" + a + "/backups", "", http.StatusForbidden},
		{"platform-token", "GET", "/v1/accounts/" + a + "/backups", "", http.StatusOK},
		// Two headers are refused whichever comes first.
		{"platform-token,guess", "GET", "/v1/accounts/" + a + "/backups", "", http.StatusUnauthorized},
		{"guess,platform-token", "GET", "/v1/accounts/" + a + "/backups", "", http.StatusUnauthorized},
	} {
		header := http.Header{}
		for tok := range strings.SplitSeq(tt.token, ",") {
			if tok != "" {
				header.Add("Authorization", "Bearer "+tok)
			}
		}
		if code, _, body := inst.restWith(t, tt.method, tt.path, tt.body, header); code != tt.want {
			t.Errorf("REST %s %s as %q: %d %s, want %d", tt.method, tt.path, tt.token, code, body, tt.want)
		}
	}
	if n := len(rec.Calls("CreateBackup")); n != 2 {
		t.Errorf("moto saw %d CreateBackup calls, want the 2 allowed ones", n)
	}
	if n := len(rec.Calls("DescribeBackup")); n != 0 {
		t.Errorf("moto saw %d DescribeBackup calls, want none", n)
	}
	if logs := inst.logs.String(); !strings.Contains(logs, `"principal":"orders"`) || strings.Contains(logs, "orders-token") {
		t.Error("the log lacks the principal, or holds a token")
	}
}

// TestTLSListeners runs the binary with a certificate: CreateBackup over
// gRPC with TLS and over HTTPS, and plaintext is refused on both.
func TestTLSListeners(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	files := testenv.SelfSignedTLS(t)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto), TLS: &files})
	if _, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "over-tls"}); err != nil {
		t.Errorf("gRPC over TLS: %v", err)
	}
	if code, _, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"over-https"}`); code != http.StatusOK {
		t.Errorf("HTTPS: %d %s", code, body)
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(inst.httpURL, "https://") + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
	plain, err := grpc.NewClient(inst.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("plaintext gRPC answered on the TLS listener")
	}
}
