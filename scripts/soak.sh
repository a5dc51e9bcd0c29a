#!/usr/bin/env bash
# Soak: a release server with retention active takes SOAK_RATE deliveries/s (open loop, loadgen)
# for SOAK_DURATION s, while this script samples, every second, its RSS (/proc/PID/status), the
# database and WAL file sizes, the free pages of the database file and the rows retention has
# deleted (switchboard_pruned_rows_total from /metrics). Then the server idles for IDLE s with
# retention still running (its CPU is measured), and the script prints a summary: ack latency
# over the run and per REPORT_EVERY s window, failures, RSS peak (VmHWM), the database and WAL
# sizes over time, the rows pruned, each retention run the server logged, and PASS/FAIL against
# the targets (ack p99 < 25 ms, RSS < 100 MB).
#
# Retention ages are at least "1h" (config validation), so rows the load itself writes never
# come of age in a run. The database is therefore filled before the server starts (src/bin/
# prefill.rs, the server's own migrations and event parsing):
#   - STEADY=1 (default): the deliveries and events that reach their retention age during the
#     run, SOAK_RATE per second, as a server that had been taking this load for a whole
#     retention period would hold them. Retention then deletes about as much per second as the
#     load adds: the steady state in which the database file should stop growing.
#   - PREFILL=N (default 0): N more rows (whole conversation turns of 8 rows: 3 deliveries,
#     3 events, a done job and its outbound row) received a day before their retention age, all
#     to be deleted at the first retention run. The summary says how long that prune took,
#     whether it finished within the load, and the ack latency while it ran.
#
# Usage: scripts/soak.sh
#        PREFILL=1000000 scripts/soak.sh            the same load while retention deletes 1M rows
# Environment overrides:
#   SOAK_RATE        deliveries/s (default 1000)
#   SOAK_DURATION    measured seconds of load (default 60), after WARMUP s (default 1)
#   CONCURRENCY      loadgen's in-flight limit (default 64)
#   PREFILL          old rows to delete during the run (default 0)
#   STEADY           1 (default) or 0: prefill the rows that come of age during the run
#   SOAK_AGE         every retention age (default "1h", the minimum)
#   SOAK_INTERVAL    retention.interval (default "1s", the minimum: the first run starts 1 s
#                    after the server, and idle runs are as frequent as they can be)
#   SOAK_BATCH_SIZE  retention.batch_size (default 200, the server's default)
#   SOAK_PAUSE_MS    retention.pause_ms (default 50, the server's default)
#   IDLE             seconds the server idles after the load, CPU measured (default 10)
#   REPORT_EVERY     seconds per line of the timeline (default 5)
#   BENCH_LISTEN     address the server listens on (default 127.0.0.1:8080; loopback only)
#   BENCH_TMPDIR     where the fresh database directory is created (default target/soak: the
#                    project's disk; a tmpfs /tmp would make fsync free)
#   SOAK_LOG         the server's RUST_LOG (default "warn,switchboard::retention=info"; add
#                    switchboard::retention=debug,switchboard::db=debug for each batch and WAL restart)
#   KEEP_DB=1        keep the database directory (and the server log, samples and timeline)
#   NO_BUILD=1       skip `cargo build --release --bins`
set -euo pipefail

cd "$(dirname "$0")/.."

SOAK_RATE="${SOAK_RATE:-1000}"
SOAK_DURATION="${SOAK_DURATION:-60}"
WARMUP="${WARMUP:-1}"
CONCURRENCY="${CONCURRENCY:-64}"
PREFILL="${PREFILL:-0}"
STEADY="${STEADY:-1}"
SOAK_AGE="${SOAK_AGE:-1h}"
SOAK_INTERVAL="${SOAK_INTERVAL:-1s}"
SOAK_BATCH_SIZE="${SOAK_BATCH_SIZE:-200}"
SOAK_PAUSE_MS="${SOAK_PAUSE_MS:-50}"
IDLE="${IDLE:-10}"
REPORT_EVERY="${REPORT_EVERY:-5}"
BENCH_LISTEN="${BENCH_LISTEN:-127.0.0.1:8080}"
BENCH_TMPDIR="${BENCH_TMPDIR:-target/soak}"
SOAK_LOG="${SOAK_LOG:-warn,switchboard::retention=info}"

