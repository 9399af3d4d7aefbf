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

WORK_PREFIX=imprint-batchcli
. "$(dirname "$0")/lib.sh"

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for n in $SIZES; do
  DATA="$WORK/data-$n"
  start_server "$DATA"
  export IMPRINT_API_KEY=$TOKEN
  make_template
  seq -f "SN-%010g" 1 "$n" > "$WORK/serials-$n.txt"
  OUT="$WORK/bundles-$n.$FORMAT"
  cpu0=$(cpu_s "$SERVER_PID")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$WORK/cli.time" "$IMPRINT" batch --template "$TPL" --serials "$WORK/serials-$n.txt" \
    --out "$OUT" --format "$FORMAT" --server "$URL" --name "bench-$n" 2> "$WORK/cli.log" || {
    echo "bench: imprint batch failed" >&2; tail -5 "$WORK/cli.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  cpu1=$(cpu_s "$SERVER_PID")
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status")
  read -r cli_kb cli_u cli_s < "$WORK/cli.time"
  lines=$(wc -l < "$OUT")
  awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v hwm="$hwm" -v ckb="$cli_kb" \
      -v cu="$cli_u" -v cs="$cli_s" -v lines="$lines" 'BEGIN {
    printf "serials %8d  %7.0f devices/s  wall %6.1f s  server CPU %5.1f us/device, peak %4d MiB  CLI CPU %4.1f us/device, peak %3.0f MiB  bundles %d\n",
      n, n / (t1 - t0), t1 - t0, (c1 - c0) * 1e6 / n, hwm, (cu + cs) * 1e6 / n, ckb / 1024, lines }'
  tail -1 "$WORK/cli.log"
  stop_server
  [ -n "${KEEP:-}" ] || rm -rf "$DATA" "$OUT" "$OUT.state"
done
