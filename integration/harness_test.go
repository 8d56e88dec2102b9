package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

var binary string // the backupd binary built by TestMain

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// End-to-end tests of the built binary, each a few seconds: -short
		// runs the unit tests alone.
		fmt.Println("integration: end-to-end tests skipped with -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "backupd-it")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "backupd")
	// Built as shipped, without -race: the race detector's pauses delay
	// calls by tens of milliseconds and would distort the arrival times the
	// rate-limit tests measure. Races are covered by the packages' own
	// -race tests.
	build := exec.Command("go", "build", "-o", binary, "github.com/backupd/backupd/cmd/backupd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build backupd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// call is one AWS call seen by the recorder.
type call struct {
	At        time.Time
	Op        string // DynamoDB operation or STS Action
	AccessKey string
	Role      string // the RoleArn of an AssumeRole
	Body      []byte // the JSON request body of a DynamoDB call
}

// recorder is a reverse proxy in front of moto that records every call and
// which account each assumed-role access key belongs to.
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []call
	keyAcct map[string]string // access key id -> account, from AssumeRole answers
}

var credentialRe = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{keyAcct: map[string]string{}}
	// moto's server resets connections when a few hundred arrive at once;
	// the recorder queues them instead, as DynamoDB's front end would.
	inFlight := make(chan struct{}, 32)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorHandler = func(w http.ResponseWriter, req *http.Request, err error) {
		t.Logf("recorder: %s %s: %v", req.Method, req.Header.Get("X-Amz-Target"), err)
		w.WriteHeader(http.StatusBadGateway)
	}
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("X-Test-Action") != "AssumeRole" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var out struct {
			Result struct {
				Credentials struct {
					AccessKeyID string `xml:"AccessKeyId"`
				}
				AssumedRoleUser struct{ Arn string }
			} `xml:"AssumeRoleResult"`
		}
		if xml.Unmarshal(body, &out) == nil {
			parts := strings.Split(out.Result.AssumedRoleUser.Arn, ":")
			if len(parts) > 4 {
				r.mu.Lock()
				r.keyAcct[out.Result.Credentials.AccessKeyID] = parts[4]
				r.mu.Unlock()
			}
		}
		return nil
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c := call{At: time.Now()}
		if m := credentialRe.FindStringSubmatch(req.Header.Get("Authorization")); m != nil {
			c.AccessKey = m[1]
		}
		if target := req.Header.Get("X-Amz-Target"); target != "" {
			c.Op = target[strings.LastIndexByte(target, '.')+1:]
			c.Body, _ = io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(c.Body))
		} else {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			c.Op, c.Role = form.Get("Action"), form.Get("RoleArn")
			req.Header.Set("X-Test-Action", c.Op)
		}
		r.mu.Lock()
		r.calls = append(r.calls, c)
		r.mu.Unlock()
		inFlight <- struct{}{}
		defer func() { <-inFlight }()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

// Calls returns the recorded calls of op ("" for all).
func (r *recorder) Calls(op string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if op == "" || c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// AccountOf returns the account an assumed-role access key acts in.
func (r *recorder) AccountOf(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keyAcct[key]
}

// instance is one running backupd process.
type instance struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpURL  string
	http     *http.Client
	conn     *grpc.ClientConn
	client   backupv1.BackupServiceClient
	logs     *testenv.Buffer
	done     chan error
}

// account is one account in a test's backupd config.
type account struct {
	ID         string
	ExternalID string
	CreateRate float64 // 0: default
}

