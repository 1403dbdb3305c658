#!/usr/bin/env bash
# Proxy benchmark: sluice against nginx and HAProxy as reverse proxies, all on 127.0.0.1, with a
# floor: tests/bench/floor_relay.cpp, a bare epoll byte relay (no HTTP work at all, only the system
# calls every proxy must make), whose CPU per request is the least any user-space proxy can spend.
#
#   tests/bench/proxy_bench.sh              full run: 3 x 10 s per contestant and scenario (~6 min)
#   QUICK=1 tests/bench/proxy_bench.sh      smoke run: 1 x 2 s (< 1 min once built)
#
# What it does: installs wrk, nginx, haproxy and gnuplot-nox from Debian (scripts/install-deps.sh),
# builds sluice and the floor relay Release into build-bench/, starts an upstream (nginx, one worker, a fixed small 200,
# keep-alive) and each contestant, and runs wrk (keep-alive) against each. The contestant runs alone
# on CPU $PROXY_CPU (taskset); wrk and the upstream share CPU $LOAD_CPU. Contestants run interleaved
# (rep 1 of each, then rep 2 of each, ...) so drift hits them alike; reported figures are medians.
#
# Scenarios (SCENARIOS, space-separated):
#   open     limits configured but never binding, $CONNS connections (the targets are judged here)
#   binding  the limit binds at $BIND_RATE req/s: sluice queues (sliding window), nginx delays
#            (limit_req with burst, no nodelay), HAProxy denies over the rate (429); plus sluice's
#            CPU while $MANY_CONNS requests wait in its queue for a quiet interval
#   many     as open, with $MANY_CONNS connections
# Contestants (CONTESTANTS): direct (wrk against the upstream itself: the ceiling), floor (the relay:
# one upstream connection per client connection, opened at accept; not in binding, it has no
# limit), nginx, haproxy, sluice (and sluice-tb in binding).
#
# CPU per request = the contestant's utime+stime delta (/proc/PID/stat, master + workers for nginx)
# over the run, divided by the responses wrk completed; the runs CSV also has utime and stime apart,
# and the contestant's voluntary context switches per request (sleeps_per_req: how often it blocked).
#
# Environment, with defaults:
#   DURATION=10 REPS=3 WARMUP=2     seconds per run, runs per contestant and scenario, warm-up seconds
#   CONNS=32 MANY_CONNS=1000        wrk -c for open/binding, and for many (ulimit -n is raised)
#   WRK_THREADS=1 BIND_RATE=2000 IDLE_SECONDS=2
#   SCENARIOS="open binding many"   CONTESTANTS="direct floor nginx haproxy sluice"
#   PROXY_CPU=1 LOAD_CPU=0          the contestant's CPU; wrk's and the upstream's
#   BUILD_DIR=build-bench SLUICE_BIN=$BUILD_DIR/sluice SKIP_INSTALL=0 SKIP_BUILD=0
#   FLOOR_BIN=$BUILD_DIR/tests/bench/sluice_floor_relay
#   FLOOR_RELAY_TRIGGER=edge        the floor relay's epoll mode (level: level-triggered)
#   SLUICE_ACCESS_LOG=false        sluice's access log (false, as nginx's and HAProxy's are off;
#                                   true: on, to a file; omit: no key, for binaries built before it)
#   SLUICE_POOL="max_connections: 2048, max_idle_connections: 1024"
#                                   sluice's upstream pool, as free as nginx's (keepalive 1024) and
#                                   HAProxy's (no cap); SLUICE_POOL= for sluice's defaults (64/16)
#   QUIET_MAX=10 QUIET_WAIT=300 RETRIES=2 (QUICK: QUIET_MAX=100, the gate off; RETRIES=0)
#                                   a shared machine's builds distort everything: before each run,
#                                   wait up to QUIET_WAIT s until other processes use <= QUIET_MAX %
#                                   of the machine's CPU; a run during which they used more is
#                                   discarded and repeated (up to RETRIES times); the runs CSV records
#                                   what others used before and during every run
#   RESULTS_DIR=tests/bench/results PLOT=docs/benchmarks-proxy.png (PLOT= for none)
#   KEEP_TMP=0                      1 keeps the generated configs and logs
#   REPORT_FROM=<runs.csv>          measure nothing: re-render the tables and the plot from a runs CSV
# Diagnostics (after the open scenario's runs; files in RESULTS_DIR):
#   PROFILE=1    perf profiles (DWARF call graphs) of sluice and HAProxy
#   SYSCALLS=1   system calls per response (strace -c), also in the binding scenario
#   CALLGRIND=1  user-space instructions per request by function (valgrind), sluice and HAProxy;
#                CALLGRIND_SECONDS=10
#
# Outputs: RESULTS_DIR/proxy-<stamp>-runs.csv (every run), -summary.csv (medians), .md (the tables,
# also printed on stdout), -wrk.log (wrk's own output); the plot.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir="$root/tests/bench"

if [ "${QUICK:-0}" = 1 ]; then
  : "${DURATION:=2}" "${REPS:=1}" "${WARMUP:=1}" "${IDLE_SECONDS:=1}" "${QUIET_MAX:=100}" "${RETRIES:=0}"
fi
DURATION=${DURATION:-10}
REPS=${REPS:-3}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
MANY_CONNS=${MANY_CONNS:-1000}
WRK_THREADS=${WRK_THREADS:-1}
BIND_RATE=${BIND_RATE:-2000}
IDLE_SECONDS=${IDLE_SECONDS:-2}
SCENARIOS=${SCENARIOS:-open binding many}
CONTESTANTS=${CONTESTANTS:-direct floor nginx haproxy sluice}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
SLUICE_BIN=${SLUICE_BIN:-$BUILD_DIR/sluice}
FLOOR_BIN=${FLOOR_BIN:-$BUILD_DIR/tests/bench/sluice_floor_relay}
RESULTS_DIR=${RESULTS_DIR:-$root/tests/bench/results}
PLOT=${PLOT-$root/docs/benchmarks-proxy.png}
PROFILE=${PROFILE:-0}
# Like nginx (keepalive 1024) and HAProxy (no cap), sluice may keep every upstream connection it
# needed; set SLUICE_POOL= (empty) for sluice's defaults (max_connections 64, max_idle_connections 16).
SLUICE_POOL=${SLUICE_POOL-max_connections: 2048, max_idle_connections: 1024}
KEEP_TMP=${KEEP_TMP:-0}
QUIET_MAX=${QUIET_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-300}
RETRIES=${RETRIES:-2}
QUIET_PCT=0

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# shellcheck source=tests/bench/bench_lib.sh
source "$bench_dir/bench_lib.sh"

