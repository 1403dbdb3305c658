#!/usr/bin/env bash
# Shared-limits benchmark (docs/distributed.md): what sharing limits through Redis costs per request.
# 1 or more sluice processes with `server.state.backend: redis` against one redis-server on
# loopback, next to the same processes with the in-memory backend, in front of one fast upstream
# (nginx, one worker, a fixed small 200), all on 127.0.0.1, driven by wrk (keep-alive).
#
#   tests/bench/shared_bench.sh              1 and 3 replicas x memory and redis, 10 s each
#   QUICK=1 tests/bench/shared_bench.sh      smoke run: 3 s each, 1 s warm-up
#
# What it does: starts redis-server on a free loopback port in a temporary folder (no persistence
# unless REDIS_PERSIST=aof; stopped by PID at exit, like everything else this script starts), the
# upstream, then for each backend and replica count: N sluice processes (each its own listener, its
# own state dir, one route with one limit that never binds: ALGORITHM, limit LIMIT), a warm-up, and
# one wrk per sluice process at once (CONNS connections each). The limit is the same in every
# process (same name, same key), so with backend redis they all share one (limit, key) in Redis.
# A run against the upstream alone ("direct") gives the floor the added latency is measured from.
#
# Reported per run (a table on stdout and in RESULTS_DIR/shared-<stamp>.md, every run in -runs.csv):
#   admissions/s       2xx answers per second, summed over the sluice processes
#   p50, p99           wrk's latency percentiles (p50: the median over the wrk processes, p99: the worst)
#   added p50 / p99    against direct (what sluice adds), and for redis against memory with the same
#                      replica count (what sharing through Redis adds)
#   evalsha / adm      Redis `INFO commandstats` calls of evalsha (and eval) during the run, divided by
#                      the admitted requests: the goal is 1 (one round trip per admission)
#   cmds / adm         every Redis command of the run (INFO's own excluded) per admitted request
#   redis CPU / adm    Redis's used_cpu_user + used_cpu_sys over the run, per admitted request
# The memory runs must show 0 Redis commands: they check that the in-memory backend never talks to
# Redis. A redis run that left no key under its prefix in Redis fails (the build does not share).
#
# Environment, with defaults:
#   DURATION=10 WARMUP=2              seconds per measured run, seconds of warm-up per run
#   REPLICAS="1 3"                    sluice processes per run (each a list entry: one run each)
#   BACKENDS="memory redis"           state backends to compare
#   CONNS=16 WRK_THREADS=1            wrk connections per sluice process, wrk threads
#   ALGORITHM=sliding_window LIMIT=1000000000 WINDOW=1s
#                                     the never-binding limit (sliding_window over 256 units: the
#                                     bucket ring; token_bucket; fixed_window with WINDOW=1h)
#                                     A LIMIT that binds (e.g. LIMIT=2000) measures the saturated case:
#                                     every replica's waiting head asks per freed unit, so evalsha per
#                                     admission rises above 1 (docs/distributed.md, "What it costs")
#   REDIS_PERSIST=none                none | aof (appendonly yes, appendfsync everysec)
#   REDIS_SERVER=redis-server REDIS_CLI=redis-cli
#   BUILD_DIR=build-bench SLUICE_BIN=$BUILD_DIR/sluice SKIP_BUILD=0 SKIP_INSTALL=0
#   RESULTS_DIR=tests/bench/results KEEP_TMP=0 (1 keeps the configs and logs)
# The machine's CPUs are shared by everything here (2 cores: redis, nginx, wrk and 3 sluice
# processes contend): compare rows of one run, as ratios, never across machines.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir="$root/tests/bench"

if [ "${QUICK:-0}" = 1 ]; then
  : "${DURATION:=3}" "${WARMUP:=1}"
