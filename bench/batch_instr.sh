#!/usr/bin/env bash
# Deterministic figures for the batch, for a machine too noisy for throughput to tell small
# changes apart: instructions a device (callgrind) of the server's batch work and of the
# CLI, N serial numbers (default 20,000) through `imprint batch --format jsonl` into a fresh
# store, each side counted in a run of its own with the other native. The server's count is
# what runs inside the batch's body handler (parsing, the store's writes and commits, the
# answers), not the checkpointer nor the sending. Compare builds with it; copies and
# zeroing (rep movs/stos) count one instruction a byte under callgrind, so they weigh more
# here than in time.
# Usage: bench/batch_instr.sh BUILD_DIR   (env: N)
set -euo pipefail
BUILD=${1:-build}
N=${N:-20000}
IMPRINT=$(cd "$BUILD" && pwd)/imprint
command -v valgrind > /dev/null || { echo "bench: needs valgrind (scripts/setup.sh installs it)" >&2; exit 1; }

WORK_PREFIX=imprint-batchinstr
. "$(dirname "$0")/lib.sh"

seq -f "SN-%010g" 1 "$N" > "$WORK/serials.txt"
total() { callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'; }

run_batch() { # $1: a command to run the CLI under, or empty
  export IMPRINT_API_KEY=$TOKEN
  $1 "$IMPRINT" batch --template "$TPL" --serials "$WORK/serials.txt" --out "$WORK/out-$2.jsonl" \
    --server "$URL" --name "instr-$2" 2> "$WORK/cli-$2.log" || {
    echo "bench: imprint batch failed" >&2; tail -5 "$WORK/cli-$2.log" >&2; exit 1; }
}

echo "== $N serials, callgrind ($(valgrind --version))"
SERVE_WRAP="valgrind --tool=callgrind --callgrind-out-file=$WORK/server.cg --collect-atstart=no --toggle-collect=batch_feed" \
  start_server "$WORK/d1"
make_template
run_batch "" server
stop_server
# callgrind writes its file as the server exits
for _ in $(seq 100); do [ -s "$WORK/server.cg" ] && break; sleep 0.1; done
start_server "$WORK/d2"
make_template
run_batch "valgrind --tool=callgrind --callgrind-out-file=$WORK/cli.cg" cli
stop_server
awk -v n="$N" -v s="$(total "$WORK/server.cg")" -v c="$(total "$WORK/cli.cg")" \
  'BEGIN { printf "instructions a device: server %.0f, CLI %.0f\n", s / n, c / n }'