clk_tck=$(getconf CLK_TCK)
ncpu=$(nproc)

# Busy ticks of the whole machine (/proc/stat "cpu": user nice system irq softirq steal).
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# CPU ticks of the children this shell has waited for (cutime + cstime): wrk's share.
children_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }

# Before a measured run: wait (up to QUIET_WAIT s) until others use at most QUIET_MAX % of the
# machine's CPU over 1 s (everything of ours is idle then). Sets QUIET_PCT.
wait_quiet() {
  local waited=0 b0 b1
  QUIET_PCT=0
  [ "$QUIET_MAX" -lt 100 ] || return 0  # the gate is off
  while :; do
    b0=$(machine_busy)
    sleep 1
    b1=$(machine_busy)
    QUIET_PCT=$(((b1 - b0) * 100 / (clk_tck * ncpu)))
    [ "$QUIET_PCT" -le "$QUIET_MAX" ] && return 0
    if [ "$waited" -ge "$QUIET_WAIT" ]; then
      log "  machine still busy (${QUIET_PCT}% of its CPU used by others); measuring anyway"
      return 0
    fi
    [ "$waited" -eq 0 ] && log "  machine busy (${QUIET_PCT}% of its CPU used by others); waiting up to ${QUIET_WAIT}s"
    sleep 4
    waited=$((waited + 5))
  done
}

# Connections the upstream has accepted so far (nginx stub_status).
upstream_accepts() {
  curl -s --max-time 5 "http://127.0.0.1:$up_port/__status" | awk 'NR == 3 { print $1 }'
}
# utime + stime, in clock ticks, summed over the given PIDs.
cpu_ticks() {
  local total=0 pid v
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || die "process $pid is gone"
    v=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    total=$((total + v))
  done
  echo "$total"
}
# "utime stime", in clock ticks, each summed over the given PIDs.
cpu_ticks_split() {
  local u=0 s=0 pid v
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || die "process $pid is gone"
    v=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12, $13}')
    u=$((u + ${v% *}))
    s=$((s + ${v#* }))
  done
  echo "$u $s"
}
# Voluntary context switches (the process blocked: in epoll_wait, mostly), summed over the given PIDs.
sleeps() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/status" 2>/dev/null; done | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

# ---- set-up ------------------------------------------------------------------------------------
REPORT_FROM=${REPORT_FROM:-}
if [ -n "$REPORT_FROM" ]; then  # only re-render the tables and the plot from an earlier runs CSV
  [ -r "$REPORT_FROM" ] || die "cannot read $REPORT_FROM"
  SKIP_INSTALL=1
  SKIP_BUILD=1
  CONTESTANTS=$(awk -F, 'NR > 1 && $2 != "sluice-tb" && !seen[$2]++ { printf "%s ", $2 }' "$REPORT_FROM")
  SCENARIOS=$(awk -F, 'NR > 1 && $1 != "idle_queue" && !seen[$1]++ { printf "%s ", $1 }' "$REPORT_FROM")
fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  log "installing wrk nginx haproxy gnuplot-nox (if missing)"
  "$root/scripts/install-deps.sh" wrk nginx haproxy gnuplot-nox
fi
wants_sluice=0 wants_floor=0 build_targets=""
[[ " $CONTESTANTS " == *" sluice "* ]] && wants_sluice=1 && build_targets+=" sluice"
[[ " $CONTESTANTS " == *" floor "* ]] && wants_floor=1 && build_targets+=" sluice_floor_relay"
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -n "$build_targets" ]; then
  log "building${build_targets} (Release) in $BUILD_DIR"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON -DSLUICE_BUILD_TESTS=OFF >/dev/null
  # shellcheck disable=SC2086  # one word per target
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target $build_targets >/dev/null
fi
[ -n "$REPORT_FROM" ] || [ $wants_sluice = 0 ] || [ -x "$SLUICE_BIN" ] || die "no sluice binary at $SLUICE_BIN"
[ -n "$REPORT_FROM" ] || [ $wants_floor = 0 ] || [ -x "$FLOOR_BIN" ] || die "no floor relay binary at $FLOOR_BIN"
[ -n "$REPORT_FROM" ] || for tool in wrk nginx haproxy taskset ss curl; do command -v "$tool" >/dev/null || die "$tool not installed"; done
[ "$(nproc)" -gt "$PROXY_CPU" ] && [ "$(nproc)" -gt "$LOAD_CPU" ] || die "needs CPUs $LOAD_CPU and $PROXY_CPU"

# wrk -c1000 plus a proxy holding 2 sockets per connection.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 65536 ]; then
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
fd_limit=$(ulimit -n)
[ "$fd_limit" = unlimited ] && fd_limit=65536
[ -n "$REPORT_FROM" ] || [ "$fd_limit" -ge $((4 * MANY_CONNS + 100)) ] || die "ulimit -n $fd_limit is too low for $MANY_CONNS connections"
max_conns=$(((fd_limit - 100) / 2))  # HAProxy needs 2 fds per connection and checks maxconn against the limit

tmp=$(mktemp -d /tmp/sluice-bench.XXXXXX)
mkdir -p "$RESULTS_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
runs_csv="$RESULTS_DIR/proxy-$stamp-runs.csv"
if [ -n "$REPORT_FROM" ]; then
  runs_csv=$REPORT_FROM
  RESULTS_DIR=$(dirname "$REPORT_FROM")
  stamp=$(basename "$REPORT_FROM" -runs.csv)
  stamp=${stamp#proxy-}
fi
summary_csv="$RESULTS_DIR/proxy-$stamp-summary.csv"
report_md="$RESULTS_DIR/proxy-$stamp.md"
wrk_log="$RESULTS_DIR/proxy-$stamp-wrk.log"
[ -n "$REPORT_FROM" ] || echo "scenario,contestant,rep,connections,duration_s,requests,non2xx,socket_errors,rps,accepted_rps,p50_us,p99_us,mean_us,max_us,cpu_s,cpu_us_per_req,cpu_us_per_accepted,upstream_conns_opened,others_cpu_pct_before,others_cpu_pct_during,user_s,sys_s,user_us_per_req,sys_us_per_req,sleeps_per_req" >"$runs_csv"
[ -n "$REPORT_FROM" ] || : >"$wrk_log"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the upstream: nginx, one worker, a fixed 200 ----------------------------------------------
nginx_common() {  # $1 = directory
  cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $fd_limit;
events { worker_connections 16384; multi_accept on; }
EOF
}
nginx_http_common() {  # $1 = directory
  cat <<EOF
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
EOF
}

start_nginx() {  # $1 = name (its dir under $tmp), $2 = cpu, $3 = port; config already written
  local dir="$tmp/$1" pid
  taskset -c "$2" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_port "$3" "$pid" || { cat "$dir/error.log" "$dir/stdout.log" >&2 || true; die "nginx $1 did not start"; }
  REPLY="$pid $(ps -o pid= --ppid "$pid" | tr '\n' ' ')"
}

start_upstream() {
free_port
up_port=$REPLY
mkdir -p "$tmp/upstream"
{
  nginx_common "$tmp/upstream"
  echo "http {"
  nginx_http_common "$tmp/upstream"
  cat <<EOF
  server {
    listen 127.0.0.1:$up_port backlog=8192;
    location / { default_type text/plain; return 200 "ok\n"; }
    location = /__status { stub_status; }  # connections accepted: shows a proxy's upstream churn
  }
}
EOF
} >"$tmp/upstream/nginx.conf"
start_nginx upstream "$LOAD_CPU" "$up_port"
upstream_pids=$REPLY
log "upstream nginx on 127.0.0.1:$up_port (pids $upstream_pids)"
}

# ---- the contestants ----------------------------------------------------------------------------
declare -A c_port c_pids c_main

start_contestant() {  # $1 = contestant, $2 = scenario
  local who=$1 scenario=$2 dir port pid
  case "$who" in
    direct)
      c_port[direct]=$up_port
      c_pids[direct]=$upstream_pids
      c_main[direct]=${upstream_pids%% *}
      return
      ;;
  esac
  free_port
  port=$REPLY
  dir="$tmp/$scenario-$who"
  mkdir -p "$dir"
  case "$who" in
    nginx)
      local limit_req
      if [ "$scenario" = binding ]; then
        # Excess requests are delayed to the rate (no nodelay); the burst is large enough that none is refused.
        limit_req="limit_req_zone \$binary_remote_addr zone=bench:10m rate=${BIND_RATE}r/s;"
        limit_req+=$'\n'"  limit_req zone=bench burst=100000;"
      else
        limit_req="limit_req_zone \$binary_remote_addr zone=bench:10m rate=1000000r/s;"
        limit_req+=$'\n'"  limit_req zone=bench burst=100000 nodelay;"
      fi
      {
        nginx_common "$dir"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
  $limit_req
  limit_req_status 429;
  limit_req_log_level info;  # the default logs every delay at warn: a write per request
  upstream up {
    server 127.0.0.1:$up_port;
    keepalive 1024;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$port backlog=8192;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
      } >"$dir/nginx.conf"
      start_nginx "$scenario-$who" "$PROXY_CPU" "$port"
      c_pids[nginx]=$REPLY
      c_main[nginx]=${REPLY%% *}
      ;;
    haproxy)
      local rule
      if [ "$scenario" = binding ]; then
        # Deny over the rate. gpc0 counts ACCEPTED requests only (incremented after the deny rule),
        # so the allowance refills; http_req_rate would count the denied ones too and deny forever.
        rule="http-request deny deny_status 429 if { sc_gpc0_rate(0) ge $BIND_RATE }"
        rule+=$'\n'"  http-request sc-inc-gpc0(0)"
      else
        rule="http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000000 }"
      fi
      cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $max_conns
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend bench
  bind 127.0.0.1:$port
  maxconn $max_conns
  stick-table type ip size 100k expire 60s store http_req_rate(1s),gpc0_rate(1s)
  http-request track-sc0 src
  $rule
  default_backend up
