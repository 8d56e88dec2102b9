package integration

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

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
		// /metrics names every account: it takes a caller allowed every one.
		{"", "GET", "/metrics", "", http.StatusUnauthorized},
		{"orders-token", "GET", "/metrics", "", http.StatusForbidden},
		{"platform-token", "GET", "/metrics", "", http.StatusOK},
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
	leaf, err := x509.ParseCertificate(files.Certificate(t).Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := inst.metric(t, "backupd_tls_certificate_expiry_timestamp_seconds", nil); got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("backupd_tls_certificate_expiry_timestamp_seconds = %v, want %d", got, leaf.NotAfter.Unix())
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

// TestEveryRouteRefusesUnknownAndDisallowedCallers calls every
// BackupService method, over gRPC and over REST by its HTTP rule, with
// requests valid but for their caller: without a token and with an unknown
// one (UNAUTHENTICATED, 401), and as a caller allowed every other operation
// in the account, or this one in another account only (CALLER_NOT_ALLOWED,
// 403). None reaches STS or DynamoDB. The same requests as a caller allowed
// everything are not refused, so that only the caller was refused. The
// methods come from the service descriptor: a new RPC without a request
// here fails the test.
func TestEveryRouteRefusesUnknownAndDisallowedCallers(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	b, _ := newAccount(t, moto, "Orders")
	arn := "arn:aws:dynamodb:us-east-1:" + a + ":table/Orders/backup/01700000000000-abcdef12"
	requests := map[string]proto.Message{
		"CreateBackup":           &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "authz"},
		"GetBackup":              &backupv1.GetBackupRequest{BackupArn: arn},
		"ListBackups":            &backupv1.ListBackupsRequest{AccountId: a},
		"DeleteBackup":           &backupv1.DeleteBackupRequest{BackupArn: arn},
		"RestoreTableFromBackup": &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Restored"},
	}
	rules := httpRules(t)
	methods := backupv1.BackupService_ServiceDesc.Methods
	var cfg strings.Builder
	cfg.WriteString("callers:\n")
	fmt.Fprintf(&cfg, "  - {name: platform, token_sha256: %s, accounts: [\"*\"], operations: [\"*\"]}\n", callers.HashToken("platform-token"))
	fmt.Fprintf(&cfg, "  - {name: elsewhere, token_sha256: %s, accounts: [%q], operations: [\"*\"]}\n", callers.HashToken("elsewhere-token"), b)
	for _, m := range methods {
		var others []string
		for _, o := range methods {
			if o.MethodName != m.MethodName {
				others = append(others, o.MethodName)
			}
		}
		fmt.Fprintf(&cfg, "  - {name: not-%s, token_sha256: %s, accounts: [%q], operations: [%s]}\n",
			m.MethodName, callers.HashToken("not-"+m.MethodName), a, strings.Join(others, ", "))
	}
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}, {ID: b}}, Env: motoEnv(rec.URL), Callers: cfg.String()})

	routes := map[string]restCall{}
	for _, m := range methods {
		req, ok := requests[m.MethodName]
		if !ok {
			t.Fatalf("no request for BackupService.%s: add one", m.MethodName)
		}
		rule, ok := rules[m.MethodName]
		if !ok {
			t.Fatalf("no HTTP rule for BackupService.%s", m.MethodName)
		}
		routes[m.MethodName] = restRoute(t, rule, req)
	}
	const unauthenticated, denied = "UNAUTHENTICATED", "CALLER_NOT_ALLOWED"
	for _, m := range methods {
		for _, c := range []struct {
			caller, token string
			code          codes.Code
			status        int
			reason        string
		}{
			{"no token", "", codes.Unauthenticated, http.StatusUnauthorized, unauthenticated},
			{"an unknown token", "guess", codes.Unauthenticated, http.StatusUnauthorized, unauthenticated},
			{"a caller of another account", "elsewhere-token", codes.PermissionDenied, http.StatusForbidden, denied},
			{"a caller of every other operation", "not-" + m.MethodName, codes.PermissionDenied, http.StatusForbidden, denied},
		} {
			ctx := context.Background()
			header := http.Header{}
			if c.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
				header.Set("Authorization", "Bearer "+c.token)
			}
			err := invoke(ctx, inst, m.MethodName, requests[m.MethodName])
			if st := status.Convert(err); st.Code() != c.code || reasonOf(st) != c.reason {
				t.Errorf("gRPC %s with %s: %v; want %v %s", m.MethodName, c.caller, err, c.code, c.reason)
			}
			r := routes[m.MethodName]
			code, _, body := inst.restWith(t, r.verb, r.path, r.body, header)
			if code != c.status || decodeRESTError(t, body).reason() != c.reason {
				t.Errorf("REST %s %s (%s) with %s: %d %s; want %d %s", r.verb, r.path, m.MethodName, c.caller, code, body, c.status, c.reason)
			}
		}
	}
	if calls := rec.Calls(""); len(calls) != 0 {
		t.Errorf("refused callers' requests reached AWS: %v", calls)
	}

	// The same requests from a caller allowed everything pass the caller
	// checks: their answers, whatever they are, are not the caller's.
	platform := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer platform-token")
	for _, m := range methods {
		if code := status.Code(invoke(platform, inst, m.MethodName, requests[m.MethodName])); code == codes.Unauthenticated || code == codes.PermissionDenied || code == codes.InvalidArgument {
			t.Errorf("gRPC %s as platform: %v; want the request to pass validation and the caller checks", m.MethodName, code)
		}
		r := routes[m.MethodName]
		if code, _, body := inst.restWith(t, r.verb, r.path, r.body, http.Header{"Authorization": {"Bearer platform-token"}}); code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusBadRequest || code == http.StatusNotFound && decodeRESTError(t, body).reason() == "ROUTE_NOT_FOUND" {
			t.Errorf("REST %s %s as platform: %d %s; want the request to pass routing, validation and the caller checks", r.verb, r.path, code, body)
		}
	}
}

