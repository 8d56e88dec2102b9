// Package awsbase builds what every AWS client of backupd shares: the
// HTTP client, pooled for calls to many accounts' endpoints at once; the
// SDK's own log, written into backupd's; the check, at start, that
// backupd has credentials of its own to assume roles with; and the stack
// an SDK call runs on.
package awsbase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go/logging"

	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/redact"
)

// Idle connections kept per DynamoDB host and in all. The SDK's default of
// 10 per host makes a busy account open (and in production TLS-handshake) a
// new connection for about every other call once more than 10 are in
// flight; with account-based endpoints every account is its own host.
const (
	maxIdleConnsPerHost = 128
	maxIdleConns        = 1024
)

// PooledHTTPClient returns c (the SDK's buildable client, or a new one when
// c is nil) with enough idle connections for concurrent calls. Other HTTP
// clients are returned unchanged: their owner chose their pooling.
func PooledHTTPClient(c aws.HTTPClient) aws.HTTPClient {
	bc, ok := c.(*awshttp.BuildableClient)
	if c == nil {
		bc, ok = awshttp.NewBuildableClient(), true
	}
	if !ok {
		return c
	}
	pooled := bc.WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = maxIdleConnsPerHost
		t.MaxIdleConns = max(t.MaxIdleConns, maxIdleConns)
		// HTTP/1.1 only. With the GetBody inMemoryBodies gives every
		// body, net/http's HTTP/2 transport resends a request whose
		// body it wrote whole when the peer resets the stream with
		// PROTOCOL_ERROR (an endpoint or proxy that speaks HTTP/2):
		// a CreateBackup DynamoDB may have acted on, sent again
		// inside one attempt, on one turn of the rate limit, and
		// answered as one success. Over HTTP/1.1 net/http resends
		// only a request of which nothing was written. The transport
		// the SDK hands over is a clone of one that has set HTTP/2 up
		// already, h2 in its TLS config's ALPN included: that goes too,
		// or a server would choose h2 for a client that speaks HTTP/1.1.
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		if t.TLSClientConfig != nil {
			t.TLSClientConfig.NextProtos = slices.DeleteFunc(slices.Clone(t.TLSClientConfig.NextProtos), func(p string) bool { return p == "h2" })
		}
	})
	hc, ok := pooled.Freeze().(*http.Client)
	if !ok {
		return inMemoryBodies{pooled}
	}
	// The SDK's client follows a 307 or 308 when net/http can send the
	// body again, which it cannot with the SDK's own body type:
	// DynamoDB's calls are never redirected. inMemoryBodies gives every
	// body a GetBody, which would have a redirect (from a proxy, say)
	// followed inside one attempt: sent twice on one turn of the rate
	// limit, unsigned for the other host.
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return inMemoryBodies{&noRedirect}
}

// maxInMemoryBody is the largest request body inMemoryBodies reads ahead.
// The DynamoDB backup API's JSON bodies are a few hundred bytes.
const maxInMemoryBody = 64 << 10

// inMemoryBodies hands net/http request bodies it can see are in memory.
// The SDK's body is its own stream type, which net/http cannot tell from a
// slow reader, so it writes the headers and the body as two packets (two
// syscalls, and two reads and wake-ups at the server) for every call. A
// bytes.Reader lets it write the request in one, and GetBody lets it resend
// a request whose pooled connection turned out closed before a byte was
// written. Reading the SDK's stream here also keeps its WriteTo, which
// answers io.EOF once the SDK has closed it, out of net/http's write loop:
// when that close raced the loop, the transport took the EOF for a failed
// body and dropped a healthy connection (about 2% of calls). Bodies of
// unknown or large size are passed on with only Read and Close.
type inMemoryBodies struct {
	aws.HTTPClient
}

func (c inMemoryBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.HTTPClient.Do(req)
	}
	r := *req
	if n := req.ContentLength; n > 0 && n <= maxInMemoryBody {
		body := make([]byte, n)
		_, err := io.ReadFull(req.Body, body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		r.Body = readOnlyBody{req.Body}
	}
	return c.HTTPClient.Do(&r)
}

type readOnlyBody struct {
	io.ReadCloser
}

// SDKLogger writes the AWS SDK's own messages (such as falling back to
// IMDSv1 for backupd's credentials) into backupd's log, instead of plain
// text beside its JSON lines; each kind (its format) at most once every
// 10 s, by a Capper of caps: the SDK writes some once per answer (a
// checksum it cannot check on every error answer without one, such as a
// proxy's), which would repeat for every request.
func SDKLogger(log *slog.Logger, caps *logcap.Group) logging.Logger {
	capper := caps.New(10 * time.Second)
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		leftOut, ok := capper.Admit(format, time.Now())
		if !ok {
			return
		}
		level := slog.LevelWarn
		if c == logging.Debug {
			level = slog.LevelDebug
		}
		log.LogAttrs(context.Background(), level, "AWS SDK: "+redact.Secrets(fmt.Sprintf(format, v...)), logcap.LeftOut(leftOut)...)
	})
}