case "$BENCH_LISTEN" in
  127.*:* | localhost:* | "[::1]":*) ;;
  *) echo "soak: BENCH_LISTEN must be a loopback address, got $BENCH_LISTEN" >&2; exit 2 ;;
esac
for v in SOAK_RATE SOAK_DURATION WARMUP CONCURRENCY PREFILL STEADY SOAK_BATCH_SIZE SOAK_PAUSE_MS IDLE REPORT_EVERY; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
    echo "soak: $v must be a whole number, got '${!v}'" >&2
    exit 2
  fi
done
if [ "$SOAK_RATE" = 0 ] || [ "$SOAK_DURATION" = 0 ] || [ "$REPORT_EVERY" = 0 ]; then
  echo "soak: SOAK_RATE, SOAK_DURATION and REPORT_EVERY must be at least 1" >&2
  exit 2
fi

# seconds AGE: "90m" -> 5400 (the units of retention ages).
seconds() {
  local n="${1%[dhms]}" unit="${1: -1}"
  if ! [[ "$n" =~ ^[0-9]+$ ]]; then
    echo "soak: '$1' is not an age such as 1h, 90m or 2d" >&2
    exit 2
  fi
  case "$unit" in
    d) echo $((n * 86400)) ;;
    h) echo $((n * 3600)) ;;
    m) echo $((n * 60)) ;;
    s) echo "$n" ;;
    *) echo "soak: '$1' is not an age such as 1h, 90m or 2d" >&2; exit 2 ;;
  esac
}
AGE_S="$(seconds "$SOAK_AGE")"
seconds "$SOAK_INTERVAL" >/dev/null

BASE="http://$BENCH_LISTEN"
SERVER_BIN=target/release/switchboard
LOADGEN_BIN=target/release/loadgen
PREFILL_BIN=target/release/prefill
SERVER_PID=""
LG_PID=""
SAMPLER_PID=""
WORKDIR=""

