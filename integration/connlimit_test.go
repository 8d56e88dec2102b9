package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// TestConnectionsAreLimited: the binary bounds its listeners' connections
// from one address, both listeners together, as listen.max_connections_per_ip
// says: connections that never send a byte (which held a descriptor each
// for minutes) take the places, the next one on either listener is closed
// at once and counted in /metrics, and places come back as they close.
func TestConnectionsAreLimited(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Orders")
	const perIP = 4
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(moto), Listen: "max_connections_per_ip: 4"})
	httpAddr := hostOf(t, inst.httpURL)

	// Silent connections to the HTTP listener until one is closed at
	// once: the places the binary's own client connections leave.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(held) <= perIP {
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		if closedAtOnce(c) {
			c.Close()
			break
		}
		held = append(held, c)
	}
	if len(held) == 0 || len(held) > perIP {
		t.Fatalf("%d silent connections were held before one was refused; want 1 to %d", len(held), perIP)
	}

	// The gRPC listener counts against the same limit.
	cc, err := grpc.NewClient(inst.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "after-the-flood"}
	if _, err := backupv1.NewBackupServiceClient(cc).CreateBackup(ctx, req); status.Code(err) != codes.Unavailable {
		t.Fatalf("a gRPC call over the limit: %v; want UNAVAILABLE", err)
	}

	for _, c := range held {
		c.Close()
	}
	held = nil
	if _, err := backupv1.NewBackupServiceClient(cc).CreateBackup(ctx, req, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("a gRPC call once the places came back: %v", err)
	}
	_, _, body := inst.rest(t, "GET", "/metrics", "")
	if n := metricValue(string(body), "backupd_connections_refused_total", map[string]string{"limit": "per_ip"}); n < 2 {
		t.Errorf("backupd_connections_refused_total{limit=\"per_ip\"} is %v; want at least the 2 refused", n)
	}
	if n := metricValue(string(body), "backupd_connections_open", nil); n < 1 || n > perIP {
		t.Errorf("backupd_connections_open is %v; want 1 to %d", n, perIP)
	}
}

// closedAtOnce reports whether the server closes c before it sends a
// byte: a connection held open stays silent, waiting for a request.
func closedAtOnce(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return !errors.Is(err, os.ErrDeadlineExceeded) && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
