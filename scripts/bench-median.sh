#!/usr/bin/env bash
# Runs scripts/bench.sh RUNS times back to back (default 3) and prints every run's key figures and
# their medians, with the commit, date and machine: the form in which docs/BENCHMARKS.md reports
# figures. This machine's speed varies up to 2x within an hour, so only figures from one sitting
# are compared, and a single run is never quoted.
#
# Usage: scripts/bench-median.sh            (every knob of scripts/bench.sh applies to each run)
#   RUNS=5 scripts/bench-median.sh
#   REPORT_ONLY=1 scripts/bench-median.sh     summarise the runs already in target/bench again
# Each run's full output is kept in target/bench/median-N.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
  echo "bench-median: RUNS must be a positive whole number, got '$RUNS'" >&2
  exit 2
fi
mkdir -p target/bench
if [ -z "${NO_BUILD:-}" ] && [ -z "${REPORT_ONLY:-}" ]; then
  cargo build --release --locked --bins >&2
fi

# in_section N PATTERN FIELD FILE: the value after word FIELD on the first line matching PATTERN
# inside section "--- N." of a bench.sh output.
in_section() {
  awk -v sec="--- $1." -v pat="$2" -v key="$3" '
    index($0, "--- ") == 1 { s = (index($0, sec) == 1) }
    s && $0 ~ pat { for (i = 1; i <= NF; i++) if ($i == key) { print $(i + 1); exit } }' "$4"
}

# field NAME FILE: one figure from a bench.sh output.
field() {
  local file="$2"
  case "$1" in
    throughput) in_section 1 "^  throughput" throughput "$file" ;;
    rate_p99) in_section 2 "latency ms" p99 "$file" ;;
    e2e_missing) in_section 3 "^  replies" matched, "$file" ;;
    e2e_p50) in_section 3 "e2e ms" p50 "$file" ;;
    e2e_p99) in_section 3 "e2e ms" p99 "$file" ;;
    e2e_ack_p99) in_section 3 "ack ms" p99 "$file" ;;
    max_rate) in_section 4 "^  rate" rate "$file" ;;
    backlog_rate) in_section 5 "^  rate" rate "$file" ;;
    burst_rate) in_section 7 "^  rate" rate "$file" ;;
    burst_runs) awk '/^--- 7\./ { s = 1 } s && /^  bursts/ { print $2; exit }' "$file" ;;
    burst_late_p50) in_section 7 "^  bursts" p50 "$file" ;;
    burst_late_p99) in_section 7 "^  bursts" p99 "$file" ;;
    burst_server_p99) awk '/^--- 7\./ { s = 1 } s && /^  flushes/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 2); exit } }' "$file" ;;
    claim_10) awk '/^--- 6\./ { s = 1 } s && $1 ~ /^[0-9]+$/ { n++; if (n == 1) { print $3; exit } }' "$file" ;;
    claim_10k) awk '/^--- 6\./ { s = 1 } s && $1 ~ /^[0-9]+$/ { n++; if (n == 2) { print $3; exit } }' "$file" ;;
    claim_100k) awk '/^--- 6\./ { s = 1 } s && $1 ~ /^[0-9]+$/ { n++; if (n == 3) { print $3; exit } }' "$file" ;;
  esac
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

FIELDS="throughput rate_p99 e2e_missing e2e_p50 e2e_p99 e2e_ack_p99 max_rate backlog_rate burst_runs burst_rate burst_late_p50 burst_late_p99 burst_server_p99 claim_10 claim_10k claim_100k"
declare -A values
for n in $(seq 1 "$RUNS"); do
  out="target/bench/median-$n.txt"
  echo "bench-median: run $n of $RUNS -> $out" >&2
  if [ -z "${REPORT_ONLY:-}" ]; then
    rc=0
    NO_BUILD=1 bash scripts/bench.sh >"$out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || echo "bench-median: run $n exited $rc (a target missed or a run failed; see $out)" >&2
  fi
  for f in $FIELDS; do
    values[$f]="${values[$f]:-} $(field "$f" "$out")"
  done
done

echo "================ switchboard benchmark: median of $RUNS back-to-back runs ================"
echo "runs        $(for n in $(seq 1 "$RUNS"); do awk '/^date/ { d = $2 } /^commit/ { c = $2 } END { printf "%s@%s ", d, c }' "target/bench/median-$n.txt"; done)"
echo "machine     $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null), $(uname -sr)"
echo "knobs       DURATION=${DURATION:-10} RATE=${RATE:-1000} E2E_RATE=${E2E_RATE:-1000} E2E_DURATION=${E2E_DURATION:-60} E2E_MAX_RATE=${E2E_MAX_RATE:-2200} BURST_RATE=${BURST_RATE:-2000} BACKLOG=${BACKLOG:-50000} BURST_CONVERSATIONS=${BURST_CONVERSATIONS:-20000} CONCURRENCY=${CONCURRENCY:-64}"
printf '%-40s %-28s %s\n' "figure" "runs" "median"
label() {
  case "$1" in
    throughput) echo "1. ingest max (deliveries/s)" ;;
    rate_p99) echo "2. ingest ack p99 at fixed rate (ms)" ;;
    e2e_missing) echo "3. e2e replies missing" ;;
    e2e_p50) echo "3. e2e p50 (ms)" ;;
    e2e_p99) echo "3. e2e p99 (ms)" ;;
    e2e_ack_p99) echo "3. ack p99 during e2e (ms)" ;;
    max_rate) echo "4. replies/s offered E2E_MAX_RATE" ;;
    backlog_rate) echo "5. backlog drain (replies/s)" ;;
    burst_runs) echo "7. handler runs (one per burst)" ;;
    burst_rate) echo "7. messages/s, buffering on" ;;
    burst_late_p50) echo "7. flush lateness p50 (ms), at the proxy" ;;
    burst_late_p99) echo "7. flush lateness p99 (ms), at the proxy" ;;
    burst_server_p99) echo "7. flush lateness p99 (ms), server, <=" ;;
    claim_10) echo "6. take p50 (us), 10 queued" ;;
    claim_10k) echo "6. take p50 (us), 10,000 queued" ;;
    claim_100k) echo "6. take p50 (us), 100,000 queued" ;;
  esac
}
for f in $FIELDS; do
  printf '%-40s %-28s %s\n' "$(label "$f")" "$(echo ${values[$f]} | tr ' ' ',')" "$(echo "${values[$f]}" | median)"
done
echo "=========================================================================================="
