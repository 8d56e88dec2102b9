// Package testenv hands tests the external services that scripts/test.sh
// starts for them: moto's server (an AWS emulator for STS and DynamoDB,
// spoken to over real HTTP) and a real redis-server. Import it from _test.go
// files only.
//
// scripts/test.sh exports where the services listen:
//
//	BACKUPD_TEST_MOTO_URL    e.g. http://127.0.0.1:41234
//	BACKUPD_TEST_REDIS_ADDR  e.g. 127.0.0.1:41235
//	BACKUPD_TEST_MOTO_SERVER the moto_server executable in .venv/
//	BACKUPD_TEST_PYTHON      the python of .venv/ (grpcio-tools, openapi-spec-validator)
//
// and, for the test process only, AWS_ACCESS_KEY_ID=testing,
// AWS_SECRET_ACCESS_KEY=testing and AWS_REGION=us-east-1.
//
// Without those variables (a plain `go test ./...`), a test that needs a
// service is skipped with a message saying to run scripts/test.sh, so unit
// tests stay runnable anywhere. With CI=true the same absence fails the test
// instead: in CI a missing emulator must never pass silently as a skip.
//
// A test that calls MotoURL, RedisAddr, Python, StartMoto or StartRedis
// is an integration test: it talks to a real service. With -short every
// one of them is skipped, CI=true or not, so `go test -short ./...` runs
// the unit tests alone, anywhere.
//
// All packages of one scripts/test.sh run share one moto and one Redis, and
// `go test` runs packages in parallel. So a test must not reset moto
// (POST /moto-api/reset, /moto-api/reset-auth) or flush Redis: it would pull
// the state from under other packages. Keep tests apart instead: moto keeps
// each AWS account separate, so give each test its own account with
// UniqueAccountID, and prefix Redis keys with something unique to the test.
// A test that must change server-wide moto state (IAM enforcement through
// /moto-api/reset-auth, to make AssumeRole fail with AccessDenied) starts a
// moto of its own with StartMoto.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Names of the environment variables scripts/test.sh sets.
const (
	MotoURLEnv    = "BACKUPD_TEST_MOTO_URL"
	RedisAddrEnv  = "BACKUPD_TEST_REDIS_ADDR"
	MotoServerEnv = "BACKUPD_TEST_MOTO_SERVER"
	PythonEnv     = "BACKUPD_TEST_PYTHON"
)

// CI reports whether the tests run in CI (CI=true or another true value of
// strconv.ParseBool), where a missing service is a failure rather than a skip.
func CI() bool {
	ci, err := strconv.ParseBool(strings.TrimSpace(os.Getenv("CI")))
	return err == nil && ci
}

// MotoURL returns the base URL of the moto server started by scripts/test.sh
// (for example http://127.0.0.1:41234), to use as the SDK's BaseEndpoint for
// both STS and DynamoDB. When it is not set, the test is skipped, or fails
// under CI=true.
func MotoURL(t testing.TB) string {
	t.Helper()
	return need(t, MotoURLEnv, "moto server")
}

// Python returns the test virtualenv's python, which has grpcio-tools and
// grpcio-status (scripts/requirements-test.txt), for tests of clients other
// teams generate. When it is not set, the test is skipped, or fails under
// CI=true.
func Python(t testing.TB) string {
	t.Helper()
	return need(t, PythonEnv, "test virtualenv's python")
}

// RedisAddr returns the host:port of the redis-server started by
// scripts/test.sh. It runs with no persistence and is shared by all packages:
// use keys unique to the test. When it is not set, the test is skipped, or
// fails under CI=true.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return need(t, RedisAddrEnv, "redis-server")
}

// RedisPrefix is a key prefix of t's own in the shared test Redis, so that
// tests and their reruns never see each other's keys.
func RedisPrefix(t testing.TB) string {
	return "test:" + t.Name() + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
}

// EstablishRedis gives the Redis at addr, under prefix, the state backupd's
// rate limiter (package ratelimit) leaves on a deployment that has run on
// it before: its state marker and the server's run_id. Without it, the
// first turn is held for max_wait, and every turn with it: a first start
// cannot be told from a Redis that lost backupd's state.
func EstablishRedis(tb testing.TB, addr, prefix string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var run string
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			run = id
		}
	}
	if err := c.MSet(ctx, prefix+"state", "0", prefix+"state:run_id", run).Err(); err != nil {
		tb.Fatal(err)
	}
}

// UniqueAccountID returns a fresh 12-digit AWS account id for this test.
// moto gives every account its own tables and backups, and creates the account
// on first use (AssumeRole into arn:aws:iam::<id>:role/<any> is enough), so a
// test working in its own account cannot see or disturb another test's
// resources on the shared moto server. The id never equals moto's default
// account 123456789012.
func UniqueAccountID(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: random account id: %v", err)
	}
	// 9xxxxxxxxxxx: 12 digits, never 123456789012.
	n := binary.BigEndian.Uint64(b[:]) % 100_000_000_000
	return fmt.Sprintf("9%011d", n)
}

// StartMoto starts a moto server that only this test uses, on a free loopback
// port, and returns its base URL; it is stopped when the test ends. It takes a
// few seconds, so use the shared MotoURL unless the test changes server-wide
// state. When BACKUPD_TEST_MOTO_SERVER is not set, the test is skipped, or
// fails under CI=true.
func StartMoto(t testing.TB) string {
	t.Helper()
	bin := need(t, MotoServerEnv, "moto_server executable")
	var lastErr error
	for range 3 {
		url, err := startMoto(t, bin)
		if err == nil {
			return url
		}
		lastErr = err
	}
	t.Fatalf("testenv: starting %s: %v", bin, lastErr)
	return ""
}

func startMoto(t testing.TB, bin string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	out := &Buffer{}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/moto-api/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			return "", fmt.Errorf("moto_server exited during start-up:\n%s", out)
		case <-ctx.Done():
			stop()
			return "", fmt.Errorf("moto_server did not answer on %s within 60s:\n%s", url, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("private moto_server log:\n%s", out)
		}
	})
	return url, nil
}

// Buffer is a bytes.Buffer that a server may write to while the test reads
// it: the sink for a log or a child process's output that the test
// inspects before the writer has stopped.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Reset forgets everything written so far.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// Lines returns the lines written so far that contain every one of subs.
func (b *Buffer) Lines(subs ...string) []string {
	var out []string
lines:
	for line := range strings.Lines(b.String()) {
		line = strings.TrimSuffix(line, "\n")
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue lines
			}
		}
		out = append(out, line)
	}
	return out
}

func need(t testing.TB, env, what string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("this test needs the " + what + " that scripts/test.sh starts: skipped with -short, which runs the unit tests alone")
	}
	v := strings.TrimSpace(os.Getenv(env))
	if v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not set: this test needs the %s that scripts/test.sh starts; run the tests with scripts/test.sh", env, what)
	if CI() {
		t.Fatal(msg + " (CI=true: a missing service is a failure, not a skip)")
	}
	t.Skip(msg)
	return ""
}

// WrongPassRedis stands for a Redis server that refuses backupd's password:
// it answers every command with WRONGPASS, so that a client's AUTH, with
// the password in it, is sent and refused. It returns its address.
func WrongPassRedis(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
					if _, err := conn.Write([]byte("-WRONGPASS invalid username-password pair or user is disabled.\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}