type instanceOptions struct {
	Accounts []account
	MaxWait  time.Duration // 0: default
	// DrainDelay is the config's drain_delay; 0: none.
	DrainDelay time.Duration
	// UpstreamTimeout is the config's upstream_timeout; 0: default.
	UpstreamTimeout time.Duration
	// ShutdownTimeout is the config's shutdown_timeout; 0: 30s.
	ShutdownTimeout time.Duration
	Env             []string // extra environment, e.g. AWS_ENDPOINT_URL=...
	// Redis, when set, is the address of the shared-state Redis, used
	// under RedisPrefix.
	Redis       string
	RedisPrefix string
	// RedisWaitReplicas is the config's shared_state.redis.wait_replicas.
	RedisWaitReplicas int
	// Callers is the config's callers section, as YAML; empty: none.
	Callers string
	// TLS, when set, serves both listeners with this certificate.
	TLS *testenv.TLSFiles
	// IgnoreSIGINT starts backupd with SIGINT ignored, as a shell script
	// starts a job in the background.
	IgnoreSIGINT bool
	// Listen is more of the config's listen mapping, as YAML flow
	// entries ("max_connections: 5").
	Listen string
}

// startBackupd writes a config, starts the binary and waits until /readyz
// answers. The process gets SIGTERM at cleanup.
func startBackupd(t *testing.T, opts instanceOptions) *instance {
	t.Helper()
	var cfg strings.Builder
	// Ports backupd's listeners get from the system, read from its log:
	// a port picked free here could be taken before backupd binds it.
	listen := `grpc: "127.0.0.1:0", http: "127.0.0.1:0"`
	if opts.Listen != "" {
		listen += ", " + opts.Listen
	}
	fmt.Fprintf(&cfg, "listen: {%s}\nshutdown_timeout: %s\n", listen, cmp.Or(opts.ShutdownTimeout, 30*time.Second))
	if opts.MaxWait > 0 {
		fmt.Fprintf(&cfg, "max_wait: %s\n", opts.MaxWait)
	}
	if opts.DrainDelay > 0 {
		fmt.Fprintf(&cfg, "drain_delay: %s\n", opts.DrainDelay)
	}
	if opts.UpstreamTimeout > 0 {
		fmt.Fprintf(&cfg, "upstream_timeout: %s\n", opts.UpstreamTimeout)
	}
	if opts.Redis != "" {
		fmt.Fprintf(&cfg, "shared_state: {backend: redis, redis: {address: %q, key_prefix: %q, wait_replicas: %d}}\n",
			opts.Redis, opts.RedisPrefix, opts.RedisWaitReplicas)
	}
	cfg.WriteString(opts.Callers)
	var clientTLS *tls.Config
	if opts.TLS != nil {
		fmt.Fprintf(&cfg, "tls: {cert_file: %q, key_file: %q}\n", opts.TLS.CertFile, opts.TLS.KeyFile)
		clientTLS = &tls.Config{RootCAs: opts.TLS.Pool, MinVersion: tls.VersionTLS12}
	}
	cfg.WriteString("accounts:\n")
	for _, a := range opts.Accounts {
		fmt.Fprintf(&cfg, "  - id: %q\n    role_arn: arn:aws:iam::%s:role/backupd\n", a.ID, a.ID)
		if a.ExternalID != "" {
			fmt.Fprintf(&cfg, "    external_id: %q\n", a.ExternalID)
		}
		if a.CreateRate > 0 {
			fmt.Fprintf(&cfg, "    limits: {create_backup: %g}\n", a.CreateRate)
		}
	}
	path := filepath.Join(t.TempDir(), "backupd.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if opts.IgnoreSIGINT {
		return startCommand(t, clientTLS, opts.Env, exec.Command("/bin/sh", "-c", `trap '' INT; exec "$0" "$@"`, binary, "--config", path))
	}
	return startProcess(t, clientTLS, opts.Env, "--config", path)
}

// startProcess runs the binary with args and env, learns its listeners'
// addresses from its log, waits until it is ready and connects a gRPC
// client, over TLS trusting clientTLS's roots when it is not nil. At
// cleanup the process gets SIGTERM.
func startProcess(t *testing.T, clientTLS *tls.Config, env []string, args ...string) *instance {
	t.Helper()
	return startCommand(t, clientTLS, env, exec.Command(binary, args...))
}

