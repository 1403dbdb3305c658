#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DSLUICE_FUZZ=ON: ASan+UBSan and coverage on every library)
# into build-asan/ and runs each one listed by tests/fuzz/CMakeLists.txt for a bounded time on a
# temporary copy of its seed corpus (tests/fuzz/corpus/<name>/), so nothing is written into the
# repo. Any finding (crash, uncaught exception, failed property, leak, UB, timeout, out-of-memory)
# fails the script; the input that caused it is kept in build-asan/fuzz-artifacts/<name>/.
# The folder is the one scripts/ci-checks.sh's asan pass builds its tests in (one instrumented
# build for both; the tests link the same libraries), so the configuration below is theirs too.
#   scripts/fuzz.sh                 every target, SLUICE_FUZZ_SECONDS (default 20: CI's 45 minutes) each
#   scripts/fuzz.sh config route    only these
#   SLUICE_FUZZ_CONFIGURE_ONLY=1    configure the build folder and stop (ci-checks.sh asan)
# Reproduce a finding: build-asan/tests/fuzz/<name>_fuzz <file>
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SLUICE_FUZZ_BUILD:-$root/build-asan}
seconds=${SLUICE_FUZZ_SECONDS:-20}
jobs=$(nproc 2>/dev/null || echo 2)

# -O1 and line tables only: compiling is most of a sanitizer pass on CI's 2 cores, and reports
# still name file and line. Identical flags every time, or cmake would rebuild everything.
sanitizer_flags="-O1 -gline-tables-only -DNDEBUG"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON \
  -DSLUICE_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$sanitizer_flags" \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$sanitizer_flags" >/dev/null
[ "${SLUICE_FUZZ_CONFIGURE_ONLY:-0}" = 1 ] && exit 0
cmake --build "$build" -j "$jobs" --target sluice_fuzz_targets

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < "$build/fuzz_targets.txt"; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for name in "${targets[@]}"; do
  [ -n "$name" ] || continue
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  seeds="$root/tests/fuzz/corpus/$name"
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/$name/corpus/"
  echo "fuzz: $name for ${seconds}s"
  if ! "$build/tests/fuzz/${name}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/$name/artifacts/" \
       "$work/$name/corpus" > "$work/$name/log" 2>&1; then
    failed+=("$name")
    tail -n 60 "$work/$name/log"
    mkdir -p "$build/fuzz-artifacts/$name"
    cp -r "$work/$name/artifacts/." "$build/fuzz-artifacts/$name/"
    echo "fuzz: $name FAILED; input(s) kept in $build/fuzz-artifacts/$name/"
  else
    echo "fuzz: $name: $(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name/log") executions," \
      "$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$name/log")/s, corpus $(ls "$work/$name/corpus" | wc -l) inputs"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no findings"