log() { printf 'soak: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/server.sh
source scripts/lib/server.sh  # the working directory is the repository (see the cd above)
now_ms() { date +%s%3N; }


stop_sampler() {
  if [ -n "$SAMPLER_PID" ]; then
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
  fi
}

cleanup() {
  if [ -n "$LG_PID" ] && kill -0 "$LG_PID" 2>/dev/null; then
    kill -TERM "$LG_PID" 2>/dev/null || true
    wait "$LG_PID" 2>/dev/null || true
  fi
  stop_sampler
  stop_server
  if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ] && [ "${KEEP_DB:-0}" != 1 ]; then
    rm -rf "$WORKDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prepare_run
DB="$WORKDIR/switchboard.db"
FS_TYPE="$(df --output=fstype "$WORKDIR" 2>/dev/null | tail -n1 || echo unknown)"

# The server's config: config/bench.toml's server, storage and webhook, with retention active.
CONFIG="$WORKDIR/soak.toml"
cat >"$CONFIG" <<EOF
# Written by scripts/soak.sh.
[server]
listen = "$BENCH_LISTEN"

[storage]
url = "sqlite://$DB"
synchronous = "full"

[retention]
done_jobs = "$SOAK_AGE"
dead_jobs = "$SOAK_AGE"
events = "$SOAK_AGE"
deliveries = "$SOAK_AGE"
quarantine = "$SOAK_AGE"
interval = "$SOAK_INTERVAL"
batch_size = $SOAK_BATCH_SIZE
pause_ms = $SOAK_PAUSE_MS

[[webhooks]]
name = "bench"
secrets = ["bench-secret"]
EOF
log "checking $CONFIG"
"$SERVER_BIN" check --config "$CONFIG" >&2

# 1. The database, filled before the server starts.
PREFILL_ROWS=0
PREFILL_LINE="none"
if [ "$PREFILL" -gt 0 ]; then
  to=$(($(now_ms) - AGE_S * 1000 - 60000))
  from=$((to - 86400000))
  log "prefill: $PREFILL rows (conversation turns) received in the day before their retention age"
  PREFILL_LINE="$("$PREFILL_BIN" --db "$DB" --mix replies --rows "$PREFILL" --from-ms "$from" --to-ms "$to")"
  log "$PREFILL_LINE"
  PREFILL_ROWS="$(awk '{ for (i = 1; i < NF; i++) if ($i == "rows") print $(i + 1) }' <<<"$PREFILL_LINE")"
fi
STEADY_ROWS=0
STEADY_LINE="none"
if [ "$STEADY" = 1 ]; then
  # Received a retention age before now, up to the end of the load: they come of age (at
  # SOAK_RATE/s) from now until about when the load ends.
  from=$(($(now_ms) - AGE_S * 1000))
  to=$((from + (WARMUP + SOAK_DURATION) * 1000))
  rows=$((SOAK_RATE * (WARMUP + SOAK_DURATION) * 2))
  log "prefill: $rows rows (deliveries + events) coming of age during the run at $SOAK_RATE deliveries/s"
  STEADY_LINE="$("$PREFILL_BIN" --db "$DB" --mix inbound --rows "$rows" --from-ms "$from" --to-ms "$to")"
  log "$STEADY_LINE"
  STEADY_ROWS="$(awk '{ for (i = 1; i < NF; i++) if ($i == "rows") print $(i + 1) }' <<<"$STEADY_LINE")"
fi
sync

# 2. The server.
log "starting $SERVER_BIN on $BENCH_LISTEN, database $DB ($FS_TYPE)"
RUST_LOG="$SOAK_LOG" "$SERVER_BIN" serve --config "$CONFIG" >>"$WORKDIR/server.log" 2>&1 &
SERVER_PID=$!
wait_until_ready 30

# CPU time (user + system) of the server, all its threads (exited ones too), in nanoseconds;
# the kernel counts it in clock ticks (10 ms at the usual 100 Hz).
cpu_ns() {
  awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.0f", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# A 4-byte big-endian field of the database header (28: pages, 36: free pages), as of the last
# checkpoint (in WAL mode the file's header is written when pages are copied back).
header_u32() {
  local v
  v="$(od -An -tu4 --endian=big -j "$2" -N4 "$1" 2>/dev/null | tr -d ' ')"
  echo "${v:-0}"
}
pruned_total() {
  curl -s --max-time 1 "$BASE/metrics" 2>/dev/null |
    awk '/^switchboard_pruned_rows_total/ { s += $NF } END { printf "%.0f", s }'
}

# 3. The sampler: one line a second, `ms rss_kb db_bytes wal_bytes pages free_pages pruned cpu_ns`.
sampler() {
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    local rss
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)"
    echo "$(now_ms) ${rss:-0} $(file_size "$DB") $(file_size "$DB-wal") $(header_u32 "$DB" 28) $(header_u32 "$DB" 36) $(pruned_total) $(cpu_ns "$SERVER_PID")"
    sleep 1 &
    wait $!
  done
}
sampler >"$WORKDIR/samples.txt" &
SAMPLER_PID=$!

# 4. The load.
LOAD_START_MS="$(now_ms)"
log "load: loadgen --rate $SOAK_RATE for ${WARMUP}+${SOAK_DURATION} s"
LG_RC=0
timeout --signal=INT --kill-after=10 $((WARMUP + SOAK_DURATION + 90)) \
  "$LOADGEN_BIN" --url "$BASE/webhooks/bench" --secret bench-secret \
  --rate "$SOAK_RATE" --concurrency "$CONCURRENCY" --warmup "$WARMUP" --duration "$SOAK_DURATION" \
  --timeline "$WORKDIR/timeline.txt" >"$WORKDIR/loadgen.out" 2>&1 &
LG_PID=$!
wait "$LG_PID" || LG_RC=$?
LG_PID=""
LOAD_END_MS="$(now_ms)"

# 5. Idle: retention keeps running on its interval, nothing else arrives.
log "idle: ${IDLE} s"
sleep 2
IDLE_START_MS="$(now_ms)"
IDLE_CPU0="$(cpu_ns "$SERVER_PID")"
IDLE_PRUNED0="$(pruned_total)"
sleep "$IDLE"
IDLE_CPU1="$(cpu_ns "$SERVER_PID")"
IDLE_PRUNED1="$(pruned_total)"
IDLE_END_MS="$(now_ms)"
HWM_KB="$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)"
PRUNED_AT_STOP="$(pruned_total)"
stop_sampler
log "stopping the server (SIGTERM)"
SERVER_RC=""
stop_server
log "server exited with status ${SERVER_RC:-?}"

# ---------------------------------------------------------------------------------------------
# Summary

# The retention runs the server logged: `end_ms took_ms rows`, one per line.
while IFS= read -r line; do
  stamp="${line%% *}"
  end_ms="$(date -d "$stamp" +%s%3N 2>/dev/null || echo 0)"
  took="$(grep -o 'took_ms=[0-9]*' <<<"$line" | cut -d= -f2)"
  rows="$(grep -oE '(jobs|outbound|events|deliveries|quarantine)=[0-9]+' <<<"$line" | awk -F= '{ s += $2 } END { print s + 0 }')"
  echo "$end_ms ${took:-0} ${rows:-0}"
done < <(grep 'retention: pruned old rows' "$WORKDIR/server.log" | sed 's/\x1b\[[0-9;]*m//g') >"$WORKDIR/runs.txt"

# latency_stats FROM_MS TO_MS: "n p50 p99 max" of the acks scheduled in [FROM, TO) (ms).
latency_stats() {
  awk -v a="$1" -v b="$2" '$3 == "ok" && $1 >= a && $1 < b { print $2 }' "$WORKDIR/timeline.txt" |
    sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "0 - - -"; exit }
      r50 = int(0.50 * NR); if (r50 < 0.50 * NR) r50++; if (r50 < 1) r50 = 1
      r99 = int(0.99 * NR); if (r99 < 0.99 * NR) r99++; if (r99 < 1) r99 = 1
      printf "%d %.2f %.2f %.2f\n", NR, v[r50], v[r99], v[NR]
    }'
}
failures_between() {
  awk -v a="$1" -v b="$2" '$3 != "ok" && $1 >= a && $1 < b { n++ } END { print n + 0 }' "$WORKDIR/timeline.txt"
}
# sample_at MS: the last sample taken at or before MS (the first one if none).
sample_at() {
  awk -v t="$1" 'NR == 1 { first = $0 } $1 <= t { last = $0 } END { print (last != "" ? last : first) }' "$WORKDIR/samples.txt"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
field() { awk -v n="$2" '{ print $n }' <<<"$1"; }

ALL_STATS="$(latency_stats 0 99999999999999)"
P99="$(field "$ALL_STATS" 3)"
FAILED="$(failures_between 0 99999999999999)"
SKIPPED="$(awk '/^  schedule/ { for (i = 1; i <= NF; i++) if ($i == "skipped") print $(i - 1) }' "$WORKDIR/loadgen.out")"
PEAK_RSS_KB="$(awk '$2 > m { m = $2 } END { print m + 0 }' "$WORKDIR/samples.txt")"
[ -n "$HWM_KB" ] && [ "$HWM_KB" -gt 0 ] || HWM_KB="$PEAK_RSS_KB"
MAX_WAL="$(awk '$4 > m { m = $4 } END { print m + 0 }' "$WORKDIR/samples.txt")"
PAGE_SIZE="$(od -An -tu2 --endian=big -j 16 -N2 "$DB" 2>/dev/null | tr -d ' ')"
case "${PAGE_SIZE:-0}" in 0) PAGE_SIZE=4096 ;; 1) PAGE_SIZE=65536 ;; esac

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
echo
echo "================ switchboard soak ================"
echo "date        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "machine     $(nproc) cores, ${CPU_MODEL:-unknown}, $(uname -sr)"
echo "load        $SOAK_RATE deliveries/s, open loop, ${WARMUP} s warm-up + ${SOAK_DURATION} s, concurrency $CONCURRENCY [loadgen exit $LG_RC]"
echo "database    $DB ($FS_TYPE), inbox synchronous = full"
echo "retention   ages $SOAK_AGE, interval $SOAK_INTERVAL, batch_size $SOAK_BATCH_SIZE, pause_ms $SOAK_PAUSE_MS"
echo "prefill     old rows: $PREFILL_LINE"
echo "            coming of age during the run: $STEADY_LINE"
echo "server      exit status ${SERVER_RC:-?} after SIGTERM"
echo
echo "--- loadgen"
cat "$WORKDIR/loadgen.out"
echo
echo "--- timeline (t = seconds since the load started; acks by scheduled time; sizes at the window's end)"
printf '%6s %7s %8s %8s %9s %7s %8s %8s %8s %10s\n' t acks p50_ms p99_ms max_ms rss_MB db_MB wal_MB free_MB pruned
end_ms="$IDLE_END_MS"
t=0
while :; do
  a=$((LOAD_START_MS + t * 1000))
  b=$((a + REPORT_EVERY * 1000))
  [ "$a" -lt "$end_ms" ] || break
  stats="$(latency_stats "$a" "$b")"
  s="$(sample_at "$b")"
  printf '%6s %7s %8s %8s %9s %7s %8s %8s %8s %10s\n' "$t" \
    "$(field "$stats" 1)" "$(field "$stats" 2)" "$(field "$stats" 3)" "$(field "$stats" 4)" \
    "$(awk -v k="$(field "$s" 2)" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$(mb "$(field "$s" 3)")" "$(mb "$(field "$s" 4)")" \
    "$(mb $(($(field "$s" 6) * PAGE_SIZE)))" "$(field "$s" 7)"
  t=$((t + REPORT_EVERY))
