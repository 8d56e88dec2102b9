package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/connlimit"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/rpcerror"
	"github.com/backupd/backupd/testenv"
)

// waiter is a Shutdown.Service that records when it was waited for, and
// whether its context had ended by then.
type waiter struct {
	block  bool
	called chan struct{}
	late   bool
}

func (w *waiter) Wait(ctx context.Context) error {
	w.late = ctx.Err() != nil
	close(w.called)
	if w.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// shutdownFixture serves a gRPC server whose every method blocks until
// release is closed or the call ends, and an HTTP server, both on loopback.
type shutdownFixture struct {
	s       Shutdown
	conn    *grpc.ClientConn
	release chan struct{}
	held    chan struct{} // a call reached the handler
	logs    *testenv.Buffer
}

func newShutdownFixture(t *testing.T) *shutdownFixture {
	t.Helper()
	f := &shutdownFixture{release: make(chan struct{}), held: make(chan struct{}, 1), logs: &testenv.Buffer{}}
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
	})
	// Like backupd's handlers, the held call ends when its context does:
	// GracefulStop waits for the handlers even after Stop. One stream
	// worker, as NewGRPC has per CPU: a Watch or held call takes it, and
	// the calls beside it run on goroutines of their own.
	health := NewHealth()
	grpcSrv := grpc.NewServer(grpc.NumStreamWorkers(1), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
			return err
		}
		health.calls.Add(1) // as NewGRPC's interceptor counts a call
		defer health.calls.Add(-1)
		f.held <- struct{}{}
		select {
		case <-f.release:
			return ss.SendMsg(&emptypb.Empty{})
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
	}))
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	health.register(grpcSrv, nil)
	go func() { _ = grpcSrv.Serve(grpcLis) }()
	t.Cleanup(grpcSrv.Stop)
	httpSrv := rest.NewServer(http.NotFoundHandler(), time.Minute, nil, nil, nil)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rest.Serve(httpSrv, httpLis) }()
	t.Cleanup(func() { httpSrv.Close() })
	f.conn, err = grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.conn.Close() })
	health.SetReady(true)
	f.s = Shutdown{Health: health, HTTP: httpSrv, GRPC: grpcSrv, Service: &waiter{called: make(chan struct{})},
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), DrainDelay: 50 * time.Millisecond, Timeout: 5 * time.Second}
	return f
}

// messages are the log's msg values, in order.
func (f *shutdownFixture) messages() []string {
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var r struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &r); err == nil {
			msgs = append(msgs, r.Msg)
		}
	}
	return msgs
}

// block starts a gRPC call that the server holds until f.release, and
// returns once the server's handler has it.
func (f *shutdownFixture) block(t *testing.T) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		errc <- f.conn.Invoke(context.Background(), "/test.Hold/Hold", &emptypb.Empty{}, &emptypb.Empty{})
	}()
	select {
	case <-f.held:
	case err := <-errc:
		t.Fatalf("the held call ended at once: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the held call did not reach the server")
	}
	return errc
}

func TestShutdownSignalledDrainsInOrder(t *testing.T) {
	f := newShutdownFixture(t)
	held := f.block(t)
	w := f.s.Service.(*waiter)
	done := make(chan error, 1)
	go func() { done <- f.s.Run(true) }()

	for deadline := time.Now().Add(2 * time.Second); f.s.Health.Ready(context.Background()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still ready 2 s into the shutdown")
		}
	}
	select {
	case <-w.called:
		t.Fatal("Service.Wait was called while a request was in flight")
	case err := <-done:
		t.Fatalf("Run returned %v while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.release)
	if err := <-held; err != nil {
		t.Errorf("the in-flight call: %v; want it to finish", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.s.Health.cutOff.Err() != nil {
		t.Error("calls were marked cut off by a shutdown that did not time out")
	}
	want := []string{"shutting down: not ready; serving on for the drain delay", "shutting down: draining in-flight requests", "stopped"}
	if got := f.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log messages %q; want %q", got, want)
	}
}

// Not signalled (a listener failed), there is no drain delay.
func TestShutdownNotSignalledSkipsTheDrainDelay(t *testing.T) {
	f := newShutdownFixture(t)
	f.s.DrainDelay = time.Hour
	if err := f.s.Run(false); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"shutting down: draining in-flight requests", "stopped"}
	if got := f.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log messages %q; want %q", got, want)
	}
}

