package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsratelimit "github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/awsbase"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/metrics"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/sandbox"
	"github.com/backupd/backupd/tracing"
	"github.com/backupd/backupd/wiring"
)

// Target is one way of making a CreateBackup call.
type Target string

// The targets, in the order Targets returns them.
const (
	// GRPC is backupd over gRPC, logging each request as JSON to io.Discard.
	GRPC Target = "grpc"
	// REST is backupd over REST (HTTP/1.1 JSON through grpc-gateway).
	REST Target = "rest"
	// DirectSDK is aws-sdk-go-v2 calling the fake directly: floor one.
	DirectSDK Target = "direct-sdk"
	// BareGRPC is a unary grpc-go round trip of the same messages to a stub
	// that answers a canned response: floor two.
	BareGRPC Target = "bare-grpc"
	// GRPCNoLog is backupd over gRPC with slog.DiscardHandler, which drops
	// records before formatting them: GRPC minus it is the log line's cost.
	GRPCNoLog Target = "grpc-nolog"
	// BareProxy is the two floors chained, as backupd chains them: a stub
	// BackupService whose handler makes the direct-sdk call and then
	// answers the canned response, on a grpc-go server with backupd's
	// transport settings (static HTTP/2 windows, stream workers, the
	// handler's stack grown first) and nothing else. GRPC minus it is what
	// backupd's own code (interceptor, log, validation, limiter,
	// conversion, metrics) costs, without the cost of the chaining itself.
	BareProxy Target = "bare-proxy"
	// Floors is both floors done by one caller back to back, not chained:
	// a direct-sdk call, then a bare-grpc round trip. Measured apart, each
	// floor runs alone with its code and data hot in the CPU's caches; no
	// request that does both ever gets that. Floors is what doing both
	// costs, so GRPC minus it is backupd's own work with that effect
	// taken out.
	Floors Target = "floors"
)

// Targets returns every target, a fresh slice the caller may change.
func Targets() []Target {
	return []Target{GRPC, REST, DirectSDK, BareGRPC, GRPCNoLog, BareProxy, Floors}
}

// Account and Table are what every call backs up: a demo account of the
// sandbox and one of its tables.
const (
	Account = "111111111111"
	Table   = "Orders"
)

// Options configures a Stack.
type Options struct {
	// CreateBackupRate is the per-second CreateBackup rate of each account
	// and region. Zero means unlimited: the limiter takes its lock and
	// admits every call at once (rate.Inf), so its cost is measured but it
	// never makes a call wait. A finite rate cannot promise that: calls are
	// spaced evenly (burst 1), so two that arrive closer than 1/rate apart
	// wait, however low the average rate.
	CreateBackupRate float64
	// FakeURL, when set, is a fake already running in another process
	// (the one `backupd --sandbox` serves; its start-up line names it as
	// fake_endpoint), used instead of one in this process. Its counters are
	// then out of sight: see [Stack.External].
	FakeURL string
	// Tracing, when set, has backupd's targets (grpc, grpc-nolog, rest)
	// trace every call, as backupd does with an OTLP endpoint in its
	// environment; the floors are not traced.
	Tracing *tracing.Tracing
}

