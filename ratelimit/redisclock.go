package ratelimit

import (
	"sync"
	"time"
)

// clockDrift is how fast the offset between Redis' clock and this
// process's may change, per second: far above what NTP-kept clocks do
// (well under a millisecond a second), so a measured offset is trusted
// less as it ages, never more than it should be.
const clockDrift = time.Millisecond

// leadDecay is how fast the lead falls once answers come sooner: a
// stall's lead is gone in a few seconds.
const leadDecay = 100 * time.Millisecond

// redisClock places Redis' clock against this process's. Turns are given
// by Redis' clock, and a replica must send its call when Redis' clock
// reaches the turn; when that is here, it learns from its exchanges with
// Redis: Redis read its clock at some moment between the request leaving
// and the answer arriving, so each exchange places it to within half the
// round trip. The clock keeps the exchange that places it best, allowing
// for its age, and so a turn is placed as well as the fastest recent
// exchange allows, however long the exchange that gave it took (a wait
// for a pooled connection, a Redis that stalled while the command was
// queued). Turns are placed by this process's monotonic clock, so a step
// of its wall clock does not move them.
//
// It also keeps how long Redis' answers take to arrive after Redis gave
// them (the lead): a turn must lie at least that far ahead for its answer
// to arrive before it does. A replica on a slow link then gets turns as
// far ahead as its answers are late and sends its calls on time, instead
// of receiving turns already past.
type redisClock struct {
	mu   sync.Mutex
	best sample
	has  bool
	// latest is when Redis last answered an exchange asking its time
	// (renewedAt), by this process's clock; best may be older, when no
	// exchange since placed it better. A turn's exchange is not one: it
	// is timed with the queue of turns, and would keep a placing from
	// ever being renewed under steady traffic.
	latest time.Time
	// lead is the latest answers' delay after Redis gave them, as of
	// leadAt; it falls by leadDecay a second, and any later answer's
	// delay raises it.
	lead   time.Duration
	leadAt time.Time
	// maxLead caps the lead, when not zero.
	maxLead time.Duration
	// epoch counts the placings given up: each time an exchange found
	// Redis' clock off the best placing (it stepped), each reset, and each
	// hold that ended. A turn asked for by a placing of an earlier epoch
	// may be off by the step.
	epoch uint64
	// holds counts the holds of the turns (holdTurns) under way, from the
	// exchange that found the clock stepped forward to the hold's answer:
	// meanwhile Redis still gives turns by the stepped clock, unheld, and
	// none may be used. settled is closed when the last of them ends.
	holds   int
	settled chan struct{}
	// beforeStep is the placing before the first step of the holds under
	// way: a hold that fails puts it back, so that the next exchange
	// finds the step again and holds the turns then, rather than the
	// step being taken into the placing, unheld, for good. A reset (a
	// failover: another server's clock) forgets it.
	beforeStep   sample
	beforeStepOK bool
	// stepBound, when not zero, bounds the drift an old placing is allowed
	// when an exchange is checked against it (agrees): a placing unused
	// for minutes would otherwise take a step of Redis' clock as big as
	// its drift allowance (600 ms after ten minutes) for drift, and place
	// its turns by the stepped clock among those other replicas queued by
	// the clock before. Drift that large is a step's to hold for.
	stepBound time.Duration
}

// sample is one exchange's placing of Redis' clock: Redis read redisMid
// at mid, by this process's clock, give or take half of rtt.
type sample struct {
	mid      time.Time // with its monotonic reading
	redisMid time.Time
	rtt      time.Duration
}

// local is when, by this process's clock, Redis' clock reads t.
func (s sample) local(t time.Time) time.Time { return s.mid.Add(t.Sub(s.redisMid)) }

// redis is what Redis' clock reads at t, by this process's clock.
func (s sample) redis(t time.Time) time.Time { return s.redisMid.Add(t.Sub(s.mid)) }

// uncertainty is how far off s may be at t.
func (s sample) uncertainty(t time.Time) time.Duration {
	age := max(t.Sub(s.mid), 0)
	return s.rtt/2 + time.Duration(float64(age)*float64(clockDrift)/float64(time.Second))
}

