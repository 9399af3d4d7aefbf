#!/usr/bin/env bash
# The broker benchmark (issue 4): mosquitto without a plugin and allow_anonymous (the
# ceiling) against mosquitto with imprint's plugin on a store of DEVICES devices with
# password credentials, in one run, so every ratio compares figures of the same minutes:
#   - a connect storm: CONNECTS fresh connections over THREADS threads, each CONNECT as a
#     random device with its secret, CONNACK, DISCONNECT (bench/broker.c storm);
#   - publish throughput: CLIENTS connected devices, MSGS QoS 0 messages each on their own
#     channel, without a subscriber and with each client subscribed to its own channel
#     (bench/broker.c pub);
#   - the plugin broker's memory (VmRSS, VmHWM) on an empty store and on the seeded store.
# ROUNDS rounds of the storm and publish figures, each ceiling then plugin.
# Usage: bench/broker.sh BUILD_DIR  (a release build)
#   env: DEVICES (1000000), CONNECTS (50000), THREADS (8), CLIENTS (16), MSGS (20000),
#        ROUNDS (2), STORE (a directory a previous run kept with KEEP=1: skips seeding)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
DEVICES=${DEVICES:-1000000}
CONNECTS=${CONNECTS:-50000}
THREADS=${THREADS:-8}
CLIENTS=${CLIENTS:-16}
MSGS=${MSGS:-20000}
ROUNDS=${ROUNDS:-2}
GEN=$BUILD/bench/imprint_bench_broker
PLUGIN=$BUILD/imprint_mosquitto.so
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "bench: mosquitto is missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/imprint-brokerbench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "== kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $($MOSQUITTO -h | sed -n 1p)"
if [ -n "${STORE:-}" ]; then
  SEEDED=$STORE
else
  SEEDED=$WORK/seeded
  mkdir -p "$SEEDED"
  "$BUILD/imprint" init --data "$SEEDED/data" --json > /dev/null
  echo "== seeding $DEVICES devices with password credentials"
  "$BUILD/bench/imprint_seed" "$SEEDED/data" "$DEVICES" 100 "$SEEDED" passwords
fi
echo "== store: $(du -sh "$SEEDED/data" | cut -f1)"
"$BUILD/imprint" init --data "$WORK/empty" --json > /dev/null
IDS=$SEEDED/all_ids
ACCOUNT=$(cat "$SEEDED/account")

# start NAME PORT [DATA]: a broker, without a plugin when DATA is empty; sets PID_NAME.
start() {
  local conf=$WORK/$1.conf
  {
    echo "listener $2 127.0.0.1"
    echo "persistence false"
    echo "max_connections -1"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
    echo "user $(id -un)"
    if [ -n "${3:-}" ]; then
      echo "allow_anonymous false"
      echo "plugin $PLUGIN"
      echo "plugin_opt_data $3"
    else
      echo "allow_anonymous true"
    fi
  } > "$conf"
  "$MOSQUITTO" -c "$conf" 2> "$WORK/$1.log" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break
    sleep 0.05
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null || { echo "bench: broker $1 did not start" >&2; cat "$WORK/$1.log" >&2; exit 1; }
  eval "PID_$1=$pid"
}
mem() { awk '/VmRSS|VmHWM/ {printf "%s %.1f MiB  ", $1, $2 / 1024}' "/proc/$1/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # clock ticks, user + system
TICK=$(getconf CLK_TCK)

# measure NAME PID VAR cmd...: runs the load generator, prints its line with the broker's
# CPU a unit of work, and sets VAR to the rate.
measure() {
  local name=$1 pid=$2 var=$3; shift 3
  local c0 c1 out
  c0=$(cpu "$pid")
  out=$("$GEN" "$@") || { echo "bench: $name: $out" >&2; exit 1; }
  c1=$(cpu "$pid")
  local rate units
  rate=$(echo "$out" | sed -nE 's/.*(connects|msgs)_per_s=([0-9]+).*/\2/p')
  units=$(echo "$out" | sed -nE 's/.*(ok|sent)=([0-9]+).*/\2/p')
  printf "%-22s %s  broker_cpu_us=%.1f\n" "$name" "$out" "$(awk -v a="$c0" -v b="$c1" -v t="$TICK" -v u="$units" 'BEGIN {print (b - a) / t * 1e6 / u}')"
  eval "$var=$rate"
}
# settle PID: waits (up to 60 s) until the broker is idle, its connection status writes
# after a storm done, so they do not land in the next figure.
settle() {
  local a b
  for _ in $(seq 120); do
    a=$(cpu "$1"); sleep 0.5; b=$(cpu "$1")
    [ $((b - a)) -le 1 ] && return 0
  done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

PORT_E=$("$GEN" freeport)
start empty "$PORT_E" "$WORK/empty"
sleep 1
echo "== plugin broker, empty store, idle: $(mem "$PID_empty")"
kill "$PID_empty"; wait "$PID_empty" 2>/dev/null || true

PORT_A=$("$GEN" freeport)
start anon "$PORT_A"
PORT_P=$("$GEN" freeport)
start plugin "$PORT_P" "$SEEDED/data"
sleep 1
echo "== plugin broker, seeded store, idle: $(mem "$PID_plugin")"
echo "== storm: $CONNECTS connects over $THREADS threads; publish: $CLIENTS clients x $MSGS QoS 0 messages"
for r in $(seq "$ROUNDS"); do
  echo "-- round $r"
  measure "storm ceiling" "$PID_anon" SA storm "$PORT_A" "$IDS" "$CONNECTS" "$THREADS"
  settle "$PID_anon"
  measure "storm plugin" "$PID_plugin" SP storm "$PORT_P" "$IDS" "$CONNECTS" "$THREADS"
  [ "$r" = 1 ] && echo "   plugin broker after the storm: $(mem "$PID_plugin")"
  settle "$PID_plugin"
  measure "pub ceiling" "$PID_anon" PA pub "$PORT_A" "$IDS" "$ACCOUNT" "$CLIENTS" "$MSGS" 0
  measure "pub plugin" "$PID_plugin" PP pub "$PORT_P" "$IDS" "$ACCOUNT" "$CLIENTS" "$MSGS" 0
  measure "pub+sub ceiling" "$PID_anon" QA pub "$PORT_A" "$IDS" "$ACCOUNT" "$CLIENTS" "$MSGS" 1
  measure "pub+sub plugin" "$PID_plugin" QP pub "$PORT_P" "$IDS" "$ACCOUNT" "$CLIENTS" "$MSGS" 1
  echo "   ratios plugin/ceiling: connects $(ratio "$SP" "$SA")  publish $(ratio "$PP" "$PA")  publish+subscribe $(ratio "$QP" "$QA")"
done
echo "== plugin broker, seeded store, at the end: $(mem "$PID_plugin")"
grep -v "^$" "$WORK/plugin.log" | tail -3 | sed 's/^/   plugin log: /' || true