// Stack is the sandbox fake and backupd wired to it, as `backupd --sandbox`
// wires them, all on loopback listeners in this process, plus the clients of
// every Target. Its calls are safe for concurrent use.
type Stack struct {
	// Fake is the sandbox: STS and DynamoDB. With Options.FakeURL it only
	// lends its (constant) operator credentials; the fake called runs
	// elsewhere.
	Fake *sandbox.Fake
	// External reports that the fake runs in another process, so that its
	// AssumeRole calls and accepted connections are not counted here.
	External bool
	// GRPCAddr, HTTPURL and BareAddr are where backupd's gRPC and REST
	// listeners and the bare gRPC stub listen.
	GRPCAddr string
	HTTPURL  string
	BareAddr string

	// GRPCResponseBytes and RESTResponseBytes are the sizes of one answer
	// as it travels: protobuf on gRPC (and from the bare stub), JSON on REST.
	GRPCResponseBytes int
	RESTResponseBytes int

	grpcClient  backupv1.BackupServiceClient
	quietClient backupv1.BackupServiceClient
	bareClient  backupv1.BackupServiceClient
	proxyClient backupv1.BackupServiceClient
	restClient  *http.Client
	restURL     string
	direct      *dynamodb.Client

	grpcReq   *backupv1.CreateBackupRequest
	directIn  *dynamodb.CreateBackupInput
	restBody  []byte
	restHdr   http.Header
	waits     atomic.Int64
	metrics   *metrics.Metrics
	fakeConns atomic.Int64
	closers   []func()
	callFuncs map[Target]func(context.Context) error
	requestID atomic.Int64 // the last request_id CallWithRequestID sent
}

// restBody is CreateBackupRequest as REST sends it: the account and table
// are in the path.
const restBody = `{"backupName":"bench"}`

// Start builds the stack and makes one call of every target, so that
// credentials are cached and connections are open when it returns. Close
// releases it.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.CreateBackupRate == 0 {
		opts.CreateBackupRate = math.Inf(1)
	}
	s := &Stack{
		grpcReq:  &backupv1.CreateBackupRequest{AccountId: Account, TableName: Table, BackupName: "bench"},
		directIn: &dynamodb.CreateBackupInput{TableName: aws.String(Table), BackupName: aws.String("bench")},
		restBody: []byte(restBody),
		restHdr:  http.Header{"Content-Type": {"application/json"}},
		metrics:  metrics.New(),
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	demo := sandbox.DemoAccounts()
	fakeURL := s.startFake(demo, opts.FakeURL)
	cfg := sandboxConfig(demo, opts.CreateBackupRate)
	awsCfg := aws.Config{
		Region:       cfg.DefaultRegion,
		Credentials:  credentials.StaticCredentialsProvider{Value: s.Fake.BaseCredentials()},
		BaseEndpoint: aws.String(fakeURL),
	}
	// direct-sdk uses the same pooled HTTP client as backupd.
	awsCfg.HTTPClient = awsbase.PooledHTTPClient(awsCfg.HTTPClient)
	if err := s.startBackupd(ctx, cfg, awsCfg, opts.Tracing); err != nil {
		return nil, err
	}
	s.direct = newDirectClient(awsCfg)
	if err := s.startFloors(ctx); err != nil {
		return nil, err
	}
	if err := s.warmUp(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// startFake serves the fake as runSandbox serves it, unless one runs at
// external, and returns its URL.
func (s *Stack) startFake(demo []sandbox.Account, external string) string {
	s.Fake = sandbox.New(sandbox.Options{Accounts: demo})
	s.External = external != ""
	if s.External {
		return external
	}
	fakeSrv := httptest.NewUnstartedServer(s.Fake)
	fakeSrv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.fakeConns.Add(1)
		}
	}
	fakeSrv.Start()
	s.closers = append(s.closers, fakeSrv.Close)
	return fakeSrv.URL
}

