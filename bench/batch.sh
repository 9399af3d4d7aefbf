#!/usr/bin/env bash
# The batch benchmark: POST /api/v1/devices/batch with an Idempotency-Key, N serial numbers
# (default 200,000) sent by curl in CHUNK-line requests (default 10,000), one after the
# other, the answers appended to one output file, as a factory job would. It runs twice,
# each on a fresh data directory and a fresh `imprint serve`: with ?credentials=true and
# without. Both in one run, so the two figures share the machine's weather.
# Prints devices/s (wall, end to end), the server's CPU seconds and its peak RSS (VmHWM).
# Usage: bench/batch.sh BUILD_DIR   (env: N, CHUNK, MODES="true false", KEEP=1 keeps the work dir)
set -euo pipefail
BUILD=${1:-build}
N=${N:-200000}
CHUNK=${CHUNK:-10000}
MODES=${MODES:-"true false"}
IMPRINT=$BUILD/imprint

WORK_PREFIX=imprint-batch
. "$(dirname "$0")/lib.sh"

# The input: N lines in files of CHUNK lines each (made once, outside the timing).
mkdir -p "$WORK/in"
python3 - "$WORK/in" "$N" "$CHUNK" <<'EOF'
import sys
d, n, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for c, start in enumerate(range(0, n, chunk)):
    with open(f"{d}/{c:05d}.ndjson", "w") as f:
        for i in range(start, min(n, start + chunk)):
            f.write('{"deviceTemplateId":"@TPL@","serialNumber":"SN-%08d"}\n' % i)
EOF

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); N=$N, $CHUNK lines a request"
for creds in $MODES; do
  DATA="$WORK/data-$creds"
  start_server "$DATA"
  make_template
  mkdir -p "$WORK/in-$creds"
  for f in "$WORK"/in/*.ndjson; do sed "s/@TPL@/$TPL/" "$f" > "$WORK/in-$creds/$(basename "$f")"; done
  OUT="$WORK/out-$creds.ndjson"
  : > "$OUT"
  cpu0=$(cpu_s "$SERVER_PID")
  t0=$(date +%s.%N)
  for f in "$WORK/in-$creds"/*.ndjson; do
    curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/x-ndjson' \
      -H "Idempotency-Key: bench-$creds" --data-binary "@$f" \
      "$URL/api/v1/devices/batch?credentials=$creds" >> "$OUT"
  done
  t1=$(date +%s.%N)
  cpu1=$(cpu_s "$SERVER_PID")
  hwm=$(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$SERVER_PID/status")
  lines=$(wc -l < "$OUT")
  errs=$(grep -c '"error"' "$OUT" || true)
  awk -v n="$N" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v creds="$creds" -v hwm="$hwm" \
      -v lines="$lines" -v errs="$errs" 'BEGIN {
    printf "credentials=%-5s %9.0f devices/s  wall %6.2f s  server CPU %6.2f s (%5.1f us/device)  VmHWM %s  lines %d  errors %d\n",
      creds, n / (t1 - t0), t1 - t0, c1 - c0, (c1 - c0) * 1e6 / n, hwm, lines, errs }'
  stop_server
done
