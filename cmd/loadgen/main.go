// Command loadgen sends CreateBackup calls to backupd (over gRPC or REST)
// and to the floors it is compared with, all in one in-process stack on
// loopback (package bench), and prints throughput and latency percentiles at
// each concurrency.
//
//	loadgen -target all -d 5s        # every target at concurrency 1 and 64, with ratios
//	loadgen -target rest -c 8 -n 10000
//
// Each (target, concurrency) run is preceded by a short warm-up and bounded
// by -d or -n, and by -timeout in any case, so loadgen always stops by
// itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/backupd/backupd/bench"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// allOrder is the order of -target all: backupd first, then the floors.
var allOrder = []bench.Target{bench.GRPC, bench.REST, bench.DirectSDK, bench.BareGRPC, bench.GRPCNoLog}

type options struct {
	targets   []bench.Target
	conc      []int
	duration  time.Duration
	requests  int
	warmup    time.Duration
	timeout   time.Duration
	idleConns int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "all", "grpc, rest, direct, bare, grpc-nolog, or all (every target, and the ratios)")
	concList := fs.String("c", "1,64", "comma-separated concurrencies: callers sending one call after another")
	duration := fs.Duration("d", 5*time.Second, "how long each (target, concurrency) run lasts, unless -n is given")
	requests := fs.Int("n", 0, "calls per (target, concurrency) run; overrides -d")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "unmeasured calls before each run")
	timeout := fs.Duration("timeout", 2*time.Minute, "hard bound on each run")
	idleConns := fs.Int("sdk-idle-conns", 0, "idle connections per host of the DynamoDB clients' transport; 0 is the SDK default, as in cmd/backupd")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	opts := options{duration: *duration, requests: *requests, warmup: *warmup, timeout: *timeout, idleConns: *idleConns}
	var problems []error
	if *target == "all" {
		opts.targets = allOrder
	} else if t, err := bench.ParseTarget(*target); err != nil {
		problems = append(problems, err)
	} else {
		opts.targets = []bench.Target{t}
	}
	for _, f := range strings.Split(*concList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			problems = append(problems, fmt.Errorf("-c: %q is not a positive integer", f))
			continue
		}
		opts.conc = append(opts.conc, c)
	}
	if opts.requests < 0 || (opts.requests == 0 && opts.duration <= 0) {
		problems = append(problems, errors.New("give a positive -d or -n"))
	}
	if opts.timeout <= 0 || opts.warmup < 0 {
		problems = append(problems, errors.New("-timeout must be positive and -warmup not negative"))
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return load(ctx, opts, stdout)
}

// result is one (target, concurrency) run.
type result struct {
	target    bench.Target
	conc      int
	calls     int
	errs      int
	firstErr  error
	elapsed   time.Duration
	latencies []time.Duration // sorted
	allocs    uint64
	bytes     uint64
	waits     int64
	dials     int64
}

// perCall is wall time per call: the inverse of throughput, as a benchmark's
// ns/op. At concurrency 1 it is the mean latency.
func (r result) perCall() time.Duration { return r.elapsed / time.Duration(r.calls) }

func (r result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latencies)-1))
	return r.latencies[i]
}

