package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/backupd/backupd/certreload"
	"github.com/backupd/backupd/rest"
	"github.com/backupd/backupd/testenv"
)

// serveTLS starts the gRPC and HTTP servers over TLS and returns their
// addresses.
func serveTLS(t *testing.T, cfg *tls.Config) (grpcAddr, httpAddr string) {
	t.Helper()
	h := NewHealth()
	h.SetReady(true)
	srv := NewGRPC(Options{Service: &stub{}, Logger: discard(), TLS: cfg}, h)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(gl) }()
	t.Cleanup(srv.Stop)
	handler, err := rest.NewHandler(context.Background(), rest.Options{Service: &stub{}, Logger: discard()}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := rest.NewServer(handler, time.Minute, cfg, discard(), nil)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rest.Serve(hs, hl) }()
	t.Cleanup(func() { hs.Close() })
	return gl.Addr().String(), hl.Addr().String()
}

func TestTLS(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	cfg, err := certreload.TLSConfig(files.CertFile, files.KeyFile, "", discard())
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := serveTLS(t, cfg)
	client := &tls.Config{RootCAs: files.Pool, MinVersion: tls.VersionTLS12}

	check := func(creds credentials.TransportCredentials) error { return healthCheckOver(grpcAddr, creds) }
	if err := check(credentials.NewTLS(client)); err != nil {
		t.Errorf("gRPC over TLS: %v", err)
	}
	if err := check(insecure.NewCredentials()); err == nil {
		t.Error("plaintext gRPC was served on the TLS listener")
	}
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: client}}
	resp, err := https.Get("https://" + httpAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("HTTPS /readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was served on the TLS listener")
	}
}

func TestMutualTLS(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	cfg, err := certreload.TLSConfig(files.CertFile, files.KeyFile, files.CertFile, discard()) // the test CA signs itself
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := serveTLS(t, cfg)
	cert := files.Certificate(t)
	check := func(c *tls.Config) error { return healthCheckOver(grpcAddr, credentials.NewTLS(c)) }
	if err := check(&tls.Config{RootCAs: files.Pool, MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("a gRPC client without a certificate was served")
	}
	if err := check(&tls.Config{RootCAs: files.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("a gRPC client with a certificate: %v", err)
	}
	get := func(c *tls.Config) (proto int, err error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true}}
		resp, err := client.Get("https://" + httpAddr + "/healthz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.ProtoMajor, nil
	}
	if _, err := get(&tls.Config{RootCAs: files.Pool, MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("a client without a certificate was served")
	}
	if proto, err := get(&tls.Config{RootCAs: files.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil || proto != 2 {
		t.Errorf("a client with a certificate: HTTP/%d, %v; want HTTP/2", proto, err)
	}
}

// TestGRPCFailedHandshakesAreLogged: a client the gRPC listener refuses in
// its TLS handshake (here for want of a client certificate) is logged, as
// on the HTTP listener, and a run of them is one line per 10 s.
func TestGRPCFailedHandshakesAreLogged(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	cfg, err := certreload.TLSConfig(files.CertFile, files.KeyFile, files.CertFile, discard())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	srv := NewGRPC(Options{Service: &stub{}, Logger: slog.New(slog.NewJSONHandler(logs, nil)), TLS: cfg}, NewHealth())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	noCert := credentials.NewTLS(&tls.Config{RootCAs: files.Pool, MinVersion: tls.VersionTLS12})
	for range 3 {
		if err := healthCheckOver(lis.Addr().String(), noCert); err == nil {
			t.Fatal("a gRPC client without a certificate was served")
		}
	}
	want := `"level":"WARN","msg":"grpc: TLS handshake error from 127.0.0.1:`
	for deadline := time.Now().Add(5 * time.Second); len(logs.Lines(want)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log %q: want a JSON line %s", logs.String(), want)
		}
	}
	if n := len(logs.Lines(want)); n != 1 {
		t.Errorf("%d lines for 3 refused clients in a moment; want 1:\n%s", n, logs.String())
	}
}

// healthCheckOver makes a gRPC health Check of the server at addr with
// creds.
func healthCheckOver(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