// startBackupd serves backupd as wiring.New wires it for cmd/backupd,
// over gRPC and REST, plus a second backupd wired alike but with a
// logger that drops every record, over gRPC (grpc-nolog), and dials
// both. Both share the limiter, whose waits are counted.
func (s *Stack) startBackupd(ctx context.Context, cfg *config.Config, awsCfg aws.Config, tr *tracing.Tracing) error {
	limiter := ratelimit.NewLocal(wiring.LimiterOptions(cfg, waitCounter{Metrics: s.metrics, waits: &s.waits}))
	// JSON at level info, as cmd/backupd logs by default, to io.Discard:
	// every record is formatted, then dropped.
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := wiring.New(ctx, cfg, wiring.Parts{AWS: awsCfg, Limiter: limiter, Metrics: s.metrics, Logger: logger, Tracing: tr})
	if err != nil {
		return err
	}
	if s.GRPCAddr, err = s.serveGRPC(b.GRPC); err != nil {
		return err
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	httpLis = b.Conns.Listener(httpLis)
	go func() { _ = rest.Serve(b.HTTP, httpLis) }()
	s.closers = append(s.closers, func() { _ = b.HTTP.Close() })
	s.HTTPURL = "http://" + httpLis.Addr().String()
	b.Health.SetReady(true)

	// The two backupds differ by the log line. The quiet one has metrics
	// of its own, as a process has: each registers its gauges once.
	quiet, err := wiring.New(ctx, cfg, wiring.Parts{AWS: awsCfg, Limiter: limiter, Metrics: metrics.New(),
		Logger: slog.New(slog.DiscardHandler), Tracing: tr})
	if err != nil {
		return err
	}
	quietAddr, err := s.serveGRPC(quiet.GRPC)
	if err != nil {
		return err
	}
	quiet.Health.SetReady(true)
	if s.grpcClient, err = s.client(s.GRPCAddr); err != nil {
		return err
	}
	if s.quietClient, err = s.client(quietAddr); err != nil {
		return err
	}
	// The load generator's own transport keeps a connection per caller, so
	// REST figures do not include connection set-up.
	transport := &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	s.closers = append(s.closers, transport.CloseIdleConnections)
	s.restClient = &http.Client{Transport: transport}
	s.restURL = s.HTTPURL + "/v1/accounts/" + Account + "/tables/" + Table + "/backups"
	return nil
}

// startFloors serves the bare stub, which answers what backupd answered,
// on a plain grpc.NewServer(), and the bare proxy, which makes the
// direct-sdk call first, and dials both.
func (s *Stack) startFloors(ctx context.Context) error {
	resp, err := s.grpcClient.CreateBackup(ctx, s.grpcReq)
	if err != nil {
		return fmt.Errorf("warm-up over gRPC: %w", err)
	}
	s.GRPCResponseBytes = proto.Size(resp)
	bare := grpc.NewServer()
	backupv1.RegisterBackupServiceServer(bare, &stub{resp: resp})
	if s.BareAddr, err = s.serveGRPC(bare); err != nil {
		return err
	}
	if s.bareClient, err = s.client(s.BareAddr); err != nil {
		return err
	}
	// backupd's server's settings that bear on speed (server.NewGRPC):
	// with grpc-go's defaults the proxy would pay for bandwidth-delay
	// PINGs and fresh goroutines' stack growth that backupd does not.
	proxy := grpc.NewServer(grpc.StaticStreamWindowSize(1<<20), grpc.StaticConnWindowSize(1<<20),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	callDirect := func(ctx context.Context) error {
		awsbase.GrowStack()
		return s.callDirect(ctx)
	}
	backupv1.RegisterBackupServiceServer(proxy, &stub{resp: resp, before: callDirect})
	proxyAddr, err := s.serveGRPC(proxy)
	if err != nil {
		return err
	}
	s.proxyClient, err = s.client(proxyAddr)
	return err
}

// warmUp makes one call of every target, and measures REST's response.
func (s *Stack) warmUp(ctx context.Context) error {
	s.callFuncs = map[Target]func(context.Context) error{
		GRPC:      func(ctx context.Context) error { return s.callGRPC(ctx, s.grpcClient) },
		GRPCNoLog: func(ctx context.Context) error { return s.callGRPC(ctx, s.quietClient) },
		BareGRPC:  func(ctx context.Context) error { return s.callGRPC(ctx, s.bareClient) },
		BareProxy: func(ctx context.Context) error { return s.callGRPC(ctx, s.proxyClient) },
		REST:      s.callREST,
		DirectSDK: s.callDirect,
		Floors:    s.callFloors,
	}
	for _, t := range Targets() {
		if err := s.callFuncs[t](ctx); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t, err)
		}
	}
	var err error
	s.RESTResponseBytes, err = s.restSize(ctx)
	return err
}

