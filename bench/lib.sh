# Shared by the batch benchmarks (source it): a work directory removed at exit (KEEP=1 keeps
# it), one `imprint serve` at a time on a fresh data directory, and a template with four
# channels. Needs IMPRINT (the binary) and WORK_PREFIX set by the caller.
WORK=$(mktemp -d "/tmp/${WORK_PREFIX}-XXXXXX")
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

# CPU seconds (user + system) of process $1, from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# Initialises data directory $1 and serves it without a broker: sets TOKEN (the admin API
# key), SERVER_PID and URL. SERVE_WRAP, when set, is a command the server runs under
# (valgrind).
start_server() {
  "$IMPRINT" init --data "$1" --json > "$WORK/account.json"
  TOKEN=$(sed -E 's/.*"apiKey":"([^"]+)".*/\1/' "$WORK/account.json")
  ${SERVE_WRAP:-} "$IMPRINT" serve --data "$1" --listen 127.0.0.1:0 --no-broker 2> "$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 600); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
  URL=$(sed -nE 's/.*listening on (http[^ ]+).*/\1/p' "$WORK/serve.log" | head -1)
  [ -n "$URL" ] || { echo "bench: server did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }
}

# A template "Meter" with four channels on the running server: its id into TPL.
make_template() {
  api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
  TPL=$(api -d '{"name":"Meter"}' "$URL/api/v1/devices/templates" | jq -r .deviceTemplate.id)
  for ch in status telemetry config firmware; do
    api -d "{\"name\":\"$ch\",\"entityType\":\"deviceTemplate\",\"entityId\":\"$TPL\"}" \
      "$URL/api/v1/channels/templates" > /dev/null
  done
}
