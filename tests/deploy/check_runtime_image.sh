#!/usr/bin/env bash
# The docker image's contract, checked without docker (the build machines have none) on this
# Debian 12 system, against the built binary and docker/Dockerfile as written:
#
#   check_runtime_image.sh CHECK SLUICE_BINARY SOURCE_DIR
#
#   packages    every shared library `ldd sluice` needs comes from a package the runtime stage
#               installs or from the base image; every package the build found (CMakeCache.txt
#               beside the binary) is installed by the build stage
#   entrypoint  the ENTRYPOINT, its paths mapped into a temporary copy of what the runtime stage
#               COPYs, runs as the image's USER (when run as root), the HEALTHCHECK command
#               answers 0 while it runs, SIGTERM makes it exit 0 (with the state file saved in
#               the volume when server.state is on), and the HEALTHCHECK fails after
#   cli         --version, --help and usage errors: output and exit codes; `sluice health`
#               against no listener and a listener that never answers
#   yaml        docker/compose.yaml, docker/*/compose.yaml and deploy/kubernetes/*.yaml parse, the
#               configs they ship (and docker/sluice.yaml) pass `sluice --check` with their state
#               dir on a writable volume, the pod's shutdown budget exceeds the drain, and no probe
#               is an httpGet; compose secrets exist and are readable by the image's user, a shared
#               (backend: redis) config's password_file is a mounted secret and its replicas cover
#               the sidecars sharing its prefix
#
# Registered in ctest as "deploy: CHECK" (tests/CMakeLists.txt). Fails with one line per problem.
set -euo pipefail

check=${1:?usage: $0 packages|entrypoint|cli|yaml SLUICE_BINARY SOURCE_DIR}
binary=$(realpath "${2:?the sluice binary}")
source_dir=$(realpath "${3:?the source directory}")
dockerfile=$source_dir/docker/Dockerfile
here=$(dirname "$(realpath "$0")")
# Debian's python3 (python3-yaml); a pyenv or venv python3 earlier in PATH may lack it.
python=/usr/bin/python3
[ -x "$python" ] || python=python3

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
query() { "$python" "$here/dockerfile_query.py" "$dockerfile" "$@"; }

