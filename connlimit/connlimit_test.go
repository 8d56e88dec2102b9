package connlimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/backupd/backupd/testenv"
)

type refusals map[string]int

func (r refusals) ObserveConnRefused(reason string) { r[reason]++ }

func tcp(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }

func TestAdmit(t *testing.T) {
	tests := []struct {
		name    string
		limits  Limits
		from    []string // addresses admitted in turn
		want    []bool
		refused refusals
	}{
		{"under both limits", Limits{Total: 3, PerIP: 2}, []string{"10.0.0.1", "10.0.0.2", "10.0.0.1"}, []bool{true, true, true}, refusals{}},
		{"over the per-IP limit", Limits{Total: 10, PerIP: 2}, []string{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"},
			[]bool{true, true, false, true}, refusals{OverPerIP: 1}},
		{"over the total", Limits{Total: 2, PerIP: 2}, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []bool{true, true, false}, refusals{OverTotal: 1}},
		// An IPv4 client on a dual-stack listener is one address, however written.
		{"IPv4-mapped IPv6 is IPv4", Limits{Total: 10, PerIP: 1}, []string{"10.0.0.1", "::ffff:10.0.0.1"}, []bool{true, false}, refusals{OverPerIP: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := refusals{}
			l := New(tt.limits, got, slog.New(slog.DiscardHandler))
			for i, ip := range tt.from {
				_, ok := l.Admit(tcp(ip))
				if ok != tt.want[i] {
					t.Errorf("connection %d from %s: admitted %v; want %v", i, ip, ok, tt.want[i])
				}
			}
			if len(got) != len(tt.refused) || got[OverTotal] != tt.refused[OverTotal] || got[OverPerIP] != tt.refused[OverPerIP] {
				t.Errorf("refusals %v; want %v", got, tt.refused)
			}
		})
	}
}

// TestReleaseFreesTheSlotOnce: a connection's release gives its place to
// the next one, and a second release (Close called twice) gives none.
func TestReleaseFreesTheSlotOnce(t *testing.T) {
	l := New(Limits{Total: 2, PerIP: 1}, nil, slog.New(slog.DiscardHandler))
	release, ok := l.Admit(tcp("10.0.0.1"))
	if !ok {
		t.Fatal("first connection refused")
	}
	other, ok := l.Admit(tcp("10.0.0.2"))
	if !ok {
		t.Fatal("second address refused")
	}
	release()
	release()
	if n := l.Open(); n != 1 {
		t.Errorf("%d open after one of two was released twice; want 1", n)
	}
	if _, ok := l.Admit(tcp("10.0.0.1")); !ok {
		t.Error("a released address's next connection was refused")
	}
	if _, ok := l.Admit(tcp("10.0.0.3")); ok {
		t.Error("a third connection was admitted over a total of 2: a double release counted twice")
	}
	other()
}

// TestRefusalsAreLoggedNowAndThen: a flood of refused connections is
// one log line at once, then one per logEvery at most, and the count of a
// burst is written within logEvery of it, not at the next refusal.
func TestRefusalsAreLoggedNowAndThen(t *testing.T) { synctest.Test(t, testRefusalsAreLoggedNowAndThen) }

func testRefusalsAreLoggedNowAndThen(t *testing.T) {
	logs := &testenv.Buffer{}
	l := New(Limits{Total: 1, PerIP: 1}, nil, slog.New(slog.NewTextHandler(logs, nil)))
	l.Admit(tcp("10.0.0.1"))
	lines := func() []string {
		synctest.Wait()
		return strings.Split(strings.TrimSpace(logs.String()), "\n")
	}
	for range 100 {
		l.Admit(tcp("10.0.0.9"))
	}
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], "refused=1 ") {
		t.Fatalf("log after 100 refusals in a moment: %q; want one line, for the first", got)
	}
	for _, want := range []string{"level=WARN", "limit=total", "max_connections=1", "last_from=10.0.0.9"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("log line %q does not say %s", got[0], want)
		}
	}
	time.Sleep(logEvery)
	if got := lines(); len(got) != 2 || !strings.Contains(got[1], "refused=99 ") {
		t.Fatalf("log %s after the burst: %q; want a second line counting the other 99", logEvery, got)
	}
	time.Sleep(10 * logEvery)
	if got := lines(); len(got) != 2 {
		t.Errorf("lines logged with no refusal since: %q", got)
	}
	// Long after the last line, a refusal is logged at once again.
	l.Admit(tcp("10.0.0.8"))
	if got := lines(); len(got) != 3 || !strings.Contains(got[2], "refused=1 ") || !strings.Contains(got[2], "last_from=10.0.0.8") {
		t.Errorf("log after a lone refusal: %q; want a third line for it", got)
	}
}

