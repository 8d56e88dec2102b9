// Package logcap keeps a log readable through a fault that would repeat
// one line for every request or connection (a Redis that is down, a port
// probed without finishing its TLS handshake): each kind of line is written
// at most once per interval, and the next one of its kind says how many
// were left out.
package logcap

import (
	"log/slog"
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

// LeftOut is the attribute of a written line that says how many of its
// kind were left out before it: none when none were.
func LeftOut(n int) []slog.Attr {
	if n == 0 {
		return nil
	}
	return []slog.Attr{slog.Int("left_out", n)}
}
