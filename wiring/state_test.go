package wiring

import (
	"testing"
	"time"
)

// TestRequestIDLease: a request_id run must end a second before its
// claim's lease, so the lease must outlast upstream_timeout, which bounds
// the run, however large that is configured: 2*upstream_timeout
// overflowed to a negative for one above ~146 years (config takes up to
// ~292), and the lease fell back to 1 min, cutting every run at 59 s.
func TestRequestIDLease(t *testing.T) {
	for _, ut := range []time.Duration{time.Second, 20 * time.Second, time.Hour, 2_000_000 * time.Hour, (1<<63-1)/2 + 1} {
		if l := requestIDLease(ut); l < ut+time.Second || l < time.Minute {
			t.Errorf("upstream_timeout %s: lease %s", ut, l)
		}
	}
}