work=$(mktemp -d /tmp/sluice-deploy.XXXXXX)
sluice_pid=
cleanup() {
  if [ -n "$sluice_pid" ] && kill -0 "$sluice_pid" 2>/dev/null; then kill -KILL "$sluice_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The package owning a file: dpkg -S knows the path it installed, which under Debian 12's merged
# /usr may be /lib/... or /usr/lib/... whichever way ldd spells it.
owner_package() {
  local path=$1 candidate owners
  for candidate in "$path" "$(realpath "$path")" "${path#/usr}" "/usr$path" \
                   "$(realpath "$path" | sed 's|^/usr||')"; do
    if owners=$(dpkg -S "$candidate" 2>/dev/null); then
      # "libssl3:amd64: /usr/lib/..." (or "a:amd64, b:amd64: /dir" for a shared folder)
      head -1 <<<"$owners" | sed 's/: .*//; s/,.*//; s/:[a-z0-9]*$//'
      return 0
    fi
  done
  return 1
}

# debian:12-slim's own packages that a C++ program links against (its Essential set).
base_image_packages=(libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 liblzma5 libbz2-1.0 libcrypt1
                     libselinux1 libpcre2-8-0 libacl1 libattr1 libgmp10 libmd0 libsystemd0 liblz4-1
                     libgcrypt20 libgpg-error0 libcap2 libtinfo6 libudev1 libxxhash0)

check_packages() {
  local -a runtime build
  mapfile -t runtime < <(query runtime-packages)
  mapfile -t build < <(query build-packages)
  local allowed=" ${runtime[*]} ${base_image_packages[*]} "

  local line path package count=0
  while read -r line; do
    case $line in
      *"not found"*) fail "ldd: $line"; continue ;;
      *"=> /"*) path=${line#*=> }; path=${path%% *} ;;
      /*) path=${line%% *} ;;
      *) continue ;;  # linux-vdso: the kernel's
    esac
    count=$((count + 1))
    if ! package=$(owner_package "$path"); then
      fail "$path (ldd sluice) belongs to no installed package"
    elif [[ $allowed != *" $package "* ]]; then
      fail "$path comes from $package: add it to the runtime stage's apt-get install in docker/Dockerfile"
    else
      echo "ok: $path <- $package"
    fi
  done < <(ldd "$binary")
  [ "$count" -gt 0 ] || fail "ldd $binary listed no library"

  # Each runtime package must exist in Debian 12 (a typo would only show in a docker build).
  for package in "${runtime[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1 && ! dpkg-query -W "$package" >/dev/null 2>&1; then
      fail "runtime package $package is unknown to apt and dpkg"
    fi
  done

  # The build stage: what CMake found for sluice's own find_package()s (tests' are not built
  # there) must come from packages the build stage installs.
  local cache
  cache=$(dirname "$binary")/CMakeCache.txt
  if [ ! -f "$cache" ]; then
    echo "note: no CMakeCache.txt beside $binary; the build stage's packages are not checked"
  else
    local allowed_build=" ${build[*]} " name dir file
    while read -r name; do
      case $name in
        Threads) continue ;;  # libc
        # Found by CMake's Find modules (no config package): a header of theirs tells the package.
        OpenSSL) dir=$(sed -n 's/^OPENSSL_INCLUDE_DIR:PATH=//p' "$cache"); file=$dir/openssl/ssl.h ;;
        Boost) dir=$(sed -n 's/^Boost_INCLUDE_DIR:PATH=//p' "$cache"); file=$dir/boost/version.hpp ;;
        # pkg-config itself: the tool CMake ran (its modules are checked below).
        PkgConfig) file=$(sed -n 's/^PKG_CONFIG_EXECUTABLE:FILEPATH=//p' "$cache"); dir=$file ;;
        *) dir=$(sed -n "s/^${name}_DIR:PATH=//p" "$cache"); file=$dir ;;
      esac
      if [ -z "$dir" ] || [[ $dir == *NOTFOUND ]]; then
        fail "find_package($name): nothing in $cache"
        continue
      fi
      local owners
      owners=$(dpkg -S "$file" 2>/dev/null | sed 's/: .*//; s/:[a-z0-9]*//g; s/,/ /g' || true)
      local found=
      for package in $owners; do [[ $allowed_build == *" $package "* ]] && found=$package; done
      if [ -n "$found" ]; then
        echo "ok: find_package($name) <- $found"
      else
        fail "find_package($name) used $file (${owners:-no package}): add it to the build stage's apt-get install"
      fi
    done < <(sed -n 's/^find_package(\([A-Za-z0-9_-]*\).*/\1/p' "$source_dir/CMakeLists.txt")
    # pkg_check_modules(PREFIX ... MODULE): the module's .pc file must come from a build package.
    local module pc
    while read -r module; do
      pc=$(pkg-config --path "$module" 2>/dev/null || true)
      if [ -z "$pc" ]; then
        fail "pkg_check_modules($module): pkg-config finds no $module.pc"
        continue
      fi
      owners=$(dpkg -S "$pc" 2>/dev/null | sed 's/: .*//; s/:[a-z0-9]*//g; s/,/ /g' || true)
      found=
      for package in $owners; do [[ $allowed_build == *" $package "* ]] && found=$package; done
      if [ -n "$found" ]; then
        echo "ok: pkg_check_modules($module) <- $found"
      else
        fail "pkg_check_modules($module) used $pc (${owners:-no package}): add it to the build stage's apt-get install"
      fi
    done < <(sed -n 's/^pkg_check_modules([A-Za-z0-9_]* .* \([A-Za-z0-9_-]*\))$/\1/p' "$source_dir/CMakeLists.txt")
  fi
}

