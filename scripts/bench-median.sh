#!/usr/bin/env bash
# Runs scripts/bench.sh RUNS times back to back (default 3) and prints every run's key figures and
# their medians, with the commit, date and machine: the form in which docs/BENCHMARKS.md reports
# figures. This machine's speed varies up to 2x within an hour, so only figures from one sitting
# are compared, and a single run is never quoted.
#
# Usage: scripts/bench-median.sh            (every knob of scripts/bench.sh applies to each run)
#   RUNS=5 scripts/bench-median.sh
# Each run's full output is kept in target/bench/median-N.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
  echo "bench-median: RUNS must be a positive whole number, got '$RUNS'" >&2
  exit 2
fi
mkdir -p target/bench
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --locked --bins >&2
fi

# field NAME FILE: one figure from a bench.sh output.
field() {
  local file="$2"
  case "$1" in
    throughput) awk '/^--- 1\./ { s = 1 } s && /throughput/ { print $2; exit }' "$file" ;;
    rate_p99) awk '/^--- 2\./ { s = 1 } s && /latency ms/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 1); exit } }' "$file" ;;
    e2e_matched) awk '/replies .* matched/ { print $2; exit }' "$file" ;;
    e2e_missing) awk '/replies .* matched/ { print $4; exit }' "$file" ;;
    e2e_p50) awk '/e2e ms/ { for (i = 1; i <= NF; i++) if ($i == "p50") { print $(i + 1); exit } }' "$file" ;;
    e2e_p99) awk '/e2e ms/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 1); exit } }' "$file" ;;
  esac
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

FIELDS="throughput rate_p99 e2e_matched e2e_missing e2e_p50 e2e_p99"
declare -A values
for n in $(seq 1 "$RUNS"); do
  out="target/bench/median-$n.txt"
  echo "bench-median: run $n of $RUNS -> $out" >&2
  rc=0
  NO_BUILD=1 bash scripts/bench.sh >"$out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || echo "bench-median: run $n exited $rc (a target missed or a run failed; see $out)" >&2
  for f in $FIELDS; do
    values[$f]="${values[$f]:-} $(field "$f" "$out")"
  done
done

echo "================ switchboard benchmark: median of $RUNS back-to-back runs ================"
echo "date        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "machine     $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null), $(uname -sr)"
echo "knobs       DURATION=${DURATION:-10} RATE=${RATE:-1000} E2E_RATE=${E2E_RATE:-500} E2E_DURATION=${E2E_DURATION:-20} CONCURRENCY=${CONCURRENCY:-64}"
printf '%-40s %-28s %s\n' "figure" "runs" "median"
label() {
  case "$1" in
    throughput) echo "1. max throughput (deliveries/s)" ;;
    rate_p99) echo "2. ack p99 at fixed rate (ms)" ;;
    e2e_matched) echo "3. e2e replies that arrived" ;;
    e2e_missing) echo "3. e2e replies missing" ;;
    e2e_p50) echo "3. e2e p50 (ms)" ;;
    e2e_p99) echo "3. e2e p99 (ms)" ;;
  esac
}
for f in $FIELDS; do
  printf '%-40s %-28s %s\n' "$(label "$f")" "$(echo ${values[$f]} | tr ' ' ',')" "$(echo "${values[$f]}" | median)"
done
echo "=========================================================================================="
