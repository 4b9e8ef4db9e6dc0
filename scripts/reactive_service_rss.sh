#!/usr/bin/env bash
# Memory of the reactive_service server over many users (issue 16): the server alone
# (--serve-only, release build) and a generator in another process posting N events, each
# from a user never seen before (--fresh-users), at RATE events/s. Prints the server's RSS
# every 5 s, once more after every session timed out, then its checks.
#
#   cargo build --release --example reactive_service
#   WINDOW=2 scripts/reactive_service_rss.sh 1000000 10000 2   # N RATE SESSION_TIMEOUT_SECS
set -euo pipefail
N=${1:-1000000}; RATE=${2:-10000}; TIMEOUT=${3:-2}; WINDOW=${WINDOW:-30}; PORT=${PORT:-18099}
BIN=target/release/examples/reactive_service
OUT=$(mktemp -d)
$BIN --serve-only --port "$PORT" --quiet --session-timeout-secs "$TIMEOUT" --batch-ms 1000 \
    --window-secs "$WINDOW" > "$OUT/server.out" 2> "$OUT/server.err" &
SERVER=$!
sleep 2
$BIN --generate-only --target "127.0.0.1:$PORT" --fresh-users --limit "$N" --rate "$RATE" \
    --connections 16 --malformed 0 > "$OUT/generator.out" 2>&1 &
GENERATOR=$!
while kill -0 "$GENERATOR" 2>/dev/null; do
    echo "$(date +%s) rss_kb=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")"
    sleep 5
done
sleep $((TIMEOUT + 3))
echo "after idle: rss_kb=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")"
kill -TERM "$SERVER"
wait "$SERVER" && echo "server exit 0"
grep -E "^(Service|Analytics|Check|Done)" "$OUT/server.out"
grep -E "^Load" "$OUT/generator.out" | cut -c1-200
