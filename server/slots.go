package server

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/backupd/backupd/rpcerror"
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
	// kind names the streams ("health watches"), advice what to do when
	// they are refused, and reason the refusal's ErrorInfo reason.
	kind, advice, reason string
}

func newStreamSlots(max int, kind, advice, reason string) *streamSlots {
	return &streamSlots{held: map[string]int{}, max: max, kind: kind, advice: advice, reason: reason}
}

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

// refusal refuses a stream of caller ("" for none) that take did not let
// open.
func (s *streamSlots) refusal(caller string) error {
	msg := fmt.Sprintf("%d %s without a caller's token are open already; %s, or send your token", s.max, s.kind, s.advice)
	if caller != "" {
		msg = fmt.Sprintf("%d %s of caller %s are open already; %s", s.max, s.kind, caller, s.advice)
	}
	return refused(&rpcerror.RequestError{Code: codes.ResourceExhausted, Reason: s.reason, Msg: msg, RetryAfter: rpcerror.DefaultRetryAfter})
}

// authenticator names a request's caller from its metadata (Authorizer).
type authenticator interface {
	Authenticate(ctx context.Context) (caller string, err error)
}

// callerOf names the caller whose token ctx's stream presents, or "" for
// one that presents none, or one backupd does not know: these streams take
// no token, so such a stream is not refused, only bounded with the others
// like it.
func callerOf(ctx context.Context, authn authenticator) string {
	if authn == nil {
		return ""
	}
	c, err := authn.Authenticate(ctx)
	if err != nil {
		return ""
	}
	return c
}