func TestShutdownTimesOut(t *testing.T) {
	t.Run("in-flight request", func(t *testing.T) {
		f := newShutdownFixture(t)
		held := f.block(t)
		f.s.Timeout = 100 * time.Millisecond
		err := f.s.Run(true)
		if err == nil || err.Error() != "shutdown timed out after shutdown_timeout (100ms); in-flight requests were cut off: "+
			"a shutdown_timeout above upstream_timeout, the longest a request runs, lets them finish" {
			t.Errorf("Run = %v; want the cut-off error", err)
		}
		if err := <-held; err == nil {
			t.Error("the held call succeeded; want it cut off by Stop")
		}
		if f.s.Health.cutOff.Err() == nil {
			t.Error("the calls cut off were not marked so, for their log lines")
		}
		// Waited for with the time up, so that it names the request_id
		// runs it leaves.
		select {
		case <-f.s.Service.(*waiter).called:
			if !f.s.Service.(*waiter).late {
				t.Error("Service.Wait was given time after the servers timed out")
			}
		default:
			t.Error("Service.Wait was not called after the servers timed out")
		}
	})
	t.Run("request_id runs", func(t *testing.T) {
		f := newShutdownFixture(t)
		f.s.Service = &waiter{block: true, called: make(chan struct{})}
		f.s.Timeout = 100 * time.Millisecond
		err := f.s.Run(false)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "shutdown timed out: ") {
			t.Errorf("Run = %v; want shutdown timed out: context deadline exceeded", err)
		}
	})
}

