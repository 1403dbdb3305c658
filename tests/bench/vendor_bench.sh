#!/usr/bin/env bash
# Keeping a vendor's rolling window: sluice against nginx limit_req and HAProxy stick tables, each
# in front of a simulated vendor that allows LIMIT requests per rolling WINDOW (Intercom: 166 per
# 10 s) and answers 429 beyond. All on 127.0.0.1.
#
#   tests/bench/vendor_bench.sh             full run: 6 contestants x 2 patterns x 35 s (~8 min)
#   QUICK=1 tests/bench/vendor_bench.sh     smoke run: 20 per 2 s, 10 clients, 7 s (~2 min)
#
# Each run starts a fresh vendor (sluice_vendor_sim vendor: an exact rolling window over the
# requests it accepts, every arrival logged) and a fresh contestant, drives CLIENTS closed-loop
# clients through the contestant for DURATION seconds (sluice_vendor_sim load), stops both by PID
# and compares the vendor's log with an exact rolling-window sender given the same requests
# (sluice_vendor_sim report; the formula is in vendor_sim.cpp's header).
#
# Patterns: steady  each client sends again when answered, at most once per PACE_MS
#           bursty  every idle client at once every BURST_EVERY_MS; BURSTS_ON bursts, then
#                   BURSTS_OFF skipped (quiet gaps)
# Contestants (CONTESTANTS, space-separated):
#   sluice          sliding_window LIMIT per WINDOW, margin MARGIN, queue (max_wait 30s)
#   nginx           limit_req rate=NGINX_RATE (the vendor's per-minute figure), no burst
#   nginx-delay     the same with burst=LIMIT (excess delayed, not refused, up to LIMIT waiting)
#   nginx-nodelay   the same with burst=LIMIT nodelay (LIMIT at once, then the rate)
#   haproxy-req     stick table http_req_rate(WINDOW), deny 429 above LIMIT (refused ones count)
#   haproxy-gpc     stick table gpc0_rate(WINDOW), incremented only for accepted requests
#
# Environment, with defaults:
#   LIMIT=166 WINDOW_MS=10000 MARGIN=50ms NGINX_RATE=1000r/m COUNT_REJECTED=0 (1: the vendor's
#   429s count toward its window too)
#   CLIENTS=50 DURATION=35 PATTERNS="steady bursty" PACE_MS=100
#   BURST_EVERY_MS=WINDOW_MS/5 BURSTS_ON=4 BURSTS_OFF=2 TIMEOUT_MS=40000
#   CONTESTANTS="sluice nginx nginx-delay nginx-nodelay haproxy-req haproxy-gpc"
#   MODEL_LATENCY_MS=1               the ideal's answer latency (see vendor_sim.cpp: 0 is knife-edge)
#   BUILD_DIR=build-bench SKIP_INSTALL=0 SKIP_BUILD=0 RESULTS_DIR=tests/bench/results KEEP_TMP=0
#   REPORT_FROM_DIR=<dir kept by KEEP_TMP=1>   run nothing: report again from that run's logs (the
#                                   same settings must be given)
#
# Outputs: RESULTS_DIR/vendor-<stamp>-runs.csv (one row per run), vendor-<stamp>.md (the tables,
# also printed), and with KEEP_TMP=1 every config, vendor log and client log.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

if [ "${QUICK:-0}" = 1 ]; then
  : "${LIMIT:=20}" "${WINDOW_MS:=2000}" "${CLIENTS:=10}" "${DURATION:=7}" "${NGINX_RATE:=600r/m}"
fi
LIMIT=${LIMIT:-166}
WINDOW_MS=${WINDOW_MS:-10000}
MARGIN=${MARGIN:-50ms}
NGINX_RATE=${NGINX_RATE:-1000r/m}
COUNT_REJECTED=${COUNT_REJECTED:-0}
CLIENTS=${CLIENTS:-50}
DURATION=${DURATION:-35}
PATTERNS=${PATTERNS:-steady bursty}
PACE_MS=${PACE_MS:-100}
BURST_EVERY_MS=${BURST_EVERY_MS:-$((WINDOW_MS / 5))}
BURSTS_ON=${BURSTS_ON:-4}
BURSTS_OFF=${BURSTS_OFF:-2}
TIMEOUT_MS=${TIMEOUT_MS:-40000}
CONTESTANTS=${CONTESTANTS:-sluice nginx nginx-delay nginx-nodelay haproxy-req haproxy-gpc}
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
SLUICE_BIN=${SLUICE_BIN:-$BUILD_DIR/sluice}
SIM_BIN=${SIM_BIN:-$BUILD_DIR/tests/bench/sluice_vendor_sim}
RESULTS_DIR=${RESULTS_DIR:-$root/tests/bench/results}
KEEP_TMP=${KEEP_TMP:-0}
MODEL_LATENCY_MS=${MODEL_LATENCY_MS:-1}

