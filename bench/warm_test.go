package bench_test

import (
	"testing"

	"github.com/backupd/backupd/bench"
)

// TestWarmPathMakesNoSTSCall checks that once credentials are cached, calls
// through backupd, over both protocols, assume no role again, and that the
// limiter (at the stack's raised rate) makes no serial call wait.
func TestWarmPathMakesNoSTSCall(t *testing.T) {
	const n = 200
	for _, target := range []bench.Target{bench.GRPC, bench.REST, bench.GRPCNoLog, bench.DirectSDK} {
		t.Run(string(target), func(t *testing.T) {
			call := stack.Call(target)
			assumed, waits := stack.Fake.AssumeRoleCalls(), stack.LimiterWaits()
			for range n {
				if err := call(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if got := stack.Fake.AssumeRoleCalls() - assumed; got != 0 {
				t.Errorf("%d warm calls made %d AssumeRole calls; want 0", n, got)
			}
			if got := stack.LimiterWaits() - waits; got != 0 {
				t.Errorf("%d serial calls waited for the limiter %d times; want 0", n, got)
			}
		})
	}
}

// Budgets of allocations per call for backupd's own work over gRPC (grpc
// minus bare-proxy) and for REST over gRPC. They measured 23 and 23 (24 and
// 26 with -race); a client, credentials cache or middleware stack built per
// call would cost hundreds, which is what they are there to catch.
const (
	ownAllocBudget  = 50
	restAllocBudget = 50
)

// TestAllocsPerCall prints how many allocations one call costs the whole
// process (client, servers and fake), and what is left for backupd's own
// work once both floors are taken away, and holds backupd's share to its
// budget: nothing on the warm path is built afresh for each call.
func TestAllocsPerCall(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 200 calls per target; run without -short")
	}
	allocs := map[bench.Target]float64{}
	for _, target := range order {
		call := stack.Call(target)
		var err error
		allocs[target] = testing.AllocsPerRun(500, func() {
			if cerr := call(t.Context()); cerr != nil {
				err = cerr
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		t.Logf("%-10s %6.0f allocs/call", target, allocs[target])
	}
	floor := allocs[bench.DirectSDK] + allocs[bench.BareGRPC]
	t.Logf("backupd's own over gRPC: grpc - (direct-sdk + bare-grpc) = %.0f allocs/call; grpc - bare-proxy = %.0f; the log line: %.0f",
		allocs[bench.GRPC]-floor, allocs[bench.GRPC]-allocs[bench.BareProxy], allocs[bench.GRPC]-allocs[bench.GRPCNoLog])
	t.Logf("REST over gRPC: rest - grpc = %.0f allocs/call", allocs[bench.REST]-allocs[bench.GRPC])
	if own := allocs[bench.GRPC] - allocs[bench.BareProxy]; own > ownAllocBudget {
		t.Errorf("backupd's own work costs %.0f allocations per call over gRPC (grpc - bare-proxy); the budget is %d", own, ownAllocBudget)
	}
	if rest := allocs[bench.REST] - allocs[bench.GRPC]; rest > restAllocBudget {
		t.Errorf("REST costs %.0f allocations per call more than gRPC; the budget is %d", rest, restAllocBudget)
	}
}