// TestShutdownClosesSilentConnections: a connection that carries no call
// the servers would still serve does not hold the drain: one that has sent
// nothing (a pool's spare, a port probe), a gRPC one whose TLS handshake
// is done or whose HTTP/2 preface has not all arrived, or over HTTP one
// whose request has not all arrived. grpc-go waited for its handshake,
// net/http until it was 5 s old, past the 1 s timeout, which then
// reported calls cut off. A gRPC client that finished its handshake and
// then froze holds the drain until the timeout (grpc-go waits 5 s for
// its answer to the GOAWAY's PING): closed then, it is no request cut
// off, and the shutdown says so.
func TestShutdownClosesSilentConnections(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	cert := files.Certificate(t)
	for _, tt := range []struct {
		name string
		http bool
		// serverTLS serves gRPC over TLS; tls has the client finish its
		// handshake first.
		serverTLS, tls bool
		send           string
		// atTimeout: the connection holds the drain until the timeout.
		atTimeout bool
	}{
		{"grpc", false, false, false, "", false},
		{"grpc, preface begun", false, false, false, http2.ClientPreface[:10], false},
		{"grpc over TLS, handshake begun", false, true, false, "\x16\x03\x01\x00\xff\x01", false},
		{"grpc over TLS, handshake done", false, true, true, "", false},
		{"grpc over TLS, preface begun", false, true, true, http2.ClientPreface, false},
		{"grpc, handshake done, then frozen", false, false, false, http2.ClientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", true},
		{"http", true, false, false, "", false},
		{"http, request begun", true, false, false, "GET / HTTP/1.1\r\nHost: x\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth()
			logs := &testenv.Buffer{}
			// Counts the connections accepted on either listener.
			conns := connlimit.New(connlimit.Limits{Total: 100, PerIP: 100}, nil, slog.New(slog.DiscardHandler))
			opts := Options{Service: &stub{}, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Conns: conns}
			if tt.serverTLS {
				opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			grpcSrv := NewGRPC(opts, h)
			grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = grpcSrv.Serve(grpcLis) }()
			t.Cleanup(grpcSrv.Stop)
			httpSrv := rest.NewServer(http.NotFoundHandler(), time.Minute, nil, nil, nil)
			addr := grpcLis.Addr().String()
			httpLis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = rest.Serve(httpSrv, conns.Listener(httpLis)) }()
			t.Cleanup(func() { _ = httpSrv.Close() })
			if tt.http {
				addr = httpLis.Addr().String()
			}
			silent := dialRaw(t, addr)
			if tt.tls {
				tc := tls.Client(silent, &tls.Config{RootCAs: files.Pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				silent = tc
			}
			if _, err := io.WriteString(silent, tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.atTimeout {
				settingsAcked(t, silent) // the server has read the preface: the handshake is done
			}
			waitOpen(t, conns, 1) // accepted
			h.SetReady(true)
			shutdownLogs := &testenv.Buffer{}
			s := Shutdown{Health: h, HTTP: httpSrv, GRPC: grpcSrv, Service: &waiter{called: make(chan struct{})},
				Logger: slog.New(slog.NewJSONHandler(shutdownLogs, nil)), Timeout: time.Second}
			start := time.Now()
			if err := s.Run(false); err != nil {
				t.Errorf("Run = %v after %s; want nil, nothing in flight", err, time.Since(start).Round(time.Millisecond))
			}
			closedAtTimeout := len(shutdownLogs.Lines("connections that carried no request were still open at the timeout")) == 1
			if closedAtTimeout != tt.atTimeout {
				t.Errorf("closed at the timeout: %v, want %v:\n%s", closedAtTimeout, tt.atTimeout, shutdownLogs)
			}
			// (A gRPC server sends its settings first.)
			_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadAll(silent); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the connection was not closed: %v", err)
			}
			// Closed by backupd, not failed by its client.
			if got := logs.Lines("TLS handshake error"); len(got) > 0 {
				t.Errorf("a connection the drain closed was logged as a failed handshake: %q", got)
			}
		})
	}
}

// A grpc.health.v1 Watch lasts as long as its client keeps it; the
// shutdown tells it NOT_SERVING, then ends it, rather than waiting for it
// until the timeout.
func TestShutdownEndsHealthWatches(t *testing.T) {
	for _, drain := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprintf("drain delay %v", drain), func(t *testing.T) {
			f := newShutdownFixture(t)
			f.s.Timeout, f.s.DrainDelay = 3*time.Second, drain
			health := healthpb.NewHealthClient(f.conn)
			stream, err := health.Watch(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("first Watch answer %v, %v; want SERVING", resp, err)
			}
			done := make(chan error, 1)
			go func() { done <- f.s.Run(true) }()
			if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("Watch answer after the signal %v, %v; want NOT_SERVING", resp, err)
			}
			// Then the end, without NOT_SERVING again.
			if resp, err := stream.Recv(); status.Code(err) != codes.Unavailable || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonShuttingDown {
				t.Errorf("Watch after NOT_SERVING: %v, %v; want its end, UNAVAILABLE SHUTTING_DOWN", resp, err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Error("Run still waiting 2 s after the watch ended")
			}
		})
	}
}

// A Watch that starts once the servers stop taking work is refused at once
// rather than held open.
func TestHealthWatchAfterEndStreams(t *testing.T) {
	f := newShutdownFixture(t)
	f.s.Health.EndStreams()
	stream, err := healthpb.NewHealthClient(f.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonShuttingDown {
				t.Errorf("Watch ended with %v; want UNAVAILABLE SHUTTING_DOWN", err)
			}
			return
		}
	}
}

