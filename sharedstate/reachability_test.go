package sharedstate

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/testenv"
)

// TestReachability: against a real redis-server stopped and started
// again, the first answer is reported without a line (the start logs
// its own), the loss of Redis and its return each once, with a line;
// an error reply is an answer, and a command out of its own deadline
// says nothing of Redis.
func TestReachability(t *testing.T) {
	addr := testenv.FreeAddr(t)
	r := testenv.StartRedis(t, addr)
	logs := &testenv.Buffer{}
	var mu sync.Mutex
	var reports []bool
	reach := NewReachability(slog.New(slog.NewJSONHandler(logs, nil)), func(up bool) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, up)
	})
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	c.AddHook(reach)
	ctx := context.Background()

	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "nosuchcommand").Err(); err == nil {
		t.Fatal("an unknown command was taken")
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	_ = c.Ping(expired).Err()
	mu.Lock()
	if !slices.Equal(reports, []bool{true}) {
		t.Errorf("after an answer, an error reply and a canceled command: reported %v; want [true]", reports)
	}
	mu.Unlock()
	r.Stop()
	for range 3 {
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("a stopped Redis answered")
		}
	}
	testenv.StartRedis(t, addr)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis started again: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if want := []bool{true, false, true}; !slices.Equal(reports, want) {
		t.Errorf("reported %v; want %v", reports, want)
	}
	if n := len(logs.Lines(`"level":"ERROR"`, "Redis stopped answering")); n != 1 {
		t.Errorf("%d lines of Redis gone; want 1:\n%s", n, logs.String())
	}
	if n := len(logs.Lines(`"level":"INFO"`, "Redis answers again", `"down_for"`)); n != 1 {
		t.Errorf("%d lines of Redis back; want 1:\n%s", n, logs.String())
	}
	if n := len(logs.Lines(`"msg"`)); n != 2 {
		t.Errorf("%d lines; want 2:\n%s", n, logs.String())
	}
}
