#!/usr/bin/env bash
# Installs the Debian packages imprint needs to build, run and test, and only the
# ones that are missing. Non-interactive; uses sudo when not root.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libmicrohttpd-dev libjansson-dev libssl-dev libsodium-dev libsqlite3-dev libmimalloc-dev
  libcurl4-openssl-dev libcmocka-dev sqlite3 wrk curl
  mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients valgrind
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
