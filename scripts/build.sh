#!/usr/bin/env bash
# Configures and builds sluice (and its tests) into build/. Extra arguments go to cmake.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
# -g1 (line tables and function names: enough for a backtrace, perf and callgrind), not -g: full
# debug info of the Asio/Beast sources about doubles their compile time (client_session.cpp:
# 44 s at -g, 20 s at -g1), and this build is most of CI's scripts/test.sh. Extra arguments
# override it (e.g. -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g -DNDEBUG" to debug with locals).
flags="-O2 -g1 -DNDEBUG"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$flags" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$flags" "$@" >/dev/null
cmake --build "$root/build" -j "$jobs"