// Health calls need no token: the service name they name and the Watch
// streams open at once are bounded.
func TestHealthCallsAreBounded(t *testing.T) {
	f := newShutdownFixture(t)
	f.s.Health.watches.setBounds(2, 2)
	health := healthpb.NewHealthClient(f.conn)
	long := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", maxHealthServiceName+1)}
	_, err := health.Check(context.Background(), long)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || rpcerror.ReasonOf(st) != "INVALID_ARGUMENT" || !strings.Contains(fmt.Sprint(st.Details()), `field:"service"`) {
		t.Errorf("Check of a long name: %v, details %v; want InvalidArgument naming service", err, st.Details())
	}
	longWatch, err := health.Watch(context.Background(), long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := longWatch.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Watch of a long name: %v; want InvalidArgument", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		stream, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	stream, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonTooManyWatches {
		t.Errorf("a third watch: %v; want ResourceExhausted %s", err, rpcerror.ReasonTooManyWatches)
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("Check while the watches are full: %v", err)
	}
}

// servedGRPC is NewGRPC's server as servingGRPC serves it.
type servedGRPC struct {
	s    Shutdown // a 10 s timeout, no HTTP traffic
	svc  *waiter  // the Service s waits for
	conn *grpc.ClientConn
	stub *stub        // the BackupService; its entered has room for one
	ic   *interceptor // the server's interceptor, whose state tests poll
}

// servingGRPC serves NewGRPC's server with h on loopback until the test
// ends, logging to logs.
func servingGRPC(t *testing.T, h *Health, logs io.Writer) servedGRPC {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	g := servedGRPC{svc: &waiter{called: make(chan struct{})}, stub: &stub{Entered: make(chan struct{}, 1)}}
	var srv *grpc.Server
	srv, g.ic = newGRPC(Options{Service: g.stub, Logger: logger}, h)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	g.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.conn.Close() })
	g.s = Shutdown{Health: h, HTTP: rest.NewServer(http.NotFoundHandler(), time.Minute, nil, nil, nil), GRPC: srv, Service: g.svc,
		Logger: logger, Timeout: 10 * time.Second}
	return g
}

// waiting is how many calls the interceptor holds until their request
// arrives: calls without a caller token, by their arrival bound, and
// BackupService calls, for the drain.
func (i *interceptor) waiting() int {
	i.awaiting.mu.Lock()
	defer i.awaiting.mu.Unlock()
	return len(i.unvouched) + len(i.awaiting.calls)
}

// waitUntil polls cond until it holds, failing the test if it does not
// within 10 s: what another goroutine or the server does is waited for,
// not slept on, which fails on a loaded machine.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A reflection stream lasts as long as its client keeps it (a gRPC GUI
// keeps one open); the shutdown ends it, rather than waiting for it until
// the timeout, exiting 1 and leaving the request_id runs unwaited for.
// v1alpha's messages are v1's on the wire, so both are spoken with v1's.
func TestShutdownEndsReflectionStreams(t *testing.T) {
	for _, method := range []string{
		reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	} {
		t.Run(method, func(t *testing.T) {
			g := servingGRPC(t, NewHealth(), io.Discard)
			s, svc := g.s, g.svc
			stream, err := g.conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
			if err != nil {
				t.Fatal(err)
			}
			resp := &reflectionpb.ServerReflectionResponse{}
			if err := stream.SendMsg(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
				t.Fatal(err)
			}
			if err := stream.RecvMsg(resp); err != nil || len(resp.GetListServicesResponse().GetService()) == 0 {
				t.Fatalf("reflection round trip: %v, %v", resp, err)
			}
			start := time.Now()
			if err := s.Run(false); err != nil {
				t.Errorf("Run: %v after %s; want the stream ended and nil", err, time.Since(start).Round(time.Millisecond))
			}
			select {
			case <-svc.called:
			default:
				t.Error("the request_id runs were not waited for")
			}
			if err := stream.RecvMsg(resp); status.Code(err) != codes.Unavailable || rpcerror.ReasonOf(status.Convert(err)) != rpcerror.ReasonShuttingDown {
				t.Errorf("the open reflection stream got %v; want UNAVAILABLE SHUTTING_DOWN", err)
			}
		})
	}
}

