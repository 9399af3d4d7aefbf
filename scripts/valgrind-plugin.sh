#!/usr/bin/env bash
# Runs the broker e2e test (tests/e2e/test_broker.c) with mosquitto under valgrind and a
# plugin built without sanitizers: no invalid access, no definite leak in the plugin.
#   scripts/valgrind-plugin.sh [sanitized build dir, default build]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
test_build=${1:-$src/build}
plain=$(mktemp -d /tmp/imprint-vg-build-XXXXXX)
trap 'rm -rf "$plain"' EXIT
cmake -S "$src" -B "$plain" -DIMP_SANITIZE=OFF >/dev/null
cmake --build "$plain" -j2 --target imprint_mosquitto >/dev/null
log=$(mktemp /tmp/imprint-vg-XXXXXX.log)
export IMP_TEST_PLUGIN="$plain/imprint_mosquitto.so"
export IMP_TEST_BROKER_WRAP="valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --log-file=$log"
"$test_build/tests/e2e_test_broker"
if grep -q "imprint_mosquitto.so" "$log" && grep -Eq "(Invalid|definitely lost in loss record).*" "$log"; then
  echo "valgrind: errors, see $log" >&2
  exit 1
fi
grep -E "ERROR SUMMARY|definitely lost" "$log" >&2
rm -f "$log"
