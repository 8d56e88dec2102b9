package awsbase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/logging"
)

// Sequential calls reuse one connection, and each request leaves in one
// write: headers and body together. Without inMemoryBodies, net/http wrote
// the SDK's body apart from the headers, and about 2% of calls dropped
// their connection (smithy-go's WriteTo racing net/http's writer).
func TestSequentialCallsReuseTheirConnection(t *testing.T) {
	var conns atomic.Int32
	var badBodies atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body, err := io.ReadAll(r.Body); err != nil || string(body) != `{"TableName":"Orders"}` {
			badBodies.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"BackupSummaries":[]}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	var writes atomic.Int32
	client := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			return countingConn{c, &writes}, err
		}
	})
	ddb := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		HTTPClient:   PooledHTTPClient(client),
	})
	const calls = 1000
	for range calls {
		if _, err := ddb.ListBackups(context.Background(), &dynamodb.ListBackupsInput{TableName: aws.String("Orders")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d sequential calls opened %d connections, want 1", calls, n)
	}
	if n := writes.Load(); n != calls {
		t.Errorf("%d calls took %d writes, want one each", calls, n)
	}
	if n := badBodies.Load(); n != 0 {
		t.Errorf("%d requests arrived without their whole body", n)
	}
}

// countingConn counts its writes.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestRedirectIsNotFollowed: a 307 (a proxy's; DynamoDB does not
// redirect) is the attempt's answer, as with the SDK's own client, not
// followed to another host inside one attempt.
func TestRedirectIsNotFollowed(t *testing.T) {
	var reached atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: PooledHTTPClient(nil),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "TOKEN"),
		Retryer:     aws.NopRetryer{}})
	_, err := c.DescribeBackup(context.Background(), &dynamodb.DescribeBackupInput{BackupArn: aws.String("arn")})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusTemporaryRedirect || reached.Load() != 0 {
		t.Errorf("err = %v, other host reached %d times; want the 307 as the answer, not followed", err, reached.Load())
	}
}

func TestSDKLogger(t *testing.T) {
	var buf bytes.Buffer
	l := SDKLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	l.Logf(logging.Warn, "falling back to IMDSv1: %v", "token refused")
	l.Logf(logging.Debug, "request %d", 7)
	// Of a kind written once per answer, the first only (within 10 s).
	for range 3 {
		l.Logf(logging.Warn, "response did not match expected checksum, %d, %d", 0, 837065779)
	}
	var got []string
	for line := range strings.Lines(buf.String()) {
		var r struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		got = append(got, r.Level+" "+r.Msg)
	}
	want := []string{"WARN AWS SDK: falling back to IMDSv1: token refused", "DEBUG AWS SDK: request 7",
		"WARN AWS SDK: response did not match expected checksum, 0, 837065779"}
	if !slices.Equal(got, want) {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestCheckCredentials(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		creds   aws.CredentialsProvider
		wantErr string // a part of the error; "" for none
	}{
		{"credentials found", context.Background(), credentials.NewStaticCredentialsProvider("AKID", "secret", ""), ""},
		{"none in the chain", context.Background(), aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no EC2 IMDS role found")
		}), "no EC2 IMDS role found"},
		{"no provider", context.Background(), nil, "no AWS credentials provider"},
		{"start-up canceled", canceled, aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, ctx.Err()
		}), "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCredentials(tt.ctx, aws.Config{Credentials: tt.creds})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v; want it to say %q", err, tt.wantErr)
			}
		})
	}
}

// TestWithoutFileSecrets: the web identity token put in
// AWS_WEB_IDENTITY_TOKEN_FILE in place of its path, which the SDK's error
// repeats ("unable to read file at ..."), is not in the errors backupd
// logs of its own credentials, at start or with a request; a file
// variable that names a file is no secret, and stays.
func TestWithoutFileSecrets(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiYWNrdXBkIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": jwt, "AWS_ROLE_ARN": "arn:aws:iam::111111111111:role/backupd",
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": ""} {
		t.Setenv(k, v)
	}
	cfg, err := awsconfig.LoadDefaultConfig(t.Context(), awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	_, ownErr := OwnCredentials(cfg.Credentials).Retrieve(t.Context())
	for name, err := range map[string]error{"CheckCredentials": CheckCredentials(t.Context(), cfg), "OwnCredentials": ownErr} {
		if err == nil {
			t.Fatalf("%s: no error, though the token file names nothing", name)
		}
		// Named by its variable: a path merely wrong (a token not
		// mounted) is the commonest failure, and the operator must be
		// told which variable names nothing.
		if text := err.Error(); strings.Contains(text, jwt) ||
			!strings.Contains(text, "[the value of AWS_WEB_IDENTITY_TOKEN_FILE, redacted: it names no file here]") {
			t.Errorf("%s: %q; want the value of AWS_WEB_IDENTITY_TOKEN_FILE taken out, naming the variable", name, text)
		}
	}
	if err := WithoutFileSecrets(errors.New("open " + empty)); err.Error() != "open "+empty {
		t.Errorf("WithoutFileSecrets = %q; want a path that names a file kept", err)
	}
}
