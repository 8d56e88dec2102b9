package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/server"
	"github.com/backupd/backupd/testenv"
	"github.com/backupd/backupd/wiring"
)

// TestListenOpensBothOrNeither: when the HTTP address cannot be had, the
// gRPC listener already opened is closed again, so a restart can take it.
func TestListenOpensBothOrNeither(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := free.Addr().String()
	free.Close()
	if _, _, err := listen(config.Listen{GRPC: grpcAddr, HTTP: taken.Addr().String()}); err == nil {
		t.Fatal("listen on a taken HTTP address succeeded")
	}
	again, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatalf("the gRPC address is still held after listen failed: %v", err)
	}
	again.Close()
}

type noRuns struct{}

func (noRuns) Wait(context.Context) error { return nil }

// TestRunServersStopsWhenAListenerFails: a listener that fails ends both
// servers through the shutdown, without the drain delay that only a
// signal gets, and its error is what runServers returns.
func TestRunServersStopsWhenAListenerFails(t *testing.T) {
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLis.Close() // gRPC's Serve fails at once
	health := server.NewHealth()
	health.SetReady(true)
	httpSrv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}
	done := make(chan error, 1)
	go func() {
		done <- runServers(context.Background(), grpcLis, httpLis, server.Shutdown{Health: health, HTTP: httpSrv,
			GRPC: grpc.NewServer(), Service: noRuns{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			DrainDelay: time.Hour, Timeout: 5 * time.Second})
	}()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("runServers: %v; want the failed listener's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runServers still running 10 s after its gRPC listener failed (the drain delay is an hour)")
	}
	if health.Ready(context.Background()) {
		t.Error("still ready after the shutdown")
	}
	if _, err := http.Get("http://" + httpLis.Addr().String() + "/"); err == nil {
		t.Error("the HTTP server still answers after the shutdown")
	}
}

// TestRunRefusesArguments: an argument that is not a flag is refused, not
// left unread with every flag after it (a --grpc-listen that would not
// take effect).
func TestRunRefusesArguments(t *testing.T) {
	var stderr strings.Builder
	// Canceled: were the argument not refused, the sandbox would start
	// (on ports of its own) and stop at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, []string{"--sandbox", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "stray"}, &stderr)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "stray"`) {
		t.Errorf("run with a stray argument: %v; want it refused", err)
	}
}

