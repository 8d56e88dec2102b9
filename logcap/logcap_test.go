package logcap

import (
	"fmt"
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
