// Package connlimit bounds the connections backupd's listeners hold open:
// in all, and from one IP address. A connection costs a file descriptor
// and some memory before its client has said who it is, so without a
// bound anyone who can reach a listener could open connections until the
// process has no descriptor left, for its callers or for its own calls to
// STS, DynamoDB and Redis. A connection over a limit is closed as soon as
// it is accepted, so its client fails at once rather than waiting in the
// kernel's queue.
package connlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits are the most connections open at once, counted over every
// listener that shares a Limiter.
type Limits struct {
	Total int // in all
	PerIP int // from one IP address
}

// Why a connection was refused, as Observer hears it.
const (
	OverTotal = "total"
	OverPerIP = "per_ip"
)

// Observer counts refused connections (package metrics).
type Observer interface {
	ObserveConnRefused(reason string)
}

// logEvery spaces the log's word of refusals: a flood of connections is
// one line every so often, not one per connection.
const logEvery = 10 * time.Second

// Limiter counts the open connections of the listeners it is given.
type Limiter struct {
	limits   Limits
	observer Observer
	log      *slog.Logger

	mu      sync.Mutex
	open    int
	perIP   map[netip.Addr]int
	refused int       // since the last log line
	logged  time.Time // when refusals were last logged
}

// New returns a Limiter of limits; observer may be nil.
func New(limits Limits, observer Observer, log *slog.Logger) *Limiter {
	return &Limiter{limits: limits, observer: observer, log: log, perIP: map[netip.Addr]int{}}
}

// Open is how many connections are open.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Admit counts a connection from addr, or refuses it when it would go
// over a limit. A counted connection is uncounted by release, which may
// be called more than once.
func (l *Limiter) Admit(addr net.Addr) (release func(), ok bool) {
	ip := ipOf(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	reason := ""
	switch {
	case l.open >= l.limits.Total:
		reason = OverTotal
	case l.perIP[ip] >= l.limits.PerIP:
		reason = OverPerIP
	}
	if reason != "" {
		l.refuseLocked(reason, ip)
		return nil, false
	}
	l.open++
	l.perIP[ip]++
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, true
}

func (l *Limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func (l *Limiter) refuseLocked(reason string, ip netip.Addr) {
	if l.observer != nil {
		l.observer.ObserveConnRefused(reason)
	}
	l.refused++
	if now := time.Now(); now.Sub(l.logged) >= logEvery {
		l.log.Warn("connections refused: too many open", slog.Int("refused", l.refused), slog.String("last_from", ip.String()),
			slog.String("limit", reason), slog.Int("open", l.open), slog.Int("max_connections", l.limits.Total),
			slog.Int("max_connections_per_ip", l.limits.PerIP))
		l.refused, l.logged = 0, now
	}
}

// ipOf is addr's IP address; the zero address, one count for all, for an
// address that is not TCP's.
func ipOf(addr net.Addr) netip.Addr {
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// Conn is c counted until its first Close.
func Conn(c net.Conn, release func()) net.Conn {
	return &conn{Conn: c, release: release}
}

type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	c.release()
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close a connection it ends after a
// response (Connection: close), so that its client reads the response
// before the close, rather than a reset for the request body it did not
// read.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Listener is lis with its connections counted by l: Accept closes those
// over the limits at once and goes on to the next.
func (l *Limiter) Listener(lis net.Listener) net.Listener {
	return &listener{Listener: lis, l: l}
}

type listener struct {
	net.Listener
	l *Limiter
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if release, ok := ln.l.Admit(c.RemoteAddr()); ok {
			return Conn(c, release), nil
		}
		c.Close()
	}
}
