#!/usr/bin/env bash
# The checks CI runs after scripts/test.sh (.ci/run). Each pass fails the script on any finding;
# they run in this order unless some are named, and each prints its time:
#   asan   clang, -fsanitize=address,undefined (UB does not recover): every unit test and the
#          2-io-thread e2e tests (not the 1-thread repeats nor the vendor scenarios, see below),
#          built in build-asan/, the folder scripts/fuzz.sh uses (SLUICE_FUZZ=ON instruments
#          every library with ASan+UBSan, so one build serves both passes)
#   tsan   clang, -fsanitize=thread: sluice + the e2e suite with 2 io threads (ctest -R '^e2e:')
#   fuzz   scripts/fuzz.sh: every libFuzzer target for SLUICE_FUZZ_SECONDS (default 20) each
#   lint   scripts/lint.sh: clang-format and clang-tidy (needs build/compile_commands.json)
#   scripts/ci-checks.sh            all four
#   scripts/ci-checks.sh tsan lint  only these
# A sanitizer report from the tests or from the sluice processes they start goes to a log file
# (log_path), and any such file fails the pass even when the test itself passed (a child's
# report does not change the test's exit status).
# Not under sanitizers (scripts/test.sh runs it): the e2e test "at the fd limit sluice backs off
# accepting..." exhausts sluice's file descriptors on purpose, and a sanitizer runtime then dies
# at its first message, unable to open its log file; the first message is itself a false
# positive: UBSan's vptr check probes the vtable's memory with pipe(), which fails with EMFILE,
# so accept()'s error_code category "has an invalid vptr" ("<memory cannot be printed>").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
fd_limit_test='at the fd limit sluice backs off accepting'
# Not under sanitizers either: the vendor scenarios (tests/scenarios, ctest names "scenario:..."),
# whose targets are timing (a rule's quota used >= 95 % over a few scaled windows) that a
# sanitizer's slowdown distorts, for sluice code the e2e tests already run sanitized. Their
# simulator's unit tests ("simulator:...") do run under ASan.
scenario_tests='^scenario:'
# The e2e suite has two registrations: with 2 io threads ("e2e:") and with one, sluice's default
# ("e2e-1w:", no strands). The sanitizer passes run the 2-thread one only: it drives the same
# request path, with the cross-thread handoffs that one thread never makes, and running both
# doubled the ASan pass's test time within CI's 45 minutes. scripts/test.sh's plain build runs
# "e2e-1w:" and, of "e2e:", only the [redis] tests (tests/CMakeLists.txt).
one_worker_e2e='^e2e-1w:'
"$root/scripts/install-deps.sh"

# Runs ctest in $1 with sanitizer logs in a temporary folder; fails on a failed test or a report.
sanitized_ctest() {
  local build=$1; shift
  local logs
  logs=$(mktemp -d)
  local status=0
  (cd "$build" &&
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$logs/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
    TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:history_size=4:log_path=$logs/tsan" \
    ctest --output-on-failure --timeout 600 "$@") || status=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "ci-checks: sanitizer reports:"
    for f in "$logs"/*; do echo "== $f"; cat "$f"; done
    status=1
  fi
  rm -rf "$logs"
  return $status
}

pass_asan() {
  SLUICE_FUZZ_BUILD="$root/build-asan" SLUICE_FUZZ_CONFIGURE_ONLY=1 "$root/scripts/fuzz.sh"
  # Everything: the tests, and the fuzz targets for the fuzz pass (they share the libraries).
  cmake --build "$root/build-asan" -j "$jobs"
  sanitized_ctest "$root/build-asan" -j "$jobs" -E "$fd_limit_test|$scenario_tests|$one_worker_e2e"
}

pass_tsan() {
  local flags="-O1 -gline-tables-only -DNDEBUG"
  CC=clang CXX=clang++ cmake -S "$root" -B "$root/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$flags" \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$flags" >/dev/null
  cmake --build "$root/build-tsan" -j "$jobs" --target sluice sluice_e2e_tests
  # The e2e tests are RUN_SERIAL: one at a time whatever -j says. Catch2's script drops the
  # prefix's trailing space, so the 2-worker tests are named "e2e:<name>" ("e2e-1w:<name>" the others);
  # --no-tests=error: a filter that matches nothing must not pass.
  sanitized_ctest "$root/build-tsan" -R '^e2e:' -E "$fd_limit_test" --no-tests=error
}

pass_fuzz() { SLUICE_FUZZ_BUILD="$root/build-asan" "$root/scripts/fuzz.sh"; }
pass_lint() { "$root/scripts/lint.sh"; }

passes=("$@")
[ ${#passes[@]} -eq 0 ] && passes=(asan tsan fuzz lint)
times=()
for pass in "${passes[@]}"; do
  start=$(date +%s)
  echo "ci-checks: $pass"
  "pass_$pass"
  times+=("$pass $(( $(date +%s) - start ))s")
  echo "ci-checks: $pass passed in $(( $(date +%s) - start ))s"
done
echo "ci-checks: all passed (${times[*]})"
