// Command loadgen sends CreateBackup calls to backupd (over gRPC or REST)
// and to the floors it is compared with, all in one in-process stack on
// loopback (package bench), and prints throughput, latency percentiles and
// costs per call at each concurrency.
//
//	loadgen -target all -d 5s        # every target at concurrency 1 and 64, with the ratios
//	loadgen -target rest -c 8 -n 10000
//	loadgen -fake http://127.0.0.1:PORT  # the fake of a running `backupd --sandbox`, in its own process
//
// The time of each (target, concurrency) pair is split into -rounds slices,
// and the targets take turns slice by slice, in a new random order each
// round, so that a machine that slows down or speeds up during the run
// affects every target alike. Before each slice the fake's store is
// emptied and a short warm-up runs, neither measured. Each slice is bounded
// by its share of -d or -n, and by -timeout in any case, so loadgen always
// stops by itself.
//
// With -target all it then measures the targets at concurrency 1 once
// more, taking turns call by call: one caller makes one call of every
// target, in a new random order each time. Within a slice a floor runs
// alone, its code hot from its previous call, which no request that also
// makes the other round trip enjoys; taken by call, each floor mostly
// follows another round trip and pays the switch, as backupd's path does
// inside every call, and the floors add up to what target floors costs
// (BENCHMARKS.md). Only at concurrency 1: with callers queueing for the
// CPU, a call's latency in a mixed run is the queue's more than its own.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
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
var allOrder = []bench.Target{bench.GRPC, bench.REST, bench.DirectSDK, bench.BareGRPC, bench.GRPCNoLog, bench.BareProxy, bench.Floors}

type options struct {
	targets  []bench.Target
	conc     []int
	duration time.Duration
	requests int
	rounds   int
	warmup   time.Duration
	timeout  time.Duration
	rate     float64
	fakeURL  string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "all", "grpc, rest, direct, bare, grpc-nolog, bare-proxy, floors, or all (every target, and the ratios)")
	concList := fs.String("c", "1,64", "comma-separated concurrencies: callers that each send one call after another")
	duration := fs.Duration("d", 5*time.Second, "measured time per (target, concurrency), unless -n is given")
	requests := fs.Int("n", 0, "calls per (target, concurrency); overrides -d")
	rounds := fs.Int("rounds", 5, "slices the targets take turns in")
	warmup := fs.Duration("warmup", 200*time.Millisecond, "unmeasured calls before each slice")
	timeout := fs.Duration("timeout", 2*time.Minute, "hard bound on each slice")
	rate := fs.Float64("rate", 0, "CreateBackup calls per second allowed by backupd's limiter per account and region; 0 is unlimited")
	fakeURL := fs.String("fake", "", "URL of a fake running in another process (the fake_endpoint that `backupd --sandbox` logs at start); empty: one in this process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := options{duration: *duration, requests: *requests, rounds: *rounds, warmup: *warmup, timeout: *timeout, rate: *rate, fakeURL: *fakeURL}
	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
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
	if opts.rounds < 1 || opts.requests > 0 && opts.requests < opts.rounds {
		problems = append(problems, errors.New("-rounds must be at least 1, and at most -n"))
	}
	if opts.timeout <= 0 || opts.warmup < 0 || opts.rate < 0 {
		problems = append(problems, errors.New("-timeout must be positive; -warmup and -rate not negative"))
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return load(ctx, opts, stdout)
}

// result accumulates the slices of one (target, concurrency) pair.
type result struct {
	target    bench.Target
	conc      int
	calls     int
	errs      int
	firstErr  error
	elapsed   time.Duration
	cpu       time.Duration
	latencies []time.Duration // sorted once complete
	allocs    uint64
	bytes     uint64
	waits     int64
	dials     int64
}

// perCall is wall time per call, the inverse of throughput, like a
// benchmark's ns/op. At concurrency 1 it is the mean latency.
func (r *result) perCall() time.Duration { return r.elapsed / time.Duration(r.calls) }

func (r *result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(p*float64(len(r.latencies)-1))]
}

