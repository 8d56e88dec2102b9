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

// redisClock places Redis' clock against this process's. Turns are given
// by Redis' clock, and a replica must send its call when Redis' clock
// reaches the turn; how far off that is locally, it learns from the
// offset between the clocks. Each exchange with Redis measures it: Redis
// read its clock at some moment between the request leaving and the
// answer arriving, so the offset is known to within half the round trip.
// The clock keeps the exchange that places it best, allowing for its age,
// and so a turn is placed as well as the fastest recent exchange allows,
// however long the exchange that gave it took (a wait for a pooled
// connection, a Redis that stalled while the command was queued).
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
	// lead is the latest answers' delay after Redis gave them, as of
	// leadAt; it falls by leadDecay a second, and any later answer's
	// delay raises it.
	lead   time.Duration
	leadAt time.Time
}

// leadDecay is how fast the lead falls once answers come sooner: a
// stall's lead is gone in a few seconds.
const leadDecay = 100 * time.Millisecond

// sample is one exchange's measure of Redis' clock minus this process's.
type sample struct {
	offset time.Duration
	rtt    time.Duration
	at     time.Time // when it was taken, by this process's clock
}

// uncertainty is how far off s may be at now.
func (s sample) uncertainty(now time.Time) time.Duration {
	age := max(now.Sub(s.at), 0)
	return s.rtt/2 + time.Duration(float64(age)*float64(clockDrift)/float64(time.Second))
}

// observe takes an exchange that left at sent and was answered at recv,
// with Redis' clock reading redisNow, and returns the offset the clock now
// holds and how far off it may be.
func (c *redisClock) observe(sent, recv, redisNow time.Time) (offset, uncertainty time.Duration) {
	rtt := recv.Sub(sent)
	s := sample{offset: redisNow.Sub(sent.Add(rtt / 2)), rtt: rtt, at: recv}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.has || s.uncertainty(recv) <= c.best.uncertainty(recv) {
		c.best, c.has = s, true
	}
	// When Redis answered, by this process's clock, and how long the
	// answer took to arrive from then.
	late := max(recv.Sub(redisNow.Add(-c.best.offset)), 0)
	c.lead, c.leadAt = max(late, c.leadNow(recv)), recv
	return c.best.offset, c.best.uncertainty(recv)
}

// leadNow is the lead as it has fallen by now. The caller holds c.mu.
func (c *redisClock) leadNow(now time.Time) time.Duration {
	fallen := time.Duration(float64(max(now.Sub(c.leadAt), 0)) * float64(leadDecay) / float64(time.Second))
	return max(c.lead-fallen, 0)
}

// read returns the clock's offset, how far off it may be at now (any
// amount when it was never measured), and the lead a turn needs.
func (c *redisClock) read(now time.Time) (offset, uncertainty, lead time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.has {
		return 0, time.Duration(1<<63 - 1), 0
	}
	return c.best.offset, c.best.uncertainty(now), c.leadNow(now)
}

// placed reports whether the clock was ever measured.
func (c *redisClock) placed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.has
}