// TestRunNamesBadListenFlags: a listener flag's value that is not an
// address is reported by the flag's name, not as the configuration's
// field, beside the configuration's own problems.
func TestRunNamesBadListenFlags(t *testing.T) {
	cfg := t.TempDir() + "/backupd.yaml"
	if err := os.WriteFile(cfg, []byte("accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\nmax_wait: -1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // were the flags taken, the service would stop at once
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"sandbox", []string{"--sandbox", "--grpc-listen", "nonsense", "--http-listen", "127.0.0.1:0"},
			[]string{`--grpc-listen: must be host:port or :port, with a port of 0-65535 (or a service name), such as ":9090"; got "nonsense"`}},
		{"config", []string{"--config", cfg, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:99999"},
			[]string{`--http-listen: must be host:port or :port`, `got "127.0.0.1:99999"`, "max_wait: must be more than 0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(ctx, tt.args, io.Discard)
			if err == nil {
				t.Fatal("run took a bad listener flag")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "listen.grpc") || strings.Contains(err.Error(), "listen.http") {
				t.Errorf("error names the configuration's field for a flag's value: %v", err)
			}
		})
	}
}

// TestCheckConfig: --check-config reports what a start would refuse, and
// of a configuration a start would take, its warnings, and serves
// nothing.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "listen: {grpc: \"127.0.0.1:1\", http: \"127.0.0.1:2\"}\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n")
	bad := write("bad.yaml", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::222222222222:role/x\nmax_wait: -1s\n")
	for _, tt := range []struct {
		name    string
		args    []string
		env     []string
		wantErr []string
		wantOut []string
	}{
		{"accepted, with its warning", []string{"--config", good, "--check-config"}, nil,
			nil, []string{"warning: no callers configured", "is a configuration backupd accepts (accounts: 1, callers: 0)"}},
		{"every problem", []string{"--config", bad, "--check-config"}, nil,
			[]string{"accounts[0].role_arn: names account 222222222222", "max_wait: must be more than 0"}, nil},
		{"a bad flag", []string{"--config", good, "--check-config", "--http-listen", "nonsense"}, nil,
			[]string{"--http-listen: must be host:port"}, nil},
		{"tracing the start would refuse", []string{"--config", good, "--check-config"},
			[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"},
			[]string{"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf"}, nil},
		{"resource attributes the start would refuse", []string{"--config", good, "--check-config"},
			[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_RESOURCE_ATTRIBUTES=team"},
			[]string{"OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs"}, nil},
		{"a start: the file's problems and the tracing variables' together", []string{"--config", bad},
			[]string{"OTEL_TRACES_EXPORTER=zipkin"},
			[]string{"max_wait: must be more than 0", "OTEL_TRACES_EXPORTER must be otlp or none"}, nil},
		{"not the sandbox", []string{"--sandbox", "--check-config"}, nil,
			[]string{"--check-config checks a --config FILE"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, kv := range tt.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			var out strings.Builder
			// Canceled: a start that served would stop at once, without
			// the check's words.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := run(ctx, tt.args, &out)
			if (err != nil) != (len(tt.wantErr) > 0) {
				t.Fatalf("run = %v; want an error: %v", err, len(tt.wantErr) > 0)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q: %s", w, out.String())
				}
			}
		})
	}
}

// TestRunLeavesNoSignalGoroutine: run's signal watcher ends with run,
// whether run returns on an error or after a drain, and not only with the
// process.
func TestRunLeavesNoSignalGoroutine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	for range 5 {
		if err := run(ctx, []string{"--config", "/nonexistent/backupd.yaml"}, io.Discard); err == nil {
			t.Fatal("run with a missing config file succeeded")
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := strings.Count(stacks, "backupd.onSignals(")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d signal watchers still run after their run returned", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The binary registers no gRPC decompressor, as the README says: grpc-go
// decompresses a request before any interceptor, so a few KiB of gzip
// from a caller would make the server hold megabytes for each stream. A
// dependency that imported grpc/encoding/gzip would turn it on unseen.
func TestNoGRPCDecompressor(t *testing.T) {
	for _, name := range []string{"gzip", "deflate", "snappy", "zstd"} {
		if encoding.GetCompressor(name) != nil {
			t.Errorf("a %s compressor is registered in backupd's binary", name)
		}
	}
}

// TestStartRefusesWhatARedisUsersACLDenies: a Redis user that may not
// run one of the commands backupd's requests send, or touch its keys
// (NOPERM), would have each request refused UNAVAILABLE, with RetryInfo,
// for as long as backupd runs, while /readyz says ready: a mistake
// waiting does not mend, as a refused password is. The start refuses it,
// naming what to grant; the ACL the README gives starts.
func TestStartRefusesWhatARedisUsersACLDenies(t *testing.T) {
	r := testenv.StartRedis(t, testenv.FreeAddr(t))
	ctx := context.Background()
	readmeACL := slices.Clip(readmeRedisACL(t)) // each row appends to it
	for _, tt := range []struct {
		name      string
		acl       []any
		prefix    string
		replicas  int
		db        int
		wantError []string // nil: the start takes the user
	}{
		{"the README's ACL", readmeACL, "backupd:", 0, 0, nil},
		{"the README's ACL, with WAIT for wait_replicas", append(readmeACL, "+wait"), "backupd:", 1, 0, nil},
		{"a key prefix outside its keys", readmeACL, "team-a:", 0, 0, []string{"~team-a:*", "NOPERM"}},
		{"no GET", []any{"~*", "+@all", "-get"}, "backupd:", 0, 0, []string{"GET backupd:access-check", "NOPERM"}},
		{"no TIME", []any{"~*", "+@all", "-time"}, "backupd:", 0, 0, []string{"TIME", "NOPERM"}},
		{"no PING", []any{"~*", "+@all", "-ping"}, "backupd:", 0, 0, []string{"+ping", "'ping'", "NOPERM"}},
		{"the README's ACL with db 1, without SELECT", readmeACL, "backupd:", 0, 1, []string{"+select", "'select'", "NOPERM"}},
		{"the README's ACL with db 1 and SELECT", append(readmeACL, "+select"), "backupd:", 0, 1, nil},
		{"no INFO", []any{"~*", "+@all", "-info"}, "backupd:", 0, 0, []string{"INFO", "+info"}},
		// The rows above loaded the scripts: EVALSHA alone would pass.
		{"no EVAL, the scripts cached", []any{"~*", "+@all", "-eval"}, "backupd:", 0, 0, []string{"scripts", "'eval'"}},
		{"no EVALSHA", []any{"~*", "+@all", "-evalsha"}, "backupd:", 0, 0, []string{"scripts", "'evalsha'"}},
		{"no WAIT, with wait_replicas", []any{"~*", "+@all", "-wait"}, "backupd:", 1, 0, []string{"WAIT", "wait_replicas"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]any{"acl", "setuser", "backupd", "reset", "on", ">secret"}, tt.acl...)
			if err := r.Client.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{MaxWait: time.Second, SharedState: config.SharedState{Backend: config.BackendRedis, Redis: config.Redis{
				Address: r.Addr, Username: "backupd", Password: "secret",
				KeyPrefix: tt.prefix, WaitReplicas: tt.replicas, DB: tt.db, WaitTimeout: 100 * time.Millisecond,
			}}}
			// No replica is connected: that is the one failure to log.
			_, failures := startFailures(t, cfg, tt.wantError, "not enough Redis replicas")
			for _, line := range failures {
				t.Errorf("a start the ACL allows logged a failure: %s", line)
			}
		})
	}
}

// readmeRedisACL is the rules of the README's ACL SETUSER line for
// backupd's Redis user, after its password.
func readmeRedisACL(t *testing.T) []any {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "    ACL SETUSER backupd on >PASSWORD "
	for line := range strings.Lines(string(readme)) {
		if rules, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), prefix); ok {
			var acl []any
			for _, r := range strings.Fields(rules) {
				acl = append(acl, r)
			}
			return acl
		}
	}
	t.Fatalf("the README has no line %q", prefix)
	return nil
}