# The runtime stage's files under $root: what it COPYs, and its volumes (owned by its USER).
# The configs' volume paths and listen addresses are rewritten to $root and ephemeral ports.
build_root() {
  root=$work/root
  mkdir -p "$root"
  chmod 755 "$work" "$root"
  local stage source dest
  while IFS=$'\t' read -r stage source dest; do
    mkdir -p "$root$(dirname "$dest")"
    if [ "$stage" != "-" ]; then
      # The build stage's output: its binary is the one under test.
      [ "$(basename "$source")" = sluice ] || { fail "unexpected COPY --from=$stage $source"; continue; }
      cp "$binary" "$root$dest"
    elif [[ $source == */ ]]; then
      mkdir -p "$root$dest"
      cp -r "$source_dir/$source." "$root$dest"
    else
      cp "$source_dir/$source" "$root$dest"
    fi
  done < <(query copies)
  mapfile -t volumes < <(query volumes)
  local volume config
  for volume in "${volumes[@]}"; do mkdir -p "$root$volume"; done
  while read -r config; do
    for volume in "${volumes[@]}"; do sed -i "s|$volume|$root$volume|g" "$config"; done
    sed -i -E 's/listen: *"?([0-9.]+|\[[0-9a-f:]+\]):[0-9]+"?/listen: "127.0.0.1:0"/' "$config"
  done < <(find "$root" -name '*.yaml' -path '*/etc/*')
}

