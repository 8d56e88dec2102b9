package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/backupd/backupd/connlimit"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestGRPCConnectionsAreLimited: a gRPC connection over the per-IP limit
// is closed before a byte of it is read, its caller failing at once; one
// that fails its handshake, or that its client closes, frees its place.
func TestGRPCConnectionsAreLimited(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	cert := files.Certificate(t)
	for _, tt := range []struct {
		name        string
		tls, client *tls.Config
	}{
		{"plaintext", nil, nil},
		{"TLS", &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: files.Pool, NextProtos: []string{"h2"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conns := connlimit.New(connlimit.Limits{Total: 100, PerIP: 2}, nil, slog.New(slog.DiscardHandler))
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := NewGRPC(Options{Service: &stub{}, Logger: discard(), TLS: tt.tls, Conns: conns}, NewHealth())
			go func() { _ = srv.Serve(lis) }()
			defer srv.Stop()
			addr := lis.Addr().String()

			// Connections that end before they carry a call keep no
			// place: one its client closes before sending a byte, and
			// one the server closes for garbage where its preface (or
			// TLS handshake) should be.
			quiet, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			waitOpen(t, conns, 1)
			quiet.Close()
			waitOpen(t, conns, 0)
			garbage, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			garbage.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			garbage.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, garbage); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the server did not close a connection that sent garbage: %v", err)
			}
			garbage.Close()
			waitOpen(t, conns, 0)

			// Two idle clients that sent HTTP/2's preface take the two places.
			idle := []net.Conn{idleHTTP2(t, addr, tt.client), idleHTTP2(t, addr, tt.client)}
			waitOpen(t, conns, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := createOn(ctx, t, addr, tt.client, false); status.Code(err) != codes.Unavailable {
				t.Fatalf("a call over the per-IP limit: %v; want UNAVAILABLE", err)
			}

			idle[0].Close()
			waitOpen(t, conns, 1)
			if _, err := createOn(ctx, t, addr, tt.client, true); err != nil {
				t.Fatalf("a call after an idle client left: %v", err)
			}
			idle[1].Close()
		})
	}
}

// idleHTTP2 opens a connection to addr and sends HTTP/2's preface and
// settings, and nothing more.
func idleHTTP2(t *testing.T, addr string, client *tls.Config) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if client != nil {
		c, err = tls.Dial("tcp", addr, client)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := http2.NewFramer(c, c).WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// createOn makes one CreateBackup on a new client connection.
func createOn(ctx context.Context, t *testing.T, addr string, client *tls.Config, waitForReady bool) (*backupv1.CreateBackupResponse, error) {
	t.Helper()
	creds := insecure.NewCredentials()
	if client != nil {
		creds = credentials.NewTLS(client)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	return backupv1.NewBackupServiceClient(cc).CreateBackup(ctx,
		&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "b"}, grpc.WaitForReady(waitForReady))
}

func waitOpen(t *testing.T, conns *connlimit.Limiter, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for conns.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted open; want %d", conns.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