fi
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPLICAS=${REPLICAS:-1 3}
BACKENDS=${BACKENDS:-memory redis}
CONNS=${CONNS:-16}
WRK_THREADS=${WRK_THREADS:-1}
ALGORITHM=${ALGORITHM:-sliding_window}
LIMIT=${LIMIT:-1000000000}
WINDOW=${WINDOW:-1s}
REDIS_PERSIST=${REDIS_PERSIST:-none}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
SLUICE_BIN=${SLUICE_BIN:-$BUILD_DIR/sluice}
RESULTS_DIR=${RESULTS_DIR:-$root/tests/bench/results}
KEEP_TMP=${KEEP_TMP:-0}

log() { echo "[shared-bench $(date +%T)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# shellcheck source=tests/bench/bench_lib.sh
source "$bench_dir/bench_lib.sh"

for n in $REPLICAS; do [[ $n =~ ^[1-9][0-9]?$ ]] || die "REPLICAS: '$n' is not a count from 1 to 99"; done
for b in $BACKENDS; do [[ $b == memory || $b == redis ]] || die "BACKENDS: '$b' is neither memory nor redis"; done
case "$REDIS_PERSIST" in none | aof) ;; *) die "REDIS_PERSIST: '$REDIS_PERSIST' is neither none nor aof" ;; esac
case "$ALGORITHM" in
  sliding_window | fixed_window) limit_yaml="{algorithm: $ALGORITHM, limit: $LIMIT, window: $WINDOW}" ;;
  token_bucket) limit_yaml="{algorithm: token_bucket, limit: $LIMIT, window: $WINDOW}" ;;
  *) die "ALGORITHM: '$ALGORITHM' is not sliding_window, token_bucket or fixed_window" ;;
esac

# ---- set-up ------------------------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  log "installing wrk nginx redis-server (if missing)"
  "$root/scripts/install-deps.sh" wrk nginx redis-server
fi
if [ "${SKIP_BUILD:-0}" != 1 ] && [ ! -x "$SLUICE_BIN" ]; then
  log "building sluice (Release) in $BUILD_DIR"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target sluice >/dev/null
fi
[ -x "$SLUICE_BIN" ] || die "no sluice binary at $SLUICE_BIN"
for tool in wrk nginx "$REDIS_SERVER" "$REDIS_CLI" ss curl; do command -v "$tool" >/dev/null || die "$tool not installed"; done

if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
  ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

tmp=$(mktemp -d /tmp/sluice-shared-bench.XXXXXX)
mkdir -p "$RESULTS_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
runs_csv="$RESULTS_DIR/shared-$stamp-runs.csv"
report_md="$RESULTS_DIR/shared-$stamp.md"
wrk_log="$RESULTS_DIR/shared-$stamp-wrk.log"
: >"$wrk_log"
echo "backend,replicas,connections,duration_s,requests,admitted,non2xx,socket_errors,admitted_per_s,p50_us,p99_us,evalsha_calls,redis_calls,redis_cpu_s,evalsha_per_admission,calls_per_admission,redis_cpu_us_per_admission" >"$runs_csv"