// client dials addr and returns a BackupService client on it.
func (s *Stack) client(addr string) (backupv1.BackupServiceClient, error) {
	conn, err := s.dial(addr)
	if err != nil {
		return nil, err
	}
	return backupv1.NewBackupServiceClient(conn), nil
}

// callFloors makes a direct-sdk call, then a bare-grpc round trip.
func (s *Stack) callFloors(ctx context.Context) error {
	if err := s.callDirect(ctx); err != nil {
		return err
	}
	return s.callGRPC(ctx, s.bareClient)
}

// Call returns the function that makes one CreateBackup call to t, or nil
// for an unknown target.
func (s *Stack) Call(t Target) func(context.Context) error {
	return s.callFuncs[t]
}

// CallEach makes one call of each of calls, in a new random order kept in
// perm (a permutation of their indexes, shuffled in place), and tells
// record how long each took: the targets taking turns call by call, as
// loadgen and BenchmarkCreateBackupByCall take them.
func CallEach(ctx context.Context, calls []func(context.Context) error, perm []int, record func(i int, took time.Duration, err error)) {
	rand.Shuffle(len(perm), func(a, b int) { perm[a], perm[b] = perm[b], perm[a] })
	for _, i := range perm {
		start := time.Now()
		err := calls[i](ctx)
		record(i, time.Since(start), err)
	}
}

// LimiterWaits counts the calls that backupd's rate limiter made wait for
// their turn since Start. It stays zero while the stack sends fewer calls
// than the configured rate, evenly enough.
func (s *Stack) LimiterWaits() int64 {
	return s.waits.Load()
}

// FakeConns counts the connections the fake has accepted since Start: its
// clients (backupd's and direct-sdk's) open new ones when their idle pools
// are too small for the concurrency. It stays 0 when the fake is External.
func (s *Stack) FakeConns() int64 {
	return s.fakeConns.Load()
}

// Prune deletes every backup in Account's default region, through the
// direct-sdk client, and returns how many it deleted. The fake keeps every
// backup it creates, so without pruning its heap grows through a run, the
// garbage collector runs less and less often, and whichever target is
// measured later looks cheaper. Prune before each measurement, untimed.
func (s *Stack) Prune(ctx context.Context) (int, error) {
	deleted := 0
	for {
		page, err := s.direct.ListBackups(ctx, &dynamodb.ListBackupsInput{})
		if err != nil {
			return deleted, fmt.Errorf("prune: %w", err)
		}
		if len(page.BackupSummaries) == 0 {
			return deleted, nil
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, b := range page.BackupSummaries {
			g.Go(func() error {
				_, err := s.direct.DeleteBackup(gctx, &dynamodb.DeleteBackupInput{BackupArn: b.BackupArn})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return deleted, fmt.Errorf("prune: %w", err)
		}
		deleted += len(page.BackupSummaries)
	}
}

// Close stops every server and client, newest first.
func (s *Stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// CallWithRequestID makes one CreateBackup call to backupd over gRPC, as
// the GRPC target does, with a request_id not sent before, as a caller
// that makes its calls safe to retry sends them: the in-process request_id
// store keeps each result, and the call runs detached from its handler,
// so a caller that gives up does not lose its outcome. GRPC minus it is
// what idempotency costs.
func (s *Stack) CallWithRequestID(ctx context.Context) error {
	req := &backupv1.CreateBackupRequest{AccountId: Account, TableName: Table, BackupName: "bench",
		RequestId: "bench-" + strconv.FormatInt(s.requestID.Add(1), 10)}
	_, err := s.grpcClient.CreateBackup(ctx, req)
	return err
}

func (s *Stack) callGRPC(ctx context.Context, c backupv1.BackupServiceClient) error {
	_, err := c.CreateBackup(ctx, s.grpcReq)
	return err
}

func (s *Stack) callDirect(ctx context.Context) error {
	_, err := s.direct.CreateBackup(ctx, s.directIn)
	return err
}

func (s *Stack) callREST(ctx context.Context) error {
	resp, err := s.postREST(ctx)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (s *Stack) restSize(ctx context.Context) (int, error) {
	resp, err := s.postREST(ctx)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return len(body), err
}

func (s *Stack) postREST(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.restURL, bytes.NewReader(s.restBody))
	if err != nil {
		return nil, err
	}
	req.Header = s.restHdr // only read by the transport
	resp, err := s.restClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("REST status %d: %s", resp.StatusCode, msg)
	}
	return resp, nil
}

// serveGRPC serves srv on a loopback port until Close.
func (s *Stack) serveGRPC(srv *grpc.Server) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("gRPC listener: %w", err)
	}
	go func() { _ = srv.Serve(lis) }()
	s.closers = append(s.closers, srv.Stop)
	return lis.Addr().String(), nil
}

// dial connects to a loopback gRPC listener, as a plain grpc-go client does.
func (s *Stack) dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s.closers = append(s.closers, func() { _ = conn.Close() })
	return conn, nil
}

