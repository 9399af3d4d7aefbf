#!/usr/bin/env bash
# The API benchmark: a store with DEVICES devices (default one million), then wrk against
# one `imprint serve`, all in one run so the ratios compare like with like:
#   GET /healthz (the ceiling), GET /api/v1/devices/{id}, POST /api/v1/devices, and a
#   filtered list page of 50.
# Usage: bench/run.sh BUILD_DIR   (env: DEVICES, ORGS, DURATION, CONNS)
set -euo pipefail
BUILD=${1:-build}
DEVICES=${DEVICES:-1000000}
ORGS=${ORGS:-100}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
LIST_CONNS=${LIST_CONNS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
IMPRINT=$BUILD/imprint
SEED=$BUILD/bench/imprint_seed
command -v wrk >/dev/null || { echo "bench: wrk is missing (make setup installs it)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/imprint-bench-XXXXXX)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$IMPRINT" init --data "$WORK/data" --json > "$WORK/account.json"
TOKEN=$(sed -E 's/.*"apiKey":"([^"]+)".*/\1/' "$WORK/account.json")
echo "== seeding $DEVICES devices in $ORGS organizations"
"$SEED" "$WORK/data" "$DEVICES" "$ORGS" "$WORK"
echo "== store: $(du -sh "$WORK/data" | cut -f1)"
# The seeder's gigabyte on disk before the server starts, so the kernel's write-back of it
# does not compete with the measured commits' fsyncs.
sync

"$IMPRINT" serve --data "$WORK/data" --listen 127.0.0.1:0 --no-broker 2> "$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
URL=$(sed -nE 's/.*listening on (http[^ ]+).*/\1/p' "$WORK/serve.log" | head -1)
[ -n "$URL" ] || { echo "bench: server did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }

export TOKEN IDS_FILE="$WORK/device_ids" ORGS_FILE="$WORK/orgs" TEMPLATE=$(cat "$WORK/template")
run() { # name script var [connections]
  local out
  out=$(wrk -t1 -c"${4:-$CONNS}" -d"$DURATION" --latency -s "$HERE/$2" "$URL" 2>&1)
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf "%-34s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n" "$1" "$rps" "$p50" "$p99" "${errs:-0}"
  eval "RPS_$3=$rps"
}
# Warm the page cache first: a freshly seeded store is not in memory yet, and the first
# pass over it measures the disk.
wrk -t1 -c4 -d5s -s "$HERE/list_devices.lua" "$URL" >/dev/null 2>&1
wrk -t1 -c4 -d5s -s "$HERE/get_device.lua" "$URL" >/dev/null 2>&1
echo "== wrk -t1 -c$CONNS (list: -c$LIST_CONNS) -d$DURATION against $URL"
run "GET /healthz (ceiling)" health.lua health
run "GET /api/v1/devices/{id}" get_device.lua get
# The list runs with few connections: its figure is the latency of one request, not a queue.
run "GET /api/v1/devices?org&state (50)" list_devices.lua list "$LIST_CONNS"
run "POST /api/v1/devices" post_device.lua post
awk -v g="$RPS_get" -v h="$RPS_health" 'BEGIN {printf "GET by id / ceiling: %.2f\n", g / h}'
