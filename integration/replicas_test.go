package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/redis/go-redis/v9"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// replicas starts n backupd processes for the accounts, sharing the test
// Redis under a prefix of this test's own, all calling moto through rec.
func replicas(t *testing.T, n int, rec *recorder, accts []account) []*instance {
	t.Helper()
	prefix := testenv.RedisPrefix(t)
	testenv.EstablishRedis(t, testenv.RedisAddr(t), prefix)
	insts := make([]*instance, n)
	for i := range insts {
		insts[i] = startBackupd(t, instanceOptions{Accounts: accts, MaxWait: time.Minute, Env: motoEnv(rec.URL),
			Redis: testenv.RedisAddr(t), RedisPrefix: prefix})
	}
	return insts
}

// busiestSecond is the most calls in any one-second window of sorted times.
func busiestSecond(times []time.Time) int {
	worst := 0
	for i := range times {
		j := sort.Search(len(times), func(j int) bool { return !times[j].Before(times[i].Add(time.Second)) })
		worst = max(worst, j-i)
	}
	return worst
}

// TestReplicasShareTheRateLimit floods one account through two replicas
// that share Redis: moto never sees more than 50 CreateBackups in a second.
func TestReplicasShareTheRateLimit(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, _ := newAccount(t, moto, "Flood")
	rec := newRecorder(t, moto)
	insts := replicas(t, 2, rec, []account{{ID: a}})
	ctx := context.Background()
	for _, inst := range insts { // warm the credentials of both replicas
		if _, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Missing", BackupName: "warm"}); status.Code(err) != codes.NotFound {
			t.Fatalf("warm-up: %v", err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	const n = 240
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := insts[i%2].client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Flood", BackupName: "f-" + strconv.Itoa(i)})
			if err != nil {
				t.Errorf("flood request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var times []time.Time
	for _, c := range rec.Calls("CreateBackup") {
		times = append(times, c.At)
	}
	times = times[2:] // the warm-ups
	if len(times) != n {
		t.Fatalf("moto saw %d flood calls, want %d", len(times), n)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	worst := busiestSecond(times)
	t.Logf("%d calls through 2 replicas over %s; busiest one-second window: %d", n, times[n-1].Sub(times[0]), worst)
	if worst > 50 {
		t.Errorf("moto saw %d CreateBackup calls for one account within one second from two replicas; the limit is 50", worst)
	}
}

// TestReplicasShareRequestIDs sends one request_id to two replicas at once:
// one backup, one answer. The first CreateBackup is held on its way to
// DynamoDB, so that every repeat, on either replica, arrives while it runs
// and waits for it.
func TestReplicasShareRequestIDs(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, db := newAccount(t, moto, "Orders")
	const hold = 2 * time.Second
	held, released := firstCreateBackupHeld(t, moto, hold)
	rec := newRecorder(t, held)
	insts := replicas(t, 2, rec, []account{{ID: a}})
	req := &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "shared", RequestId: "shared-1"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	arns := map[string]int{}
	var calls []timedCall
	for i := range 20 {
		wg.Go(func() {
			sent := time.Now()
			resp, err := insts[i%2].client.CreateBackup(context.Background(), req)
			mu.Lock()
			calls = append(calls, timedCall{name: fmt.Sprintf("call %d on replica %d", i, i%2), sent: sent, done: time.Now()})
			mu.Unlock()
			if err != nil {
				t.Errorf("replica %d: %v", i%2, err)
				return
			}
			mu.Lock()
			arns[resp.GetBackupDetails().GetBackupArn()]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(arns) != 1 {
		t.Errorf("20 repeats on two replicas answered %d backups: %v", len(arns), arns)
	}
	if n := len(rec.Calls("CreateBackup")); n != 1 {
		t.Errorf("moto saw %d CreateBackup calls, want 1", n)
	}
	wantAllWaited(t, calls, hold, released())
	if names := backupNames(t, db, "Orders"); len(names) != 1 {
		t.Errorf("moto holds %v, want one backup", names)
	}
}

// TestRedisGone stops the replica's own redis-server mid-run: requests are
// refused UNAVAILABLE with RetryInfo, nothing reaches DynamoDB, and service
// resumes when Redis is back.
func TestRedisGone(t *testing.T) {
	opts, a, rec, r := onPrivateRedis(t, "gone:")
	inst := startBackupd(t, opts)
	ctx := context.Background()
	create := func(name, rid string) error {
		_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: name, RequestId: rid})
		return err
	}
	if err := create("before", ""); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	r.Stop()
	before := len(rec.Calls("CreateBackup"))
	for _, rid := range []string{"", "with-id"} {
		err := create("during", rid)
		if st := status.Convert(err); st.Code() != codes.Unavailable || reasonOf(st) != "SHARED_STATE_UNAVAILABLE" || retryDelay(st) <= 0 {
			t.Errorf("request_id %q with Redis down: %v (reason %s); want UNAVAILABLE SHARED_STATE_UNAVAILABLE with RetryInfo", rid, err, reasonOf(st))
		}
	}
	code, h, body := inst.rest(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", `{"backupName":"during-rest"}`)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || decodeRESTError(t, body).reason() != "SHARED_STATE_UNAVAILABLE" {
		t.Errorf("REST with Redis down: %d Retry-After %q %s", code, h.Get("Retry-After"), body)
	}
	if n := len(rec.Calls("CreateBackup")) - before; n != 0 {
		t.Errorf("%d CreateBackup calls reached DynamoDB while Redis was down", n)
	}
	// Gone once its failures have lasted a second (one slow answer is
	// not an outage).
	time.Sleep(1100 * time.Millisecond)
	if err := create("during-later", ""); status.Code(err) != codes.Unavailable {
		t.Errorf("with Redis down a second: %v; want UNAVAILABLE", err)
	}
	if up := inst.metric(t, "backupd_shared_state_up", nil); up != 0 || len(inst.logs.Lines("Redis stopped serving")) != 1 {
		t.Errorf("with Redis down: backupd_shared_state_up %v; want 0, and one line saying so:\n%s", up, inst.logs.String())
	}
	// The Redis that comes back is empty: backupd notices the loss and
	// gives no turn until the turns taken before it can have passed
	// (max_wait from Redis' start), then serves again.
	back := time.Now()
	testenv.StartRedis(t, opts.Redis)
	before = len(rec.Calls("CreateBackup"))
	err := create("after", "after-1")
	if st := status.Convert(err); err != nil && (st.Code() != codes.ResourceExhausted || retryDelay(st) <= 0) {
		t.Fatalf("right after Redis came back: %v; want success or RESOURCE_EXHAUSTED with RetryInfo", err)
	} else if err != nil {
		time.Sleep(retryDelay(st))
		err = create("after", "after-1")
	}
	if err != nil {
		t.Errorf("after Redis came back, and the wait it asked for: %v", err)
	}
	const maxWait = time.Second // the default
	for _, c := range rec.Calls("CreateBackup")[before:] {
		if c.At.Before(back.Add(maxWait)) {
			t.Errorf("a CreateBackup reached DynamoDB %s after Redis came back; want none before max_wait (%s)", c.At.Sub(back), maxWait)
		}
	}
	if !strings.Contains(inst.logs.String(), "Redis restarted, failed over or lost backupd's data") {
		t.Errorf("the log does not say Redis lost its data:\n%s", inst.logs.String())
	}
	if up := inst.metric(t, "backupd_shared_state_up", nil); up != 1 || len(inst.logs.Lines("Redis serves again")) != 1 {
		t.Errorf("with Redis back: backupd_shared_state_up %v; want 1, and one line saying so:\n%s", up, inst.logs.String())
	}
}

// TestStalledRedisAnswersByTheDeadline: with Redis stopped (SIGSTOP: it
// keeps its connections and answers nothing), a request is answered by
// its deadline, not after the Redis client's 1 s read timeout, and
// nothing reaches DynamoDB.
func TestStalledRedisAnswersByTheDeadline(t *testing.T) {
	opts, a, rec, r := onPrivateRedis(t, "stalled:")
	inst := startBackupd(t, opts)
	if _, err := inst.client.CreateBackup(context.Background(), &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "before"}); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	if err := r.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Process.Signal(syscall.SIGCONT) })
	before := len(rec.Calls("CreateBackup"))
	const readTimeout = time.Second // sharedstate's
	for _, body := range []string{`{"backupName":"during"}`, `{"backupName":"during","requestId":"stalled-1"}`} {
		start := time.Now()
		code, _, resp := inst.restWith(t, "POST", "/v1/accounts/"+a+"/tables/Orders/backups", body, http.Header{"Grpc-Timeout": {"300m"}})
		took := time.Since(start)
		if code != http.StatusGatewayTimeout || took >= readTimeout {
			t.Errorf("%s with Redis stopped and a 300 ms deadline: %d after %s %s; want 504 within the deadline", body, code, took.Round(time.Millisecond), resp)
		}
	}
	if n := len(rec.Calls("CreateBackup")) - before; n != 0 {
		t.Errorf("%d CreateBackup calls reached DynamoDB while Redis was stopped", n)
	}
}

// TestRedisBackEmptyHoldsTurns: a replica that starts after Redis came
// back empty cannot tell a restart from a first start, but the turns the
// other replicas took before the restart may still be going out; so no
// CreateBackup reaches DynamoDB until Redis has been up for max_wait.
func TestRedisBackEmptyHoldsTurns(t *testing.T) {
	opts, a, rec, r := onPrivateRedis(t, "empty:")
	// Long enough that the new replica is up, and its call sent, well
	// within it, also on a loaded machine: a call sent after the hold
	// would prove nothing.
	const maxWait = 5 * time.Second
	opts.MaxWait = maxWait
	old := startBackupd(t, opts)
	ctx := context.Background()
	if _, err := old.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "before"}); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	r.Stop()
	restarted := time.Now()
	testenv.StartRedis(t, opts.Redis)
	fresh := startBackupd(t, opts) // has never seen the old Redis
	before := len(rec.Calls("CreateBackup"))
	if late := time.Since(restarted); late > maxWait/2 {
		t.Fatalf("the new replica took %s to start; the call would come after most of the hold and prove little", late)
	}
	_, err := fresh.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: "after"})
	if st := status.Convert(err); err != nil && (st.Code() != codes.ResourceExhausted || retryDelay(st) <= 0) {
		t.Fatalf("first call through the new replica: %v; want success after the hold, or RESOURCE_EXHAUSTED with RetryInfo", err)
	}
	for _, c := range rec.Calls("CreateBackup")[before:] {
		if c.At.Before(restarted.Add(maxWait)) {
			t.Errorf("a CreateBackup reached DynamoDB %s after Redis was restarted; want none before max_wait (%s)", c.At.Sub(restarted), maxWait)
		}
	}
}