# An image path into $root when the runtime stage put something there.
map_path() {
  if [[ $1 == /* ]] && [ -e "$root$1" ]; then echo "$root$1"; else echo "$1"; fi
}

check_entrypoint() {
  build_root
  local user uid gid
  user=$(query user)
  uid=${user%%:*}
  gid=${user#*:}
  [[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || fail "USER $user: a numeric non-root uid (runAsNonRoot verifies it)"
  [[ $gid =~ ^[0-9]+$ ]] || gid=$uid
  local volume
  for volume in "${volumes[@]}"; do chown -R "$uid:$gid" "$root$volume" 2>/dev/null || true; done
  mkdir -p "$work/run"
  chmod 777 "$work/run"

  local -a entrypoint healthcheck command
  mapfile -t entrypoint < <(query entrypoint)
  mapfile -t healthcheck < <(query healthcheck)
  local arg
  for arg in "${entrypoint[@]}"; do command+=("$(map_path "$arg")"); done
  command+=(--ready-file "$work/run/ready.json")
  local -a as_user=()
  if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv "--reuid=$uid" "--regid=$gid" --clear-groups --)
  else
    echo "note: not root: the entrypoint runs as $(id -un), not as uid $uid"
  fi
  echo "running: ${as_user[*]} ${command[*]}"
  "${as_user[@]}" "${command[@]}" >"$work/sluice.log" 2>&1 &
  sluice_pid=$!

  for _ in $(seq 100); do
    [ -s "$work/run/ready.json" ] && break
    kill -0 "$sluice_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$work/run/ready.json" ]; then
    fail "the entrypoint did not become ready in 10 s; its log:"
    cat "$work/sluice.log" >&2
    return
  fi
  local admin_port
  admin_port=$(sed -n 's/.*"admin":\([0-9]*\).*/\1/p' "$work/run/ready.json")
  if [ -n "${as_user[*]}" ]; then
    local running_uid
    running_uid=$(ps -o uid= -p "$sluice_pid" | tr -d ' ')
    [ "$running_uid" = "$uid" ] || fail "sluice runs as uid $running_uid, not $uid"
  fi

  local -a probe=()
  for arg in "${healthcheck[@]}"; do probe+=("$(map_path "$arg")"); done
  # The image's HEALTHCHECK probes the default 127.0.0.1:9901; here the admin port is ephemeral.
  probe+=(--admin "127.0.0.1:$admin_port")
  if "${as_user[@]}" "${probe[@]}"; then
    echo "ok: HEALTHCHECK (${probe[*]}) answers 0 while sluice runs"
  else
    fail "HEALTHCHECK ${probe[*]} failed while sluice runs"
  fi
  "$binary" health --admin "127.0.0.1:$admin_port" --path /readyz || fail "/readyz is not 200 after start"

  kill -TERM "$sluice_pid"
  local rc=0
  for _ in $(seq 150); do kill -0 "$sluice_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$sluice_pid" 2>/dev/null; then
    fail "sluice still runs 15 s after SIGTERM"
  else
    wait "$sluice_pid" || rc=$?
    if [ "$rc" -eq 0 ]; then echo "ok: SIGTERM -> exit 0"; else fail "SIGTERM -> exit $rc, expected 0"; fi
  fi
  sluice_pid=
  if "${probe[@]}" 2>/dev/null; then fail "HEALTHCHECK still answers 0 after sluice exited"; fi
  # With the state file on (this build has server.state), the drain's last save is in the volume.
  local config="" state_dir previous=""
  for arg in "${command[@]}"; do
    [ "$previous" = --config ] && config=$arg
    previous=$arg
  done
  if "$binary" --check --print --config "$config" >"$work/printed.yaml" 2>/dev/null; then
    state_dir=$(effective_state_dir "$work/printed.yaml")
    if [ -n "$state_dir" ] && [ "$state_dir" != "-" ]; then
      if [ -s "$state_dir/state.bin" ]; then echo "ok: SIGTERM saved $state_dir/state.bin"
      else fail "no state file in $state_dir after SIGTERM"; fi
    fi
  fi
  if [ "$failures" -gt 0 ]; then echo "sluice's log:" >&2; cat "$work/sluice.log" >&2; fi
}

# server.state.dir in `sluice --check --print`'s output: "" when this build has no server.state
# (before the state file's branch is merged), "-" when disabled.
effective_state_dir() {
  "$python" -c '
import sys, yaml
state = ((yaml.safe_load(open(sys.argv[1])) or {}).get("server") or {}).get("state")
print("" if state is None else "-" if state.get("enabled") is False else state.get("dir", ""))' "$1"
}

# Runs sluice with the given arguments: sets out, err and rc.
run_sluice() {
  rc=0
  "$binary" "$@" >"$work/out" 2>"$work/err" || rc=$?
  out=$(cat "$work/out")
  err=$(cat "$work/err")
}

check_cli() {
  run_sluice --version
  [ "$rc" -eq 0 ] || fail "--version: exit $rc"
  [[ $out =~ ^sluice\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-z]+\)$ ]] ||
    fail "--version printed '$out', expected 'sluice VERSION (commit HASH)'"
  [ -z "$err" ] || fail "--version wrote to stderr: $err"

  local flag
  for flag in --help -h; do
    run_sluice "$flag"
    [ "$rc" -eq 0 ] || fail "$flag: exit $rc"
    [[ $out == usage:* && $out == *"exit status"* && $out == *"sluice health"* ]] ||
      fail "$flag: stdout lacks the usage, its exit codes or 'sluice health': $out"
    [ -z "$err" ] || fail "$flag wrote to stderr: $err"
  done
  run_sluice health --help
  if [ "$rc" -ne 0 ] || [[ $out != usage:* ]]; then fail "health --help: exit $rc, stdout '$out'"; fi

  local bad
  for bad in "--no-such-flag" "--config" "health --admin nonsense" "health --path nopath" \
             "health --timeout 0" "health --bogus 1"; do
    read -ra words <<<"$bad"
    run_sluice "${words[@]}"
    [ "$rc" -eq 2 ] || fail "sluice $bad: exit $rc, expected 2 (a usage error)"
    [[ $err == sluice:*usage:* ]] || fail "sluice $bad: stderr lacks why and the usage: $err"
    [ -z "$out" ] || fail "sluice $bad wrote to stdout: $out"
  done

  # Nothing listening: exit 1 at once, saying why.
  local port
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run_sluice health --admin "127.0.0.1:$port"
  [ "$rc" -eq 1 ] || fail "health against a closed port: exit $rc, expected 1"
  [[ $err == *"connect to 127.0.0.1:$port"* ]] || fail "health against a closed port: stderr '$err'"

  # A listener that accepts (the kernel's backlog) and never answers: exit 1 after the timeout.
  "$python" - "$work/silent_port" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(30)
PY
  local silent_pid=$!
  for _ in $(seq 50); do [ -s "$work/silent_port" ] && break; sleep 0.1; done
  local started=$SECONDS
  run_sluice health --admin "127.0.0.1:$(cat "$work/silent_port")" --timeout 0.5
  kill "$silent_pid" 2>/dev/null || true
  wait "$silent_pid" 2>/dev/null || true
  [ "$rc" -eq 1 ] || fail "health against a silent listener: exit $rc, expected 1"
  [[ $err == *"timed out"* ]] || fail "health against a silent listener: stderr '$err'"
  [ $((SECONDS - started)) -le 3 ] || fail "health --timeout 0.5 took $((SECONDS - started)) s"
}

