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
	wg   sync.WaitGroup
	mu   sync.Mutex
	keys map[Key]int
}

// Add counts work on k as going.
func (g *Going) Add(k Key) {
	g.wg.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys == nil {
		g.keys = make(map[Key]int)
	}
	g.keys[k]++
}

// Done counts work on k, started by Add, as ended.
func (g *Going) Done(k Key) {
	g.mu.Lock()
	if g.keys[k]--; g.keys[k] <= 0 {
		delete(g.keys, k)
	}
	g.mu.Unlock()
	g.wg.Done()
}

// Wait waits until no work is going, or until ctx ends; it then returns
// the keys of the work still going, in order, and ctx's error.
func (g *Going) Wait(ctx context.Context) ([]Key, error) {
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	still := make([]Key, 0, len(g.keys))
	for k := range g.keys {
		still = append(still, k)
	}
	slices.SortFunc(still, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.RequestID, b.RequestID))
	})
	return still, ctx.Err()
}