func load(ctx context.Context, opts options, stdout io.Writer) error {
	stack, err := bench.Start(ctx, bench.Options{CreateBackupRate: opts.rate, FakeURL: opts.fakeURL})
	if err != nil {
		return err
	}
	defer stack.Close()
	assumed := stack.Fake.AssumeRoleCalls()
	printHeader(stdout, opts, stack)
	results, err := measureAll(ctx, stack, opts)
	if err != nil {
		return err
	}
	failed, err := printResults(stdout, results, stack.External)
	if err != nil {
		return err
	}
	if !stack.External {
		fmt.Fprintf(stdout, "\nAssumeRole calls after warm-up: %d\n", stack.Fake.AssumeRoleCalls()-assumed)
	}
	if !slices.Equal(opts.targets, allOrder) {
		return failed
	}
	fmt.Fprintln(stdout, "\nRatios, targets taking turns slice by slice:")
	printRatios(stdout, results, opts.conc, "each measured alone in its slices")
	if !slices.Contains(opts.conc, 1) {
		return failed // taking turns call by call is measured at concurrency 1
	}
	byCallFailed, err := loadByCall(ctx, stack, opts, stdout)
	if err != nil {
		return err
	}
	return cmp.Or(failed, byCallFailed)
}

// printHeader says what the run measures, and on what.
func printHeader(stdout io.Writer, opts options, stack *bench.Stack) {
	limit := "-d " + opts.duration.String()
	if opts.requests > 0 {
		limit = "-n " + strconv.Itoa(opts.requests)
	}
	rateName := "unlimited"
	if opts.rate > 0 {
		rateName = strconv.FormatFloat(opts.rate, 'g', -1, 64) + "/s"
	}
	fmt.Fprintf(stdout, "loadgen: GOMAXPROCS=%d NumCPU=%d %s; %s per target and concurrency, in %d rounds; CreateBackup limit: %s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), limit, opts.rounds, rateName)
	fmt.Fprintf(stdout, "response sizes: %d bytes protobuf (grpc, bare-grpc), %d bytes JSON (rest)\n",
		stack.GRPCResponseBytes, stack.RESTResponseBytes)
	if stack.External {
		fmt.Fprintf(stdout, "fake: %s, in another process (its AssumeRole calls and connections are not counted)\n", opts.fakeURL)
	}
	fmt.Fprintln(stdout)
}

// measureAll measures every target at every concurrency, the targets
// taking turns slice by slice, in a random order, within each
// concurrency's rounds.
func measureAll(ctx context.Context, stack *bench.Stack, opts options) ([]*result, error) {
	var results []*result
	for _, c := range opts.conc {
		byTarget := make([]*result, len(opts.targets))
		for i, t := range opts.targets {
			byTarget[i] = &result{target: t, conc: c}
		}
		for round := range opts.rounds {
			// A new order each round, so that no target always runs
			// after the same one, or first after a GC of the last.
			for _, i := range rand.Perm(len(byTarget)) {
				if err := measure(ctx, stack, opts, byTarget[i], round); err != nil {
					return nil, err
				}
			}
		}
		for _, r := range byTarget {
			slices.Sort(r.latencies)
		}
		results = append(results, byTarget...)
	}
	return results, nil
}

// printResults prints one row per target and concurrency; failed says
// which target's calls failed first, if any did.
func printResults(stdout io.Writer, results []*result, external bool) (failed, err error) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconc\tcalls\terrors\treq/s\tper call\tp50\tp99\tCPU/call\tallocs/call\tB/call\tlimiter waits\tnew conns to fake\t")
	for _, r := range results {
		dials := strconv.FormatInt(r.dials, 10)
		if external {
			dials = "n/a"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n", r.target, r.conc, r.calls, r.errs, r.rate(),
			us(r.perCall()), us(r.percentile(0.50)), us(r.percentile(0.99)), us(r.cpu/time.Duration(r.calls)),
			r.allocs/uint64(r.calls), r.bytes/uint64(r.calls), r.waits, dials)
		if r.firstErr != nil && failed == nil {
			failed = fmt.Errorf("%s at concurrency %d: %d of %d calls failed; first: %w", r.target, r.conc, r.errs, r.calls, r.firstErr)
		}
	}
	return failed, tw.Flush()
}

