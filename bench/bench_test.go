package bench_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/backupd/backupd/bench"
	"github.com/backupd/backupd/tracing"
)

// stack is shared by every benchmark and test of the package, so that all
// figures of one run come from the same servers, connections and caches.
var stack *bench.Stack

func TestMain(m *testing.M) {
	s, err := bench.Start(context.Background(), bench.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: start:", err)
		os.Exit(1)
	}
	stack = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

// order is the order of the sub-benchmarks: backupd, the floors, then the
// variants.
var order = []bench.Target{bench.GRPC, bench.REST, bench.DirectSDK, bench.BareGRPC, bench.GRPCNoLog, bench.BareProxy, bench.Floors}

// BenchmarkCreateBackup makes one call at a time: concurrency 1.
func BenchmarkCreateBackup(b *testing.B) {
	for _, t := range order {
		call := stack.Call(t)
		b.Run(string(t), func(b *testing.B) {
			waits := stack.LimiterWaits()
			serially(b, stack, call)
			b.ReportMetric(float64(stack.LimiterWaits()-waits)/float64(b.N), "waits/op")
		})
	}
}

// Concurrency is the number of goroutines BenchmarkCreateBackupParallel
// calls from, whatever GOMAXPROCS (-cpu) is.
const Concurrency = 64

// BenchmarkCreateBackupParallel calls from Concurrency goroutines. Its
// ns/op is wall time per call (the inverse of throughput), not latency.
func BenchmarkCreateBackupParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	perProc := (Concurrency + procs - 1) / procs
	for _, t := range order {
		call := stack.Call(t)
		b.Run(string(t), func(b *testing.B) {
			ctx := b.Context()
			prune(b, stack)
			waits, conns := stack.LimiterWaits(), stack.FakeConns()
			b.ReportAllocs()
			b.SetParallelism(perProc)
			cpu := startCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := call(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b)
			b.ReportMetric(float64(stack.LimiterWaits()-waits)/float64(b.N), "waits/op")
			b.ReportMetric(float64(stack.FakeConns()-conns)/float64(b.N), "fake-dials/op")
			b.ReportMetric(float64(perProc*procs), "goroutines")
		})
	}
}

// serially makes call one at a time on s, from a pruned heap, and
// reports its CPU time and allocations.
func serially(b *testing.B, s *bench.Stack, call func(context.Context) error) {
	ctx := b.Context()
	prune(b, s)
	cpu := startCPU()
	b.ReportAllocs()
	for b.Loop() {
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// prune empties s's fake's store and collects garbage, so that every
// measurement starts with the same heap (see bench.Stack.Prune).
func prune(b *testing.B, s *bench.Stack) {
	if _, err := s.Prune(b.Context()); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
}

// cpuMark is the process's CPU time at the start of a benchmark.
type cpuMark struct {
	at time.Duration
	ok bool
}

func startCPU() cpuMark {
	at, ok := bench.ProcessCPU()
	return cpuMark{at: at, ok: ok}
}

// report adds cpu-ns/op: CPU time of the whole process (client, backupd
// and fake, GC included) per call. Beside ns/op it tells time spent
// working from time spent waiting.
func (m cpuMark) report(b *testing.B) {
	now, ok := bench.ProcessCPU()
	if m.ok && ok {
		b.ReportMetric(float64(now-m.at)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkCreateBackupByCall makes one call of every target per
// iteration, one at a time, in a new random order each time, and reports
// each target's mean time per call (grpc-ns/call, ...) and backupd's own
// share over its floors (own/by-call-%: grpc − (direct-sdk + bare-grpc), over
// the two). Unlike BenchmarkCreateBackup's sub-benchmarks, where a floor
// runs alone with its code hot from its previous call, each floor here
// mostly follows another round trip and pays the switch, as the two round
// trips of a request through backupd do: the comparison is the one with
// both floors made together (target floors), not with each floor alone
// (BENCHMARKS.md).
func BenchmarkCreateBackupByCall(b *testing.B) {
	calls := make([]func(context.Context) error, len(order))
	for i, t := range order {
		calls[i] = stack.Call(t)
	}
	ctx := b.Context()
	prune(b, stack)
	total := make([]time.Duration, len(order))
	perm := rand.Perm(len(order))
	for b.Loop() {
		bench.CallEach(ctx, calls, perm, func(i int, took time.Duration, err error) {
			if err != nil {
				b.Fatal(err)
			}
			total[i] += took
		})
	}
	mean := map[bench.Target]float64{}
	for i, t := range order {
		mean[t] = float64(total[i].Nanoseconds()) / float64(b.N)
		b.ReportMetric(mean[t], string(t)+"-ns/call")
	}
	apart := mean[bench.DirectSDK] + mean[bench.BareGRPC]
	b.ReportMetric(100*(mean[bench.GRPC]-apart)/apart, "own/by-call-%")
	b.ReportMetric(mean[bench.REST]/mean[bench.GRPC], "rest/grpc")
}

// BenchmarkCreateBackupRequestID makes one call at a time over gRPC, each
// with a request_id not sent before: grpc's path plus what idempotency
// adds (the in-process store's claim and result, and the call's detached
// run). Compare it with BenchmarkCreateBackup/grpc of the same run.
func BenchmarkCreateBackupRequestID(b *testing.B) {
	serially(b, stack, stack.CallWithRequestID)
}

// BenchmarkCreateBackupTraced makes one call at a time over gRPC and
// REST to a backupd of its own that traces every call (tracing on, every
// trace sampled, as by default), its spans sent to a collector that
// takes and drops them: what tracing adds to a call. Compare it with
// BenchmarkCreateBackup/grpc and /rest of the same run.
func BenchmarkCreateBackupTraced(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL+"/v1/traces")
	tr, err := tracing.FromEnv(b.Context())
	if err != nil || tr == nil {
		b.Fatalf("tracing: %v", err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	traced, err := bench.Start(b.Context(), bench.Options{Tracing: tr})
	if err != nil {
		b.Fatal(err)
	}
	defer traced.Close()
	for _, t := range []bench.Target{bench.GRPC, bench.REST} {
		call := traced.Call(t)
		b.Run(string(t), func(b *testing.B) { serially(b, traced, call) })
	}
}