// startCommand is startProcess for a command that runs the binary.
func startCommand(t *testing.T, clientTLS *tls.Config, env []string, cmd *exec.Cmd) *instance {
	t.Helper()
	inst := &instance{http: http.DefaultClient, logs: &testenv.Buffer{}, done: make(chan error, 1)}
	creds, scheme := insecure.NewCredentials(), "http://"
	if clientTLS != nil {
		inst.http = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
		creds, scheme = grpccreds.NewTLS(clientTLS), "https://"
	}
	inst.cmd = cmd
	inst.cmd.Env = append(os.Environ(), env...)
	inst.cmd.Stdout, inst.cmd.Stderr = inst.logs, inst.logs
	if err := inst.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { inst.done <- inst.cmd.Wait() }()
	t.Cleanup(func() {
		if inst.cmd.ProcessState == nil {
			_ = inst.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-inst.done:
			case <-time.After(40 * time.Second):
				_ = inst.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("backupd log:\n%s", inst.logs.String())
		}
	})
	grpcAddr, httpAddr := inst.servingAddrs(t)
	inst.grpcAddr, inst.httpURL = grpcAddr, scheme+httpAddr
	inst.waitReady(t)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	inst.conn, inst.client = conn, backupv1.NewBackupServiceClient(conn)
	return inst
}

// servingRe finds a listener's address in backupd's "backupd serving"
// line, logged as JSON ("grpc":"127.0.0.1:41234") or text
// (grpc=127.0.0.1:41234).
var servingRe = regexp.MustCompile(`(?:"(grpc|http)":"|\b(grpc|http)=)([^",\s]+)`)

// servingAddrs waits for the line in which backupd says where it serves.
func (inst *instance) servingAddrs(t *testing.T) (grpcAddr, httpAddr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-inst.done:
			t.Fatalf("backupd exited during start: %v\n%s", err, inst.logs.String())
		default:
		}
		if lines := inst.logs.Lines("backupd serving"); len(lines) > 0 {
			addrs := map[string]string{}
			for _, m := range servingRe.FindAllStringSubmatch(lines[0], -1) {
				addrs[m[1]+m[2]] = m[3]
			}
			if addrs["grpc"] == "" || addrs["http"] == "" {
				t.Fatalf("no listener addresses in %q", lines[0])
			}
			return addrs["grpc"], addrs["http"]
		}
	}
	t.Fatalf("backupd did not say where it serves within 20s\n%s", inst.logs.String())
	return "", ""
}

func (inst *instance) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-inst.done:
			t.Fatalf("backupd exited during start: %v\n%s", err, inst.logs.String())
		default:
		}
		resp, err := inst.http.Get(inst.httpURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("backupd not ready after 20s\n%s", inst.logs.String())
}

// waitReadyz polls /readyz until it answers want. Its listener must stay
// up: a request that fails, or want not seen within, fails the test.
func (inst *instance) waitReadyz(t *testing.T, want int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		resp, err := inst.http.Get(inst.httpURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after %v; want %d", resp.StatusCode, within, want)
		}
	}
}

// stop sends SIGTERM and returns the exit error (nil for exit 0).
func (inst *instance) stop(t *testing.T) error {
	t.Helper()
	inst.terminate(t)
	return inst.exited(t)
}

// terminate sends SIGTERM; exited waits for its end.
func (inst *instance) terminate(t *testing.T) {
	t.Helper()
	if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// exited waits up to 40 s for the process to end and returns the exit
// error (nil for exit 0).
func (inst *instance) exited(t *testing.T) error {
	t.Helper()
	select {
	case err := <-inst.done:
		return err
	case <-time.After(40 * time.Second):
		t.Fatal("backupd did not exit within 40s of SIGTERM")
		return nil
	}
}

// metric is the sample of name whose labels include labels (none: the
// sample without labels) on backupd's GET /metrics, or -1. Each scrape
// comes on a connection of its own, closed after it, so that
// backupd_connections_open counts it as one and holds no idle one of the
// test's (see waitConnections).
func (inst *instance) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	req, err := http.NewRequest("GET", inst.httpURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := inst.http.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return metricValue(string(body), name, labels)
}

// waitMetric polls /metrics until the sample of name with labels is at
// least want, and fails the test when it is not within 10 s.
func (inst *instance) waitMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	inst.waitFor(t, name, labels, func(got float64) bool { return got >= want })
}