done
echo "(load ends at t=$(( (LOAD_END_MS - LOAD_START_MS) / 1000 )); idle from t=$(( (IDLE_START_MS - LOAD_START_MS) / 1000 )) to t=$(( (IDLE_END_MS - LOAD_START_MS) / 1000 )). free_MB: the database file's free pages as of the last checkpoint)"
echo
echo "--- database file (does it stop growing?)"
S0="$(sample_at "$LOAD_START_MS")"
MID_MS=$((LOAD_START_MS + (LOAD_END_MS - LOAD_START_MS) / 2))
SMID="$(sample_at "$MID_MS")"
SEND="$(sample_at "$LOAD_END_MS")"
echo "db file     at load start $(mb "$(field "$S0" 3)") MB, mid-load $(mb "$(field "$SMID" 3)") MB, at load end $(mb "$(field "$SEND" 3)") MB: $(mb $(($(field "$SEND" 3) - $(field "$SMID" 3)))) MB in the second half of the load"
echo "            free pages at load end $(field "$SEND" 6) ($(mb $(($(field "$SEND" 6) * PAGE_SIZE))) MB, as of the last checkpoint), of $(field "$SEND" 5) pages of $PAGE_SIZE bytes"
echo "WAL file    largest $(mb "$MAX_WAL") MB; at load end $(mb "$(field "$SEND" 4)") MB"
echo "server CPU  $(awk -v c="$(( $(field "$SEND" 8) - $(field "$S0" 8) ))" -v s="$(( (LOAD_END_MS - LOAD_START_MS) / 1000 ))" 'BEGIN { printf "%.1f s over the %d s of load (%.0f%% of one core)", c / 1e9, s, c / 1e7 / (s > 0 ? s : 1) }')"
echo "rows        stored by the measured load: $(awk '/^  server/ { print $2 }' "$WORKDIR/loadgen.out") events and as many deliveries; pruned by the server: $PRUNED_AT_STOP"
echo
echo "--- retention runs (from the server log: end, duration, rows)"
RUNS="$(wc -l <"$WORKDIR/runs.txt")"
if [ "$RUNS" = 0 ]; then
  echo "no run deleted anything"