// TestFlushWritesTheRefusalsNotLoggedYet: at shutdown, the count of the
// refusals whose line was not due yet is written, once.
func TestFlushWritesTheRefusalsNotLoggedYet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		l := New(Limits{Total: 1, PerIP: 1}, nil, slog.New(slog.NewTextHandler(logs, nil)))
		l.Admit(tcp("10.0.0.1"))
		for range 3 {
			l.Admit(tcp("10.0.0.9"))
		}
		l.Flush()
		l.Flush()
		lines := func() []string {
			synctest.Wait()
			return strings.Split(strings.TrimSpace(logs.String()), "\n")
		}
		if got := lines(); len(got) != 2 || !strings.Contains(got[0], "refused=1 ") || !strings.Contains(got[1], "refused=2 ") {
			t.Fatalf("log %q; want the first refusal's line, then Flush's counting the other 2", got)
		}
		time.Sleep(2 * logEvery)
		if got := lines(); len(got) != 2 {
			t.Errorf("log %q; want no line after Flush's, the one that was due included", got)
		}
	})
}

// TestRefusalsOfBothLimitsAreCountedApart: a line that counts refusals
// over both limits names both, with each one's count, not the last's
// limit for all of them.
func TestRefusalsOfBothLimitsAreCountedApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &testenv.Buffer{}
		l := New(Limits{Total: 3, PerIP: 1}, nil, slog.New(slog.NewTextHandler(logs, nil)))
		l.Admit(tcp("10.0.0.1"))
		l.Admit(tcp("10.0.0.2"))
		l.Admit(tcp("10.0.0.2")) // over per_ip: logged at once
		l.Admit(tcp("10.0.0.2"))
		l.Admit(tcp("10.0.0.2"))
		l.Admit(tcp("10.0.0.3")) // the third open: total reached
		l.Admit(tcp("10.0.0.4"))
		l.Admit(tcp("10.0.0.5"))
		l.Admit(tcp("10.0.0.6"))
		time.Sleep(logEvery)
		synctest.Wait()
		got := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(got) != 2 {
			t.Fatalf("log: %q; want two lines", got)
		}
		for _, want := range []string{"refused=5 ", "limit=per_ip,total ", "over_total=3 ", "over_per_ip=2 ", "last_from=10.0.0.6"} {
			if !strings.Contains(got[1], want) {
				t.Errorf("second line %q does not say %s", got[1], want)
			}
		}
		if !strings.Contains(got[0], "refused=1 limit=per_ip over_total=0 over_per_ip=1 ") {
			t.Errorf("first line %q; want it to count the one per_ip refusal", got[0])
		}
	})
}

// TestListenerClosesWhatIsOverTheLimit: over real loopback connections,
// the one over the limit is closed as soon as it is accepted, and the
// listener goes on serving once a counted one closes.
func TestListenerClosesWhatIsOverTheLimit(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(Limits{Total: 10, PerIP: 1}, nil, slog.New(slog.DiscardHandler))
	lis := l.Listener(raw)
	defer lis.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	first := dial(t, raw.Addr())
	served := <-accepted
	second := dial(t, raw.Addr())
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection over the per-IP limit read %v; want it closed", err)
	}
	if len(accepted) != 0 {
		t.Error("the listener handed out a connection over the limit")
	}

	served.Close()
	first.Close()
	third := dial(t, raw.Addr())
	defer third.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after the counted one closed")
	}
	if n := l.Open(); n != 0 {
		t.Errorf("%d connections counted open after every accepted one closed; want 0", n)
	}
}

func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}