// waitConnections polls /metrics until backupd holds want connections
// open, the scrape's own among them, and fails the test when it does not
// within 10 s. The test's idle keep-alive connections are closed first:
// with no gRPC call made yet, want 1 is then the scrape alone.
func (inst *instance) waitConnections(t *testing.T, want int) {
	t.Helper()
	inst.http.CloseIdleConnections()
	inst.waitFor(t, "backupd_connections_open", nil, func(got float64) bool { return got == float64(want) })
}

func (inst *instance) waitFor(t *testing.T, name string, labels map[string]string, ok func(float64) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := inst.metric(t, name, labels)
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v is still %v after 10s", name, labels, got)
		}
	}
}

// rest sends a REST request and returns the status, headers and body.
func (inst *instance) rest(t *testing.T, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	return inst.restWith(t, method, path, body, nil)
}

// restWith is rest with header added to the request. A JSON body comes
// back compacted: protojson puts a space after some colons and commas, or
// not, depending on the binary, so that nobody depends on its spacing.
func (inst *instance) restWith(t *testing.T, method, path, body string, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	code, h, b, err := inst.tryREST(method, path, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return code, h, b
}

// tryREST is restWith for a goroutine other than the test's, which must
// not call t.Fatal: a request that gets no answer is its error.
func (inst *instance) tryREST(method, path, body string, header http.Header) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, inst.httpURL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := inst.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, b) == nil {
		b = compact.Bytes()
	}
	return resp.StatusCode, resp.Header, b, nil
}

// motoEnv points backupd's SDK at url for both STS and DynamoDB.
func motoEnv(url string) []string {
	return []string{"AWS_ENDPOINT_URL=" + url}
}

// asAccount returns a DynamoDB client acting in account id on moto, through
// its own AssumeRole: the test's view of that account, independent of backupd.
func asAccount(t *testing.T, motoURL, id string) *dynamodb.Client {
	t.Helper()
	base := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(motoURL),
	}
	creds := aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base),
		"arn:aws:iam::"+id+":role/integration-test", func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "integration-test" }))
	return dynamodb.NewFromConfig(base, func(o *dynamodb.Options) { o.Credentials = creds })
}

// newAccount makes a fresh account on moto with the tables named, and
// returns its id and the test's own client in it.
func newAccount(t *testing.T, moto string, tables ...string) (string, *dynamodb.Client) {
	t.Helper()
	id := testenv.UniqueAccountID(t)
	db := asAccount(t, moto, id)
	for _, name := range tables {
		createTable(t, db, name)
	}
	return id, db
}

// createTable creates a small on-demand table (with a GSI) in the client's account.
func createTable(t *testing.T, db *dynamodb.Client, name string) {
	t.Helper()
	_, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("gk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("by-gk"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("gk"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		BillingMode: types.BillingModePayPerRequest,
	})
	if _, exists := errors.AsType[*types.ResourceInUseException](err); exists {
		// The account is this test's alone: the table is this call's
		// own, made by an attempt whose answer the SDK did not get
		// (moto, busy with the whole suite, answered it late) before it
		// retried.
		err = nil
	}
	if err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
}

// backupNames lists the names of the backups of table in the client's account.
func backupNames(t *testing.T, db *dynamodb.Client, table string) map[string]string {
	t.Helper()
	out, err := db.ListBackups(context.Background(), &dynamodb.ListBackupsInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("list backups of %s: %v", table, err)
	}
	names := map[string]string{}
	for _, b := range out.BackupSummaries {
		names[aws.ToString(b.BackupName)] = aws.ToString(b.BackupArn)
	}
	return names
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