backend up
  server up 127.0.0.1:$up_port
EOF
      taskset -c "$PROXY_CPU" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
      pid=$!
      started+=("$pid")
      wait_port "$port" "$pid" || { cat "$dir/haproxy.log" >&2; die "haproxy did not start"; }
      c_pids[haproxy]=$pid
      c_main[haproxy]=$pid
      ;;
    sluice | sluice-tb)
      local limits routes
      if [ "$who" = sluice-tb ]; then
        # The same rate as a token bucket with a small burst: paced like nginx's limit_req.
        limits="  bench-binding: {algorithm: token_bucket, limit: $BIND_RATE, window: 1s, burst: 10}"
        routes="  - {name: bench, match: {path_prefix: /}, upstream: up, limits: [bench-binding]}"
      elif [ "$scenario" = binding ]; then
        limits="  bench-binding: {algorithm: sliding_window, limit: $BIND_RATE, window: 1s}
  wait-one: {algorithm: sliding_window, limit: 1, window: 1h}"
        routes="  - {name: wait, match: {path_prefix: /wait}, upstream: up, limits: [wait-one], queue: {max_wait: 1h, max_depth: 100000}}
  - {name: bench, match: {path_prefix: /}, upstream: up, limits: [bench-binding]}"
      else
        limits="  bench-open: {algorithm: sliding_window, limit: 1000000, window: 1s}"
        routes="  - {name: bench, match: {path_prefix: /}, upstream: up, limits: [bench-open]}"
      fi
      # The access log is off like nginx's and HAProxy's here (SLUICE_ACCESS_LOG=true: on, to a
      # file; =omit: no key at all, for binaries older than the access log).
      access_log="  access_log: {enabled: ${SLUICE_ACCESS_LOG:-false}, path: \"$dir/access.log\"}"
      [ "${SLUICE_ACCESS_LOG:-false}" = omit ] && access_log=""
      cat >"$dir/sluice.yaml" <<EOF
server:
  workers: 1
  admin: {enabled: false}
$access_log
listeners:
  - {name: default, listen: "127.0.0.1:$port"}
upstreams:
  up: {url: "http://127.0.0.1:$up_port"${SLUICE_POOL:+, $SLUICE_POOL}}
