package server

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc/peer"
)

// Places given back leave nothing behind: the maps hold only the callers
// and addresses with streams open, whoever has come and gone.
func TestStreamSlotsForgetWhoLeft(t *testing.T) {
	s := newStreamSlots(8, "streams", "wait", "TOO_MANY_STREAMS")
	from := func(ip string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}})
	}
	var releases []func()
	for _, c := range []struct {
		ctx    context.Context
		caller string
	}{
		{from("10.0.0.1"), ""}, {from("::ffff:10.0.0.1"), ""}, {from("10.0.0.2"), ""},
		{from("10.0.0.1"), "orders"}, {context.Background(), ""},
	} {
		release, err := s.take(c.ctx, c.caller)
		if err != nil {
			t.Fatalf("take(%q): %v", c.caller, err)
		}
		releases = append(releases, release)
	}
	if _, err := s.take(from("10.0.0.1"), ""); err == nil {
		t.Error("a third tokenless stream from 10.0.0.1 (an IPv4-mapped address counting as it) was let open; want it refused")
	}
	if got := s.from[netip.MustParseAddr("10.0.0.1")]; got != 2 {
		t.Errorf("10.0.0.1 holds %d places; want 2", got)
	}
	for _, release := range releases {
		release()
	}
	if len(s.held) != 0 || len(s.from) != 0 {
		t.Errorf("after every stream closed: held %v, from %v; want both empty", s.held, s.from)
	}
}

// setBounds sets s's bounds while its streams may be taking places.
func (s *streamSlots) setBounds(max, maxFrom int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max, s.maxFrom = max, maxFrom
}
