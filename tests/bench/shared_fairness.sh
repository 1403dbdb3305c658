#!/usr/bin/env bash
# Fairness across replicas (docs/distributed.md, "Fairness across replicas"): two sluice processes
# share one binding limit through Redis; one is busy (BUSY_CONNS keep-alive connections, always
# sending), the other quiet (one request every QUIET_GAP_MS). Reports what each got and how long
# the quiet replica's requests waited. Everything on 127.0.0.1; every process it starts is stopped
# by PID at exit.
#
#   SLUICE_BIN=build-rel/sluice tests/bench/shared_fairness.sh
#
# Environment: DURATION=10 (s), LIMIT=100 per WINDOW=1s (sliding), BUSY_CONNS=16, QUIET_GAP_MS=50.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SLUICE_BIN=${SLUICE_BIN:-$root/build-rel/sluice}
DURATION=${DURATION:-10}
LIMIT=${LIMIT:-100}
WINDOW=${WINDOW:-1s}
BUSY_CONNS=${BUSY_CONNS:-16}
QUIET_GAP_MS=${QUIET_GAP_MS:-50}

for tool in redis-server wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "shared_fairness: $tool is missing (bash scripts/install-deps.sh wrk)" >&2; exit 2; }
done
[ -x "$SLUICE_BIN" ] || { echo "shared_fairness: no sluice binary at $SLUICE_BIN" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "shared_fairness: nothing listens on $1" >&2
  exit 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

upstream_port=$(free_port)
python3 - "$upstream_port" >"$tmp/upstream.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
wait_port "$upstream_port"

ports=()
for name in busy quiet; do
  port=$(free_port)
  ports+=("$port")
  cat >"$tmp/$name.yaml" <<YAML
server:
  admin: {enabled: false}
  access_log: {enabled: false}
  state:
    backend: redis
    redis: {address: "127.0.0.1:$redis_port", replicas: 2}
listeners:
  - {name: main, listen: "127.0.0.1:$port"}
upstreams:
  up: {url: "http://127.0.0.1:$upstream_port"}
limits:
  shared: {algorithm: sliding_window, limit: $LIMIT, window: $WINDOW}
routes:
  - {upstream: up, limits: [shared], queue: {max_depth: 10000, max_wait: 30s}}
YAML
  "$SLUICE_BIN" --config "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
done

wrk -t1 -c"$BUSY_CONNS" -d"${DURATION}s" --timeout 40s "http://127.0.0.1:${ports[0]}/" >"$tmp/busy.wrk" 2>&1 &
wrk_pid=$!
python3 - "${ports[1]}" "$DURATION" "$QUIET_GAP_MS" >"$tmp/quiet.txt" <<'PY'
import http.client, sys, time
port, duration, gap = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) / 1000
waits, ok = [], 0
end = time.monotonic() + duration
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
while time.monotonic() < end:
    start = time.monotonic()
    conn.request("GET", "/")
    response = conn.getresponse(); response.read()
    waits.append((time.monotonic() - start) * 1000)
    ok += response.status == 200
    time.sleep(gap)
waits.sort()
pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
print(f"quiet: {ok} of {len(waits)} answered 200; wait p50 {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, max {waits[-1]:.1f} ms")
PY
wait "$wrk_pid"
busy=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$tmp/busy.wrk")
echo "limit $LIMIT per $WINDOW shared by 2 replicas, ${DURATION} s: busy replica ($BUSY_CONNS connections) got ${busy:-?} requests"
cat "$tmp/quiet.txt"