check_yaml() {
  "$python" -c 'import yaml' 2>/dev/null || { fail "$python lacks yaml (python3-yaml)"; return; }
  mkdir -p "$work/configs"
  "$python" - "$source_dir" "$work/configs" <<'PY' || fail "the YAML files (above)"
import glob, os, re, sys
import yaml

source, out = sys.argv[1], sys.argv[2]
problems = []

def duration_seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m)", str(text))
    if not match:
        return None
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]

# docker/compose.yaml (the sidecar example) and every docker/*/compose.yaml (example-redis: three
# sidecars sharing limits through Redis). Services named here must exist; a sluice service is
# one built from docker/Dockerfile or running a sluice image.
required_services = {"docker/compose.yaml": ("sluice", "client", "vendor"),
                     "docker/example-redis/compose.yaml": ("redis", "vendor")}
compose_files = ["docker/compose.yaml"] + sorted(
    os.path.relpath(p, source) for p in glob.glob(os.path.join(source, "docker/*/compose.yaml")))
for relative in required_services:
    if relative not in compose_files:
        problems.append(f"{relative}: missing")
for relative in compose_files:
    compose_path = os.path.join(source, relative)
    if not os.path.exists(compose_path):
        continue
    compose_dir = os.path.dirname(compose_path)
    # docker/compose.yaml keeps its configs' old names (compose-<service>.yaml).
    tag = "" if relative == "docker/compose.yaml" else os.path.basename(compose_dir) + "-"
    compose = yaml.safe_load(open(compose_path))
    services = compose.get("services", {})
    for name in required_services.get(relative, ()):
        if name not in services:
            problems.append(f"{compose_path}: no service {name}")
    def is_sluice(service):
        build = service.get("build") or {}
        dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
        return dockerfile.endswith("docker/Dockerfile") or service.get("image", "").startswith("sluice")
    sluices = [name for name, service in services.items() if is_sluice(service)]
    if not sluices:
        problems.append(f"{compose_path}: no sluice service (built from docker/Dockerfile)")
    secrets = compose.get("secrets") or {}
    for name, secret in secrets.items():
        path = os.path.normpath(os.path.join(compose_dir, (secret or {}).get("file", "")))
        if not (secret or {}).get("file") or not os.path.isfile(path):
            problems.append(f"{compose_path}: secret {name}: file {path} does not exist")
        elif not os.stat(path).st_mode & 0o004:
            problems.append(f"{compose_path}: secret {name}: {path} is not world-readable: the image's "
                            "uid 10001 could not read it (compose bind-mounts file secrets as they are)")
    prefixes = {}  # (address, key_prefix) -> sluice services sharing it, from their configs
    checked_configs = set()
    for name, service in services.items():
        for secret in service.get("secrets", []):
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in secrets:
                problems.append(f"{compose_path}: {name} uses secret {secret_name}, not defined")
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if not host.startswith("."):
                continue
            path = os.path.normpath(os.path.join(compose_dir, host))
            if not os.path.exists(path):
                problems.append(f"{compose_path}: {name} mounts {host}, which does not exist")
                continue
            if not path.endswith(".yaml") or not is_sluice(service):
                continue
            config = yaml.safe_load(open(path)) or {}
            state = (config.get("server") or {}).get("state") or {}
            if state.get("backend") == "redis":
                redis = state.get("redis") or {}
                mounted = {"/run/secrets/" + (s if isinstance(s, str) else s.get("target", s.get("source")))
                           for s in service.get("secrets", [])}
                if redis.get("password_file") and redis["password_file"] not in mounted:
                    problems.append(f"{path}: redis.password_file {redis['password_file']} is not a secret "
                                    f"mounted in service {name} ({', '.join(sorted(mounted)) or 'none'})")
                key = (redis.get("address", "127.0.0.1:6379"), redis.get("key_prefix", "sluice"))
                prefixes.setdefault(key, []).append((name, int(redis.get("replicas", 1)), path))
            if path in checked_configs:
                continue  # the same file mounted by several sidecars: checked once
            checked_configs.add(path)
            open(os.path.join(out, "compose-" + tag + name + ".yaml"), "w").write(open(path).read())
            writable = [v.split(":")[1] for v in service.get("volumes", [])
                        if not v.endswith(":ro") and not v.split(":")[0].endswith(".yaml")]
            open(os.path.join(out, "compose-" + tag + name + ".yaml.writable"), "w").write("\n".join(writable))
    # The `local` fallback gives each sidecar limit / replicas: replicas below the sidecars that
    # share the prefix would let them exceed the limit together (docs/distributed.md).
    for (address, prefix), sharing in prefixes.items():
        for replicas, path in sorted({(replicas, path) for _, replicas, path in sharing}):
            if replicas < len(sharing):
                problems.append(f"{path}: redis.replicas {replicas} < the {len(sharing)} sluice services "
                                f"sharing {address} prefix {prefix} in {compose_path}")
    print(f"ok: {compose_path} parses: services {', '.join(services)}")