else
  awk -v t0="$LOAD_START_MS" '{ n++; rows += $3; took += $2; if ($2 > max) max = $2 }
    END { printf "%d runs deleted %d rows; %.1f s spent in them, longest %.1f s\n", n, rows, took / 1000, max / 1000 }' "$WORKDIR/runs.txt"
  awk -v t0="$LOAD_START_MS" 'NR <= 5 { printf "  run %d: t=%.1f to t=%.1f (%.1f s), %d rows\n", NR, ($1 - $2 - t0) / 1000, ($1 - t0) / 1000, $2 / 1000, $3 }' "$WORKDIR/runs.txt"
  [ "$RUNS" -le 5 ] || echo "  ... and $((RUNS - 5)) more (KEEP_DB=1 keeps $WORKDIR/runs.txt)"
fi
PRUNE_VERDICT=""
if [ "$PREFILL_ROWS" -gt 0 ]; then
  echo
  echo "--- the prune of the $PREFILL_ROWS prefilled old rows"
  # The first run deletes everything past its age at its start: the prefilled rows (and the
  # few coming-of-age rows already due).
  first="$(head -n1 "$WORKDIR/runs.txt")"
  if [ -n "$first" ] && [ "$(field "$first" 3)" -ge "$PREFILL_ROWS" ]; then
    p_end="$(field "$first" 1)"
    p_start=$((p_end - $(field "$first" 2)))
    rate="$(awk -v r="$(field "$first" 3)" -v ms="$(field "$first" 2)" 'BEGIN { printf "%.0f", r / (ms > 0 ? ms / 1000 : 1) }')"
    if [ "$p_end" -le "$LOAD_END_MS" ]; then
      PRUNE_VERDICT="FINISHED within the load"
    else
      PRUNE_VERDICT="finished $(( (p_end - LOAD_END_MS) / 1000 )) s AFTER the load ended"
    fi
    echo "prune       $PRUNE_VERDICT: $(field "$first" 3) rows in $(awk -v ms="$(field "$first" 2)" 'BEGIN { printf "%.1f", ms / 1000 }') s ($rate rows/s), from t=$(( (p_start - LOAD_START_MS) / 1000 )) to t=$(( (p_end - LOAD_START_MS) / 1000 ))"
    during_to="$p_end"
  else
    # From the first sample that saw pruned rows (within a second of the start).
    p_start="$(awk '$7 > 0 { print $1; exit }' "$WORKDIR/samples.txt")"
    p_start="${p_start:-$LOAD_START_MS}"
    PRUNE_VERDICT="NOT FINISHED"
    echo "prune       NOT FINISHED: $PRUNED_AT_STOP of about $PREFILL_ROWS rows deleted when the server stopped (SOAK_DURATION=$SOAK_DURATION; see the pruned column above)"
    during_to="$LOAD_END_MS"
  fi
  DURING="$(latency_stats "$p_start" "$during_to")"
  OUTSIDE_N=$(( $(field "$ALL_STATS" 1) - $(field "$DURING" 1) ))
  echo "acks during the prune: $(field "$DURING" 1) acks, p50 $(field "$DURING" 2) ms, p99 $(field "$DURING" 3) ms, max $(field "$DURING" 4) ms, $(failures_between "$p_start" "$during_to") failed"
  if [ "$during_to" -lt "$LOAD_END_MS" ]; then
    AFTER="$(latency_stats "$during_to" 99999999999999)"
    echo "acks after it:         $(field "$AFTER" 1) acks, p50 $(field "$AFTER" 2) ms, p99 $(field "$AFTER" 3) ms, max $(field "$AFTER" 4) ms"
  else
    echo "acks outside it:       $OUTSIDE_N (the prune covered the whole load)"
  fi
