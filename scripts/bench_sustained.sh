#!/usr/bin/env bash
# Runs bench_sustained's sustained-rate searches (and optionally latency levels) one after the
# other, each into benches/results/sustained-<mode>-<batch_ms>-r<rep>.txt.
# usage: scripts/bench_sustained.sh search "memory:100 socket:100" [reps=3] [extra args...]
#        scripts/bench_sustained.sh latency "socket:100:RATE memory:10:RATE" [reps=1] [extra args...]
# env: BIN (default target/release/bench_sustained), OUT (default benches/results),
#      PREFIX (inserted before <mode> in the file names, for runs with extra options),
#      FIRST_REP (default 1: the first repeat number in the file names)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/bench_sustained}"
OUT="${OUT:-benches/results}"
WHAT="$1"; CONFIGS="$2"; REPS="${3:-3}"; shift 3 || shift $#
for rep in $(seq "${FIRST_REP:-1}" $(( ${FIRST_REP:-1} + REPS - 1 ))); do
  for c in $CONFIGS; do
    IFS=: read -r mode b rate <<<"$c"
    if [ "$WHAT" = latency ]; then
      f="$OUT/sustained-latency-${PREFIX:-}$mode-$b-r$rep.txt"
      set -- --fixed-rates "$rate" --marker-every 1000 --warmup-stream-ms 10000 \
        --fixed-warm-ms 10000 --fixed-meas-ms 60000 "$@"
    else
      f="$OUT/sustained-${PREFIX:-}$mode-$b-r$rep.txt"
      set -- --warmup-stream-ms 5000 "$@"
    fi
    echo "=== $WHAT rep $rep $mode $b ms ${rate:-} $(date +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
      echo "# $BIN --mode $mode --batch-ms $b $*"
      "$BIN" --mode "$mode" --batch-ms "$b" "$@"; echo "# exit $?"; } >"$f" 2>&1
    grep -E '^(RESULT|LAT|# exit)' "$f" | cut -c1-400
    if [ "$WHAT" = latency ]; then shift 10; else shift 2; fi
  done
done
echo "=== done $(date +%T)"