// onPrivateRedis starts a redis-server of the test's own, holding the
// state of an established deployment under prefix (testenv.EstablishRedis), and
// returns the options of a backupd that acts through it in a new account,
// with table Orders, whose calls rec records; and what stops that Redis.
func onPrivateRedis(t *testing.T, prefix string) (opts instanceOptions, accountID string, rec *recorder, r *testenv.OwnRedis) {
	t.Helper()
	moto := testenv.MotoURL(t)
	testenv.RedisAddr(t) // the environment has Redis, so redis-server is installed
	accountID, _ = newAccount(t, moto, "Orders")
	r = testenv.StartRedis(t, testenv.FreeAddr(t))
	addr := r.Addr
	testenv.EstablishRedis(t, addr, prefix)
	rec = newRecorder(t, moto)
	opts = instanceOptions{Accounts: []account{{ID: accountID}}, Env: motoEnv(rec.URL), Redis: addr, RedisPrefix: prefix}
	return opts, accountID, rec, r
}

// TestRequestIDsWaitForARedisReplica: with wait_replicas 1, a request
// with a request_id runs only once a replica of Redis holds its claim.
// With no replica connected, the start says so, such requests are refused
// UNAVAILABLE, the log naming the setting, and reach no AWS; requests without a
// request_id go on. Once a replica connects, they run.
func TestRequestIDsWaitForARedisReplica(t *testing.T) {
	opts, a, rec, _ := onPrivateRedis(t, "waits:")
	opts.RedisWaitReplicas = 1
	inst := startBackupd(t, opts)
	if lines := inst.logs.Lines("not enough Redis replicas", "wait_replicas is 1"); len(lines) != 1 {
		t.Errorf("the start does not say Redis lacks the replica wait_replicas asks for:\n%s", inst.logs.String())
	}
	ctx := context.Background()
	create := func(name, rid string) error {
		_, err := inst.client.CreateBackup(ctx, &backupv1.CreateBackupRequest{AccountId: a, TableName: "Orders", BackupName: name, RequestId: rid})
		return err
	}
	err := create("unconfirmed", "waits-1")
	if st := status.Convert(err); st.Code() != codes.Unavailable || reasonOf(st) != "SHARED_STATE_UNAVAILABLE" || retryDelay(st) <= 0 {
		t.Fatalf("request_id with no Redis replica: %v (reason %s); want UNAVAILABLE SHARED_STATE_UNAVAILABLE with RetryInfo", err, reasonOf(st))
	}
	if n := len(rec.Calls("CreateBackup")); n != 0 {
		t.Fatalf("%d CreateBackup calls reached DynamoDB for a claim no replica held", n)
	}
	if err := create("no-request-id", ""); err != nil {
		t.Fatalf("without a request_id, with no Redis replica: %v", err)
	}

	host, port, _ := net.SplitHostPort(opts.Redis)
	testenv.StartRedis(t, "", "--replicaof", host, port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = create("confirmed", "waits-1")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("request_id with a Redis replica: %v", err)
	}
	if n := len(rec.Calls("CreateBackup")); n != 2 {
		t.Errorf("moto saw %d CreateBackup calls, want 2", n)
	}
	// Read once backupd has stopped: a request's line may follow its
	// answer.
	if err := inst.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if lines := inst.logs.Lines(`"request_id":"waits-1"`, "0 of the 1 Redis replicas", "wait_replicas"); len(lines) == 0 {
		t.Errorf("no request's log line says no replica confirmed its claim:\n%s", inst.logs.String())
	}
}