limits:
$limits
queue: {max_depth: 100000, max_wait: 30s}
routes:
$routes
EOF
      taskset -c "$PROXY_CPU" "$SLUICE_BIN" --config "$dir/sluice.yaml" --ready-file "$dir/ready.json" \
        --log-level warn >"$dir/sluice.log" 2>&1 &
      pid=$!
      started+=("$pid")
      wait_port "$port" "$pid" || { cat "$dir/sluice.log" >&2; die "sluice did not start (config: $dir/sluice.yaml)"; }
      c_pids[$who]=$pid
      c_main[$who]=$pid
      ;;
    floor)
      taskset -c "$PROXY_CPU" "$FLOOR_BIN" "127.0.0.1:$port" "127.0.0.1:$up_port" >"$dir/floor.log" 2>&1 &
      pid=$!
      started+=("$pid")
      wait_port "$port" "$pid" || { cat "$dir/floor.log" >&2; die "the floor relay did not start"; }
      c_pids[floor]=$pid
      c_main[floor]=$pid
      ;;
    *) die "unknown contestant $who" ;;
  esac
  c_port[$who]=$port
}

stop_contestant() {  # $1 = contestant
  [ "$1" = direct ] && return
  stop_pid "${c_main[$1]}"
}

# A request through the contestant must come back 200 "ok" before anything is measured.
check_contestant() {  # $1 = contestant
  local body
  body=$(curl -s --max-time 5 "http://127.0.0.1:${c_port[$1]}/bench") || die "$1: no answer on port ${c_port[$1]}"
  [ "$body" = ok ] || die "$1: unexpected answer '$body'"
}