// TestStartOverTLSToRedis: backupd checks Redis' certificate against
// tls_ca_file when set, and against the system's CAs otherwise; one it
// cannot verify fails the start, naming the setting, rather than leaving
// a replica ready that refuses every request as Redis "not answering".
func TestStartOverTLSToRedis(t *testing.T) {
	files, other := testenv.SelfSignedTLS(t), testenv.SelfSignedTLS(t)
	addr := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	testenv.StartRedis(t, "", "--tls-port", port, "--tls-cert-file", files.CertFile, "--tls-key-file", files.KeyFile, "--tls-auth-clients", "no")
	plain := testenv.StartRedis(t, testenv.FreeAddr(t))
	for _, tt := range []struct {
		name      string
		addr      string
		caFile    string
		wantError []string // nil: the start takes the server
		wantLog   string   // the one failure a start taken logs; "": none
	}{
		{"its CA in tls_ca_file", addr, files.CertFile, nil, ""},
		{"the system's CAs", addr, "", []string{"tls_ca_file", "certificate"}, ""},
		{"another CA in tls_ca_file", addr, other.CertFile, []string{"tls_ca_file", "certificate"}, ""},
		// It does not answer a TLS client at all: as a Redis not up yet.
		{"a port without TLS", plain.Addr, files.CertFile, nil, "Redis does not answer yet (tls is on"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{MaxWait: time.Second, SharedState: config.SharedState{Backend: config.BackendRedis, Redis: config.Redis{
				Address: tt.addr, KeyPrefix: "backupd:", TLS: true, TLSCAFile: tt.caFile,
			}}}
			var expected []string // the failures the start may log
			if tt.wantLog != "" {
				expected = []string{tt.wantLog, "not marked yet"}
			}
			log, failures := startFailures(t, cfg, tt.wantError, expected...)
			for _, line := range failures {
				t.Errorf("the start logged a failure: %s", line)
			}
			if tt.wantLog != "" && !strings.Contains(log, tt.wantLog) {
				t.Errorf("the start's log lacks %q:\n%s", tt.wantLog, log)
			}
		})
	}
}

