package server

import (
	"context"
	"sync"
)

// streamSlots bounds the streams of one kind that take no token (health
// Watch, reflection) open at once, per caller: max for each caller that
// presents its token, and max for all streams without a known caller's
// token together (""), so that streams held by whoever can reach the port
// do not take the places of callers backupd knows. Callers come from the
// configuration, so the map stays small.
type streamSlots struct {
	mu   sync.Mutex
	held map[string]int
	max  int
}

func newStreamSlots(max int) *streamSlots { return &streamSlots{held: map[string]int{}, max: max} }

// take claims a place for caller's stream, unless caller holds them all.
func (s *streamSlots) take(caller string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[caller] >= s.max {
		return false
	}
	s.held[caller]++
	return true
}

// give gives back a place take claimed.
func (s *streamSlots) give(caller string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[caller]--; s.held[caller] == 0 {
		delete(s.held, caller)
	}
}

// authenticator names a request's caller from its metadata (Authorizer).
type authenticator interface {
	Authenticate(ctx context.Context) (caller string, err error)
}

// callerOf names the caller whose token ctx's stream presents, or "" for
// one that presents none, or one backupd does not know: these streams take
// no token, so such a stream is not refused, only bounded with the others
// like it.
func callerOf(authn authenticator, ctx context.Context) string {
	if authn == nil {
		return ""
	}
	c, err := authn.Authenticate(ctx)
	if err != nil {
		return ""
	}
	return c
}
