package awsbase

import (
	"runtime"
	"sync"
	"testing"
)

// TestGrowStackGrowsTheStack: goroutines that call GrowStack hold stacks
// of stackReserve and more, where goroutines that do not start far smaller:
// the frame that grows the stack is kept though its array is never written.
func TestGrowStackGrowsTheStack(t *testing.T) {
	const n = 200
	// The plain goroutines first: stacks the growing ones leave behind
	// (in the runtime's pools until a GC frees them) would count for them.
	plain := stackInUse(n, func() {})
	grown := stackInUse(n, GrowStack) - plain
	if per := grown / n; per < stackReserve {
		t.Errorf("GrowStack added %d bytes of stack per goroutine; want at least %d", per, stackReserve)
	}
}

// stackInUse starts n goroutines that each call f and then wait, and
// returns the stack memory in use while they wait, as the runtime counts
// it.
func stackInUse(n int, f func()) int64 {
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	for range n {
		go func() {
			f()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	release.Done()
	return int64(m.StackInuse)
}