# One wrk run; sets W[...] (wrk's figures) and W[cpu_ticks] (the contestant's CPU over the run).
declare -A W
run_wrk() {  # $1 = contestant, $2 = connections, $3 = seconds, $4 = path, $5 = label for the log
  local who=$1 conns=$2 secs=$3 path=$4 t0 t1 line kv a0 a1 m0 m1 c0 c1 u0=0 u1=0 out="$tmp/wrk.out" s0 s1 v0 v1
  a0=$(upstream_accepts)
  [ "$who" = direct ] || u0=$(cpu_ticks $upstream_pids)
  m0=$(machine_busy)
  c0=$(children_ticks)
  s0=$(cpu_ticks_split ${c_pids[$who]})
  t0=$((${s0% *} + ${s0#* }))
  v0=$(sleeps ${c_pids[$who]})
  # Not in $(...): wrk must be this shell's child, so its CPU shows in children_ticks.
  taskset -c "$LOAD_CPU" timeout $((secs + 60)) wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --timeout 10s \
    -s "$bench_dir/report.lua" "http://127.0.0.1:${c_port[$who]}$path" >"$out" 2>&1 || {
    cat "$out" >&2
    die "wrk against $who failed"
  }
  s1=$(cpu_ticks_split ${c_pids[$who]})
  t1=$((${s1% *} + ${s1#* }))
  v1=$(sleeps ${c_pids[$who]})
  c1=$(children_ticks)
  m1=$(machine_busy)
  [ "$who" = direct ] || u1=$(cpu_ticks $upstream_pids)
  a1=$(upstream_accepts)
  { echo "=== $5"; cat "$out"; } >>"$wrk_log"
  line=$(grep '^WRKRESULT' "$out") || die "no result line from wrk against $who"
  W=()
  for kv in ${line#WRKRESULT }; do W[${kv%%=*}]=${kv#*=}; done
  W[cpu_ticks]=$((t1 - t0))
  W[utime_ticks]=$((${s1% *} - ${s0% *}))
  W[stime_ticks]=$((${s1#* } - ${s0#* }))
  W[sleeps]=$((v1 - v0))
  W[upstream_conns]=$((a1 - a0 - 1))  # minus the status request's own connection
  # Whatever else ran on the machine meanwhile (other users, builds): busy CPU not ours.
  W[foreign_ticks]=$(((m1 - m0) - (t1 - t0) - (c1 - c0) - (u1 - u0)))
}

measure() {  # $1 = scenario, $2 = contestant, $3 = rep, $4 = connections
  local scenario=$1 who=$2 rep=$3 conns=$4 row attempt others
  for attempt in $(seq $((RETRIES + 1))); do
    wait_quiet
    run_wrk "$who" "$conns" "$DURATION" /bench "$scenario $who rep $rep (-c$conns)"
    others=$((W[foreign_ticks] * 100 / (clk_tck * ncpu * DURATION)))
    [ "$others" -gt "$QUIET_MAX" ] && [ "$attempt" -le "$RETRIES" ] || break
    log "  $scenario $who rep $rep: discarded, other processes used ${others}% of the machine during it; again"
  done
  row=$(awk -v s="$scenario" -v c="$who" -v r="$rep" -v n="$conns" -v req="${W[requests]}" -v dur="${W[duration_us]}" \
    -v bad="${W[non2xx]}" -v e1="${W[connect]}" -v e2="${W[read]}" -v e3="${W[write]}" -v e4="${W[timeout]}" \
    -v p50="${W[p50_us]}" -v p99="${W[p99_us]}" -v mean="${W[mean_us]}" -v max="${W[max_us]}" \
    -v ticks="${W[cpu_ticks]}" -v hz="$clk_tck" -v up="${W[upstream_conns]}" -v quiet="$QUIET_PCT" \
    -v foreign="${W[foreign_ticks]}" -v ncpu="$ncpu" -v ut="${W[utime_ticks]}" -v st="${W[stime_ticks]}" \
    -v sl="${W[sleeps]}" 'BEGIN {
      secs = dur / 1e6; cpu = ticks / hz; ok = req - bad; user = ut / hz; sys = st / hz
      printf "%s,%s,%d,%d,%.3f,%d,%d,%d,%.1f,%.1f,%d,%d,%.1f,%d,%.2f,%.2f,%.2f,%d,%d,%.1f,%.2f,%.2f,%.2f,%.2f,%.3f\n", s, c, r, n, secs,
        req, bad, e1 + e2 + e3 + e4, req / secs, ok / secs, p50, p99, mean, max, cpu,
        (req > 0 ? cpu * 1e6 / req : 0), (ok > 0 ? cpu * 1e6 / ok : 0), up, quiet,
        (foreign > 0 ? foreign : 0) * 100 / (hz * ncpu * secs),
        user, sys, (req > 0 ? user * 1e6 / req : 0), (req > 0 ? sys * 1e6 / req : 0), (req > 0 ? sl / req : 0) }')
  echo "$row" >>"$runs_csv"
  log "  $row"
}

# sluice's CPU while $MANY_CONNS requests wait in its queue (a limit of 1 per hour): there is nothing
# to do until the single timer fires, so it should be ~0.
idle_queue() {
  local dir="$tmp/idle" wrk_pid t0 t1 out
  mkdir -p "$dir"
  taskset -c "$LOAD_CPU" timeout $((IDLE_SECONDS + 70)) wrk -t1 -c"$MANY_CONNS" -d"$((IDLE_SECONDS + 4))s" --timeout 60s \
    -s "$bench_dir/report.lua" "http://127.0.0.1:${c_port[sluice]}/wait" >"$dir/wrk.log" 2>&1 &
  wrk_pid=$!
  started+=("$wrk_pid")
  sleep 2  # every connection has sent its request and is waiting
  t0=$(cpu_ticks ${c_pids[sluice]})
  sleep "$IDLE_SECONDS"
  t1=$(cpu_ticks ${c_pids[sluice]})
  wait "$wrk_pid" || true
  forget_pid "$wrk_pid"
  { echo "=== idle queue (sluice, -c$MANY_CONNS, /wait)"; cat "$dir/wrk.log"; } >>"$wrk_log"
  idle_cpu_ms=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" 'BEGIN { printf "%.0f", t * 1000 / hz }')
  idle_answered=$(grep '^WRKRESULT' "$dir/wrk.log" | sed 's/.* requests=\([0-9]*\).*/\1/')
  awk -v n="$MANY_CONNS" -v secs="$IDLE_SECONDS" -v req="${idle_answered:-0}" -v t=$((t1 - t0)) -v hz="$clk_tck" \
    'BEGIN { printf "idle_queue,sluice,1,%d,%.3f,%d,0,0,0,0,0,0,0,0,%.2f,0,0,0,0,0,,,,,\n", n, secs, req, t / hz }' >>"$runs_csv"
  log "  idle queue: sluice used ${idle_cpu_ms} ms CPU in ${IDLE_SECONDS} s with $MANY_CONNS requests waiting (wrk got ${idle_answered:-?} answers)"
}

profile_contestant() {  # $1 = contestant: perf profile (call graphs via DWARF unwinding) during one more run
  local who=$1 data="$RESULTS_DIR/proxy-$stamp-perf-$1.data" out="$RESULTS_DIR/proxy-$stamp-perf-$1.txt" perf_pid
  command -v perf >/dev/null || { log "perf not installed (Debian: linux-perf); no profile"; return; }
  perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "${c_main[$who]}" -o "$data" -- sleep "$DURATION" \
    >/dev/null 2>&1 &
  perf_pid=$!
  started+=("$perf_pid")
  run_wrk "$who" "$CONNS" "$DURATION" /bench "profile $who"
  wait "$perf_pid" || true
  forget_pid "$perf_pid"
  {
    echo "# $who: ${W[requests]} requests in ${DURATION}s under perf (cpu-clock, 999 Hz, DWARF call graphs)"
    echo "# where the time goes, by binary"
    perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
    echo "# self time, top symbols"
    perf report -i "$data" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.5 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -40
    echo "# inclusive time (self + callees), top symbols"
    perf report -i "$data" --stdio --children --sort symbol -g none --percent-limit 3 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -60
  } | sed 's/ *$//' | cut -c1-220 >"$out" || true
  log "  profile of $who: $out"
}

# System calls per request (strace -c during one short run; strace slows the process, the counts
# per request stay right). Writes a small table per contestant into RESULTS_DIR.
syscall_profile() {  # $1 = contestant, $2 = scenario
  local who=$1 out="$RESULTS_DIR/proxy-$stamp-syscalls-$2-$1.txt" strace_pid args=() pid total
  command -v strace >/dev/null || { log "strace not installed; no syscall counts"; return; }
  for pid in ${c_pids[$who]}; do args+=(-p "$pid"); done
  strace -f -c -q -o "$out.raw" "${args[@]}" &
  strace_pid=$!
  started+=("$strace_pid")
  sleep 1
  run_wrk "$who" "$CONNS" 3 /bench "syscalls $who"
  kill -INT "$strace_pid" 2>/dev/null || true
  wait "$strace_pid" 2>/dev/null || true
  forget_pid "$strace_pid"
  total=$(awk '$NF == "total" { print $4 }' "$out.raw")  # columns: % time, seconds, usecs/call, calls, [errors], syscall
  {
    echo "$who ($2): ${W[requests]} requests, $total system calls = $(awk -v a="$total" -v b="${W[requests]}" 'BEGIN { printf "%.2f", a / b }') per request"
    awk -v n="${W[requests]}" 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
        printf "  %-16s %8.2f per request\n", $NF, $4 / n }' "$out.raw" |
      sort -k2 -g -r | head -12
  } >"$out" || true
  rm -f "$out.raw"
  log "  syscalls: $(head -1 "$out")"
  SYSCALL_SUMMARY+="$(cat "$out")"$'\n'
}

# A contestant under callgrind: instructions per request, by function (repeatable on a noisy
# machine). A second instance (open-scenario config, new port) runs under valgrind on CPU
# $PROXY_CPU; counters are zeroed after a warm-up, wrk -c8 runs for CALLGRIND_SECONDS, then dumped.
callgrind_profile() {  # $1 = sluice | haproxy
  local who=$1 dir="$tmp/callgrind-$1" port pid out="$RESULTS_DIR/proxy-$stamp-callgrind-$1.txt" dump total cmd
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { log "valgrind not installed; no callgrind profile"; return; }
  mkdir -p "$dir"
  free_port
  port=$REPLY
  case "$who" in
    sluice)
      sed "s/127.0.0.1:${c_port[sluice]}/127.0.0.1:$port/" "$tmp/open-sluice/sluice.yaml" >"$dir/sluice.yaml"
      cmd=("$SLUICE_BIN" --config "$dir/sluice.yaml" --log-level warn) ;;
    haproxy)
      sed "s/127.0.0.1:${c_port[haproxy]}/127.0.0.1:$port/" "$tmp/open-haproxy/haproxy.cfg" >"$dir/haproxy.cfg"
      cmd=(haproxy -db -f "$dir/haproxy.cfg") ;;
    *) return ;;
  esac
  taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "${cmd[@]}" \
    >"$dir/valgrind.log" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_port "$port" "$pid" 60 || { cat "$dir/valgrind.log" >&2; die "$who under callgrind did not start"; }
  local saved_port=${c_port[$who]} saved_pids=${c_pids[$who]}
  c_port[$who]=$port
  c_pids[$who]=$pid
  run_wrk "$who" 8 2 /bench "callgrind warm-up $who"
  callgrind_control -z "$pid" >/dev/null
  run_wrk "$who" 8 "${CALLGRIND_SECONDS:-10}" /bench "callgrind $who"
  callgrind_control -d "$pid" >/dev/null
  c_port[$who]=$saved_port
  c_pids[$who]=$saved_pids
  stop_pid "$pid"
  dump=$(ls -t "$dir"/callgrind.out.* 2>/dev/null | head -1)
  [ -n "$dump" ] || { log "no callgrind dump for $who"; return; }
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  {
    echo "# $who under callgrind: ${W[requests]} requests (wrk -c8), $total instructions = $(awk -v a="$total" -v b="${W[requests]}" 'BEGIN { printf "%.0f", a / b }') per request (user space only)"
    echo "# inclusive (self + callees)"
    callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,70p'
    echo "# self"
    callgrind_annotate --threshold=100 "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,200p' |
      grep -v -E 'below main|libc_start|:main |^-|^Ir|^$|0x0000' | head -50
  } | cut -c1-220 >"$out" || true  # head closes pipes early (SIGPIPE upstream under pipefail)
  log "  callgrind: $(head -1 "$out")"
  CALLGRIND_SUMMARY+="${who}: $(head -1 "$out" | sed 's/^# [a-z]* under callgrind: //')"$'\n'
}

# ---- the runs ------------------------------------------------------------------------------------
SYSCALL_SUMMARY=""
CALLGRIND_SUMMARY=""
idle_cpu_ms=""
idle_answered=""
[ -n "$REPORT_FROM" ] || start_upstream
for scenario in $SCENARIOS; do
  [ -n "$REPORT_FROM" ] && break
  case "$scenario" in
    open) conns=$CONNS ;;
    binding) conns=$CONNS ;;
    many) conns=$MANY_CONNS ;;
    *) die "unknown scenario $scenario" ;;
  esac
  who_list=""
  for who in $CONTESTANTS; do
    [ "$scenario" = binding ] && { [ "$who" = direct ] || [ "$who" = floor ]; } && continue  # nothing to limit
    who_list+="$who "
    [ "$scenario" = binding ] && [ "$who" = sluice ] && who_list+="sluice-tb "
  done
  log "scenario $scenario: ${who_list}, -c$conns, $REPS x ${DURATION}s"
  for who in $who_list; do
    start_contestant "$who" "$scenario"
    check_contestant "$who"
    run_wrk "$who" "$conns" "$WARMUP" /bench "warm-up $scenario $who"
  done
  for rep in $(seq "$REPS"); do
    for who in $who_list; do measure "$scenario" "$who" "$rep" "$conns"; done
  done
  if [ "$scenario" = binding ] && [[ " $who_list " == *" sluice "* ]]; then idle_queue; fi
  if [ "$scenario" = open ] && [ "$PROFILE" = 1 ]; then
    for who in sluice haproxy; do [[ " $who_list " == *" $who "* ]] && profile_contestant "$who"; done
  fi
  if [ "$scenario" = open ] && [ "${CALLGRIND:-0}" = 1 ]; then
    for who in sluice haproxy; do [[ " $who_list " == *" $who "* ]] && callgrind_profile "$who"; done
  fi
  if [ "${SYSCALLS:-0}" = 1 ] && [ "$scenario" != many ]; then
    for who in $who_list; do [ "$who" = direct ] || syscall_profile "$who" "$scenario"; done
  fi
  for who in $who_list; do stop_contestant "$who"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$REPORT_FROM" ]; then
  load_start="n/a (re-rendered from $(basename "$REPORT_FROM"))"
  load_end="n/a"
  idle_cpu_ms=$(awk -F, '$1 == "idle_queue" { printf "%.0f", $15 * 1000 }' "$runs_csv")
  idle_conns=$(awk -F, '$1 == "idle_queue" { print $4 }' "$runs_csv")
  idle_secs=$(awk -F, '$1 == "idle_queue" { printf "%g", $5 }' "$runs_csv")
  [ -z "$idle_conns" ] || MANY_CONNS=$idle_conns
  [ -z "$idle_secs" ] || IDLE_SECONDS=$idle_secs
  REPS=$(awk -F, 'NR > 1 && $3 > m { m = $3 } END { print m }' "$runs_csv")
  DURATION=$(awk -F, 'NR > 1 && $1 == "open" { printf "%.0f", $5; exit }' "$runs_csv")
  CONNS=$(awk -F, 'NR > 1 && $1 == "open" { print $4; exit }' "$runs_csv")
fi

# ---- medians, tables, targets, plot --------------------------------------------------------------
median() {  # $1 = scenario, $2 = contestant, $3 = column name ("" if an older CSV lacks the column)
  awk -F, -v s="$1" -v c="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    col && $1 == s && $2 == c && $col != "" { print $col }' "$runs_csv" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
metrics="rps accepted_rps p50_us p99_us cpu_us_per_req cpu_us_per_accepted non2xx socket_errors duration_s upstream_conns_opened others_cpu_pct_during user_us_per_req sys_us_per_req sleeps_per_req"
echo "scenario,contestant,reps,connections,${metrics// /,}" >"$summary_csv"
declare -A M
for scenario in $SCENARIOS; do
  for who in $CONTESTANTS sluice-tb; do
    n=$(awk -F, -v s="$scenario" -v c="$who" '$1 == s && $2 == c' "$runs_csv" | wc -l)
    [ "$n" -gt 0 ] || continue
    conns=$(awk -F, -v s="$scenario" -v c="$who" '$1 == s && $2 == c { print $4; exit }' "$runs_csv")
    row="$scenario,$who,$n,$conns"
    for m in $metrics; do
      M[$scenario,$who,$m]=$(median "$scenario" "$who" "$m")
      row+=",${M[$scenario,$who,$m]}"
    done
    M[$scenario,$who,present]=1
    echo "$row" >>"$summary_csv"
  done
done

fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "-"; else printf f, v }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000) printf "%.0f us", v; else printf "%.2f ms", v / 1000 }'; }

