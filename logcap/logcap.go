// Package logcap keeps a log readable through a fault that would repeat
// one line for every request or connection (a Redis that is down, a port
// probed without finishing its TLS handshake): each kind of line is written
// at most once per interval, and the next one of its kind says how many
// were left out. The lines left out since the last of their kind would
// end with the process unsaid: the Cappers of a process are made by one
// Group, whose Flush at exit writes how many each kind left out.
package logcap

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Capper decides which lines of each kind are written. Make one with New.
type Capper struct {
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*kind
}

// kind is when a kind of line was last written, and how many of it were
// left out since.
type kind struct {
	last    time.Time
	leftOut int
}

// maxKinds bounds the kinds a Capper keeps track of; a line of a kind past
// it is always written. Callers name their kinds from constants, far fewer
// than this.
const maxKinds = 64

// New returns a Capper that writes each kind of line at most once every
// interval.
func New(every time.Duration) *Capper {
	return &Capper{every: every, kinds: make(map[string]*kind)}
}

// Admit reports whether a line of kind may be written at now, and how
// many of its kind were left out before it.
func (c *Capper) Admit(name string, now time.Time) (leftOut int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.kinds[name]
	if k == nil {
		if len(c.kinds) >= maxKinds {
			return 0, true
		}
		k = &kind{}
		c.kinds[name] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < c.every {
		k.leftOut++
		return 0, false
	}
	leftOut = k.leftOut
	k.last, k.leftOut = now, 0
	return leftOut, true
}

// flush returns the kinds with lines left out since the last of their
// kind was written, and how many, and counts them as said.
func (c *Capper) flush() []counted {
	c.mu.Lock()
	defer c.mu.Unlock()
	var left []counted
	for name, k := range c.kinds {
		if k.leftOut > 0 {
			left = append(left, counted{name, k.leftOut})
			k.leftOut = 0
		}
	}
	slices.SortFunc(left, func(a, b counted) int { return cmp.Compare(a.kind, b.kind) })
	return left
}

// counted is how many lines of a kind were left out.
type counted struct {
	kind    string
	leftOut int
}

// Group makes the Cappers of a process, so that at its exit the lines
// they left out since the last of their kind are counted in the log
// (Flush) rather than lost with it: a burst of failed handshakes, or of a
// Redis client's errors, just before a SIGTERM, say. The zero Group is
// ready to use.
type Group struct {
	mu      sync.Mutex
	cappers []*Capper
}

// New returns a Capper, as the package's New does, that g's Flush
// reaches. A nil Group makes one that no Flush reaches.
func (g *Group) New(every time.Duration) *Capper {
	c := New(every)
	if g != nil {
		g.mu.Lock()
		g.cappers = append(g.cappers, c)
		g.mu.Unlock()
	}
	return c
}

// flushedMsg is the message of a line Flush writes.
const flushedMsg = "log lines left out since the last of their kind"

// Flush writes to log, at WARN, a line for each kind of each of g's
// Cappers with lines left out since the last of its kind was written:
// flushedMsg, the kind, and how many in left_out. At exit, once what
// writes capped lines has stopped.
func (g *Group) Flush(log *slog.Logger) {
	if g == nil {
		return
	}
	g.mu.Lock()
	cappers := slices.Clone(g.cappers)
	g.mu.Unlock()
	for _, c := range cappers {
		for _, k := range c.flush() {
			log.LogAttrs(context.Background(), slog.LevelWarn, flushedMsg, slog.String("kind", k.kind), slog.Int("left_out", k.leftOut))
		}
	}
}

// LeftOut is the attribute of a written line that says how many of its
// kind were left out before it: none when none were.
func LeftOut(n int) []slog.Attr {
	if n == 0 {
		return nil
	}
	return []slog.Attr{slog.Int("left_out", n)}
}
