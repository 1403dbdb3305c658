#!/usr/bin/env bash
# One command: install what is missing, build, and run sluice on config/sluice.yaml
# (or the config file given as the first argument).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
exec "$root/build/sluice" --config "${1:-$root/config/sluice.yaml}"
