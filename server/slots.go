package server

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/backupd/backupd/connlimit"
	"github.com/backupd/backupd/rpcerror"
)

// streamSlots bounds the streams of one kind that take no token (health
// Watch, reflection) open at once, per caller: max for each caller that
// presents its token, and max for all streams without a known caller's
// token together (""), so that streams held by whoever can reach the port
// do not take the places of callers backupd knows. Of those, one client
// address holds at most maxFrom, so that one client cannot take them all
// (behind a proxy, whose address they share, the tokenless ones hold
// maxFrom together). Callers come from the configuration, so the map of
// callers stays small; that of addresses holds those with streams open.
type streamSlots struct {
	mu   sync.Mutex
	held map[string]int
	from map[netip.Addr]int
	max  int
	// maxFrom bounds the tokenless streams from one client address.
	maxFrom int
	// kind names the streams ("health watches"), advice what to do when
	// they are refused, and reason the refusal's ErrorInfo reason.
	kind, advice, reason string
}

func newStreamSlots(max int, kind, advice, reason string) *streamSlots {
	return &streamSlots{held: map[string]int{}, from: map[netip.Addr]int{}, max: max, maxFrom: max / 4,
		kind: kind, advice: advice, reason: reason}
}

// take claims a place for a stream of caller ("" for none) that ctx's
// client opens, or returns its refusal; release gives the place back.
func (s *streamSlots) take(ctx context.Context, caller string) (release func(), err error) {
	addr := clientAddr(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if caller == "" && s.from[addr] >= s.maxFrom {
		return nil, s.refusal(caller, true)
	}
	if s.held[caller] >= s.max {
		return nil, s.refusal(caller, false)
	}
	if caller == "" {
		s.from[addr]++
	}
	s.held[caller]++
	return func() { s.give(caller, addr) }, nil
}

// give gives back the place take claimed for caller from addr.
func (s *streamSlots) give(caller string, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[caller]--; s.held[caller] == 0 {
		delete(s.held, caller)
	}
	if caller != "" {
		return
	}
	if s.from[addr]--; s.from[addr] == 0 {
		delete(s.from, addr)
	}
}

// refusal refuses a stream of caller ("" for none) that take did not let
// open, because of its client address's bound (fromAddr) or the caller's.
func (s *streamSlots) refusal(caller string, fromAddr bool) error {
	var msg string
	switch {
	case caller != "":
		msg = fmt.Sprintf("%d %s of caller %s are open already; %s", s.max, s.kind, caller, s.advice)
	case fromAddr:
		msg = fmt.Sprintf("%d %s without a caller's token are open already from this client's address; %s, or send your token", s.maxFrom, s.kind, s.advice)
	default:
		msg = fmt.Sprintf("%d %s without a caller's token are open already; %s, or send your token", s.max, s.kind, s.advice)
	}
	return refused(&rpcerror.RequestError{Code: codes.ResourceExhausted, Reason: s.reason, Msg: msg, RetryAfter: rpcerror.DefaultRetryAfter})
}

// clientAddr is the address of the client of ctx's stream, as the
// connection limits count it.
func clientAddr(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return netip.Addr{}
	}
	return connlimit.IP(p.Addr)
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