// loadByCall measures and prints the targets taking turns call by call at
// concurrency 1; failed says which target's calls failed first, if any did.
func loadByCall(ctx context.Context, stack *bench.Stack, opts options, stdout io.Writer) (failed, err error) {
	interleaved, err := measureByCall(ctx, stack, opts)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "\nTargets taking turns call by call at concurrency 1 (one call of every target, in random order; per call = mean latency):\n")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconc\tcalls\terrors\tper call\tp50\tp99\t")
	for _, r := range interleaved {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.target, r.conc, r.calls, r.errs, us(r.perCall()), us(r.percentile(0.50)), us(r.percentile(0.99)))
		if r.firstErr != nil && failed == nil {
			failed = fmt.Errorf("%s at concurrency %d, by call: %d of %d calls failed; first: %w", r.target, r.conc, r.errs, r.calls, r.firstErr)
		}
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	fmt.Fprintln(stdout, "\nRatios, targets taking turns call by call:")
	printRatios(stdout, interleaved, []int{1}, "each call among calls of every target, so mostly after another round trip (not the issue's floors alone)")
	return failed, nil
}

// measureByCall measures every target of allOrder at concurrency 1 with
// the targets taking turns call by call, for -d or -n per target in all,
// in -rounds slices with the fake emptied between them. A result's
// elapsed is its calls' total latency, so that its per call is the mean
// latency.
func measureByCall(ctx context.Context, stack *bench.Stack, opts options) ([]*result, error) {
	calls := make([]func(context.Context) error, len(allOrder))
	byTarget := make([]*result, len(allOrder))
	for i, t := range allOrder {
		calls[i] = stack.Call(t)
		byTarget[i] = &result{target: t, conc: 1}
	}
	for round := range opts.rounds {
		if _, err := stack.Prune(ctx); err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, opts.timeout)
		if opts.warmup > 0 {
			driveByCall(sctx, calls, time.Now().Add(opts.warmup), 0)
		}
		runtime.GC()
		deadline, n := sliceBound(opts, round, len(allOrder))
		w := driveByCall(sctx, calls, deadline, n)
		err := sctx.Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("targets by call did not finish: %w", err)
		}
		for i, r := range byTarget {
			r.add(w[i])
		}
	}
	for _, r := range byTarget {
		if r.calls == 0 {
			return nil, fmt.Errorf("%s by call made no call", r.target)
		}
		for _, d := range r.latencies {
			r.elapsed += d
		}
		slices.Sort(r.latencies)
	}
	return byTarget, nil
}

// sliceBound is the end of a round's slice, or its number of calls
// (cycles of all targets when the targets take turns by call): its share
// of -d, or of -n spread over targets cycles.
func sliceBound(opts options, round, targets int) (time.Time, int) {
	if opts.requests == 0 {
		return time.Now().Add(opts.duration * time.Duration(targets) / time.Duration(opts.rounds)), 0
	}
	n := opts.requests / opts.rounds
	if round < opts.requests%opts.rounds {
		n++
	}
	return time.Time{}, n
}

// driveByCall makes one call of every target, in a new random order each
// cycle, until deadline (when not zero), until n cycles are done (when
// n > 0), or until ctx ends. It returns what happened to each target's
// calls.
func driveByCall(ctx context.Context, calls []func(context.Context) error, deadline time.Time, n int) []worker {
	ws := make([]worker, len(calls))
	perm := rand.Perm(len(calls))
	for cycle := 0; ctx.Err() == nil && (n == 0 || cycle < n); cycle++ {
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			break
		}
		bench.CallEach(ctx, calls, perm, func(i int, took time.Duration, err error) { ws[i].record(took, err) })
	}
	return ws
}

