#!/usr/bin/env bash
# Scaling with cores, for a many-core host (the issue's 16-core machine): bench_wordcount with
# 1..N executors (and one receiver per four executors, `--receivers`), then the Nexmark
# queries at the same executor counts. Nothing else may run on the host meanwhile.
#
# Build here (the host may have no toolchain), copy the binaries next to the script's folder:
#   cargo build --release -p rivulet-benches --bin bench_wordcount --bin nexmark
#   mkdir -p bench-bin && cp target/release/{bench_wordcount,nexmark} bench-bin/
# Run on the host (BIN is where the binaries are; raw output goes to OUT):
#   BIN=bench-bin OUT=benches/results/scaling scripts/bench_scaling.sh "1 2 4 8 14"
# It takes about 6 minutes on 16 cores. Every run checks its counts (a wrong answer exits
# non-zero and is recorded as `# exit <code>` in the output).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/examples}"
OUT="${OUT:-benches/results/scaling}"
EXECUTORS="${1:-1 2 4 8 14}"
mkdir -p "$OUT"
host="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for n in $EXECUTORS; do
  r=$(( (n + 3) / 4 ))
  f="$OUT/wordcount-e$n.txt"
  echo "=== wordcount executors $n receivers $r $(date +%T)"
  { echo "# $(date -u +%FT%TZ) $host load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BIN/bench_wordcount" --repeat 100 --runs 3 --executors "$n" --receivers "$r"
    echo "# exit $?"; } >"$f" 2>&1
  grep -E '^(rivulet,|ratio|plain loop:|# exit)' "$f"
  # The same count by reference (flat_map_reduce_by_key), against the non-allocating loop too.
  f="$OUT/wordcount-by-reference-e$n.txt"
  echo "=== wordcount by reference executors $n receivers $r $(date +%T)"
  { echo "# $(date -u +%FT%TZ) $host load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BIN/bench_wordcount" --repeat 100 --runs 3 --executors "$n" --receivers "$r" --by-reference
    echo "# exit $?"; } >"$f" 2>&1
  grep -E '^(rivulet,|ratio|plain loop:|non-allocating|# exit)' "$f"
done
for n in $EXECUTORS; do
  f="$OUT/nexmark-e$n.txt"
  echo "=== nexmark executors $n $(date +%T)"
  { echo "# $(date -u +%FT%TZ) $host load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BIN/nexmark" --query all --events 5000000 --executors "$n" --receivers $(( (n + 3) / 4 )) --runs 3
    echo "# exit $?"; } >"$f" 2>&1
  tail -12 "$f"
done
echo "=== done $(date +%T)"