# CPU per request, "17.9 us (5.0 + 12.9)" when the CSV has user and system time apart (medians of each).
cpu_cell() {  # $1 = scenario, $2 = contestant
  awk -v c="${M[$1,$2,cpu_us_per_req]}" -v u="${M[$1,$2,user_us_per_req]:-}" -v k="${M[$1,$2,sys_us_per_req]:-}" 'BEGIN {
    if (c == "") { print "-"; exit }
    printf "%.1f us", c; if (u != "" && k != "") printf " (%.1f + %.1f)", u, k; printf "\n" }'
}
speed_table() {  # $1 = scenario
  local s=$1 who direct_rps ratio floor_cpu vs_floor split=""
  direct_rps=${M[$s,direct,rps]:-}
  floor_cpu=${M[$s,floor,cpu_us_per_req]:-}
  [ -z "${M[$s,sluice,user_us_per_req]:-}${M[$s,haproxy,user_us_per_req]:-}${M[$s,floor,user_us_per_req]:-}" ] || split=" (user + sys)"
  echo "| contestant | req/s | p50 | p99 | req/s vs direct | CPU per request$split | CPU vs floor | non-2xx | socket errors | upstream conns opened |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for who in $CONTESTANTS; do
    [ -n "${M[$s,$who,present]:-}" ] || continue
    ratio=$(awk -v a="${M[$s,$who,rps]}" -v b="$direct_rps" 'BEGIN { if (b == "" || b == 0) print "-"; else printf "%.2f", a / b }')
    vs_floor=$(awk -v a="${M[$s,$who,cpu_us_per_req]}" -v b="$floor_cpu" -v w="$who" \
      'BEGIN { if (b == "" || b == 0 || w == "direct") print "-"; else printf "%.2f x", a / b }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$who" "$(fmt "${M[$s,$who,rps]}" %.0f)" \
      "$(ms "${M[$s,$who,p50_us]}")" "$(ms "${M[$s,$who,p99_us]}")" "$ratio" "$(cpu_cell "$s" "$who")" "$vs_floor" \
      "$(fmt "${M[$s,$who,non2xx]}" %.0f)" "$(fmt "${M[$s,$who,socket_errors]}" %.0f)" \
      "$(fmt "${M[$s,$who,upstream_conns_opened]}" %.0f)"
  done
}

binding_table() {
  local s=binding who
  echo "| contestant | behaviour over the limit | accepted req/s | refused req/s | p50 | p99 | CPU per response | CPU per accepted | upstream conns opened |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for who in $CONTESTANTS sluice-tb; do
    [ -n "${M[$s,$who,present]:-}" ] || continue
    case "$who" in
      sluice) how="queues (sliding window ${BIND_RATE}/1s, max_wait 30s)" ;;
      sluice-tb) how="queues (token bucket ${BIND_RATE}/1s, burst 10, max_wait 30s)" ;;
      nginx) how="delays (limit_req ${BIND_RATE}r/s, burst, no nodelay)" ;;
      haproxy) how="denies 429 (gpc0_rate(1s) >= ${BIND_RATE})" ;;
      *) how="-" ;;
    esac
    refused=$(awk -v a="${M[$s,$who,rps]}" -v b="${M[$s,$who,accepted_rps]}" 'BEGIN { printf "%.0f", a - b }')
    printf '| %s | %s | %s | %s | %s | %s | %s us | %s us | %s |\n' "$who" "$how" "$(fmt "${M[$s,$who,accepted_rps]}" %.0f)" \
      "$refused" "$(ms "${M[$s,$who,p50_us]}")" "$(ms "${M[$s,$who,p99_us]}")" \
      "$(fmt "${M[$s,$who,cpu_us_per_req]}" %.1f)" "$(fmt "${M[$s,$who,cpu_us_per_accepted]}" %.1f)" \
      "$(fmt "${M[$s,$who,upstream_conns_opened]}" %.0f)"
  done
}

