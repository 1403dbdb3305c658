#!/usr/bin/env bash
# The access log's cost per request: user-space instructions of the sluice process (every
# thread, the log's writer included) under callgrind, for a fixed load with the access log on
# (to a file) and off. Instruction counts repeat to within about 1 % on a busy machine, unlike
# CPU time.
#
#   tests/bench/access_log_cost.sh [SLUICE_BIN]    (default build-dev/sluice)
#
# Load: curl sends REQUESTS (default 2000) GETs over one keep-alive connection to a route with
# one (never binding) limit, in front of a tiny keep-alive upstream (python3, fixed 200 "ok").
# Counters are zeroed after WARMUP (default 200) requests. valgrind and python3 come from
# scripts/install-deps.sh (SKIP_INSTALL=1 skips it).
# Then CPU time per request (kernel included) without valgrind: CPU_REPS (3) x CPU_REQUESTS (20000).
# KEEP_TMP=1 keeps the callgrind dumps (callgrind_annotate them for the cost by function).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SLUICE_BIN=${1:-$root/build-dev/sluice}
[ "${SKIP_INSTALL:-0}" = 1 ] || "$root/scripts/install-deps.sh" valgrind python3
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {  # $1 = port
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

upstream_port=$(free_port)
cat >"$tmp/upstream.py" <<'PY'
import asyncio, sys
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
python3 "$tmp/upstream.py" "$upstream_port" &
pids+=($!)
wait_port "$upstream_port"

measure() {  # $1 = true | false (access_log.enabled); prints instructions per request
  local enabled=$1 port dir="$tmp/run-$1" pid dump total
  mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/sluice.yaml" <<YAML
server:
  admin: {enabled: false}
  access_log: {enabled: $enabled, path: "$dir/access.log"}
listeners:
  - {name: main, listen: "127.0.0.1:$port"}
upstreams:
  vendor: {url: "http://127.0.0.1:$upstream_port"}
limits:
  open: {algorithm: sliding_window, limit: 100000000, window: 1s}
routes:
  - {name: api, upstream: vendor, limits: [open]}
YAML
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$SLUICE_BIN" --config "$dir/sluice.yaml" --log-level warn >"$dir/valgrind.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  curl -s -o /dev/null "http://127.0.0.1:$port/warmup/[1-$WARMUP]"
  callgrind_control -z "$pid" >/dev/null
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/items/[1-$REQUESTS]?page=2"
  sleep 1  # the writer thread's lines, if any, are written and counted in the dump
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  dump=$(ls -t "$dir"/callgrind.out.* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  if [ "$enabled" = true ]; then
    lines=$(wc -l <"$dir/access.log")
    echo "access log on: $lines lines written (warm-up included)" >&2
  fi
  awk -v a="$total" -v b="$REQUESTS" 'BEGIN { printf "%.0f\n", a / b }'
}

# CPU time (user + system, kernel included) per request without valgrind, CPU_REPS times each
# way, alternating so that the machine's load hits both alike: noisy on a shared machine, but
# it counts the system calls that callgrind does not.
cpu_per_request() {  # $1 = true | false; prints microseconds of CPU per request
  local enabled=$1 port dir="$tmp/cpu-$1" pid before after
  mkdir -p "$dir"
  port=$(free_port)
  sed -e "s/listen: \"127.0.0.1:[0-9]*\"/listen: \"127.0.0.1:$port\"/" "$tmp/run-$enabled/sluice.yaml" |
    sed -e "s#path: \"[^\"]*\"#path: \"$dir/access.log\"#" >"$dir/sluice.yaml"
  "$SLUICE_BIN" --config "$dir/sluice.yaml" --log-level warn >/dev/null 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  curl -s -o /dev/null "http://127.0.0.1:$port/warmup/[1-$WARMUP]"
  before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/items/[1-$CPU_REQUESTS]?page=2"
  sleep 0.3
  after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$CPU_REQUESTS" 'BEGIN { printf "%.2f\n", t * 1e6 / hz / n }'
}

off=$(measure false)
on=$(measure true)
echo "instructions per request (sluice, all threads, $REQUESTS requests): access log off $off, on $on," \
  "difference $((on - off)) ($(awk -v a="$on" -v b="$off" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }') %)"
CPU_REPS=${CPU_REPS:-3}
CPU_REQUESTS=${CPU_REQUESTS:-20000}
if [ "$CPU_REPS" -gt 0 ]; then
  cpu_off=()
  cpu_on=()
  for _ in $(seq "$CPU_REPS"); do
    cpu_off+=("$(cpu_per_request false)")
    cpu_on+=("$(cpu_per_request true)")
  done
  echo "CPU (user + system) per request, us, $CPU_REQUESTS requests x $CPU_REPS: access log off ${cpu_off[*]}," \
    "on ${cpu_on[*]}"
fi