func load(ctx context.Context, opts options, stdout io.Writer) error {
	stack, err := bench.Start(ctx, bench.Options{SDKIdleConnsPerHost: opts.idleConns})
	if err != nil {
		return err
	}
	defer stack.Close()
	assumed := stack.Fake.AssumeRoleCalls()

	fmt.Fprintf(stdout, "loadgen: GOMAXPROCS=%d NumCPU=%d %s; -d %s -n %d; SDK idle conns/host: %s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), opts.duration, opts.requests, idleName(opts.idleConns))
	fmt.Fprintf(stdout, "response sizes: %d bytes protobuf (grpc, bare-grpc), %d bytes JSON (rest)\n\n",
		stack.GRPCResponseBytes, stack.RESTResponseBytes)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconc\tcalls\terrors\treq/s\tper call\tp50\tp99\tallocs/call\tB/call\tlimiter waits\tnew conns to fake\t")
	var results []result
	var failed error
	for _, c := range opts.conc {
		for _, t := range opts.targets {
			r, err := measure(ctx, stack, opts, t, c)
			if err != nil {
				return err
			}
			results = append(results, r)
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", r.target, r.conc, r.calls, r.errs, r.rate(),
				us(r.perCall()), us(r.percentile(0.50)), us(r.percentile(0.99)),
				r.allocs/uint64(r.calls), r.bytes/uint64(r.calls), r.waits, r.dials)
			if r.firstErr != nil && failed == nil {
				failed = fmt.Errorf("%s at concurrency %d: %d of %d calls failed; first: %w", t, c, r.errs, r.calls, r.firstErr)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nAssumeRole calls after warm-up: %d\n", stack.Fake.AssumeRoleCalls()-assumed)
	if slices.Equal(opts.targets, allOrder) {
		printRatios(stdout, results, opts.conc)
	}
	return failed
}

func idleName(n int) string {
	if n == 0 {
		return "SDK default (10)"
	}
	return strconv.Itoa(n)
}

// printRatios compares backupd with its floors, by wall time per call.
func printRatios(w io.Writer, results []result, conc []int) {
	fmt.Fprintln(w, "\nratios by wall time per call (1/throughput); targets: overhead <= 25%, rest/grpc <= 1.5")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\tfloor = direct+bare\tbackupd own = grpc-floor\toverhead = own/floor\trest/grpc\tlog line = grpc-grpc-nolog\t")
	for _, c := range conc {
		get := func(t bench.Target) time.Duration {
			for _, r := range results {
				if r.target == t && r.conc == c {
					return r.perCall()
				}
			}
			return 0
		}
		floor := get(bench.DirectSDK) + get(bench.BareGRPC)
		own := get(bench.GRPC) - floor
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f%% %s\t%.2f %s\t%s\t\n", c, us(floor), us(own),
			100*float64(own)/float64(floor), verdict(float64(own)/float64(floor) <= 0.25),
			float64(get(bench.REST))/float64(get(bench.GRPC)), verdict(float64(get(bench.REST)) <= 1.5*float64(get(bench.GRPC))),
			us(get(bench.GRPC)-get(bench.GRPCNoLog)))
	}
	_ = tw.Flush()
}

func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(NOT met)"
}

func us(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
}

// measure warms up, then runs c callers of t until the duration or the call
// count is reached, and reports what happened.
func measure(ctx context.Context, stack *bench.Stack, opts options, t bench.Target, c int) (result, error) {
	call := stack.Call(t)
	if opts.warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, opts.timeout)
		drive(wctx, call, c, time.Now().Add(opts.warmup), 0)
		cancel()
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	runtime.GC()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	var deadline time.Time
	if opts.requests == 0 {
		deadline = time.Now().Add(opts.duration)
	}
	waits, dials := stack.LimiterWaits(), stack.FakeConns()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	ws := drive(ctx, call, c, deadline, opts.requests)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err := ctx.Err(); err != nil {
		return result{}, fmt.Errorf("%s at concurrency %d did not finish: %w", t, c, err)
	}
	r := result{
		target: t, conc: c, elapsed: elapsed,
		allocs: after.Mallocs - before.Mallocs,
		bytes:  after.TotalAlloc - before.TotalAlloc,
		waits:  stack.LimiterWaits() - waits,
		dials:  stack.FakeConns() - dials,
	}
	for _, w := range ws {
		r.latencies = append(r.latencies, w.latencies...)
		r.errs += w.errs
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
	}
	r.calls = len(r.latencies)
	if r.calls == 0 {
		return result{}, fmt.Errorf("%s at concurrency %d made no call", t, c)
	}
	slices.Sort(r.latencies)
	return r, nil
}

type worker struct {
	latencies []time.Duration
	errs      int
	firstErr  error
}

// drive runs c callers until deadline (when not zero), until n calls have
// started (when n > 0), or until ctx ends.
func drive(ctx context.Context, call func(context.Context) error, c int, deadline time.Time, n int) []worker {
	ws := make([]worker, c)
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.latencies = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			for ctx.Err() == nil {
				if n > 0 && started.Add(1) > int64(n) {
					return
				}
				t0 := time.Now()
				if !deadline.IsZero() && !t0.Before(deadline) {
					return
				}
				err := call(ctx)
				w.latencies = append(w.latencies, time.Since(t0))
				if err != nil {
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
				}
			}
		})
	}
	wg.Wait()
	return ws
}