// placesUntil is the last moment, by this process's clock, at which s is
// off by no more than bound.
func (s sample) placesUntil(bound time.Duration) time.Time {
	return s.mid.Add(time.Duration(float64(bound-s.rtt/2) * float64(time.Second) / float64(clockDrift)))
}

// observe takes an exchange that left at sent and was answered at recv,
// with Redis' clock reading redisNow, and returns the placing the clock
// now holds and how far off it may be at recv, and whether Redis' clock
// stepped forward since the placing before: further than the two
// exchanges' uncertainties explain.
func (c *redisClock) observe(sent, recv, redisNow time.Time) (place sample, uncertainty time.Duration, steppedForward bool) {
	rtt := recv.Sub(sent)
	s := sample{mid: sent.Add(rtt / 2), redisMid: redisNow, rtt: rtt}
	c.mu.Lock()
	defer c.mu.Unlock()
	off := c.has && !c.agrees(s)
	steppedForward = off && s.redisMid.After(c.best.redis(s.mid))
	if off {
		c.epoch++
	}
	if steppedForward {
		// The caller holds the turns, and says when it is done (held).
		if c.holds == 0 {
			c.beforeStep, c.beforeStepOK = c.best, true
		}
		c.holds++
		if c.settled == nil {
			c.settled = make(chan struct{})
		}
	}
	if !c.has || s.uncertainty(recv) <= c.best.uncertainty(recv) || off {
		c.best, c.has = s, true
	}
	// How long the answer took to arrive after Redis gave it.
	late := max(recv.Sub(c.best.local(redisNow)), 0)
	c.lead, c.leadAt = max(late, c.leadNow(recv)), recv
	if c.maxLead > 0 {
		c.lead = min(c.lead, c.maxLead)
	}
	return c.best, c.best.uncertainty(recv), steppedForward
}

// agrees reports whether s fits what the best sample says Redis' clock
// read at s.mid. One that does not means that clock stepped (or another
// server answers): the best sample places it no longer. The caller holds
// c.mu.
func (c *redisClock) agrees(s sample) bool {
	d := s.redisMid.Sub(c.best.redis(s.mid))
	off := c.best.uncertainty(s.mid)
	if c.stepBound > 0 {
		off = min(off, c.best.rtt/2+c.stepBound)
	}
	return d.Abs() <= s.rtt/2+off
}

// leadNow is the lead as it has fallen by now. The caller holds c.mu.
func (c *redisClock) leadNow(now time.Time) time.Duration {
	fallen := time.Duration(float64(max(now.Sub(c.leadAt), 0)) * float64(leadDecay) / float64(time.Second))
	return max(c.lead-fallen, 0)
}

// read returns the clock's placing, how far off it may be at now, and
// when Redis was last asked its time; ok is false when the clock was
// never placed.
func (c *redisClock) read(now time.Time) (s sample, uncertainty time.Duration, latest time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.has {
		return sample{}, 0, time.Time{}, false
	}
	return c.best, c.best.uncertainty(now), c.latest, true
}

// renewedAt notes when an exchange asking Redis its time (readClock) was
// answered.
func (c *redisClock) renewedAt(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latest = t
}

// currentLead is the lead a turn asked for at now needs.
func (c *redisClock) currentLead(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leadNow(now)
}

// reset forgets the clock: another server gives the turns now (a
// failover), whose clock is not the one placed.
func (c *redisClock) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.has, c.lead, c.beforeStepOK = false, 0, false
	c.epoch++
}

// currentEpoch is the epoch of the placing read now.
func (c *redisClock) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// held ends a hold that observe's finding of a forward step started;
// done says whether it reached Redis. One that did not puts back the
// placing from before the step, which the next exchange then finds off
// again, and holds the turns for.
func (c *redisClock) held(done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !done && c.beforeStepOK {
		c.best, c.has = c.beforeStep, true
	}
	c.holds--
	c.epoch++
	if c.holds == 0 {
		close(c.settled)
		c.settled = nil
	}
}

// unsettled reports whether a turn asked for at epoch may be off by a
// step: the placing changed since, or a hold is under way. wait, when not
// nil, is closed once no hold is.
func (c *redisClock) unsettled(epoch uint64) (off bool, wait <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch != epoch || c.holds > 0, c.settled
}
