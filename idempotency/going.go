package idempotency

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// Going is work on request_ids going on in the background (a run whose
// caller left, a result Redis has yet to keep). Shutdown waits for it, and
// names the request_ids of the work it could not wait for: their results
// are lost, and those lines are where an operator finds which.
type Going struct {
	mu   sync.Mutex
	keys map[Key]int
	// idle is closed when keys empties; nil while it is empty. (A WaitGroup
	// may not be added to from 0 while a Wait that gave up on it still
	// waits, and work can start as shutdown gives up.)
	idle chan struct{}
}

// Add counts work on k as going.
func (g *Going) Add(k Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys == nil {
		g.keys = make(map[Key]int)
	}
	if len(g.keys) == 0 {
		g.idle = make(chan struct{})
	}
	g.keys[k]++
}

// Done counts work on k, started by Add, as ended.
func (g *Going) Done(k Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys[k]--; g.keys[k] <= 0 {
		delete(g.keys, k)
	}
	if len(g.keys) == 0 {
		close(g.idle)
		g.idle = nil
	}
}

// Wait waits until no work is going, or until ctx ends; it then returns
// the keys of the work still going, in order, and ctx's error.
func (g *Going) Wait(ctx context.Context) ([]Key, error) {
	g.mu.Lock()
	idle := g.idle
	g.mu.Unlock()
	if idle == nil {
		return nil, nil
	}
	select {
	case <-idle:
		return nil, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.keys) == 0 {
		return nil, nil
	}
	still := make([]Key, 0, len(g.keys))
	for k := range g.keys {
		still = append(still, k)
	}
	slices.SortFunc(still, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.RequestID, b.RequestID))
	})
	return still, ctx.Err()
}

// Len is how much work is going: each Add not yet Done.
func (g *Going) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.keys {
		n += c
	}
	return n
}
