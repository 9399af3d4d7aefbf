#!/usr/bin/env bash
# make run: initialise the data directory on first start (printing the admin login and
# API key, once), then serve the API and the MQTT broker until Ctrl-C.
set -euo pipefail
IMPRINT=$1
DATA=$2
LISTEN=$3
if [ ! -e "$DATA/imprint.db" ]; then
  echo "First start: initialising $DATA"
  echo "------------------------------------------------------------------"
  "$IMPRINT" init --data "$DATA"
  echo "------------------------------------------------------------------"
else
  echo "Using $DATA (the admin login was printed when it was initialised;"
  echo "to start over, stop imprint and remove $DATA)."
fi
BROKER=()
if [ ! -e "$(dirname "$IMPRINT")/imprint_mosquitto.so" ]; then
  # Never an open broker by accident: without its plugin, serve the API alone.
  echo "The broker plugin $(dirname "$IMPRINT")/imprint_mosquitto.so is not built: serving the API without MQTT."
  BROKER=(--no-broker)
else
  echo "MQTT:     mqtt://127.0.0.1:1883 (plain, this machine only)"
  echo "          mqtts://127.0.0.1:8883 (TLS; devices verify it with $DATA/tls/ca.crt)"
  echo "          mqtts://127.0.0.1:8884 (TLS with client certificates)"
fi
echo "API:      http://$LISTEN (Ctrl-C stops)"
exec "$IMPRINT" serve --data "$DATA" --listen "$LISTEN" "${BROKER[@]}"
