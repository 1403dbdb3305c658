#!/usr/bin/env bash
# The limiter / admission microbenchmark: builds Release with -DSLUICE_BUILD_BENCH=ON into
# build-bench/ and runs sluice_limiter_bench. Extra arguments go to the benchmark, e.g.
#   tests/bench/run_micro.sh --benchmark_filter=decision
#   tests/bench/run_micro.sh --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
# Results: printed, and as JSON in tests/bench/results/micro-<stamp>.json (gitignored).
# Pin it (e.g. PIN_CPU=1) on a machine where other work runs; numbers from a busy machine are noise.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${BUILD_DIR:-$root/build-bench}
results_dir=${RESULTS_DIR:-$root/tests/bench/results}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then "$root/scripts/install-deps.sh" libbenchmark-dev; fi
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON -DSLUICE_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target sluice_limiter_bench

mkdir -p "$results_dir"
out="$results_dir/micro-$(date +%Y%m%d-%H%M%S).json"
pin=()
[ -n "${PIN_CPU:-}" ] && pin=(taskset -c "$PIN_CPU")
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
"${pin[@]}" "$build_dir/tests/bench/sluice_limiter_bench" --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_counters_tabular=false "$@"
echo "JSON: $out"
