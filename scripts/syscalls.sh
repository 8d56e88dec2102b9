#!/usr/bin/env bash
# syscalls.sh: the system calls one call of each concurrency-1 target
# makes, counted by the kernel's tracepoints with perf stat (which, unlike
# strace, hardly slows the process, so grpc-go's write batching and the
# scheduler behave as in a timed run). Each target runs 2000 and 6000
# calls of BenchmarkCreateBackup, one run at a time, and the difference
# over 4000 is one call: start-up and warm-up cancel out.
#
# Reads and writes mostly repeat to within a few tenths a call (bare-grpc's
# least: whether its PINGs share a write with a request or a response
# depends on timing); the futex, epoll_pwait and context-switch counts are
# the Go scheduler's (threads parked and woken between the round trips)
# and move by a factor of two with the machine's load: compare them over
# several runs.
#
# Usage: scripts/syscalls.sh [target ...]   (needs perf, and root or
# kernel.perf_event_paranoid <= -1 for the syscalls:* tracepoints)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(grpc direct-sdk bare-grpc floors bare-proxy)
command -v perf >/dev/null || { echo "syscalls.sh: needs perf (linux-perf or linux-tools)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/bench.test" ./bench/

# The filtered events count: reads that found nothing (EAGAIN), polls
# that returned no event, and futex calls that woke a thread.
events=(-e syscalls:sys_enter_read -e syscalls:sys_exit_read --filter 'ret == -11'
	-e syscalls:sys_enter_write
	-e syscalls:sys_enter_epoll_pwait -e syscalls:sys_exit_epoll_pwait --filter 'ret == 0'
	-e syscalls:sys_enter_futex -e syscalls:sys_exit_futex --filter 'ret > 0'
	-e context-switches -e raw_syscalls:sys_enter)

run() {
	(cd bench && perf stat -x, -o "$dir/$1-$2.stat" "${events[@]}" "$dir/bench.test" -test.run '^$' \
		-test.bench "^BenchmarkCreateBackup\$/^$1\$" -test.benchtime "$2x" >"$dir/$1-$2.log" 2>&1) ||
		{ echo "syscalls.sh: $1, $2 calls, failed:" >&2; cat "$dir/$1-$2.log" "$dir/$1-$2.stat" >&2; exit 1; }
	awk -F, '$1 ~ /^[0-9]+$/ {printf "%s ", $1} END {print ""}' "$dir/$1-$2.stat" >"$dir/$1-$2.sum"
}

for t in "${targets[@]}"; do
	run "$t" 2000
	run "$t" 6000
done

echo "per call (6000 calls less 2000, over 4000), counted by perf stat"
printf '%-11s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n' target read EAGAIN write epoll "(none)" futex "(woke)" ctx-sw all
for t in "${targets[@]}"; do
	paste -d' ' "$dir/$t-2000.sum" "$dir/$t-6000.sum" | awk -v t="$t" '{
		n = NF / 2; printf "%-11s", t
		for (i = 1; i <= n; i++) printf " %7.2f", ($(i + n) - $i) / 4000
		print ""
	}'
done
