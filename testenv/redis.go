package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// OwnRedis is a redis-server of a test's own, for a test that fails a
// server over, makes it a replica or stops it, none of which the shared
// test Redis may suffer.
type OwnRedis struct {
	Client *redis.Client
	// Port is its TCP port, which a replica's REPLICAOF names; 0 when it
	// listens on a unix socket only.
	Port    int
	Process *os.Process
}

// StartRedis starts a redis-server without persistence, the executable
// scripts/test.sh puts on PATH, and stops it when t ends. With tcp it
// listens on a free loopback port as well as on its unix socket, so that
// other servers can replicate it. It needs the test Redis's environment:
// without it the test is skipped, or fails under CI=true.
func StartRedis(t testing.TB, tcp bool) *OwnRedis {
	t.Helper()
	RedisAddr(t)
	dir := t.TempDir() // where a replica keeps the data it is sent
	sock := filepath.Join(dir, "redis.sock")
	port := 0
	if tcp {
		port = freePort(t)
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--unixsocket", sock,
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0") // a replica is sent the data at once, not after 5 s
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { c.Close() })
	for i := 0; ; i++ {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return &OwnRedis{Client: c, Port: port, Process: cmd.Process}
		} else if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort is a loopback TCP port that nothing listened on a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}
