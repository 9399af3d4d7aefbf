#!/usr/bin/env bash
# make run: initialise the data directory on first start (printing the admin login and
# API key, once), then serve until Ctrl-C.
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
echo "Serving the API on http://$LISTEN (Ctrl-C stops)"
exec "$IMPRINT" serve --data "$DATA" --listen "$LISTEN"