fi
echo
echo "--- idle (no load; retention every $SOAK_INTERVAL)"
IDLE_S="$(awk -v a="$IDLE_START_MS" -v b="$IDLE_END_MS" 'BEGIN { printf "%.1f", (b - a) / 1000 }')"
IDLE_RUNS="$(awk -v a="$IDLE_START_MS" -v b="$IDLE_END_MS" '$1 >= a && $1 < b' "$WORKDIR/runs.txt" | wc -l)"
echo "server CPU  $(awk -v c="$((IDLE_CPU1 - IDLE_CPU0))" -v s="$IDLE_S" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f ms over %.1f s (%.2f%% of one core; counted in %.0f ms ticks)", c / 1e6, s, c / 1e7 / s, 1000 / hz }')"
echo "retention   $((IDLE_PRUNED1 - IDLE_PRUNED0)) rows deleted in that time$([ "$((IDLE_PRUNED1 - IDLE_PRUNED0))" = 0 ] && echo ': retention was idle (it still runs every '"$SOAK_INTERVAL"')' || echo ": retention was still deleting ($IDLE_RUNS runs logged), so this is not an idle measurement")"
echo
verdict() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v != "" && v != "-" && v + 0 < t) }'; then echo PASS; else echo FAIL; fi; }
HWM_MB="$(awk -v k="$HWM_KB" 'BEGIN { printf "%.1f", k / 1024 }')"
echo "targets     ack p99 < 25 ms at $SOAK_RATE deliveries/s: ${P99:-?} ms -> $(verdict "$P99" 25)"
echo "            RSS < 100 MB (VmHWM, the peak):     $HWM_MB MB -> $(verdict "$HWM_MB" 100)"
echo "            failed requests: $FAILED, skipped: ${SKIPPED:-?}"
if [ -n "$PRUNE_VERDICT" ]; then
  echo "            prune of $PREFILL_ROWS old rows: $PRUNE_VERDICT"
fi
if [ "$SOAK_RATE" != 1000 ] || [ "$SOAK_DURATION" != 60 ]; then
  echo "            (the targets are defined for 60 s at 1000 deliveries/s)"
fi
echo "=================================================="
[ "${KEEP_DB:-0}" = 1 ] && log "kept $WORKDIR (server.log, samples.txt, timeline.txt, runs.txt)"
exit "$LG_RC"