targets() {
  local s=open
  if [ -z "${M[$s,sluice,present]:-}" ] || [ -z "${M[$s,haproxy,present]:-}" ]; then
    echo "Targets not judged: the open scenario needs both sluice and haproxy."
    return
  fi
  awk -v sc="${M[$s,sluice,cpu_us_per_req]}" -v hc="${M[$s,haproxy,cpu_us_per_req]}" \
    -v sr="${M[$s,sluice,rps]}" -v hr="${M[$s,haproxy,rps]}" \
    -v sp="${M[$s,sluice,p99_us]}" -v hp="${M[$s,haproxy,p99_us]}" \
    -v fc="${M[$s,floor,cpu_us_per_req]:-}" -v fu="${M[$s,floor,user_us_per_req]:-}" -v fk="${M[$s,floor,sys_us_per_req]:-}" \
    -v fs="${M[$s,floor,sleeps_per_req]:-}" -v hs="${M[$s,haproxy,sleeps_per_req]:-}" 'BEGIN {
      verdict = "| target (open scenario, same run) | sluice | HAProxy | met? |\n|---|---:|---:|---|\n"
      ok = sc <= 0.8 * hc
      verdict = verdict sprintf("| CPU per request <= 0.8 x HAProxy | %.1f us (%.2fx) | %.1f us | %s |\n", sc, sc / hc, hc, ok ? "yes" : "**no**")
      if (fc != "" && fc > 0)
        verdict = verdict sprintf("| CPU per request vs the floor relay (%.1f us) | %.2fx | %.2fx | 0.8 x HAProxy = %.2fx the floor |\n", fc, sc / fc, hc / fc, 0.8 * hc / fc)
      ok = sr >= hr
      verdict = verdict sprintf("| req/s >= HAProxy | %.0f | %.0f | %s |\n", sr, hr, ok ? "yes" : "**no**")
      ok = sp <= hp
      verdict = verdict sprintf("| p99 <= HAProxy | %.0f us | %.0f us | %s |", sp, hp, ok ? "yes" : "**no**")
      if (fc != "" && fc > 0) {
        parts = (fu != "" && fk != "") ? sprintf(" (user %.1f + sys %.1f)", fu, fk) : ""
        verdict = verdict sprintf("\n\n0.8 x HAProxy = %.1f us; the floor relay = %.1f us%s: ", 0.8 * hc, fc, parts)
        if (0.8 * hc <= fc)
          verdict = verdict "the target is below the floor, out of reach of any user-space proxy on epoll here."
        else
          verdict = verdict sprintf("a proxy meeting the target may spend %.1f us per request above the floor (HAProxy spends %.1f us, sluice %.1f us).", 0.8 * hc - fc, hc - fc, sc - fc)
        if (fs != "" && hs != "")
          verdict = verdict sprintf(" Sleeps (voluntary context switches) per request: the floor %.3f, HAProxy %.3f; a proxy with CPU to spare blocks in epoll_wait more often, and each sleep and wake-up costs kernel time.", fs, hs)
      }
      print verdict }'
}

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
sluice_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$root" diff --quiet HEAD -- src include 2>/dev/null || sluice_rev+=" + uncommitted changes"
{
  echo "## Proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($cpu_model), kernel $(uname -r); load average at start $load_start, at end $load_end"
  echo "- sluice $sluice_rev (Release), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- wrk -t$WRK_THREADS keep-alive, $REPS x ${DURATION}s per contestant (medians), ${WARMUP}s warm-up; contestant alone on CPU $PROXY_CPU, wrk + upstream (nginx, 1 worker, fixed 200) on CPU $LOAD_CPU"
  echo "- CPU per request: the contestant's utime+stime delta (/proc/PID/stat; nginx: master + worker) / responses completed"
  [ -z "${M[open,floor,present]:-}${M[many,floor,present]:-}" ] ||
    echo "- floor: tests/bench/floor_relay.cpp, a bare epoll byte relay (one upstream connection per client, no HTTP work): the least CPU per request any user-space proxy can spend"
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "others_cpu_pct_during") col = i; next }
    $1 != "idle_queue" { v = $col + 0; sum += v; if (v > max) max = v; if (v > 10) busy++; n++ }
    END { if (n) printf "- other processes on the machine during the measured runs: %.1f%% of its CPU on average, %.1f%% at most; %d of %d runs above 10%%\n", sum / n, max, busy, n }' "$runs_csv"
  for scenario in $SCENARIOS; do
    echo
    case "$scenario" in
      open)
        echo "### Limits configured, never binding (-c$CONNS)"
        echo
        speed_table open
        echo
        targets
        ;;
      binding)
        echo "### The limit binding at $BIND_RATE req/s (-c$CONNS)"
        echo
        binding_table
        if [ -n "$idle_cpu_ms" ]; then
          echo
          echo "sluice with $MANY_CONNS requests waiting in its queue (limit 1 per hour): ${idle_cpu_ms} ms of CPU over a quiet ${IDLE_SECONDS} s."
        fi
        ;;
      many)
        echo "### $MANY_CONNS concurrent connections, limits never binding (-c$MANY_CONNS)"
        echo
        speed_table many
        ;;
    esac
  done
  if [ -n "$CALLGRIND_SUMMARY" ]; then
    echo
    echo "User-space instructions per request (callgrind, wrk -c8):"
    echo
    echo '```'
    printf '%s' "$CALLGRIND_SUMMARY"
    echo '```'
  fi
  if [ -n "$SYSCALL_SUMMARY" ]; then
    echo
    echo "System calls per response (strace -c over a 3 s run, -c$CONNS):"
    echo
    echo '```'
    printf '%s' "$SYSCALL_SUMMARY"
    echo '```'
  fi
  echo
  echo "Raw runs: $(basename "$runs_csv"); medians: $(basename "$summary_csv")."
} >"$report_md"
cat "$report_md"