// TestShutdownEndsSilentCalls: a call opened and left without its request
// would hold the graceful stop until shutdown_timeout cuts every call off
// (a health Check, which takes no token, for its 30 s arrival bound; a
// BackupService call for as long as its caller keeps it). At the stop it
// has drainGrace left for its request, then ends.
func TestShutdownEndsSilentCalls(t *testing.T) {
	for _, method := range []string{healthpb.Health_Check_FullMethodName, backupv1.BackupService_CreateBackup_FullMethodName} {
		t.Run(method, func(t *testing.T) {
			g := servingGRPC(t, NewHealth(), io.Discard)
			s, svc := g.s, g.svc
			stream, err := g.conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
			if err != nil {
				t.Fatal(err)
			}
			// The call's headers reach the server; its request never comes.
			waitUntil(t, "the server holds the call for its request", func() bool { return g.ic.waiting() == 1 })
			start := time.Now()
			if err := s.Run(false); err != nil {
				t.Errorf("Run: %v after %s; want the silent call ended and nil", err, time.Since(start).Round(time.Millisecond))
			}
			if d := time.Since(start); d > drainGrace+2*time.Second {
				t.Errorf("the shutdown took %s; want about %s", d.Round(time.Millisecond), drainGrace)
			}
			select {
			case <-svc.called:
			default:
				t.Error("the request_id runs were not waited for")
			}
			if err := stream.RecvMsg(&healthpb.HealthCheckResponse{}); status.Code(err) != codes.Canceled {
				t.Errorf("the silent call got %v; want it ended, CANCELLED", err)
			}
		})
	}
}

// TestShutdownCutOffIsLogged: a call still in its handler when the
// drain's timeout ends is cut off as the server closes its connection;
// its line says what its caller got, UNAVAILABLE, because the cut off is
// marked before the server closes the connection that cancels the call.
func TestShutdownCutOffIsLogged(t *testing.T) {
	logs := &testenv.Buffer{}
	g := servingGRPC(t, NewHealth(), logs)
	s := g.s
	s.Timeout = 200 * time.Millisecond
	held := make(chan error, 1)
	go func() {
		// Waits in its handler until its context ends (the stub).
		_, err := backupv1.NewBackupServiceClient(g.conn).GetBackup(context.Background(), &backupv1.GetBackupRequest{BackupArn: slowARN})
		held <- err
	}()
	select {
	case <-g.stub.Entered: // in the handler
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach its handler within 10 s")
	}
	if err := s.Run(false); err == nil {
		t.Fatal("Run: nil; want the drain timed out")
	}
	if err := <-held; status.Code(err) != codes.Unavailable {
		t.Errorf("the call cut off got %v; want UNAVAILABLE", err)
	}
	want := []string{`"method":"/backup.v1.BackupService/GetBackup"`, `"level":"WARN"`, `"code":"Unavailable"`, "cut off by shutdown_timeout"}
	for deadline := time.Now().Add(5 * time.Second); len(logs.Lines(want...)) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("want the cut-off call's line with %q; log:\n%s", want, logs.String())
		}
	}
}

