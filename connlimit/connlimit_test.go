package connlimit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestRefusalsAreLoggedNowAndThen: a flood of refused connections is one
// log line per logEvery, which names the limit and how many were refused.
func TestRefusalsAreLoggedNowAndThen(t *testing.T) {
	var logs bytes.Buffer
	l := New(Limits{Total: 1, PerIP: 1}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	l.Admit(tcp("10.0.0.1"))
	for range 100 {
		l.Admit(tcp("10.0.0.9"))
	}
	if n := strings.Count(logs.String(), "connections refused"); n != 1 {
		t.Fatalf("%d log lines for 100 refusals in a moment; want 1:\n%s", n, logs.String())
	}
	for _, want := range []string{"limit=total", "max_connections=1", "last_from=10.0.0.9"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log line %q does not say %s", logs.String(), want)
		}
	}
	l.logged = l.logged.Add(-logEvery)
	l.Admit(tcp("10.0.0.9"))
	if !strings.Contains(logs.String(), "refused=100") {
		t.Errorf("the next line does not count the 99 refused since the last one and its own:\n%s", logs.String())
	}
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