for path in sorted(glob.glob(os.path.join(source, "deploy/kubernetes/*.yaml"))):
    documents = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = [d.get("kind") for d in documents]
    print(f"ok: {path} parses: {', '.join(map(str, kinds))}")
    drain = 10  # server.drain_timeout's default
    writable = []  # the sluice container's writable mounts: where its state dir may be
    for doc in documents:
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            if "sluice" in container.get("image", ""):
                writable += [m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")]
    for doc in documents:
        if doc.get("kind") == "ConfigMap":
            for key, text in doc.get("data", {}).items():
                if key.endswith(".yaml"):
                    name = os.path.basename(path)[:-5] + "-" + key
                    open(os.path.join(out, name), "w").write(text)
                    open(os.path.join(out, name + ".writable"), "w").write("\n".join(writable))
                    config = yaml.safe_load(text) or {}
                    value = (config.get("server") or {}).get("drain_timeout")
                    if value is not None:
                        drain = duration_seconds(value) or drain
    for doc in documents:
        spec = (doc.get("spec") or {})
        pod = (spec.get("template") or {}).get("spec") if "template" in spec else spec
        if not pod or "containers" not in pod:
            continue
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for container in pod["containers"] + pod.get("initContainers", []):
            if "sluice" not in container.get("image", ""):
                continue
            command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
            pre_stop = sum(float(w) for w in command if re.fullmatch(r"\d+(\.\d+)?", w))
            if grace <= pre_stop + drain:
                problems.append(f"{path}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop:g} s "
                                f"+ drain_timeout {drain:g} s: the drain would be cut by SIGKILL")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "httpGet" in (container.get(probe) or {}):
                    problems.append(f"{path}: {probe} httpGet: the kubelet probes the pod IP, and the "
                                    "admin listener is on 127.0.0.1; use exec: sluice health")
for problem in problems:
    print("FAIL: " + problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  # Every config shipped (the image's, the compose example's, the ConfigMaps') loads, and its
  # state dir, when the build has server.state, is on a writable volume of its container (the
  # default, next to the config file, is read-only there: sluice would exit 3).
  cp "$source_dir/docker/sluice.yaml" "$work/configs/image.yaml"
  query volumes >"$work/configs/image.yaml.writable"
  local config state_dir
  for config in "$work"/configs/*.yaml; do
    if ! "$binary" --check --print --config "$config" >"$work/printed.yaml" 2>"$work/check.err"; then
      fail "sluice --check $(basename "$config"): $(cat "$work/check.err")"
      continue
    fi
    echo "ok: sluice --check $(basename "$config")"
    state_dir=$(effective_state_dir "$work/printed.yaml")
    if [ -z "$state_dir" ]; then
      echo "note: $(basename "$config"): this build has no server.state; its state dir is not checked"
    elif [ "$state_dir" != "-" ] && ! grep -qxF "$state_dir" "$config.writable" &&
         ! grep -qxF "${state_dir%/}" "$config.writable"; then
      fail "$(basename "$config"): server.state.dir $state_dir is not a writable volume of its" \
           "container ($(tr '\n' ' ' <"$config.writable")): set it there, e.g. dir: /var/lib/sluice"
    else
      echo "ok: $(basename "$config"): state dir ${state_dir/#-/disabled}"
    fi
  done
}

case $check in
  packages) check_packages ;;
  entrypoint) check_entrypoint ;;
  cli) check_cli ;;
  yaml) check_yaml ;;
  *) echo "unknown check '$check'" >&2; exit 2 ;;
esac
if [ "$failures" -gt 0 ]; then
  echo "$failures problem(s)" >&2
  exit 1
fi
echo "deploy $check: OK"
