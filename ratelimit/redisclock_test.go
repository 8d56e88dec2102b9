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
		place, unc, _ := c.observe(sent, recv, redisNow)
		if d := place.redis(recv).Sub(recv) - s.wantOffset; d < -unc || d > unc {
			t.Errorf("%s: Redis' clock placed %s ahead, want %s within %s", s.name, place.redis(recv).Sub(recv), s.wantOffset, unc)
		}
		// (plus the drift of its age: 1 ms a second)
		if d := unc - s.wantUnc; d < 0 || d > 100*time.Microsecond {
			t.Errorf("%s: uncertainty %s, want %s", s.name, unc, s.wantUnc)
		}
	}
}

// placedAhead is a clock placed by one fast exchange (a 2 ms round trip)
// with Redis' clock 3 s ahead, and when that exchange left.
func placedAhead() (*redisClock, time.Time) {
	base := time.Unix(1_800_000_000, 0)
	c := &redisClock{}
	c.observe(base, base.Add(2*time.Millisecond), base.Add(time.Millisecond+3*time.Second))
	return c, base
}

// TestRedisClockLead: the lead follows how late answers arrive after Redis
// gave them, and falls once they come sooner.
func TestRedisClockLead(t *testing.T) {
	c, base := placedAhead()
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
		lead := c.currentLead(sent.Add(151*time.Millisecond + tt.after))
		if d := lead - tt.want; d < -2*time.Millisecond || d > 2*time.Millisecond {
			t.Errorf("%s after: lead %s, want about %s", tt.after, lead, tt.want)
		}
	}
}

// TestRedisClockFollowsAStep: an exchange that the best placing cannot
// explain (Redis' clock stepped, or another server answers) replaces it,
// though it was slower; one it explains does not.
func TestRedisClockFollowsAStep(t *testing.T) {
	c, base := placedAhead()
	sent := base.Add(time.Second)
	// Slower, and in line with the best (Redis read its clock 15 ms into
	// 20): kept out. Taken, it would place Redis' clock 5 ms further ahead.
	place, _, stepped := c.observe(sent, sent.Add(20*time.Millisecond), sent.Add(15*time.Millisecond+3*time.Second))
	if got := place.redis(sent).Sub(sent); got < 3*time.Second-2*time.Millisecond || got > 3*time.Second+2*time.Millisecond || stepped {
		t.Fatalf("a slower exchange in line moved the placing to %s ahead (a step: %v)", got, stepped)
	}
	// Redis' clock stepped 500 ms back: followed, and not a step forward.
	sent = base.Add(2 * time.Second)
	place, _, stepped = c.observe(sent, sent.Add(20*time.Millisecond), sent.Add(10*time.Millisecond+2500*time.Millisecond))
	if got := place.redis(sent).Sub(sent); got < 2490*time.Millisecond || got > 2510*time.Millisecond || stepped {
		t.Errorf("after Redis' clock stepped back, placed %s ahead (a step forward: %v); want 2.5 s", got, stepped)
	}
	// Then 700 ms forward: followed, and a step forward.
	sent = base.Add(3 * time.Second)
	place, _, stepped = c.observe(sent, sent.Add(20*time.Millisecond), sent.Add(10*time.Millisecond+3200*time.Millisecond))
	if got := place.redis(sent).Sub(sent); got < 3190*time.Millisecond || got > 3210*time.Millisecond || !stepped {
		t.Errorf("after Redis' clock stepped forward, placed %s ahead (a step forward: %v); want 3.2 s and a step", got, stepped)
	}
}

// TestSamplePlacesUntil: a placing off by 1 ms (a 2 ms round trip) stays
// within 12.5 ms for 11.5 s, at 1 ms a second.
func TestSamplePlacesUntil(t *testing.T) {
	mid := time.Unix(1_800_000_000, 0)
	s := sample{mid: mid, rtt: 2 * time.Millisecond}
	until := s.placesUntil(12500 * time.Microsecond)
	if got := until.Sub(mid); got != 11500*time.Millisecond {
		t.Errorf("placesUntil = mid + %s, want 11.5s", got)
	}
	if u := s.uncertainty(until); u != 12500*time.Microsecond {
		t.Errorf("uncertainty at placesUntil = %s, want 12.5ms", u)
	}
}