// waitCounter passes the limiter's decisions on to the metrics and counts
// the calls it made wait.
type waitCounter struct {
	*metrics.Metrics
	waits *atomic.Int64
}

func (w waitCounter) ObserveLimit(account, region, operation, decision string) {
	if decision == ratelimit.Waited {
		w.waits.Add(1)
	}
	w.Metrics.ObserveLimit(account, region, operation, decision)
}

func newSTSClient(awsCfg aws.Config) *sts.Client {
	return sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.RateLimiter = awsratelimit.None })
	})
}

// newDirectClient is a DynamoDB client of the demo role in Account, built
// from the same base configuration and with the same retryer as backupd's,
// with none of backupd's middleware.
func newDirectClient(awsCfg aws.Config) *dynamodb.Client {
	assume := stscreds.NewAssumeRoleProvider(newSTSClient(awsCfg), roleARN(Account), func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "bench-direct"
	})
	return dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.Credentials = aws.NewCredentialsCache(assume)
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 5
			so.RateLimiter = awsratelimit.None
		})
	})
}

// sandboxConfig is the accounts of sandbox.DemoConfig, the configuration
// of `backupd --sandbox`, with the CreateBackup rate raised, a JSON log,
// and no callers.
func sandboxConfig(demo []sandbox.Account, createRate float64) *config.Config {
	cfg := &config.Config{Log: config.Log{Format: "json"}}
	for _, a := range demo {
		cfg.Accounts = append(cfg.Accounts, config.Account{
			ID:            a.ID,
			RoleARN:       roleARN(a.ID),
			ExternalID:    a.ExternalID,
			DefaultRegion: a.Region,
			Limits:        config.Limits{CreateBackup: new(createRate)},
		})
	}
	cfg.ApplyDefaults()
	return cfg
}

func roleARN(account string) string {
	return "arn:aws:iam::" + account + ":role/backupd-sandbox"
}

// stub is the BackupService of the bare floors: it answers every
// CreateBackup with the same response, after calling before if set.
type stub struct {
	backupv1.UnimplementedBackupServiceServer
	resp   *backupv1.CreateBackupResponse
	before func(context.Context) error
}

func (s *stub) CreateBackup(ctx context.Context, _ *backupv1.CreateBackupRequest) (*backupv1.CreateBackupResponse, error) {
	if s.before != nil {
		if err := s.before(ctx); err != nil {
			return nil, err
		}
	}
	return s.resp, nil
}

// ParseTarget accepts a target's name, or "direct" and "bare" for short.
func ParseTarget(name string) (Target, error) {
	switch name {
	case "direct":
		return DirectSDK, nil
	case "bare":
		return BareGRPC, nil
	}
	for _, t := range Targets() {
		if string(t) == name {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown target %q; want one of grpc, rest, direct, bare, grpc-nolog, bare-proxy, floors", name)
}