// startFailures starts the shared state of cfg with its log captured,
// closes what it started, and fails t unless the start's error names each
// of wantError, or there is none when wantError is nil. It returns the
// log, and the WARN and ERROR lines of a start taken that hold none of
// expected.
func startFailures(t *testing.T, cfg *config.Config, wantError []string, expected ...string) (log string, unexpected []string) {
	t.Helper()
	var b strings.Builder
	state, err := wiring.NewState(context.Background(), cfg, metrics.New(), slog.New(slog.NewTextHandler(&b, nil)))
	if err == nil {
		state.Close()
	}
	if (err != nil) != (wantError != nil) {
		t.Fatalf("NewState = %v; want an error: %v", err, wantError != nil)
	}
	for _, w := range wantError {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("NewState = %v; want it to name %q", err, w)
		}
	}
	if err != nil {
		return b.String(), nil
	}
	for line := range strings.Lines(b.String()) {
		failure := strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")
		if failure && !slices.ContainsFunc(expected, func(e string) bool { return strings.Contains(line, e) }) {
			unexpected = append(unexpected, line)
		}
	}
	return b.String(), unexpected
}

// TestPrintError: each problem of an error that joins several is its own
// line with backupd's prefix, and no line is blank.
func TestPrintError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"one line", errors.New("give exactly one of --config FILE or --sandbox"),
			"backupd: give exactly one of --config FILE or --sandbox\n"},
		{"every problem of a config", errors.Join(errors.New(`accounts[0].id: must be exactly 12 digits; got "12345"`), errors.New("max_wait: must be more than 0")),
			"backupd: accounts[0].id: must be exactly 12 digits; got \"12345\"\nbackupd: max_wait: must be more than 0\n"},
		{"a trailing newline", errors.New("unreadable\n"), "backupd: unreadable\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			printError(&out, tt.err)
			if out.String() != tt.want {
				t.Errorf("printed %q; want %q", out.String(), tt.want)
			}
		})
	}
}

// TestEndAtOnceDoesNotWaitOnStderr: the second signal's line never holds
// the exit up, though stderr be a pipe nobody reads; a stderr that takes
// it gets it.
func TestEndAtOnceDoesNotWaitOnStderr(t *testing.T) {
	unread := blockedWriter(make(chan struct{}))
	defer close(unread)
	for _, tt := range []struct {
		name   string
		stderr io.Writer
	}{
		{"a pipe nobody reads", unread},
		{"a stderr that takes it", &strings.Builder{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			exited := make(chan int, 1)
			// Ignored from the start: no signal to send, only the exit.
			go endAtOnce(tt.stderr, syscall.SIGTERM, true, func(code int) { exited <- code })
			select {
			case code := <-exited:
				if code != 128+int(syscall.SIGTERM) {
					t.Errorf("exit(%d); want %d", code, 128+int(syscall.SIGTERM))
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the exit waited on stderr")
			}
			if b, ok := tt.stderr.(*strings.Builder); ok && !strings.Contains(b.String(), "backupd: a second SIGTERM during the drain: exiting at once") {
				t.Errorf("stderr got %q", b.String())
			}
		})
	}
}

// blockedWriter is a stderr whose writes wait until it is closed, as
// those to a full pipe wait for a reader.
type blockedWriter chan struct{}

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w
	return len(p), nil
}
