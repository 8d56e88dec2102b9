// Command backupd serves backup.v1.BackupService over gRPC and REST.
//
//	backupd --config FILE   # production: accounts and roles from FILE
//	backupd --sandbox       # no AWS account needed: an in-process fake
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/logcap"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/sandbox"
	"github.com/backupd/backupd/server"
	"github.com/backupd/backupd/sharedstate"
	"github.com/backupd/backupd/tracing"
	"github.com/backupd/backupd/wiring"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed, and asking for it is no failure
	}
	if err != nil {
		if !errors.As(err, new(loggedError)) {
			printError(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// printError writes err with each of its lines prefixed, so that every
// problem of a configuration refused at start reads as backupd's when
// stderr is mixed with other output.
func printError(w io.Writer, err error) {
	for line := range strings.Lines(err.Error()) {
		fmt.Fprintln(w, "backupd:", strings.TrimSuffix(line, "\n"))
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := watchSignals(ctx, stderr)
	defer stop()
	switch {
	case f.check:
		return checkConfig(f.configPath, f.listen, stderr)
	case f.sandbox:
		return runSandbox(ctx, f.listen, stderr)
	}
	return runConfig(ctx, f.configPath, f.listen, stderr)
}

// checkConfig reads the configuration and the environment's tracing
// variables as a start would, reports their warnings, and serves nothing:
// for a deployment's pipeline to refuse a file before it reaches a
// replica.
func checkConfig(path string, listen config.Listen, stderr io.Writer) error {
	cfg, err := loadStart(path, listen)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "backupd: warning: %s\n", w)
	}
	fmt.Fprintf(stderr, "backupd: %s is a configuration backupd accepts (accounts: %d, callers: %d); "+
		"Redis, AWS and an OTLP collector are not contacted: that is for the start\n", path, len(cfg.Accounts), len(cfg.Callers))
	return nil
}

// flags are backupd's command line.
type flags struct {
	configPath string
	sandbox    bool
	check      bool          // check the configuration, and serve nothing
	listen     config.Listen // overrides of the listeners' addresses
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("backupd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configPath, "config", "", "path to the YAML configuration")
	fs.BoolVar(&f.sandbox, "sandbox", false, "run against an in-process fake of STS and DynamoDB, on loopback, with demo accounts")
	fs.StringVar(&f.listen.GRPC, "grpc-listen", "", "override the gRPC listener address (host:port)")
	fs.StringVar(&f.listen.HTTP, "http-listen", "", "override the HTTP listener address (host:port)")
	fs.BoolVar(&f.check, "check-config", false, "with --config: check the configuration, report its problems or warnings, and exit without serving")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() > 0 {
		// The flags after it would be left unread without a word.
		return flags{}, fmt.Errorf("unexpected argument %q: backupd takes only flags (see -h)", fs.Arg(0))
	}
	if (f.configPath == "") == !f.sandbox {
		return flags{}, errors.New("give exactly one of --config FILE or --sandbox")
	}
	if f.check && f.sandbox {
		return flags{}, errors.New("--check-config checks a --config FILE; the sandbox's configuration is built in")
	}
	return f, nil
}

// watchSignals returns a context that ends at the first SIGTERM or SIGINT,
// which starts the drain; a second one ends the process at once, cutting
// the drain short. Both are caught from here on, so a second signal sent
// as soon as the drain shows (/readyz 503) is never swallowed: the watcher
// ends only after stop's signal.Stop, from when a signal has its default
// action again. The second signal is told of on stderr before the
// process ends, so that an exit with requests cut off is never silent.
func watchSignals(ctx context.Context, stderr io.Writer) (drainCtx context.Context, stop func()) {
	ignored := map[os.Signal]bool{syscall.SIGTERM: signal.Ignored(syscall.SIGTERM), syscall.SIGINT: signal.Ignored(syscall.SIGINT)}
	returned := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	drainCtx, drain := context.WithCancel(context.WithoutCancel(ctx))
	go onSignals(ctx, stderr, returned, sigs, ignored, drain)
	return drainCtx, func() {
		drain()
		signal.Stop(sigs)
		close(returned)
	}
}

// loadStart reads the configuration at path and the environment's
// tracing variables, and reports the problems of both together, as a
// start and --check-config alike refuse them.
func loadStart(path string, listen config.Listen) (*config.Config, error) {
	cfg, err := loadConfig(path, listen)
	if err := errors.Join(err, tracing.CheckEnv()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// runConfig serves the configuration at path.
func runConfig(ctx context.Context, path string, listen config.Listen, stderr io.Writer) error {
	cfg, err := loadStart(path, listen)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	caps := new(logcap.Group)
	defer caps.Flush(logger)
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.DefaultRegion), awsconfig.WithLogger(awsbase.SDKLogger(logger, caps)))
	if err != nil {
		return logStartFailure(logger, fmt.Errorf("load AWS configuration: %w", awsbase.WithoutFileSecrets(err)))
	}
	// In the background, not fatal: the chain may take seconds to give up
	// (a metadata service that does not answer), health probes should
	// find the process meanwhile, and a role may come later.
	go func() {
		if err := awsbase.CheckCredentials(ctx, awsCfg); err != nil && ctx.Err() == nil {
			logger.Error("no AWS credentials for backupd itself: every request fails (STS_UNAVAILABLE) until the SDK's default chain finds some",
				slog.String("error", redact.Error(err)))
		}
	}()
	return logStartFailure(logger, serve(ctx, cfg, awsCfg, logger, caps))
}

// loadConfig loads the configuration at path with the listener flags'
// addresses in place of its own, reporting the flags' problems by their
// names beside the file's.
func loadConfig(path string, listen config.Listen) (*config.Config, error) {
	listen, flagErr := checkListenFlags(listen)
	cfg, err := config.Load(path, listen.Override)
	if err := errors.Join(flagErr, err); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkListenFlags reports the listener flags' values that are not
// addresses, by the flags' names, and returns the flags without them:
// the configuration's own addresses are then checked, and its other
// problems reported, beside them.
func checkListenFlags(l config.Listen) (config.Listen, error) {
	var errs []error
	for _, f := range []struct {
		name string
		addr *string
	}{{"--grpc-listen", &l.GRPC}, {"--http-listen", &l.HTTP}} {
		if *f.addr == "" {
			continue
		}
		if err := config.CheckListenAddr(*f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			*f.addr = ""
		}
	}
	return l, errors.Join(errs...)
}

// runSandbox serves the fake on loopback and points the real SDK path at it.
func runSandbox(ctx context.Context, flagListen config.Listen, stderr io.Writer) error {
	demo := sandbox.DemoAccounts()
	fake := sandbox.New(sandbox.Options{Accounts: demo})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sandbox listener: %w", err)
	}
	fakeSrv := &http.Server{Handler: fake, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = fakeSrv.Serve(lis) }()
	defer fakeSrv.Close()

	cfg := sandbox.DemoConfig(demo)
	flagListen, flagErr := checkListenFlags(flagListen)
	flagListen.Override(cfg)
	if err := errors.Join(flagErr, cfg.Validate(), sandbox.LoopbackOnly(cfg.Listen)); err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	endpoint := "http://" + lis.Addr().String()
	logger.Warn("SANDBOX MODE: backupd talks to an in-process fake of STS and DynamoDB, not to AWS; "+
		"nothing here is real or persistent. Listeners are bound to loopback.",
		slog.String("fake_endpoint", endpoint), slog.String("grpc", cfg.Listen.GRPC), slog.String("http", cfg.Listen.HTTP),
		slog.String("accounts", demoIDs(demo)),
		slog.String("callers", "no token needed; a token that is sent is checked: demo callers sandbox-admin and sandbox-reader, their tokens in the README"))
	awsCfg := aws.Config{
		Region:       cfg.DefaultRegion,
		Credentials:  credentials.StaticCredentialsProvider{Value: fake.BaseCredentials()},
		BaseEndpoint: aws.String(endpoint),
	}
	caps := new(logcap.Group)
	defer caps.Flush(logger)
	return logStartFailure(logger, serve(ctx, cfg, awsCfg, logger, caps))
}

// logStartFailure writes a failure to start (a listener's port in use, a
// TLS key that does not load) to the log once there is one, so that it
// reaches whoever reads the log, in its format, rather than only as a
// plain line beside it.
func logStartFailure(logger *slog.Logger, err error) error {
	if err == nil || errors.As(err, new(loggedError)) {
		return err
	}
	logger.Error("backupd could not start", slog.String("error", redact.Error(err)))
	return loggedError{err}
}

// demoIDs lists the sandbox's accounts for its banner.
func demoIDs(demo []sandbox.Account) string {
	ids := make([]string, len(demo))
	for i, a := range demo {
		ids[i] = a.ID
	}
	return strings.Join(ids, ", ")
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	level, _ := c.SlogLevel() // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// onSignals starts the drain at the first signal, or when parent ends,
// and ends the process at the second with the signal's default action, so
// that a supervisor sees it killed by the signal. A signal ignored when
// backupd started (SIGINT, for a job a script started in the background)
// has no action to go back to: backupd then exits with the status a shell
// gives a process the signal ended. It returns when run has returned.
func onSignals(parent context.Context, stderr io.Writer, returned <-chan struct{}, sigs <-chan os.Signal, ignored map[os.Signal]bool, drain func()) {
	select {
	case <-sigs:
	case <-parent.Done():
	case <-returned:
		return
	}
	drain()
	var sig os.Signal
	select {
	case sig = <-sigs:
	case <-returned:
		return
	}
	endAtOnce(stderr, sig, ignored[sig], os.Exit)
}

// maxLastWords bounds the wait for the second signal's line: stderr may
// be a pipe nobody reads (a stalled log shipper, often what held the
// drain up), and the exit must not wait on it.
const maxLastWords = 100 * time.Millisecond

// endAtOnce ends the process at a second signal, after saying so on
// stderr for at most maxLastWords: by the signal's default action, or,
// for one ignored when backupd started, by exit with the status a shell
// gives a process the signal ended.
func endAtOnce(stderr io.Writer, sig os.Signal, ignored bool, exit func(int)) {
	said := make(chan struct{})
	go func() {
		defer close(said)
		fmt.Fprintf(stderr, "backupd: a second %s during the drain: exiting at once; requests still in flight are cut off\n", signalName(sig))
	}()
	select {
	case <-said:
	case <-time.After(maxLastWords):
	}
	code := 1
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s)
	}
	if !ignored {
		signal.Reset(sig)
		if self, err := os.FindProcess(os.Getpid()); err == nil && self.Signal(sig) == nil {
			time.Sleep(time.Second) // the signal ends the process first
		}
	}
	exit(code)
}

// serve wires the parts and runs both listeners until ctx ends, then
// drains. caps makes the Cappers of the lines a fault would repeat; its
// caller flushes it once serve has returned (the lines the log left out
// of a burst, failed TLS handshakes, Redis, tracing or SDK errors, since
// the last of their kind are counted last, once what writes them has
// stopped: the servers, the Redis clients and tracing's last export).
func serve(ctx context.Context, cfg *config.Config, awsCfg aws.Config, logger *slog.Logger, caps *logcap.Group) error {
	defer ignoreHangUps(logger)()
	// go-redis keeps its logger in a package variable: one for the whole
	// process, not one per client. So it is set here, once, before any
	// client exists, and not where the Redis client is built.
	redis.SetLogger(sharedstate.NewRedisLogger(logger, caps))
	m := metrics.New()
	shared, err := wiring.NewState(ctx, cfg, m, logger)
	if err != nil {
		return err
	}
	defer shared.Close()
	tr, err := startTracing(ctx, logger, caps)
	if err != nil {
		return err
	}
	if tr != nil {
		defer stopTracing(tr, logger)
	}
	b, err := wiring.New(ctx, cfg, wiring.Parts{AWS: awsCfg, Limiter: shared.Limiter, Results: shared.Results,
		Metrics: m, Logger: logger, Tracing: tr, LogCaps: caps})
	if err != nil {
		return err
	}
	defer b.Conns.Flush()
	grpcLis, httpLis, err := listen(cfg.Listen)
	if err != nil {
		return err
	}
	httpLis = b.Conns.Listener(httpLis)
	// Ready before the shutdown can start: a signal that came during
	// start-up then finds it ready and turns it off, rather than being
	// followed by a SetReady(true) that would answer 200 on /readyz
	// through the drain.
	b.Health.SetReady(true)
	logger.Info("backupd serving", slog.String("grpc", grpcLis.Addr().String()), slog.String("http", httpLis.Addr().String()),
		slog.Bool("tls", b.HTTP.TLSConfig != nil), slog.Int("accounts", len(cfg.Accounts)))
	err = runServers(ctx, grpcLis, httpLis, server.Shutdown{Health: b.Health, HTTP: b.HTTP, GRPC: b.GRPC, Service: b.Service,
		Logger: logger, DrainDelay: cfg.DrainDelay, Timeout: cfg.ShutdownTimeout})
	if err != nil {
		logger.Error("backupd stopped", slog.String("error", redact.Error(err)))
		return loggedError{err}
	}
	return nil
}

// ignoreHangUps keeps a SIGHUP, whose default ends the process at once
// with no drain, from ending it: an operator may send one expecting a
// reload, but backupd reloads its TLS certificates by itself and reads
// its configuration only at start. Each one is logged. The returned func
// stops the watch.
func ignoreHangUps(logger *slog.Logger) (stop func()) {
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hups:
				logger.Warn("SIGHUP ignored: backupd reloads its TLS certificates by itself, and reads its configuration only at start; " +
					"to apply a changed configuration, restart it (SIGTERM drains)")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hups)
		close(done)
	}
}