if [ -n "$PLOT" ] && command -v gnuplot >/dev/null; then
  data="$tmp/plot.dat"
  : >"$data"
  for who in $CONTESTANTS; do
    [ -n "${M[open,$who,present]:-}${M[many,$who,present]:-}" ] || continue
    printf '%s %s %s %s %s\n' "$who" "${M[open,$who,rps]:--}" "${M[many,$who,rps]:--}" \
      "$(awk -v v="${M[open,$who,p99_us]:-}" 'BEGIN { if (v == "") print "-"; else printf "%.3f", v / 1000 }')" \
      "$(awk -v v="${M[many,$who,p99_us]:-}" 'BEGIN { if (v == "") print "-"; else printf "%.3f", v / 1000 }')" >>"$data"
  done
  mkdir -p "$(dirname "$PLOT")"
  gnuplot <<EOF
set terminal pngcairo size 1200,520 font "sans,10"
set output "$PLOT"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 1
set grid ytics
set key top right
set yrange [0:*]
set multiplot layout 1,2 title "sluice vs nginx vs HAProxy, loopback, proxy alone on 1 CPU (${stamp:0:4}-${stamp:4:2}-${stamp:6:2}, medians of $REPS x ${DURATION}s)"
set title "requests/s (higher is better)"
set format y "%.0s%c"
plot "$data" using 2:xtic(1) title "-c$CONNS" lc rgb "#4477aa", \
     "" using 3 title "-c$MANY_CONNS" lc rgb "#ee6677", \
     "" using (\$0-1.0/6):2:(sprintf("%.1fk", \$2/1000)) with labels offset 0,0.8 notitle, \
     "" using (\$0+1.0/6):3:(sprintf("%.1fk", \$3/1000)) with labels offset 0,0.8 notitle
set title "p99 latency, ms, log scale (lower is better)"
set key top left
set format y "%g"
set logscale y
set yrange [0.1:*]
plot "$data" using 4:xtic(1) title "-c$CONNS" lc rgb "#4477aa", \
     "" using 5 title "-c$MANY_CONNS" lc rgb "#ee6677", \
     "" using (\$0-1.0/6):4:(sprintf("%.2f", \$4)) with labels offset 0,0.8 notitle, \
     "" using (\$0+1.0/6):5:(sprintf("%.1f", \$5)) with labels offset 0,0.8 notitle
unset multiplot
EOF
  log "plot: $PLOT"
fi
log "results: $runs_csv, $summary_csv, $report_md"