// CheckCredentials asks for backupd's own AWS credentials once, at start,
// so that a machine with none (no role, no environment) is told of at once
// and plainly: requests would otherwise only fail, each as
// STS_UNAVAILABLE, with the reason in their log lines.
func CheckCredentials(ctx context.Context, awsCfg aws.Config) error {
	if awsCfg.Credentials == nil {
		return errors.New("no AWS credentials provider")
	}
	const patience = 10 * time.Second
	cctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if _, err := awsCfg.Credentials.Retrieve(cctx); err != nil {
		err = WithoutFileSecrets(err)
		if ctx.Err() == nil && cctx.Err() != nil {
			return fmt.Errorf("backupd's own AWS credentials: none found within %v: %w", patience, err)
		}
		return fmt.Errorf("backupd's own AWS credentials: %w", err)
	}
	return nil
}

// sdkFileVars are the AWS SDK's environment variables that name a file,
// through which it finds backupd's own credentials and configuration.
var sdkFileVars = [...]string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE", "AWS_SHARED_CREDENTIALS_FILE",
	"AWS_CONFIG_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}

// WithoutFileSecrets is err, an error of the SDK's loading its
// configuration or backupd's own credentials, with the value of each
// sdkFileVars that names nothing on this host taken out of its text: the
// SDK's errors repeat the path ("unable to read file at ..."), and what
// was put in place of it, such as the web identity token itself, is a
// secret. backupd logs that text at start and with every request that
// needs the credentials. Each is replaced by the name of its variable,
// so that a path that is merely wrong (a token not mounted, the commonest
// such failure) can still be told, by its variable, from the others.
func WithoutFileSecrets(err error) error {
	if err == nil {
		return nil
	}
	var values []fileVar
	for _, name := range sdkFileVars {
		if v := os.Getenv(name); v != "" {
			if redact.NamesNothing(v) {
				values = append(values, fileVar{name, v})
			}
		}
	}
	if len(values) == 0 {
		return err
	}
	return &fileSecretsError{err: err, values: values}
}

// fileVar is one of sdkFileVars, and its value.
type fileVar struct{ name, value string }

// fileSecretsError is an error whose text loses values; it is the error
// still, for errors.Is and As.
type fileSecretsError struct {
	err    error
	values []fileVar
}

func (e *fileSecretsError) Error() string {
	s := e.err.Error()
	for _, v := range e.values {
		s = redact.ValueAs(s, v.value, "[the value of "+v.name+", redacted: it names no file here]")
	}
	return s
}

func (e *fileSecretsError) Unwrap() error { return e.err }

// OwnCredentialsError is the failure of backupd's own AWS credentials (the
// SDK's default chain: none found, IMDS or a credential process failing)
// as the STS client asked for them to sign an AssumeRole call, which was
// then never sent. Its text is the failure's own.
type OwnCredentialsError struct{ Err error }

func (e *OwnCredentialsError) Error() string { return e.Err.Error() }

func (e *OwnCredentialsError) Unwrap() error { return e.Err }

// OwnCredentials returns p, whose failures are OwnCredentialsErrors: for
// the STS client, so that the metrics tell an AssumeRole that could not be
// signed from one STS did not answer (an IMDS that answers 404, or a
// chain that finds nothing, is not STS failing). A nil p stays nil.
//
// It also keeps the secrets of the last credentials it gave (OwnSecrets):
// those that signed a call that failed, which may have been replaced
// since (rotated, or expired while STS took its time to answer).
func OwnCredentials(p aws.CredentialsProvider) aws.CredentialsProvider {
	if p == nil {
		return nil
	}
	return &ownCredentials{p: p}
}

// ownKept is how many of the last credentials given ownCredentials keeps
// the secrets of: those of a call still in flight when they were replaced.
const ownKept = 4

type ownCredentials struct {
	p aws.CredentialsProvider

	mu     sync.Mutex
	recent []aws.Credentials // the last given, newest last
}

func (o *ownCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := o.p.Retrieve(ctx)
	if err != nil {
		return creds, &OwnCredentialsError{Err: WithoutFileSecrets(err)}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(o.recent); n == 0 || o.recent[n-1].SessionToken != creds.SessionToken ||
		o.recent[n-1].SecretAccessKey != creds.SecretAccessKey {
		if n == ownKept {
			o.recent = slices.Delete(o.recent, 0, 1)
		}
		o.recent = append(o.recent, creds)
	}
	return creds, nil
}

// OwnSecrets are the session tokens and secret access keys of the last
// credentials p, an OwnCredentials, gave to sign a call: to be taken out
// of a failed call's error text. It waits for nothing and fetches
// nothing. Nil for another provider.
func OwnSecrets(p aws.CredentialsProvider) []string {
	o, ok := p.(*ownCredentials)
	if !ok {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var secrets []string
	for _, c := range o.recent {
		secrets = append(secrets, c.SessionToken, c.SecretAccessKey)
	}
	return secrets
}

// ProviderSources passes on where p's credentials come from, which the
// SDK names in its User-Agent.
func (o *ownCredentials) ProviderSources() []aws.CredentialSource {
	if s, ok := o.p.(aws.CredentialProviderSource); ok {
		return s.ProviderSources()
	}
	return nil
}
