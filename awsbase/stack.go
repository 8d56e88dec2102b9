package awsbase

// stackReserve is how much stack GrowStack claims for an SDK call. The
// SDK's call path (its middleware stack and DynamoDB's endpoint rules) runs
// about 30 KiB deep. A handler's goroutine may start with a small stack:
// grpc-go runs a call on a new goroutine when none of its stream workers is
// free, and the GC halves the stack of a worker it finds idle.
const stackReserve = 32 << 10

// GrowStack grows the calling goroutine's stack in one step while it is
// still shallow. Left to itself the stack of a handler doubles two or three
// times deep inside the SDK, and each growth copies and adjusts every frame
// of a deep stack (BENCHMARKS.md has the cost, measured by
// BenchmarkChainingCost). The interceptor (package intercept) calls it for
// every request, and a request_id's detached run for its own goroutine; the
// benchmarks measure the same step.
//
// The stack grows in the function's prologue, which checks that its frame
// fits: the frame holds reserve, which is never written. Declared outside
// the branch, reserve would be zeroed on every call, 32 KiB written through
// the CPU's caches (0.4 µs on a warm stack, 5 µs of CPU per call on fresh
// goroutines in a profile at concurrency 64) for nothing.
//
//go:noinline
func GrowStack() {
	if touchReserve {
		var reserve [stackReserve]byte
		keep(reserve[:])
	}
}

// touchReserve is never set, and holds no state: it is a package
// variable only because the compiler cannot prove one false, and so keeps
// GrowStack's frame, which it would drop behind a constant false.
var touchReserve bool

// keep stops the compiler from dropping GrowStack's array.
//
//go:noinline
func keep(b []byte) { b[len(b)-1] = 0 }
