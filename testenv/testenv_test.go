package testenv

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backupd/backupd/awsname"
)

// fakeTB records the first Skip or Fatal instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	action, msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.record("skip", args...)
}
func (f *fakeTB) Fatal(args ...any) {
	f.record("fatal", args...)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record("fatal", fmt.Sprintf(format, args...))
}
func (f *fakeTB) record(action string, args ...any) {
	if f.action == "" {
		f.action, f.msg = action, fmt.Sprint(args...)
	}
}

func TestMissingServiceSkipsOutsideCIAndFailsInCI(t *testing.T) {
	setShort(t, false)
	for _, tc := range []struct {
		ci, want string
	}{
		{"", "skip"},
		{"false", "skip"},
		{"true", "fatal"},
		{"1", "fatal"},
	} {
		// fakeTB does not end the test as Skip and Fatal do: StartMoto goes
		// on past the refusal with no executable, which only fails.
		for name, get := range map[string]func(testing.TB) string{
			MotoURLEnv:    MotoURL,
			RedisAddrEnv:  RedisAddr,
			PythonEnv:     Python,
			MotoServerEnv: StartMoto,
		} {
			t.Run(name+"/CI="+tc.ci, func(t *testing.T) {
				t.Setenv("CI", tc.ci)
				t.Setenv(name, "")
				f := &fakeTB{TB: t}
				get(f)
				if f.action != tc.want {
					t.Fatalf("action = %q, want %q", f.action, tc.want)
				}
				if !strings.Contains(f.msg, "scripts/test.sh") || !strings.Contains(f.msg, name) {
					t.Errorf("message %q should name %s and scripts/test.sh", f.msg, name)
				}
			})
		}
	}
}

// TestShortSkipsIntegrationTests: -short runs the unit tests alone, so a
// test that needs a service is skipped, in CI too, even with the service
// there.
func TestShortSkipsIntegrationTests(t *testing.T) {
	setShort(t, true)
	t.Setenv("CI", "true")
	for name, get := range map[string]func(testing.TB) string{
		MotoURLEnv:    MotoURL,
		RedisAddrEnv:  RedisAddr,
		PythonEnv:     Python,
		MotoServerEnv: StartMoto,
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "127.0.0.1:2")
			f := &fakeTB{TB: t}
			get(f)
			if f.action != "skip" || !strings.Contains(f.msg, "-short") {
				t.Fatalf("action = %q (%q), want a skip that names -short", f.action, f.msg)
			}
		})
	}
}

// setShort sets -short to short for t's time.
func setShort(t *testing.T, short bool) {
	was := flag.Lookup("test.short").Value.String()
	if err := flag.Set("test.short", strconv.FormatBool(short)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flag.Set("test.short", was) })
}

func TestPresentServiceIsReturned(t *testing.T) {
	setShort(t, false)
	t.Setenv("CI", "true")
	t.Setenv(MotoURLEnv, "http://127.0.0.1:1")
	t.Setenv(RedisAddrEnv, "127.0.0.1:2")
	f := &fakeTB{TB: t}
	if got := MotoURL(f); got != "http://127.0.0.1:1" {
		t.Errorf("MotoURL = %q", got)
	}
	if got := RedisAddr(f); got != "127.0.0.1:2" {
		t.Errorf("RedisAddr = %q", got)
	}
	if f.action != "" {
		t.Errorf("unexpected %s: %s", f.action, f.msg)
	}
}

func TestUniqueAccountID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := UniqueAccountID(t)
		if !awsname.ValidAccountID(id) || id == "123456789012" {
			t.Fatalf("bad account id %q", id)
		}
		if seen[id] {
			t.Fatalf("account id %q repeated", id)
		}
		seen[id] = true
	}
}

// TestServicesAnswer proves that scripts/test.sh really started both services.
func TestServicesAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, MotoURL(t)+"/moto-api/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("moto: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("moto /moto-api/: status %d", resp.StatusCode)
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", RedisAddr(t))
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatalf("redis: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("redis PING: %q, %v", line, err)
	}
}

// assumeRoleStatus sends an STS AssumeRole to moto at url, signed in form only
// (moto checks signatures only with IAM enforcement on).
func assumeRoleStatus(t *testing.T, url string) int {
	t.Helper()
	form := "Action=AssumeRole&Version=2011-06-15&RoleSessionName=testenv" +
		"&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fbackupd"
	req, err := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStartMotoIsPrivate turns on IAM enforcement in a private moto, which
// then refuses AssumeRole from unknown keys, while the shared moto still
// accepts it.
func TestStartMotoIsPrivate(t *testing.T) {
	shared := MotoURL(t)
	private := StartMoto(t)
	if private == shared {
		t.Fatalf("StartMoto returned the shared server %s", shared)
	}
	resp, err := http.Post(private+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := assumeRoleStatus(t, private); got != http.StatusForbidden {
		t.Errorf("private moto with IAM enforcement: AssumeRole status %d, want 403", got)
	}
	if got := assumeRoleStatus(t, shared); got != http.StatusOK {
		t.Errorf("shared moto: AssumeRole status %d, want 200", got)
	}
}

func TestBufferLines(t *testing.T) {
	var b Buffer
	fmt.Fprintf(&b, "one a\ntwo a b\nthree b\n")
	if got := b.Lines("a"); !slices.Equal(got, []string{"one a", "two a b"}) {
		t.Errorf(`Lines("a") = %q`, got)
	}
	if got := b.Lines("a", "b"); !slices.Equal(got, []string{"two a b"}) {
		t.Errorf(`Lines("a", "b") = %q`, got)
	}
	b.Reset()
	if got := b.Lines(); len(got) != 0 || b.String() != "" {
		t.Errorf("after Reset: %q, %q", got, b.String())
	}
}
