package testenv

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartRedisLeavesNothingInTheTree: a replica that StartRedis runs
// keeps the data it is sent, an RDB file, in its directory; the test's
// working directory is the package's source, where a dump.rdb would be
// left, and committed.
func TestStartRedisLeavesNothingInTheTree(t *testing.T) {
	primary := StartRedis(t, FreeAddr(t))
	replica := StartRedis(t, "", "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, _ := replica.Client.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not sync within 10 s")
		}
	}
	if _, err := os.Stat("dump.rdb"); err == nil {
		t.Fatal("dump.rdb is in the package's directory")
	}
}
