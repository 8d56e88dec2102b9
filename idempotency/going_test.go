package idempotency

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestGoing: Wait returns the keys of the work still going when ctx ends,
// each once and in order, and nothing once all of it has ended.
func TestGoing(t *testing.T) {
	a, b := Key{Account: "111111111111", RequestID: "r2"}, Key{Account: "111111111111", RequestID: "r1"}
	var g Going
	g.Add(a)
	g.Add(b)
	g.Add(a) // a repeat, on the same request_id
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	tests := []struct {
		done []Key
		want []Key
	}{
		{nil, []Key{b, a}},
		{[]Key{a}, []Key{b, a}},
		{[]Key{b}, []Key{a}},
	}
	for i, tt := range tests {
		for _, k := range tt.done {
			g.Done(k)
		}
		if still, err := g.Wait(short()); !slices.Equal(still, tt.want) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("step %d: Wait = %v, %v; want %v and the deadline", i, still, err, tt.want)
		}
	}
	g.Done(a)
	if still, err := g.Wait(context.Background()); still != nil || err != nil {
		t.Errorf("all ended: Wait = %v, %v; want nothing", still, err)
	}
}

// TestGoingLen counts each Add until its Done, two of one key included.
func TestGoingLen(t *testing.T) {
	var g Going
	a, b := Key{Account: "111111111111", RequestID: "a"}, Key{Account: "111111111111", RequestID: "b"}
	g.Add(a)
	g.Add(a)
	g.Add(b)
	if n := g.Len(); n != 3 {
		t.Errorf("Len = %d after 3 Adds; want 3", n)
	}
	g.Done(a)
	g.Done(b)
	if n := g.Len(); n != 1 {
		t.Errorf("Len = %d with one run left; want 1", n)
	}
	g.Done(a)
	if n := g.Len(); n != 0 {
		t.Errorf("Len = %d with none left; want 0", n)
	}
}