log() { echo "[vendor-bench $(date +%T)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---- processes, ports: shared with proxy_bench.sh ----------------------------------------------
# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"

# ---- set-up ------------------------------------------------------------------------------------
REPORT_FROM_DIR=${REPORT_FROM_DIR:-}
if [ -n "$REPORT_FROM_DIR" ]; then
  [ -d "$REPORT_FROM_DIR" ] || die "no directory $REPORT_FROM_DIR"
  SKIP_INSTALL=1
fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  log "installing nginx haproxy libbenchmark-dev (if missing)"
  "$root/scripts/install-deps.sh" nginx haproxy libbenchmark-dev
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building sluice and sluice_vendor_sim (Release) in $BUILD_DIR"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON -DSLUICE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target sluice sluice_vendor_sim >/dev/null
fi
for bin in "$SLUICE_BIN" "$SIM_BIN"; do [ -x "$bin" ] || die "no binary at $bin"; done
for tool in nginx haproxy ss timeout; do command -v "$tool" >/dev/null || die "$tool not installed"; done

tmp=$(mktemp -d /tmp/sluice-vendor-bench.XXXXXX)
data_dir=${REPORT_FROM_DIR:-$tmp}
mkdir -p "$RESULTS_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
runs_csv="$RESULTS_DIR/vendor-$stamp-runs.csv"
report_md="$RESULTS_DIR/vendor-$stamp.md"
fields="sent vendor_arrivals vendor_accepted accepted_in_span vendor_429 max_accepted_in_window max_arrivals_in_window ideal ratio model_ideal model_ratio client_ok proxy_429 vendor_429_relayed client_other client_errors abandoned ok_p50_ms ok_p99_ms ok_max_ms"
echo "pattern,contestant,${fields// /,}" >"$runs_csv"
window_s=$(awk -v w="$WINDOW_MS" 'BEGIN { printf "%g", w / 1000 }')

# ---- the contestants ----------------------------------------------------------------------------
start_contestant() {  # $1 = contestant, $2 = directory, $3 = vendor port; sets C_PID, C_PORT
  local who=$1 dir=$2 vport=$3 port pid
  free_port
  port=$REPLY
  case "$who" in
    sluice)
      cat >"$dir/sluice.yaml" <<EOF
server:
  workers: 1
  admin: {enabled: false}
listeners:
  - {name: default, listen: "127.0.0.1:$port"}
upstreams:
  vendor: {url: "http://127.0.0.1:$vport"}
limits:
  vendor-rolling: {algorithm: sliding_window, limit: $LIMIT, window: ${WINDOW_MS}ms, margin: $MARGIN}
queue: {max_depth: 10000, max_wait: 30s}
routes:
  - {name: vendor, match: {path_prefix: /}, upstream: vendor, limits: [vendor-rolling]}
EOF
      "$SLUICE_BIN" --config "$dir/sluice.yaml" --log-level warn >"$dir/sluice.log" 2>&1 &
      ;;
    nginx | nginx-delay | nginx-nodelay)
      local burst=""
      [ "$who" = nginx-delay ] && burst=" burst=$LIMIT"
      [ "$who" = nginx-nodelay ] && burst=" burst=$LIMIT nodelay"
      mkdir -p "$dir/body" "$dir/proxy"
      cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/proxy;
  uwsgi_temp_path $dir/proxy;
  scgi_temp_path $dir/proxy;
  limit_req_zone \$binary_remote_addr zone=vendor:1m rate=$NGINX_RATE;
  limit_req_status 429;
  limit_req_log_level info;
  upstream vendor {
    server 127.0.0.1:$vport;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      limit_req zone=vendor$burst;
      proxy_pass http://vendor;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }
  }
}
EOF
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
      ;;
    haproxy-req | haproxy-gpc)
      local store rule
      if [ "$who" = haproxy-req ]; then
        # Every request is tracked (counted) before the rule: refused ones count too.
        store="http_req_rate(${WINDOW_MS}ms)"
        rule="http-request deny deny_status 429 if { sc_http_req_rate(0) gt $LIMIT }"
      else
        # gpc0 is incremented after the deny rule: only accepted requests count.
        store="gpc0_rate(${WINDOW_MS}ms)"
        rule="http-request deny deny_status 429 if { sc_gpc0_rate(0) ge $LIMIT }"
        rule+=$'\n'"  http-request sc-inc-gpc0(0)"
      fi
      cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend vendor_front
  bind 127.0.0.1:$port
  stick-table type ip size 1k expire 120s store $store
  http-request track-sc0 src
  $rule
  default_backend vendor
