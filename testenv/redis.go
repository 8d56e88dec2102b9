package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// OwnRedis is a redis-server of a test's own, for a test that stops it,
// restarts it, fails it over, makes it a replica or sets it up otherwise,
// none of which the shared test Redis may suffer.
type OwnRedis struct {
	// Client reaches it over its unix socket.
	Client *redis.Client
	// Addr is its TCP address (host:port), which backupd's config and a
	// replica's REPLICAOF name, and Port that address's port; "" and 0
	// when it listens on its unix socket only.
	Addr    string
	Port    int
	Process *os.Process
	stop    func()
}

// Stop stops the server before the test ends: a Redis gone, or one to
// start again, empty, on the same Addr.
func (r *OwnRedis) Stop() { r.stop() }

// StartRedis starts a redis-server without persistence, the executable
// scripts/test.sh puts on PATH, with args beside its own, and stops it
// when t ends. It listens on a unix socket, and on addr too unless addr
// is "" (FreeAddr gives one). Its directory is the test's own: a replica
// saves there the data it is sent, which would otherwise land in the
// package's source. It needs the test Redis's environment: without it
// the test is skipped, or fails under CI=true.
func StartRedis(t testing.TB, addr string, args ...string) *OwnRedis {
	t.Helper()
	RedisAddr(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	r := &OwnRedis{Addr: addr}
	if addr != "" {
		_, port, err := net.SplitHostPort(addr)
		if r.Port, _ = strconv.Atoi(port); err != nil || r.Port == 0 {
			t.Fatalf("StartRedis: %q is not host:port", addr)
		}
	}
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--unixsocket", sock,
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0"}, // a replica is sent the data at once, not after 5 s
		args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	var once sync.Once
	r.stop = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(r.stop)
	r.Process = cmd.Process
	// Its unix socket is its own: a server that answers there is this
	// one, which would have exited had addr been taken meanwhile.
	r.Client = redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { r.Client.Close() })
	for i := 0; ; i++ {
		if err := r.Client.Ping(context.Background()).Err(); err == nil {
			return r
		} else if i == 100 {
			t.Fatalf("redis-server did not answer on its socket (or could not listen on %q): %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeAddr is a loopback TCP address that nothing listened on a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}
