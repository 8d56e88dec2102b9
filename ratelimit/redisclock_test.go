package ratelimit

import (
	"testing"
	"time"
)

// TestRedisClockKeepsItsBestExchange: Redis' clock is placed by the
// exchange that places it best, allowing for age; a slow exchange does not
// loosen it, and an old one gives way to a fresh one.
func TestRedisClockKeepsItsBestExchange(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	const ahead = 3 * time.Second // Redis' clock runs this far ahead
	// exchange returns the sent and received times of an exchange that
	// left at at, waited before before Redis read its clock and after after.
	exchange := func(at time.Duration, before, after time.Duration) (sent, recv, redisNow time.Time) {
		sent = base.Add(at)
		return sent, sent.Add(before + after), sent.Add(before + ahead)
	}
	var c redisClock
	if _, _, _, ok := c.read(base); ok {
		t.Fatal("an unmeasured clock is placed")
	}
	steps := []struct {
		name                string
		at, before, after   time.Duration
		wantOffset, wantUnc time.Duration
	}{
		{"first, 10 ms each way", 0, 10 * time.Millisecond, 10 * time.Millisecond, ahead, 10 * time.Millisecond},
		// Queued 200 ms for a connection: placed no worse than before.
		{"waited for a connection", 100 * time.Millisecond, 200 * time.Millisecond, 0, ahead, 10*time.Millisecond + 280*time.Microsecond},
		{"fast", time.Second, time.Millisecond, time.Millisecond, ahead, time.Millisecond},
		// 40 s later the fast one may have drifted 40 ms: a 20 ms one wins.
		{"old best gives way", 41 * time.Second, 10 * time.Millisecond, 10 * time.Millisecond, ahead, 10 * time.Millisecond},
	}
	for _, s := range steps {
		sent, recv, redisNow := exchange(s.at, s.before, s.after)
		place, unc := c.observe(sent, recv, redisNow)
		if d := place.redis(recv).Sub(recv) - s.wantOffset; d < -unc || d > unc {
			t.Errorf("%s: Redis' clock placed %s ahead, want %s within %s", s.name, place.redis(recv).Sub(recv), s.wantOffset, unc)
		}
		if back := place.local(place.redis(recv)); !back.Equal(recv) {
			t.Errorf("%s: local(redis(t)) = %s, want %s", s.name, back, recv)
		}
		// (plus the drift of its age: 1 ms a second)
		if d := unc - s.wantUnc; d < 0 || d > 100*time.Microsecond {
			t.Errorf("%s: uncertainty %s, want %s", s.name, unc, s.wantUnc)
		}
	}
}

// TestRedisClockLead: the lead follows how late answers arrive after Redis
// gave them, and falls once they come sooner.
func TestRedisClockLead(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	var c redisClock
	// A fast exchange places the clock (Redis 3 s ahead).
	c.observe(base, base.Add(2*time.Millisecond), base.Add(time.Millisecond+3*time.Second))
	// Then an answer that arrives 150 ms after Redis gave it.
	sent := base.Add(time.Second)
	c.observe(sent, sent.Add(151*time.Millisecond), sent.Add(time.Millisecond+3*time.Second))
	tests := []struct {
		after time.Duration
		want  time.Duration
	}{
		{0, 150 * time.Millisecond},
		{time.Second, 50 * time.Millisecond},
		{3 * time.Second, 0},
	}
	for _, tt := range tests {
		_, _, lead, _ := c.read(sent.Add(151*time.Millisecond + tt.after))
		if d := lead - tt.want; d < -2*time.Millisecond || d > 2*time.Millisecond {
			t.Errorf("%s after: lead %s, want about %s", tt.after, lead, tt.want)
		}
	}
}