// TestRedisClockFailedHoldPutsBackThePlacing: a hold that did not reach
// Redis puts back the placing from before the step, so the next exchange
// finds the step again; one that did keeps the stepped placing; and after
// a reset (another server), a failed hold puts back nothing of the old
// server's clock.
func TestRedisClockFailedHoldPutsBackThePlacing(t *testing.T) {
	step := func(c *redisClock, base time.Time, at time.Duration) bool {
		sent := base.Add(at)
		_, _, stepped := c.observe(sent, sent.Add(20*time.Millisecond), sent.Add(10*time.Millisecond+3700*time.Millisecond))
		return stepped
	}
	for _, tt := range []struct {
		name      string
		done      bool
		reset     bool
		wantAgain bool // the next exchange finds the step again
	}{
		{"hold failed", false, false, true},
		{"hold made", true, false, false},
		{"hold failed after a reset", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, base := placedAhead() // 3 s ahead
			if !step(c, base, time.Second) {
				t.Fatal("a step of 700 ms forward was not found")
			}
			if tt.reset {
				c.reset()
			}
			c.held(tt.done)
			if again := step(c, base, 2*time.Second); again != tt.wantAgain {
				t.Errorf("the next exchange found a step: %v; want %v", again, tt.wantAgain)
			}
		})
	}
}

// TestRedisClockLeadFallsGradually: a prompt answer after a late one does
// not drop the lead at once: it falls by leadDecay a second, so that the
// turns asked for while answers may still come late (a stall clearing)
// keep their lead.
func TestRedisClockLeadFallsGradually(t *testing.T) {
	c, base := placedAhead()
	sent := base.Add(time.Second)
	c.observe(sent, sent.Add(151*time.Millisecond), sent.Add(time.Millisecond+3*time.Second)) // 150 ms late
	sent = sent.Add(time.Second)
	c.observe(sent, sent.Add(2*time.Millisecond), sent.Add(time.Millisecond+3*time.Second)) // prompt
	if lead := c.currentLead(sent.Add(2 * time.Millisecond)); lead < 60*time.Millisecond || lead > 70*time.Millisecond {
		t.Errorf("lead after a prompt answer, 851 ms after one that arrived 150 ms late: %s; want about 65 ms (150 ms, fallen by 85)", lead)
	}
}

// TestRedisClockStepWithinASlowExchange: a slow exchange places Redis'
// clock loosely, but no more loosely than half its round trip: one whose
// reading lies further from the placing than that, and than the placing's
// own uncertainty, found Redis' clock stepped, though by less than the
// whole round trip.
func TestRedisClockStepWithinASlowExchange(t *testing.T) {
	c, base := placedAhead()
	sent := base.Add(time.Second)
	// 40 ms: Redis read its clock within 20 ms of the midpoint.
	if _, _, stepped := c.observe(sent, sent.Add(40*time.Millisecond), sent.Add(20*time.Millisecond+3*time.Second+15*time.Millisecond)); stepped {
		t.Fatal("a 40 ms exchange 15 ms off the placing: taken for a step")
	}
	sent = sent.Add(time.Second)
	if _, _, stepped := c.observe(sent, sent.Add(40*time.Millisecond), sent.Add(20*time.Millisecond+3*time.Second+30*time.Millisecond)); !stepped {
		t.Error("a 40 ms exchange 30 ms ahead of the placing: not taken for a step forward")
	}
}

// TestRedisClockTwoStepsUnderOneHold: Redis' clock steps forward 700 ms,
// and 15 ms more before the first hold has been answered; both holds
// fail. The placing put back is the one from before the first step, 3 s
// ahead, so that the next exchange finds both steps off it and holds the
// turns, even a 30 ms one. The placing between the steps, put back
// instead, took that exchange's 15 ms off it for the exchange's own
// uncertainty: no step found, and the 715 ms went unheld, turns given by
// the stepped clock due among those given before it.
func TestRedisClockTwoStepsUnderOneHold(t *testing.T) {
	c, base := placedAhead() // 3 s ahead, by a 2 ms exchange
	exchange := func(at, rtt, ahead time.Duration) bool {
		sent := base.Add(at)
		_, _, stepped := c.observe(sent, sent.Add(rtt), sent.Add(rtt/2+ahead))
		return stepped
	}
	if !exchange(time.Second, 20*time.Millisecond, 3700*time.Millisecond) {
		t.Fatal("a step of 700 ms forward was not found")
	}
	if !exchange(time.Second+50*time.Millisecond, 2*time.Millisecond, 3715*time.Millisecond) {
		t.Fatal("a second step, of 15 ms forward, found by a 2 ms exchange, was not found")
	}
	c.held(false)
	c.held(false)
	at := base.Add(2 * time.Second)
	if place, _, _, _ := c.read(at); place.redis(at).Sub(at) != 3*time.Second {
		t.Errorf("after both holds failed, Redis' clock placed %s ahead; want 3s, as before the first step", place.redis(at).Sub(at))
	}
	if !exchange(2*time.Second, 30*time.Millisecond, 3715*time.Millisecond) {
		t.Error("the next exchange, a 30 ms one, found no step; want both found again, and the turns held")
	}
}
