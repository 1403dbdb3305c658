#!/usr/bin/env bash
# One command: install what is missing, build, and run the whole test suite through ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 300 -j "$(nproc 2>/dev/null || echo 2)"