// TestShutdownCutOffRESTIsLogged: a REST request cut off by the timeout
// has its log line written before Run returns and backupd exits, though
// its handler takes a while to return once its connection is closed:
// net/http's Close does not wait for handlers.
func TestShutdownCutOffRESTIsLogged(t *testing.T) {
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	h := NewHealth()
	handler, err := rest.NewHandler(context.Background(), rest.Options{Service: &stub{}, Logger: logger}, h, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := rest.NewServer(handler, time.Minute, nil, nil, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rest.Serve(httpSrv, lis) }()
	grpcSrv := grpc.NewServer()
	s := Shutdown{Health: h, HTTP: httpSrv, GRPC: grpcSrv, Service: &waiter{called: make(chan struct{})},
		Logger: logger, Timeout: 200 * time.Millisecond}
	go func() {
		resp, err := http.Get("http://" + lis.Addr().String() + "/v1/backups/" + strings.ReplaceAll(lingeringARN, "/", "%2F"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); h.handling.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach its handler")
		}
	}
	if err := s.Run(false); err == nil {
		t.Fatal("Run: nil; want the drain timed out")
	}
	want := []string{`"method":"/backup.v1.BackupService/GetBackup"`, `"code":"Unavailable"`, "cut off by shutdown_timeout"}
	if len(logs.Lines(want...)) != 1 {
		t.Errorf("when Run returned, no line of the cut-off request with %q; log:\n%s", want, logs.String())
	}
}

// TestUnvouchedStreamsOverTheBoundAreCanceled: over the wire, reflection
// streams that hold their request back take the places of maxUnvouched;
// the next gets CANCELED at once, and a health Check still works once a
// place is given back.
func TestUnvouchedStreamsOverTheBoundAreCanceled(t *testing.T) {
	g := servingGRPC(t, NewHealth(), io.Discard)
	// All from one address: not refused by that address's bound on
	// reflection streams first.
	g.ic.reflecting.setBounds(maxReflections, maxReflections)
	conn := g.conn
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	method := reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName
	held := make([]grpc.ClientStream, maxUnvouched)
	for n := range held {
		s, err := conn.NewStream(ctx, desc, method)
		if err != nil {
			t.Fatal(err)
		}
		held[n] = s
	}
	// Each holds its place once the server has its headers.
	waitUntil(t, fmt.Sprintf("the %d streams hold the places of maxUnvouched", maxUnvouched),
		func() bool { return len(g.ic.unvouched) == maxUnvouched })
	over, err := conn.NewStream(ctx, desc, method)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- over.RecvMsg(&reflectionpb.ServerReflectionResponse{}) }()
	select {
	case err := <-got:
		if status.Code(err) != codes.Canceled {
			t.Errorf("the stream over the bound: %v; want CANCELED", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream over the bound is still open after 10 s")
	}
	// A request arrives on a held stream: its place is given back.
	if err := held[0].SendMsg(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if err := held[0].RecvMsg(&reflectionpb.ServerReflectionResponse{}); err != nil {
		t.Fatal(err)
	}
	// The place given back lets a new stream wait past unvouchedArrival.
	late, err := conn.NewStream(ctx, desc, method)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * unvouchedArrival)
	if err := late.SendMsg(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if err := late.RecvMsg(&reflectionpb.ServerReflectionResponse{}); err != nil {
		t.Errorf("a stream whose request came %s late, after a place was given back: %v", 3*unvouchedArrival, err)
	}
}

// TestReflectionStreamsAreBounded: reflection takes no token and a stream
// lasts as long as its client keeps it; beyond the bound of one client
// address (a quarter of maxReflections) a new one is refused,
// RESOURCE_EXHAUSTED, until one closes.
func TestReflectionStreamsAreBounded(t *testing.T) {
	conn := servingGRPC(t, NewHealth(), io.Discard).conn
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const bound = maxReflections / 4
	for n := range bound - 1 {
		if err := listServices(ctx, conn); err != nil {
			t.Fatalf("stream %d: %v", n+1, err)
		}
	}
	last, closeLast := context.WithCancel(ctx)
	if err := listServices(last, conn); err != nil {
		t.Fatalf("stream %d: %v", bound, err)
	}
	err := listServices(ctx, conn)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || rpcerror.ReasonOf(st) != rpcerror.ReasonTooManyStreams {
		t.Fatalf("stream %d: %v; want RESOURCE_EXHAUSTED %s", bound+1, err, rpcerror.ReasonTooManyStreams)
	}
	closeLast()
	deadline := time.Now().Add(5 * time.Second)
	for err = listServices(ctx, conn); err != nil && time.Now().Before(deadline); err = listServices(ctx, conn) {
		time.Sleep(10 * time.Millisecond) // the closed stream's handler ends on the server's side
	}
	if err != nil {
		t.Errorf("a stream after one closed: %v", err)
	}
}

// TestIdleReflectionStreamsEnd: a reflection stream that sends no request
// for reflectionIdle is ended, so that streams kept open without use do
// not hold the maxReflections places.
func TestIdleReflectionStreamsEnd(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.reflectionIdle = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // fail, not hang, should it stay open
	defer cancel()
	s, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	ask := func() error {
		if err := s.SendMsg(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return err
		}
		return s.RecvMsg(&reflectionpb.ServerReflectionResponse{})
	}
	for range 3 { // questions closer together than the bound keep it open
		if err := ask(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	err = s.RecvMsg(&reflectionpb.ServerReflectionResponse{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || rpcerror.ReasonOf(st) != rpcerror.ReasonIdleStream {
		t.Errorf("an idle reflection stream: %v after %s; want UNAVAILABLE %s", err, time.Since(start).Round(time.Millisecond), rpcerror.ReasonIdleStream)
	}
}

// TestHealthWatchesAreBoundedPerCaller: a Watch takes no token, but one
// that presents a caller's token is bounded apart from the others, so
// that streams held by whoever can reach the port do not take the places
// of callers backupd knows (gRPC client-side health checking takes a
// refused Watch for an unhealthy server). A token backupd does not know
// counts as none. Of the tokenless ones, one client address holds a part.
func TestHealthWatchesAreBoundedPerCaller(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{
			{Name: "orders", TokenSHA256: callers.HashToken("orders-token"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
			{Name: "audit", TokenSHA256: callers.HashToken("audit-token"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
		})
	})
	f.health.watches.setBounds(3, 2)
	f.health.SetReady(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fromA := healthpb.NewHealthClient(f.conn)
	fromB := healthpb.NewHealthClient(connFrom(t, f.conn.Target(), "127.0.0.2"))
	watch := func(health healthpb.HealthClient, token string) error {
		stream, err := health.Watch(withToken(ctx, token), &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	const byAddress, byAll = "from this client's address", "3 health watches without a caller's token are open already;"
	steps := []struct {
		name    string
		from    healthpb.HealthClient
		token   string
		refusal string // what the refusal says; "" for none
	}{
		{"first without a token", fromA, "", ""},
		{"second without a token", fromA, "", ""},
		{"third without a token from one address", fromA, "", byAddress},
		{"an unknown token, which counts as none", fromA, "guess", byAddress},
		{"without a token from another address", fromB, "", ""},
		{"beyond the bound of all without a token", fromB, "", byAll},
		{"a caller's, beside the full tokenless ones", fromA, "orders-token", ""},
		{"the caller's second", fromA, "orders-token", ""},
		{"the caller's third, more than an address's tokenless ones", fromA, "orders-token", ""},
		{"the caller's fourth", fromB, "orders-token", "3 health watches of caller orders are open already"},
		{"another caller's", fromA, "audit-token", ""},
	}
	for _, s := range steps {
		err := watch(s.from, s.token)
		st := status.Convert(err)
		refused := st.Code() == codes.ResourceExhausted && rpcerror.ReasonOf(st) == rpcerror.ReasonTooManyWatches
		if refused != (s.refusal != "") || err != nil && !refused || !strings.Contains(st.Message(), s.refusal) {
			t.Errorf("%s: %v; want refused %v (%q)", s.name, err, s.refusal != "", s.refusal)
		}
	}
}

// connFrom dials target from the loopback address ip, a client address of
// its own.
func connFrom(t *testing.T, target, ip string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestReflectionStreamsAreBoundedPerCaller: reflection streams that
// present a caller's token are bounded apart from the others, as health
// watches are; a token backupd does not know counts as none.
func TestReflectionStreamsAreBoundedPerCaller(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) {
		o.Authorizer = callers.New([]config.Caller{
			{Name: "orders", TokenSHA256: callers.HashToken("orders-token"), Accounts: []string{config.Any}, Operations: []string{config.Any}},
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Four client addresses hold the tokenless places between them, a
	// quarter each.
	conns := []*grpc.ClientConn{f.conn}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		conns = append(conns, connFrom(t, f.conn.Target(), ip))
	}
	open := func(conn *grpc.ClientConn, token string) error { return listServices(withToken(ctx, token), conn) }
	for i, conn := range conns[:4] {
		for n := range maxReflections / 4 {
			if err := open(conn, ""); err != nil {
				t.Fatalf("stream %d without a token from address %d: %v", n+1, i+1, err)
			}
		}
	}
	const byAddress, byAll = "16 reflection streams without a caller's token are open already from this client's address", "64 reflection streams without a caller's token are open already;"
	for _, s := range []struct {
		name    string
		conn    *grpc.ClientConn
		token   string
		refusal string // what the refusal says; "" for none
	}{
		{"one more without a token from an address", conns[0], "", byAddress},
		{"one more without a token from a fifth address", conns[4], "", byAll},
		{"an unknown token, which counts as none", conns[4], "guess", byAll},
		{"a caller's, beside the full tokenless ones", conns[0], "orders-token", ""},
	} {
		err := open(s.conn, s.token)
		st := status.Convert(err)
		refused := st.Code() == codes.ResourceExhausted && rpcerror.ReasonOf(st) == rpcerror.ReasonTooManyStreams
		if refused != (s.refusal != "") || err != nil && !refused || !strings.Contains(st.Message(), s.refusal) {
			t.Errorf("%s: %v; want refused %v (%q)", s.name, err, s.refusal != "", s.refusal)
		}
	}
}

// listServices opens a reflection stream on conn and asks it for the
// services, leaving it open until ctx ends.
func listServices(ctx context.Context, conn *grpc.ClientConn) error {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName)
	if err != nil {
		return err
	}
	// io.EOF: the server ended the stream (as it refuses one over the
	// bound) before the request went out; RecvMsg has its status.
	if err := s.SendMsg(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return s.RecvMsg(&reflectionpb.ServerReflectionResponse{})
}

// withToken is ctx with token as the bearer token of its calls, when not
// empty.
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// TestShutdownHeldByAConnectionReportsRunsLeft: a drain held to its
// timeout by a frozen client's connection alone, no request in flight,
// still fails when request_id runs are left at the timeout, whose results
// are lost.
func TestShutdownHeldByAConnectionReportsRunsLeft(t *testing.T) {
	f := newShutdownFixture(t)
	f.s.Service = &waiter{block: true, called: make(chan struct{})}
	f.s.Timeout = 500 * time.Millisecond
	frozen := dialRaw(t, f.conn.Target())
	if _, err := io.WriteString(frozen, http2.ClientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	settingsAcked(t, frozen) // the handshake is done: the connection holds the drain
	if err := f.s.Run(false); !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "shutdown timed out: ") {
		t.Errorf("Run = %v; want shutdown timed out: the runs' context deadline exceeded", err)
	}
}

// settingsAcked reads the frames a gRPC server sends on conn until it
// acknowledges the client's SETTINGS, which it does once it has read the
// client's preface and them.
func settingsAcked(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	fr := http2.NewFramer(io.Discard, conn)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no SETTINGS acknowledgement: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
			return
		}
	}
}

// failingClose is a listener whose Close fails, as http.Server.Shutdown
// then returns.
type failingClose struct{ net.Listener }

func (l failingClose) Close() error {
	_ = l.Listener.Close()
	return errors.New("close failed")
}

// An HTTP shutdown that fails for its listener still waits for the
// request_id runs, which Service.Wait alone names in the log when they
// are left, and fails with both.
func TestShutdownWaitsForRunsWhenHTTPShutdownFails(t *testing.T) {
	f := newShutdownFixture(t)
	httpSrv := rest.NewServer(http.NotFoundHandler(), time.Minute, nil, nil, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = rest.Serve(httpSrv, failingClose{lis})
	}()
	t.Cleanup(func() { httpSrv.Close(); <-served })
	// Served: its listener is the server's to close.
	resp, err := http.Get("http://" + lis.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.s.HTTP, f.s.DrainDelay = httpSrv, 0
	err = f.s.Run(false)
	if err == nil || !strings.Contains(err.Error(), "close failed") {
		t.Errorf("Run = %v; want the listener's failure", err)
	}
	select {
	case <-f.s.Service.(*waiter).called:
	default:
		t.Error("Service.Wait was not called after the HTTP shutdown failed")
	}
}
