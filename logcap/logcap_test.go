package logcap

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestAdmit: each kind is written once per interval, apart from the
// others, and the first written after it says how many were left out;
// kinds past maxKinds are always written.
func TestAdmit(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c := New(10 * time.Second)
	tests := []struct {
		kind    string
		at      time.Duration
		ok      bool
		leftOut int
	}{
		{"dial", 0, true, 0},
		{"dial", time.Second, false, 0},
		{"pubsub", 2 * time.Second, true, 0},
		{"dial", 9 * time.Second, false, 0},
		{"dial", 10 * time.Second, true, 2},
		{"dial", 11 * time.Second, false, 0},
		{"pubsub", 30 * time.Second, true, 0},
	}
	for i, tt := range tests {
		if leftOut, ok := c.Admit(tt.kind, t0.Add(tt.at)); ok != tt.ok || leftOut != tt.leftOut {
			t.Errorf("%d: Admit(%s at %s) = %d, %v; want %d, %v", i, tt.kind, tt.at, leftOut, ok, tt.leftOut, tt.ok)
		}
	}
	for i := range maxKinds {
		c.Admit(fmt.Sprint("kind ", i), t0)
	}
	for range 3 {
		if _, ok := c.Admit("one too many", t0); !ok {
			t.Error("a kind past maxKinds was left out")
		}
	}
	if got := LeftOut(0); got != nil {
		t.Errorf("LeftOut(0) = %v; want none", got)
	}
	if got := LeftOut(3); len(got) != 1 || got[0].Key != "left_out" || got[0].Value.Int64() != 3 {
		t.Errorf("LeftOut(3) = %v; want left_out=3", got)
	}
}

// TestGroupFlush: Flush writes, for each kind of each Capper the Group
// made that left lines out since the last of its kind, one line counting
// them, and counts them only once; a Capper made by a nil Group is
// reached by no Flush.
func TestGroupFlush(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var g Group
	handshakes, redis := g.New(10*time.Second), g.New(10*time.Second)
	alone := (*Group)(nil).New(10 * time.Second)
	for i := range 5 {
		handshakes.Admit("http: TLS handshake error", t0.Add(time.Duration(i)*time.Second))
		alone.Admit("alone", t0.Add(time.Duration(i)*time.Second))
	}
	handshakes.Admit("grpc: TLS handshake error", t0) // written: none left out
	redis.Admit("redis: dial", t0)
	redis.Admit("redis: dial", t0.Add(time.Second))
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	g.Flush(log)
	want := `level=WARN msg="log lines left out since the last of their kind" kind="http: TLS handshake error" left_out=4
level=WARN msg="log lines left out since the last of their kind" kind="redis: dial" left_out=1
`
	if logs.String() != want {
		t.Errorf("Flush wrote:\n%s\nwant:\n%s", logs.String(), want)
	}
	logs.Reset()
	g.Flush(log)
	if logs.String() != "" {
		t.Errorf("a second Flush wrote %q; want nothing: the lines were counted", logs.String())
	}
	if leftOut, ok := handshakes.Admit("http: TLS handshake error", t0.Add(20*time.Second)); !ok || leftOut != 0 {
		t.Errorf("after Flush, Admit = %d, %v; want 0, true: those left out were counted by Flush", leftOut, ok)
	}
	(*Group)(nil).Flush(log) // does nothing
}
