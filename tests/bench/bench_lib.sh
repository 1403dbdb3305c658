# Shell helpers shared by the benchmarks (sourced, not run): processes started in the background
# are recorded and stopped by PID at exit, free ports on 127.0.0.1, waiting for a listener.
# The sourcing script defines log, die and KEEP_TMP first, and sets `tmp` to its scratch folder.

# ---- processes: every one we start is recorded and stopped by PID --------------------------------
started=()  # PIDs of the processes still running that we started, in start order
tmp=""

# Stops one process we started (and, for nginx, the workers it forked), by PID, and forgets it
# (a PID reused later by someone else must never be signalled).
forget_pid() {
  local i kept=()
  for i in "${started[@]}"; do [ "$i" = "$1" ] || kept+=("$i"); done
  started=("${kept[@]}")
}
stop_pid() {
  local pid=$1 children i c
  forget_pid "$pid"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  for c in $children; do kill -0 "$c" 2>/dev/null && kill -KILL "$c" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$? i
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop_pid "${started[$i]}"; done
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    if [ "$KEEP_TMP" = 1 ] || [ $status -ne 0 ]; then log "configs and logs kept in $tmp"; else rm -rf "$tmp"; fi
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1 (below the ephemeral range, never one handed out earlier in this run).
used_ports=" "
free_port() {
  local p
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    case "$used_ports" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
      used_ports+="$p "
      REPLY=$p
      return 0
    fi
  done
  die "no free port found"
}

# Waits until something accepts on 127.0.0.1:$1 while process $2 lives ($3 seconds, default 10).
wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq $((${3:-10} * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
