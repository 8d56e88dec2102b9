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
type redisClock struct {
	mu   sync.Mutex
	best sample
	has  bool
}

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
	return c.best.offset, c.best.uncertainty(recv)
}

// uncertainty is how far off the clock may be at now; a clock that has
// never been measured may be off by any amount.
func (c *redisClock) uncertainty(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.has {
		return time.Duration(1<<63 - 1)
	}
	return c.best.uncertainty(now)
}