// startTracing starts sending spans when the environment names an OTLP
// endpoint (package tracing), and returns nil when it names none; caps
// makes the Capper of its failures' lines.
func startTracing(ctx context.Context, logger *slog.Logger, caps *logcap.Group) (*tracing.Tracing, error) {
	tr, err := tracing.FromEnv(ctx)
	if err != nil || tr == nil {
		return nil, err
	}
	// OpenTelemetry reports a failed export to a handler it keeps in a
	// package variable, as go-redis keeps its logger: set once, here.
	otel.SetErrorHandler(tracing.ErrorHandler(logger, caps))
	logger.Info("tracing: spans go to an OpenTelemetry collector", slog.String("endpoint", tr.LoggedEndpoint()),
		slog.String("protocol", tracing.Protocol))
	return tr, nil
}

// stopTracing sends the spans still held, for at most tracingFlushTimeout.
func stopTracing(tr *tracing.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		logger.Warn("tracing: spans not sent at exit", slog.String("error", redact.Error(err)))
	}
}

// tracingFlushTimeout bounds how long the exit waits for the collector.
const tracingFlushTimeout = 5 * time.Second

// listen opens both listeners, or neither.
func listen(l config.Listen) (grpcLis, httpLis net.Listener, err error) {
	grpcLis, err = net.Listen("tcp", l.GRPC)
	if err != nil {
		return nil, nil, fmt.Errorf("gRPC listener: %w", err)
	}
	httpLis, err = net.Listen("tcp", l.HTTP)
	if err != nil {
		grpcLis.Close()
		return nil, nil, fmt.Errorf("HTTP listener: %w", err)
	}
	return grpcLis, httpLis, nil
}

// runServers serves both listeners until ctx ends (a signal) or one of
// them fails, then runs the shutdown.
func runServers(ctx context.Context, grpcLis, httpLis net.Listener, shutdown server.Shutdown) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// Stopped already when a signal came during start-up.
		if err := shutdown.GRPC.Serve(grpcLis); !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		if err := rest.Serve(shutdown.HTTP, httpLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		// A signal ended ctx; a listener that failed ended only gctx,
		// and then there is no one to give the drain delay to.
		return shutdown.Run(ctx.Err() != nil)
	})
	return g.Wait()
}

// loggedError is a failure of a running backupd, already in its log: main
// exits 1 without writing it again, in another format, beside the log.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// signalName names the two signals backupd drains on as operators write
// them; syscall's names ("terminated", "interrupt") read as prose.
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}