backend vendor
  http-reuse always
  server vendor 127.0.0.1:$vport
EOF
      haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
      ;;
    *) die "unknown contestant $who" ;;
  esac
  pid=$!
  started+=("$pid")
  wait_port "$port" "$pid" || { cat "$dir"/*.log >&2 || true; die "$who did not start"; }
  C_PID=$pid
  C_PORT=$port
}

describe() {  # $1 = contestant: how it is configured, for the table
  case "$1" in
    sluice) echo "sliding_window $LIMIT/${window_s}s, margin $MARGIN, queue (max_wait 30s)" ;;
    nginx) echo "limit_req rate=$NGINX_RATE" ;;
    nginx-delay) echo "limit_req rate=$NGINX_RATE burst=$LIMIT" ;;
    nginx-nodelay) echo "limit_req rate=$NGINX_RATE burst=$LIMIT nodelay" ;;
    haproxy-req) echo "deny if sc_http_req_rate(0) > $LIMIT, http_req_rate(${window_s}s)" ;;
    haproxy-gpc) echo "deny if sc_gpc0_rate(0) >= $LIMIT, gpc0_rate(${window_s}s), accepted only" ;;
  esac
}

# ---- the runs ------------------------------------------------------------------------------------
declare -A R
run_one() {  # $1 = pattern, $2 = contestant
  local pattern=$1 who=$2 dir="$data_dir/$1-$2" line kv row f
  [ -n "$REPORT_FROM_DIR" ] || measure_one "$pattern" "$who" "$dir"
  line=$("$SIM_BIN" report --vendor-log "$dir/vendor.log" --client-log "$dir/clients.log" \
    --limit "$LIMIT" --window-ms "$WINDOW_MS" --model-latency-ms "$MODEL_LATENCY_MS") || die "no report for $pattern $who"
  R=()
  for kv in $line; do R[${kv%%=*}]=${kv#*=}; done
  row="$pattern,$who"
  for f in $fields; do row+=",${R[$f]}"; done
  echo "$row" >>"$runs_csv"
  log "  $line"
}
measure_one() {  # $1 = pattern, $2 = contestant, $3 = directory for its configs and logs
  local pattern=$1 who=$2 dir=$3 vpid vport count_flag=()
  mkdir -p "$dir"
  free_port
  vport=$REPLY
  [ "$COUNT_REJECTED" = 1 ] && count_flag=(--count-rejected)
  "$SIM_BIN" vendor --port "$vport" --limit "$LIMIT" --window-ms "$WINDOW_MS" "${count_flag[@]}" \
    --log "$dir/vendor.log" >"$dir/vendor.stderr" 2>&1 &
  vpid=$!
  started+=("$vpid")
  wait_port "$vport" "$vpid" || { cat "$dir/vendor.stderr" >&2; die "the vendor did not start"; }
  start_contestant "$who" "$dir" "$vport"
  log "$pattern $who: $CLIENTS clients for ${DURATION}s"
  timeout $((DURATION + TIMEOUT_MS / 1000 + 30)) "$SIM_BIN" load --port "$C_PORT" --clients "$CLIENTS" \
    --duration-ms $((DURATION * 1000)) --pattern "$pattern" --pace-ms "$PACE_MS" \
    --burst-every-ms "$BURST_EVERY_MS" --bursts-on "$BURSTS_ON" --bursts-off "$BURSTS_OFF" \
    --timeout-ms "$TIMEOUT_MS" --log "$dir/clients.log" >"$dir/load.stderr" 2>&1 ||
    { cat "$dir/load.stderr" >&2; die "the load generator failed against $who"; }
  stop_pid "$C_PID"
  stop_pid "$vpid"  # SIGTERM: the vendor writes its log and exits
  [ -e "$dir/vendor.log" ] || die "the vendor wrote no log"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
[ -z "$REPORT_FROM_DIR" ] || load_start="n/a (re-reported from $REPORT_FROM_DIR)"
for pattern in $PATTERNS; do
  for who in $CONTESTANTS; do run_one "$pattern" "$who"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
[ -z "$REPORT_FROM_DIR" ] || load_end="n/a"

# ---- the tables ----------------------------------------------------------------------------------
col() {  # $1 = pattern, $2 = contestant, $3 = field
  awk -F, -v p="$1" -v c="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) k = i; next }
    $1 == p && $2 == c { print $k; exit }' "$runs_csv"
}
pattern_text() {
  case "$1" in
    steady) echo "steady: $CLIENTS clients, each sends again when answered, at most every ${PACE_MS} ms" ;;
    bursty) echo "bursty: every idle client at once every ${BURST_EVERY_MS} ms, $BURSTS_ON bursts then $BURSTS_OFF quiet" ;;
  esac
}
sluice_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$root" diff --quiet HEAD -- src include 2>/dev/null || sluice_rev+=" + uncommitted changes"
{
  echo "## Keeping a vendor's rolling window, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- vendor: exact rolling window, $LIMIT per ${window_s} s over the requests it accepts$([ "$COUNT_REJECTED" = 1 ] && echo " and the ones it refuses"); 429 beyond"
  echo "- $CLIENTS closed-loop clients, ${DURATION} s per run, a fresh vendor and contestant per run"
  echo "- sluice $sluice_rev (Release), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3)"
  echo "- machine: $(nproc) CPUs, load average at start $load_start, at end $load_end"
  for pattern in $PATTERNS; do
    echo
    echo "### $(pattern_text "$pattern")"
    echo
    echo "| contestant | configured as | accepted by the vendor | vendor 429s | most arrivals at the vendor in any ${window_s} s | accepted / ideal (ideal: exact sender, same clients) | accepted / ideal for its own sends | proxy's own 429s | errors | wait of a 200, p50 / p99 | bar met? |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for who in $CONTESTANTS; do
      [ -n "$(col "$pattern" "$who" sent)" ] || continue
      awk -v who="$who" -v how="$(describe "$who")" -v limit="$LIMIT" \
        -v acc="$(col "$pattern" "$who" accepted_in_span)" -v v429="$(col "$pattern" "$who" vendor_429)" \
        -v maxa="$(col "$pattern" "$who" max_accepted_in_window)" -v maxr="$(col "$pattern" "$who" max_arrivals_in_window)" \
        -v ideal="$(col "$pattern" "$who" ideal)" -v ratio="$(col "$pattern" "$who" ratio)" \
        -v mideal="$(col "$pattern" "$who" model_ideal)" -v mratio="$(col "$pattern" "$who" model_ratio)" \
        -v p429="$(col "$pattern" "$who" proxy_429)" \
        -v errs="$(($(col "$pattern" "$who" client_errors) + $(col "$pattern" "$who" client_other)))" \
        -v p50="$(col "$pattern" "$who" ok_p50_ms)" -v p99="$(col "$pattern" "$who" ok_p99_ms)" 'BEGIN {
          ok = v429 == 0 && maxr <= limit && ratio >= 0.99 && mratio >= 0.99
          printf "| %s | %s | %d | %d | %d | %.1f %% (%d) | %.1f %% (%d) | %d | %d | %s / %s ms | %s |\n", who, how, acc,
            v429, maxr, mratio * 100, mideal, ratio * 100, ideal, p429, errs, p50, p99, ok ? "yes" : "**no**" }'
    done
  done
  echo
  echo "Bar: zero vendor 429s, at most $LIMIT arrivals at the vendor in any ${window_s} s, accepted >= 99 % of both ideals."
  echo "Accepted: the vendor's 200s up to the end of the run. Ideal: what an exact rolling-window sender"
  echo "(no margin, requests wait in order, each answer back ${MODEL_LATENCY_MS} ms after its send) would have had"
  echo "accepted by then, in front of the same clients; for its own sends: given the requests this contestant's clients actually sent, at"
  echo "the times they sent them (closed-loop clients that wait send less). Raw runs: $(basename "$runs_csv")."
} >"$report_md"
cat "$report_md"
log "results: $runs_csv, $report_md"
