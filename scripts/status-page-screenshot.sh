#!/usr/bin/env bash
# Regenerates docs/status-page.png: sluice on a demo configuration with limits at
# various levels (near full, full with refusals, waiting, a shadow limit, a vendor
# gate paused by a 429), a demo upstream (python3), and headless Chromium's
# screenshot of the status page at 1200x700 while some load runs.
#   scripts/status-page-screenshot.sh [build-dir]   (default build-dev; needs its sluice)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-dev}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/upstream.py" <<'PY'
# 429 with Retry-After on /refusing/, a 200 after 0.2 s on /slow/, else 200 at once.
import http.server, time
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/refusing/"):
            body = b"slow down"; self.send_response(429); self.send_header("Retry-After", "45")
        else:
            if self.path.startswith("/slow/"): time.sleep(0.2)
            body = b"ok"; self.send_response(200)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18081), Handler).serve_forever()
PY
cat > "$work/demo.yaml" <<'YAML'
server:
  admin: {listen: "127.0.0.1:19901"}
listeners:
  - {name: main, listen: "127.0.0.1:18080"}
upstreams:
  crm: {url: "http://127.0.0.1:18081"}
  mail: {url: "http://127.0.0.1:18081"}
limits:
  crm-per-key: {algorithm: sliding_window, limit: 100, window: 10s, key: {header: X-Api-Key}}
  crm-org: {algorithm: fixed_window, limit: 400, window: 1m}
  crm-in-flight: {algorithm: concurrency, limit: 10}
  search: {algorithm: token_bucket, limit: 5, window: 10s}
  export-shadow: {algorithm: sliding_window, limit: 1000, window: 1h, enforce: false}
routes:
  - {name: search, match: {path_prefix: /search/}, upstream: crm, limits: [search, crm-org], queue: {max_wait: 2s}}
  - {name: mail, match: {path_prefix: /refusing/}, upstream: mail}
  - {name: crm, upstream: crm, limits: [crm-per-key, crm-org, crm-in-flight, export-shadow]}
YAML

python3 "$work/upstream.py" & pids+=($!)
"$build/sluice" --config "$work/demo.yaml" 2> "$work/sluice.log" & pids+=($!)
sleep 1.5
get() { curl -s -o /dev/null "$@" || true; }
for i in $(seq 1 85); do get -H "X-Api-Key: alice" http://127.0.0.1:18080/c; done
for i in $(seq 1 20); do get -H "X-Api-Key: bob" http://127.0.0.1:18080/c; done
for i in $(seq 1 40); do get -H "X-Api-Key: k$i" http://127.0.0.1:18080/c; done
get http://127.0.0.1:18080/refusing/x
for i in $(seq 1 8); do get http://127.0.0.1:18080/search/q & done
wait_for_jobs() { for job in $(jobs -p); do case " ${pids[*]} " in *" $job "*) ;; *) wait "$job" || true ;; esac; done; }
wait_for_jobs
# Load while the page is read: searches (refused, waiting) and slow requests in flight.
(
  end=$((SECONDS + 12))
  while [ $SECONDS -lt $end ]; do
    for i in 1 2 3; do get http://127.0.0.1:18080/search/q & done
    for i in 1 2 3 4 5 6 7; do get -H "X-Api-Key: carol" http://127.0.0.1:18080/slow/x & done
    sleep 0.3
  done
  wait
) & pids+=($!)
sleep 2.5
timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --virtual-time-budget=4000 --window-size=1200,700 --hide-scrollbars \
  --screenshot=docs/status-page.png http://127.0.0.1:19901/ 2> "$work/chromium.log"
echo "docs/status-page.png written"