// invoke calls BackupService's method with req over inst's gRPC connection.
func invoke(ctx context.Context, inst *instance, method string, req proto.Message) error {
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(backupv1.BackupService_ServiceDesc.ServiceName))
	if err != nil {
		return err
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(desc.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method)).Output().FullName())
	if err != nil {
		return err
	}
	return inst.conn.Invoke(ctx, "/"+backupv1.BackupService_ServiceDesc.ServiceName+"/"+method, req, out.New().Interface())
}

// httpRule is one of the service's HTTP bindings (proto/backup/v1/backup_service.yaml).
type httpRule struct {
	Selector                      string
	Get, Post, Put, Patch, Delete string
	Body                          string
}

// httpRules reads the service's HTTP bindings, by method name.
func httpRules(t *testing.T) map[string]httpRule {
	t.Helper()
	raw, err := os.ReadFile("../proto/backup/v1/backup_service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		HTTP struct{ Rules []httpRule } `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	rules := map[string]httpRule{}
	for _, r := range doc.HTTP.Rules {
		method, ok := strings.CutPrefix(r.Selector, backupv1.BackupService_ServiceDesc.ServiceName+".")
		if !ok {
			t.Fatalf("HTTP rule for %s, outside %s", r.Selector, backupv1.BackupService_ServiceDesc.ServiceName)
		}
		rules[method] = r
	}
	return rules
}

// restCall is a REST request: its HTTP method, path and body.
type restCall struct{ verb, path, body string }

var pathVarRe = regexp.MustCompile(`\{([a-z_]+)\}`)

// restRoute is req as the REST request rule maps it to: its path's
// variables filled from req's fields, path-escaped, and with body "*" the
// other fields as JSON. A GET or DELETE request must set no field
// outside its path.
func restRoute(t *testing.T, rule httpRule, req proto.Message) (r restCall) {
	t.Helper()
	for verb, path := range map[string]string{"GET": rule.Get, "POST": rule.Post, "PUT": rule.Put, "PATCH": rule.Patch, "DELETE": rule.Delete} {
		if path != "" {
			r.verb, r.path = verb, path
		}
	}
	rest := proto.Clone(req).ProtoReflect()
	fields := rest.Descriptor().Fields()
	r.path = pathVarRe.ReplaceAllStringFunc(r.path, func(v string) string {
		f := fields.ByName(protoreflect.Name(strings.Trim(v, "{}")))
		if f == nil {
			t.Fatalf("%s: no field %s in %s", rule.Selector, v, rest.Descriptor().FullName())
		}
		value := rest.Get(f).String()
		rest.Clear(f)
		return url.PathEscape(value)
	})
	body, err := protojson.Marshal(rest.Interface())
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rule.Body == "*":
		r.body = string(body)
	case string(body) != "{}":
		t.Fatalf("%s: fields %s outside the path of a request without a body", rule.Selector, body)
	}
	return r
}
