#!/usr/bin/env bash
# count.sh: what one call of each concurrency-1 target costs in work, counted
# by valgrind's callgrind rather than timed: instructions, L1 and L2 misses
# and branch mispredictions, for the whole process (client, backupd, the
# sandbox fake and the runtime; the collector is off). Instructions repeat
# to within about 1% whatever else the machine is doing, the misses less
# closely, where times on a shared 2-CPU machine scatter by more than the
# speed target's margin (BENCHMARKS.md, "Noise").
#
# Each target runs twice, 100 and 300 calls (BenchmarkCreateBackup, one P,
# so that no thread spins idle, and GOGC=off, since the collector's cycles
# fall at different calls from run to run), and the difference over 200 is
# one call: the start-up and the warm-up cancel out. The caches simulated
# are this machine's L1 and L2, read from /sys.
#
# Usage: scripts/count.sh [target ...]   (default: the targets of the ratios)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(grpc rest direct-sdk bare-grpc floors bare-proxy)
command -v valgrind >/dev/null || { echo "count.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/bench.test" ./bench/

# cache LEVEL TYPE: the cache's size,ways,line for valgrind, from /sys.
cache() {
	local d
	for d in /sys/devices/system/cpu/cpu0/cache/index*; do
		if [ "$(cat "$d/level")" = "$1" ] && [ "$(cat "$d/type")" = "$2" ]; then
			echo "$(($(sed 's/K$//' "$d/size") * 1024)),$(cat "$d/ways_of_associativity"),$(cat "$d/coherency_line_size")"
			return
		fi
	done
	echo "count.sh: no level $1 $2 cache in /sys" >&2
	exit 1
}
sim=(--cache-sim=yes --branch-sim=yes --I1="$(cache 1 Instruction)" --D1="$(cache 1 Data)" --LL="$(cache 2 Unified)")

# run TARGET CALLS: callgrind's totals for that many calls, one line.
run() {
	GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind "${sim[@]}" \
		--callgrind-out-file="$dir/$1-$2.out" "$dir/bench.test" -test.run '^$' \
		-test.bench "^BenchmarkCreateBackup\$/^$1\$" -test.benchtime "$2x" >"$dir/$1-$2.log" 2>&1 ||
		{ echo "count.sh: $1, $2 calls, failed:" >&2; cat "$dir/$1-$2.log" >&2; exit 1; }
	grep -m1 'Collected :' "$dir/$1-$2.log" | sed 's/.*Collected : //' >"$dir/$1-$2.sum"
}

# Two runs at a time, one per CPU: the counts do not depend on it.
for t in "${targets[@]}"; do
	run "$t" 100 &
	run "$t" 300 &
	wait
done

echo "per call (300 calls less 100, over 200), counted by callgrind; GOMAXPROCS=1"
echo "caches: I1 $(cache 1 Instruction), D1 $(cache 1 Data), L2 $(cache 2 Unified) (size,ways,line)"
for t in "${targets[@]}"; do
	paste "$dir/$t-100.sum" "$dir/$t-300.sum" | awk -v t="$t" '{print t, $0}'
done | awk '
# The events, in callgrind order: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim.
{
	n = (NF - 1) / 2
	for (i = 1; i <= n; i++) d[i] = ($(i + 1 + n) - $(i + 1)) / 200
	t = $1; order[++targets] = t
	ir[t] = d[1]; l1[t] = d[4] + d[5] + d[6]; l2[t] = d[7] + d[8] + d[9]; br[t] = d[11] + d[13]
}
END {
	printf "%-12s %12s %12s %12s %14s\n", "target", "instructions", "L1 misses", "L2 misses", "mispredictions"
	for (i = 1; i <= targets; i++) {
		t = order[i]
		printf "%-12s %12.0f %12.0f %12.0f %14.0f\n", t, ir[t], l1[t], l2[t], br[t]
	}
	if (!("grpc" in ir) || !("direct-sdk" in ir) || !("bare-grpc" in ir)) exit
	print "own/apart: grpc - (direct-sdk + bare-grpc), over direct-sdk + bare-grpc"
	ratio("instructions", ir); ratio("L1 misses", l1); ratio("L2 misses", l2); ratio("mispredictions", br)
	if ("rest" in ir) printf "rest/grpc instructions: %.2f\n", ir["rest"] / ir["grpc"]
}
function ratio(name, v,   apart) {
	apart = v["direct-sdk"] + v["bare-grpc"]
	printf "  %-15s %+6.1f%%", name, 100 * (v["grpc"] - apart) / apart
	if ("floors" in v) printf "   floors together over apart %+6.1f%%", 100 * (v["floors"] - apart) / apart
	if ("bare-proxy" in v) printf "   grpc - bare-proxy %+6.1f%%", 100 * (v["grpc"] - v["bare-proxy"]) / apart
	printf "\n"
}'
