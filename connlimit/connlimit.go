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
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
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

	mu    sync.Mutex
	open  int
	perIP map[netip.Addr]int
	// Refusals since the last log line, by the limit they were over, and
	// the last one's address, for the next line.
	overTotal, overPerIP int
	lastFrom             netip.Addr
	logged               time.Time // when refusals were last logged
	pending              bool      // a log line is due
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
	ip := IP(addr)
	l.mu.Lock()
	reason := ""
	switch {
	case l.open >= l.limits.Total:
		reason = OverTotal
	case l.perIP[ip] >= l.limits.PerIP:
		reason = OverPerIP
	}
	if reason != "" {
		line := l.refuseLocked(reason, ip)
		l.mu.Unlock()
		l.warn(line)
		return nil, false
	}
	l.open++
	l.perIP[ip]++
	l.mu.Unlock()
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

// refuseLocked counts a refusal, and returns the log line to write now:
// the first refusal's at once, then, at most once per logEvery, one
// counting those since the last, written when it is due, so that the
// count of a burst is in the log within logEvery of it.
func (l *Limiter) refuseLocked(reason string, ip netip.Addr) []slog.Attr {
	if l.observer != nil {
		l.observer.ObserveConnRefused(reason)
	}
	if reason == OverTotal {
		l.overTotal++
	} else {
		l.overPerIP++
	}
	l.lastFrom = ip
	if l.pending {
		return nil
	}
	if wait := logEvery - time.Since(l.logged); wait > 0 {
		l.pending = true
		time.AfterFunc(wait, l.logDue)
		return nil
	}
	return l.lineLocked()
}

// logDue writes the line of the refusals since the last one, unless
// Flush wrote it.
func (l *Limiter) logDue() {
	l.mu.Lock()
	l.pending = false
	line := l.unloggedLocked()
	l.mu.Unlock()
	l.warn(line)
}

// Flush writes the line of the refusals not logged yet, if any: at
// shutdown, so that a burst's count does not end with the process
// before its line was due.
func (l *Limiter) Flush() {
	l.mu.Lock()
	line := l.unloggedLocked()
	l.mu.Unlock()
	l.warn(line)
}

// unloggedLocked is the line of the refusals since the last line, nil
// for none.
func (l *Limiter) unloggedLocked() []slog.Attr {
	if l.overTotal+l.overPerIP == 0 {
		return nil
	}
	return l.lineLocked()
}

func (l *Limiter) lineLocked() []slog.Attr {
	var limits []string // those the refusals counted were over
	if l.overPerIP > 0 {
		limits = append(limits, OverPerIP)
	}
	if l.overTotal > 0 {
		limits = append(limits, OverTotal)
	}
	line := []slog.Attr{slog.Int("refused", l.overTotal+l.overPerIP), slog.String("limit", strings.Join(limits, ",")),
		slog.Int("over_total", l.overTotal), slog.Int("over_per_ip", l.overPerIP), slog.String("last_from", l.lastFrom.String()),
		slog.Int("open", l.open), slog.Int("max_connections", l.limits.Total), slog.Int("max_connections_per_ip", l.limits.PerIP)}
	l.overTotal, l.overPerIP, l.logged = 0, 0, time.Now()
	return line
}

// warn writes line, without the lock held: a log writer that stalls
// holds up no connection.
func (l *Limiter) warn(line []slog.Attr) {
	if line != nil {
		l.log.LogAttrs(context.Background(), slog.LevelWarn, "connections refused: too many open", line...)
	}
}

// IP is the client address that bounds per client count addr as: its IP
// address, an IPv4-mapped one as IPv4; the zero address, one count for
// all, for an address that is not TCP's.
func IP(addr net.Addr) netip.Addr {
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
