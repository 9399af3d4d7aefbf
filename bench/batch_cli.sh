#!/usr/bin/env bash
# The manufacturing benchmark of issue 3: serial numbers through `imprint batch`, end to end
# (CLI, server, disk, output file), into a fresh SQLite store, once for each size in SIZES
# (default "100000 1000000"), each on a fresh data directory and server, all in one run.
# Prints devices/s and the peak memory (VmHWM / max RSS) of the server and of the CLI, so
# flat memory shows as equal figures across sizes.
# Usage: bench/batch_cli.sh BUILD_DIR   (env: SIZES, FORMAT=jsonl, KEEP=1)
set -euo pipefail
BUILD=${1:-build}
SIZES=${SIZES:-"100000 1000000"}
FORMAT=${FORMAT:-jsonl}
IMPRINT=$(cd "$BUILD" && pwd)/imprint

WORK=$(mktemp -d /tmp/imprint-batchcli-XXXXXX)
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() {
  stop_server
  [ -n "${KEEP:-}" ] && echo "work dir: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for n in $SIZES; do
  DATA="$WORK/data-$n"
  "$IMPRINT" init --data "$DATA" --json > "$WORK/account.json"
  export IMPRINT_API_KEY
  IMPRINT_API_KEY=$(sed -E 's/.*"apiKey":"([^"]+)".*/\1/' "$WORK/account.json")
  "$IMPRINT" serve --data "$DATA" --listen 127.0.0.1:0 --no-broker 2> "$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
  URL=$(sed -nE 's/.*listening on (http[^ ]+).*/\1/p' "$WORK/serve.log" | head -1)
  [ -n "$URL" ] || { echo "bench: server did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  api() { curl -sf -H "Authorization: Bearer $IMPRINT_API_KEY" -H 'Content-Type: application/json' "$@"; }
  TPL=$(api -d '{"name":"Meter"}' "$URL/api/v1/devices/templates" | jq -r .deviceTemplate.id)
  for ch in status telemetry config firmware; do
    api -d "{\"name\":\"$ch\",\"entityType\":\"deviceTemplate\",\"entityId\":\"$TPL\"}" \
      "$URL/api/v1/channels/templates" > /dev/null
  done
  seq -f "SN-%010g" 1 "$n" > "$WORK/serials-$n.txt"
  OUT="$WORK/bundles-$n.$FORMAT"
  cpu0=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$SERVER_PID/stat")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$WORK/cli.time" "$IMPRINT" batch --template "$TPL" --serials "$WORK/serials-$n.txt" \
    --out "$OUT" --format "$FORMAT" --server "$URL" --name "bench-$n" 2> "$WORK/cli.log" || {
    echo "bench: imprint batch failed" >&2; tail -5 "$WORK/cli.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  cpu1=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$SERVER_PID/stat")
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status")
  read -r cli_kb cli_u cli_s < "$WORK/cli.time"
  lines=$(wc -l < "$OUT")
  awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v hwm="$hwm" -v ckb="$cli_kb" \
      -v cu="$cli_u" -v cs="$cli_s" -v lines="$lines" 'BEGIN {
    printf "serials %8d  %7.0f devices/s  wall %6.1f s  server CPU %5.1f us/device, peak %4d MiB  CLI CPU %4.1f us/device, peak %3.0f MiB  bundles %d\n",
      n, n / (t1 - t0), t1 - t0, (c1 - c0) * 1e6 / n, hwm, (cu + cs) * 1e6 / n, ckb / 1024, lines }'
  tail -1 "$WORK/cli.log"
  stop_server
  rm -rf "$DATA" "$OUT" "$OUT.state"
done