// TestStartRefusesAnEvictingRedis: a Redis with a maxmemory and an
// eviction policy (volatile-lru, the managed services' default) may drop
// a request_id's result, whose repeat would then make a second backup:
// the start fails and says what to set. The same Redis with noeviction
// is taken.
func TestStartRefusesAnEvictingRedis(t *testing.T) {
	testenv.RedisAddr(t) // the environment has Redis, so redis-server is installed
	addr := testenv.FreeAddr(t)
	testenv.StartRedis(t, addr, "--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
	path := t.TempDir() + "/config.yaml"
	writeFile(t, path, fmt.Sprintf("listen: {grpc: %q, http: %q}\nshared_state: {backend: redis, redis: {address: %q}}\n"+
		"accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n", testenv.FreeAddr(t), testenv.FreeAddr(t), addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "maxmemory-policy volatile-lru") || !strings.Contains(string(out), "set maxmemory-policy noeviction") {
		t.Fatalf("backupd on a Redis that may evict its keys: %v\n%s", err, out)
	}

	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	if err := client.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: "111111111111"}}, Redis: addr, RedisPrefix: testenv.RedisPrefix(t)})
	if !strings.Contains(inst.logs.String(), "shared state in Redis") {
		t.Errorf("backupd on a Redis with noeviction did not take it:\n%s", inst.logs.String())
	}
}