// printRatios compares backupd with its floors: by wall time per call
// (1/throughput) and, at concurrency 1, by median latency. It takes the
// floor two ways: the two floors measured apart and added (the issue's
// arithmetic), and measured together (target floors: one caller making
// both calls back to back). results holds every target of allOrder at
// every concurrency of conc; apart says how the floors were measured.
func printRatios(w io.Writer, results []*result, conc []int, apart string) {
	fmt.Fprintln(w, "\nbackupd's own = grpc - floor; targets: own/floor <= 25%, rest/grpc <= 1.5")
	fmt.Fprintf(w, "floor apart = direct-sdk + bare-grpc, %s; floor together = target floors, both calls back to back\n", apart)
	fmt.Fprintln(w, "code only = grpc - bare-proxy: backupd's own minus the cost of chaining the floors")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\tmeasure\tfloor apart\town\town/apart\tfloor together\town\town/together\tcode only\trest/grpc\tgrpc - grpc-nolog\t")
	for _, c := range conc {
		at := map[bench.Target]*result{}
		for _, r := range results {
			if r.conc == c {
				at[r.target] = r
			}
		}
		for _, m := range []struct {
			name string
			of   func(*result) time.Duration
		}{
			{"per call", (*result).perCall},
			{"p50", func(r *result) time.Duration { return r.percentile(0.50) }},
		} {
			if m.name == "p50" && c != 1 {
				continue // under queueing, medians of separate runs do not add up
			}
			grpc, rest, nolog := m.of(at[bench.GRPC]), m.of(at[bench.REST]), m.of(at[bench.GRPCNoLog])
			apart := m.of(at[bench.DirectSDK]) + m.of(at[bench.BareGRPC])
			together := m.of(at[bench.Floors])
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f %s\t%s\t\n", c, m.name,
				us(apart), us(grpc-apart), share(grpc-apart, apart), us(together), us(grpc-together), share(grpc-together, together),
				us(grpc-m.of(at[bench.BareProxy])), float64(rest)/float64(grpc), verdict(2*rest <= 3*grpc), us(grpc-nolog))
		}
	}
	_ = tw.Flush()
}

// share is own as a percentage of floor, with the verdict on the 25% target.
func share(own, floor time.Duration) string {
	return fmt.Sprintf("%.0f%% %s", 100*float64(own)/float64(floor), verdict(4*own <= floor))
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

// measure runs one slice of r's target: it empties the fake, warms up,
// then runs r.conc callers for this round's share of the duration or of
// the calls, and adds what happened to r.
func measure(ctx context.Context, stack *bench.Stack, opts options, r *result, round int) error {
	call := stack.Call(r.target)
	if _, err := stack.Prune(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	if opts.warmup > 0 {
		drive(ctx, call, r.conc, time.Now().Add(opts.warmup), 0)
	}
	runtime.GC()
	deadline, n := sliceBound(opts, round, 1)
	waits, dials := stack.LimiterWaits(), stack.FakeConns()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, _ := bench.ProcessCPU()
	start := time.Now()
	ws := drive(ctx, call, r.conc, deadline, n)
	elapsed := time.Since(start)
	cpu1, _ := bench.ProcessCPU()
	runtime.ReadMemStats(&after)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s at concurrency %d did not finish: %w", r.target, r.conc, err)
	}
	r.elapsed += elapsed
	r.cpu += cpu1 - cpu0
	r.allocs += after.Mallocs - before.Mallocs
	r.bytes += after.TotalAlloc - before.TotalAlloc
	r.waits += stack.LimiterWaits() - waits
	r.dials += stack.FakeConns() - dials
	calls := r.calls
	for _, w := range ws {
		r.add(w)
	}
	if r.calls == calls {
		return fmt.Errorf("%s at concurrency %d made no call", r.target, r.conc)
	}
	return nil
}

// add counts a caller's calls of r's target.
func (r *result) add(w worker) {
	r.calls += len(w.latencies)
	r.latencies = append(r.latencies, w.latencies...)
	r.errs += w.errs
	if r.firstErr == nil {
		r.firstErr = w.firstErr
	}
}

// worker is what one caller saw of one target's calls.
type worker struct {
	latencies []time.Duration
	errs      int
	firstErr  error
}

// call makes one call and records it.
func (w *worker) call(ctx context.Context, call func(context.Context) error) {
	t0 := time.Now()
	err := call(ctx)
	w.record(time.Since(t0), err)
}

// record keeps one call's latency and its error.
func (w *worker) record(took time.Duration, err error) {
	w.latencies = append(w.latencies, took)
	if err != nil {
		w.errs++
		if w.firstErr == nil {
			w.firstErr = err
		}
	}
}

// drive runs c callers until deadline (when not zero), until n calls have
// started (when n > 0), or until ctx ends.
func drive(ctx context.Context, call func(context.Context) error, c int, deadline time.Time, n int) []worker {
	ws := make([]worker, c)
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.latencies = make([]time.Duration, 0, 1024)
		wg.Go(func() {
			for ctx.Err() == nil {
				if n > 0 && started.Add(1) > int64(n) {
					return
				}
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				w.call(ctx, call)
			}
		})
	}
	wg.Wait()
	return ws
}
