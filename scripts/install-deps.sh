#!/usr/bin/env bash
# Installs what sluice needs to build and test, from Debian 12's packages only.
# Idempotent: packages already present are skipped; apt runs only when something is missing.
# Extra package names may be passed as arguments (the benchmark adds wrk, nginx, haproxy).
set -euo pipefail

packages=(build-essential cmake pkg-config libboost1.81-dev libssl-dev openssl libyaml-cpp-dev
          nlohmann-json3-dev catch2 curl ca-certificates
          # fixed windows in a time zone (time_zone:): the date/tz library and the tz database
          libhowardhinnant-date-dev tzdata
          # scripts/ci-checks.sh: sanitizer and libFuzzer builds (clang and its runtimes), lint,
          # and llhttp's C sources (the tests' independent HTTP parser, tests/CMakeLists.txt)
          clang libclang-rt-14-dev clang-format clang-tidy node-llhttp
          # the status page's e2e test renders it in headless Chromium (tests/e2e/proxy_status_page_test.cpp)
          chromium
          # /metrics: prometheus-cpp's TextSerializer; the e2e test parses a scrape with the
          # Python client's parser (text_string_to_metric_families)
          prometheus-cpp-dev python3 python3-prometheus-client
          # tests/deploy: the compose and Kubernetes files are parsed as YAML
          python3-yaml
          # limits shared through Redis (src/redis): hiredis formats commands and parses replies;
          # the tests run a real redis-server (tests/support/redis_server.hpp)
          libhiredis-dev redis-server "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
