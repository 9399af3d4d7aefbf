#!/usr/bin/env bash
# How long a device's MQTT connect and disconnect take to show in the API, with the store
# idle and under a stream of device creates (wrk, 32 connections, POST /api/v1/devices):
# the broker plugin's status thread writes `connected` through its own connection to the
# store, so it competes with the server's writer for SQLite's write lock. A real serve
# with its broker on free loopback ports, a real mosquitto_sub as the device.
# Usage: bench/connected.sh BUILD_DIR   (env: ROUNDS=8, DUR=10s; LIST=1 reads the status
# through the list filter connected=true instead of GET /api/v1/devices/{id})
set -uo pipefail
B=$(cd "${1:-build}" && pwd); IMPRINT=$B/imprint; ROUNDS=${ROUNDS:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/imprint-connected-XXXXXX)
$IMPRINT init --data $W/d --json > $W/acct.json
TOKEN=$(jq -r .apiKey $W/acct.json)
P=$((20000 + RANDOM % 20000)); M=$((P+1)); S=$((P+2)); C=$((P+3))
$IMPRINT serve --data $W/d --listen 127.0.0.1:$P --mqtt-listen 127.0.0.1:$M --mqtts-listen 127.0.0.1:$S --mqtts-cert-listen 127.0.0.1:$C --broker-plugin $B/imprint_mosquitto.so 2> $W/serve.log &
SP=$!
WP=""
trap 'kill $SP $WP 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do grep -q "broker running\|listening on" $W/serve.log && sleep 0.5 && break; sleep 0.1; done
URL=http://127.0.0.1:$P
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
TPL=$(api -d '{"name":"Meter"}' $URL/api/v1/devices/templates | jq -r .deviceTemplate.id)
api -d "{\"name\":\"config\",\"entityType\":\"deviceTemplate\",\"entityId\":\"$TPL\",\"permission\":\"subscribe\"}" $URL/api/v1/channels/templates > /dev/null
DEV=$(api -d "{\"deviceTemplateId\":\"$TPL\",\"serialNumber\":\"probe\"}" $URL/api/v1/devices | jq -r .device.id)
ACC=$(api $URL/api/v1/devices/$DEV | jq -r .device.accountId)
SEC=$(api -d "{\"entityId\":\"$DEV\",\"entityType\":\"device\"}" $URL/api/v1/access/mqtt-credentials | jq -r '.mqttCredential.secret')
state() { if [ -n "${LIST:-}" ]; then n=$(api "$URL/api/v1/devices?connected=true&serialNumber=probe&meta=false" | jq -r ".devices.results | length"); [ "$n" = 1 ] && echo true || echo false; else api $URL/api/v1/devices/$DEV | jq -r .device.connected; fi; }
now() { date +%s%N; }
wait_for() { local want=$1 t0=$2; for _ in $(seq 3000); do [ "$(state)" = "$want" ] && { echo $(( ($(now) - t0) / 1000000 )); return; }; sleep 0.01; done; echo timeout; }
probe() {
  for i in $(seq $ROUNDS); do
    t0=$(now)
    mosquitto_sub -h 127.0.0.1 -p $M -i $DEV -u $DEV -P "$SEC" -t "xi/blue/v1/$ACC/d/$DEV/config" > /dev/null 2>&1 & MS=$!
    up=$(wait_for true $t0)
    t1=$(now); kill $MS; wait $MS 2>/dev/null
    down=$(wait_for false $t1)
    echo "  connect->connected=true ${up} ms   disconnect->connected=false ${down} ms"
  done
}
echo "== idle"; probe
export TOKEN TEMPLATE=$TPL
wrk -t1 -c32 -d${DUR:-10s} -s $HERE/post_device.lua $URL > $W/wrk.out 2>&1 & WP=$!
sleep 2
echo "== under POST load"; probe
wait $WP 2>/dev/null; grep -E "Requests|Non-2xx" $W/wrk.out