# ---- redis-server: a free loopback port, a temporary folder, stopped by PID ----------------------
start_redis() {
  local dir="$tmp/redis" pid persist=(--save "" --appendonly no)
  mkdir -p "$dir"
  [ "$REDIS_PERSIST" = aof ] && persist=(--save "" --appendonly yes --appendfsync everysec)
  free_port
  redis_port=$REPLY
  # No config file: Redis's built-in defaults (Debian's redis.conf is the service's, not ours).
  "$REDIS_SERVER" --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --daemonize no \
    --logfile "$dir/redis.log" --protected-mode yes "${persist[@]}" >"$dir/stdout.log" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_port "$redis_port" "$pid" || { cat "$dir/redis.log" "$dir/stdout.log" >&2 || true; die "redis-server did not start"; }
  for _ in $(seq 50); do
    [ "$(rcli ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  [ "$(rcli ping)" = PONG ] || die "redis-server on port $redis_port does not answer PING"
  log "redis-server $("$REDIS_SERVER" --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$redis_port (pid $pid, persistence: $REDIS_PERSIST)"
}
rcli() { "$REDIS_CLI" -h 127.0.0.1 -p "$redis_port" "$@"; }

# "evalsha_calls all_calls cpu_seconds" from INFO: evalsha and eval calls, every command's calls
# but INFO's own (this script's), Redis's user + system CPU.
redis_counters() {
  { rcli info commandstats; rcli info cpu; } | tr -d '\r' | awk -F'[:,=]' '
    /^cmdstat_/ { name = $1; sub(/^cmdstat_/, "", name); calls = $3
                  if (name == "evalsha" || name == "eval" || name == "evalsha_ro" || name == "eval_ro") scripts += calls
                  if (name != "info") all += calls }
    /^used_cpu_user:/ { cpu += $2 } /^used_cpu_sys:/ { cpu += $2 }
    END { printf "%d %d %.6f\n", scripts, all, cpu }'
}

# ---- the upstream: nginx, one worker, a fixed 200 ----------------------------------------------
start_upstream() {
  local dir="$tmp/upstream" pid
  mkdir -p "$dir"
  free_port
  up_port=$REPLY
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$up_port backlog=8192;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
  nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_port "$up_port" "$pid" || { cat "$dir/error.log" "$dir/stdout.log" >&2 || true; die "nginx did not start"; }
  log "upstream: nginx on 127.0.0.1:$up_port"
}

# ---- sluice processes ----------------------------------------------------------------------------
sluice_pids=()
sluice_ports=()
start_sluices() {  # $1 = backend, $2 = count, $3 = key prefix (redis)
  local backend=$1 count=$2 prefix=$3 i dir port pid state
  sluice_pids=()
  sluice_ports=()
  for i in $(seq "$count"); do
    dir="$tmp/$backend-$count/sluice-$i"
    mkdir -p "$dir"
    free_port
    port=$REPLY
    if [ "$backend" = redis ]; then
      state="  state:
    dir: \"$dir/state\"
    backend: redis
    redis:
      address: 127.0.0.1:$redis_port
      key_prefix: $prefix
      replicas: $count
      connect_timeout: 1s
      command_timeout: 250ms"
    else
      # No backend key: the default (memory), so binaries older than the Redis backend run too.
      state="  state: {dir: \"$dir/state\"}"
    fi
    cat >"$dir/sluice.yaml" <<EOF
server:
  workers: 1
  admin: {enabled: false}
  access_log: {enabled: false}
$state
listeners:
  - {name: default, listen: "127.0.0.1:$port"}
upstreams:
  up: {url: "http://127.0.0.1:$up_port", max_connections: 2048, max_idle_connections: 1024}
limits:
  bench-shared: $limit_yaml
queue: {max_depth: 100000, max_wait: 30s}
routes:
  - {name: bench, match: {path_prefix: /}, upstream: up, limits: [bench-shared]}
EOF
    "$SLUICE_BIN" --config "$dir/sluice.yaml" --log-level warn >"$dir/sluice.log" 2>&1 &
    pid=$!
    started+=("$pid")
    wait_port "$port" "$pid" || { cat "$dir/sluice.log" >&2; die "sluice $backend #$i did not start (config: $dir/sluice.yaml)"; }
    sluice_pids+=("$pid")
    sluice_ports+=("$port")
  done
  for port in "${sluice_ports[@]}"; do
    [ "$(curl -s --max-time 5 "http://127.0.0.1:$port/bench")" = ok ] || die "sluice on port $port: no 'ok' through it"
  done
}
stop_sluices() {
  local pid
  for pid in "${sluice_pids[@]}"; do stop_pid "$pid"; done
  sluice_pids=()
}

# ---- wrk: one per target, all at once; sets R[...] -------------------------------------------------
declare -A R
run_wrks() {  # $1 = seconds, $2 = label, then the target ports
  local secs=$1 label=$2 i port line kv
  shift 2
  local -a pids=() outs=()
  i=0
  for port in "$@"; do
    i=$((i + 1))
    outs+=("$tmp/wrk-$i.out")
    timeout $((secs + 60)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s \
      -s "$bench_dir/report.lua" "http://127.0.0.1:$port/bench" >"$tmp/wrk-$i.out" 2>&1 &
    pids+=("$!")
    started+=("$!")
  done
  local failed=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
    forget_pid "${pids[$i]}"
  done
  for i in "${!outs[@]}"; do { echo "=== $label, wrk $((i + 1))"; cat "${outs[$i]}"; } >>"$wrk_log"; done
  [ "$failed" = 0 ] || { cat "${outs[@]}" >&2; die "wrk failed ($label)"; }
  # Sums over the wrk processes; p50 the median of theirs, p99 the worst.
  R=([requests]=0 [non2xx]=0 [errors]=0 [duration_us]=0)
  local p50s="" p99=0
  for i in "${!outs[@]}"; do
    line=$(grep '^WRKRESULT' "${outs[$i]}") || die "no result line from wrk ($label)"
    declare -A W=()
    for kv in ${line#WRKRESULT }; do W[${kv%%=*}]=${kv#*=}; done
    R[requests]=$((R[requests] + W[requests]))
    R[non2xx]=$((R[non2xx] + W[non2xx]))
    R[errors]=$((R[errors] + W[connect] + W[read] + W[write] + W[timeout]))
    [ "${W[duration_us]}" -gt "${R[duration_us]}" ] && R[duration_us]=${W[duration_us]}
    p50s+="${W[p50_us]} "
    [ "${W[p99_us]}" -gt "$p99" ] && p99=${W[p99_us]}
    unset W
  done
  R[p50_us]=$(tr ' ' '\n' <<<"$p50s" | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  R[p99_us]=$p99
}

# ---- the runs ------------------------------------------------------------------------------------
start_redis
start_upstream
log "direct: wrk against the upstream alone, -c$CONNS, ${DURATION}s"
run_wrks "$WARMUP" "warm-up direct" "$up_port"
run_wrks "$DURATION" "direct" "$up_port"
direct_p50=${R[p50_us]}
direct_p99=${R[p99_us]}
awk -v req="${R[requests]}" -v bad="${R[non2xx]}" -v err="${R[errors]}" -v dur="${R[duration_us]}" -v c="$CONNS" \
  -v p50="${R[p50_us]}" -v p99="${R[p99_us]}" 'BEGIN { secs = dur / 1e6
    printf "direct,0,%d,%.3f,%d,%d,%d,%d,%.1f,%s,%s,,,,,,\n", c, secs, req, req - bad, bad, err, (req - bad) / secs, p50, p99 }' >>"$runs_csv"
log "  direct: $(tail -1 "$runs_csv")"

run=0
for n in $REPLICAS; do
  for backend in $BACKENDS; do
    run=$((run + 1))
    prefix="bench-$stamp-$run"
    log "$backend, $n sluice process(es), -c$CONNS each, ${DURATION}s"
    start_sluices "$backend" "$n" "$prefix"
    run_wrks "$WARMUP" "warm-up $backend x$n" "${sluice_ports[@]}"
    if [ "$backend" = redis ] && [ -z "$(rcli --scan --pattern "{$prefix}:*" | head -1)" ]; then
      die "backend redis: no key under {$prefix}: in Redis after the warm-up (does this sluice build share limits? logs in $tmp/$backend-$n)"
    fi
    read -r s0 a0 c0 < <(redis_counters)
    run_wrks "$DURATION" "$backend x$n" "${sluice_ports[@]}"
    read -r s1 a1 c1 < <(redis_counters)
    stop_sluices
    row=$(awk -v b="$backend" -v n="$n" -v c="$CONNS" -v req="${R[requests]}" -v bad="${R[non2xx]}" -v err="${R[errors]}" \
      -v dur="${R[duration_us]}" -v p50="${R[p50_us]}" -v p99="${R[p99_us]}" \
      -v s=$((s1 - s0)) -v a=$((a1 - a0)) -v cpu0="$c0" -v cpu1="$c1" 'BEGIN {
        secs = dur / 1e6; ok = req - bad; cpu = cpu1 - cpu0
        printf "%s,%d,%d,%.3f,%d,%d,%d,%d,%.1f,%s,%s,%d,%d,%.3f,%.3f,%.3f,%.2f\n", b, n, c, secs, req, ok, bad, err,
          ok / secs, p50, p99, s, a, cpu, (ok > 0 ? s / ok : 0), (ok > 0 ? a / ok : 0), (ok > 0 ? cpu * 1e6 / ok : 0) }')
    echo "$row" >>"$runs_csv"
    log "  $row"
    if [ "$backend" = memory ] && [ $((a1 - a0)) -gt 0 ]; then
      die "backend memory sent $((a1 - a0)) commands to Redis"
    fi
    if [ "$backend" = redis ] && [ $((s1 - s0)) -eq 0 ]; then
      die "backend redis: no script call reached Redis during the run"
    fi
  done
done

# ---- the report ----------------------------------------------------------------------------------
col() {  # $1 = backend, $2 = replicas, $3 = column name
  awk -F, -v b="$1" -v n="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
    $1 == b && $2 == n { print $c; exit }' "$runs_csv"
}
us() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000 && v > -1000) printf "%.0f us", v; else printf "%.2f ms", v / 1000 }'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else print a - b }'; }

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
sluice_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
{
  echo "## Shared limits benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs ($cpu_model), kernel $(uname -r); everything on loopback, sharing the CPUs"
  echo "- sluice $sluice_rev ($SLUICE_BIN), $("$REDIS_SERVER" --version | cut -d' ' -f1-3) (persistence: $REDIS_PERSIST), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- one limit per request, never binding: $limit_yaml; wrk -t$WRK_THREADS -c$CONNS per sluice process, ${DURATION}s after ${WARMUP}s of warm-up"
  echo "- direct (wrk against the upstream alone): p50 $(us "$direct_p50"), p99 $(us "$direct_p99")"
  echo
  echo "| backend | replicas | admissions/s | p50 | p99 | added p50 / p99 vs direct | added p50 / p99 vs memory | evalsha / admission | Redis commands / admission | Redis CPU / admission |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in $REPLICAS; do
    for backend in $BACKENDS; do
      p50=$(col "$backend" "$n" p50_us)
      p99=$(col "$backend" "$n" p99_us)
      vs_mem="-"
      if [ "$backend" = redis ] && [ -n "$(col memory "$n" p50_us)" ]; then
        vs_mem="$(us "$(diff_us "$p50" "$(col memory "$n" p50_us)")") / $(us "$(diff_us "$p99" "$(col memory "$n" p99_us)")")"
      fi
      printf '| %s | %s | %.0f | %s | %s | %s / %s | %s | %s | %s | %s |\n' "$backend" "$n" "$(col "$backend" "$n" admitted_per_s)" \
        "$(us "$p50")" "$(us "$p99")" "$(us "$(diff_us "$p50" "$direct_p50")")" "$(us "$(diff_us "$p99" "$direct_p99")")" "$vs_mem" \
        "$(col "$backend" "$n" evalsha_per_admission)" "$(col "$backend" "$n" calls_per_admission)" \
        "$(awk -v v="$(col "$backend" "$n" redis_cpu_us_per_admission)" 'BEGIN { printf "%.1f us", v }')"
    done
  done
  echo
  echo "Raw runs: $(basename "$runs_csv"); wrk output: $(basename "$wrk_log")."
} >"$report_md"
cat "$report_md"
log "results: $runs_csv, $report_md"
