#!/usr/bin/env bash
# Benchmarks switchboard on this machine with durable commits (synchronous = full):
#   1. maximum throughput: closed loop, CONCURRENCY workers, DURATION s (default 64, 10 s)
#   2. latency at a fixed rate: open loop, RATE deliveries/s, RATE_DURATION s (default 1000, 20 s)
#   3. end to end: delivery -> echo route -> Meta proxy call (e2ebench's own fake proxy),
#      open loop, E2E_RATE events/s for E2E_DURATION s (default 1000, 60 s), buffering off
#   4. the same at E2E_MAX_RATE events/s (default 2200): does the pipeline sustain more than
#      2,000 replies/s?
#   5. backlog: BACKLOG deliveries (default 50000) posted as fast as ingest takes them, then
#      drained; replies per 5 s window show whether the rate falls as the backlog grows
#   6. claim cost: claimbench, taking the next job with 10, 10,000 and 100,000 queued
#   7. buffering on: BURST_CONVERSATIONS conversations (default 20000) each send a burst of 3
#      messages at BURST_RATE messages/s (default 2000); one reply per burst, and how late
#      buffers flush (at the proxy, and at the server from its /metrics)
# against a release build started on a fresh database, then prints a summary.
#
# Usage: scripts/bench.sh
# Environment overrides:
#   DURATION       seconds of run 1 (default 10); also of run 2 unless RATE_DURATION is set
#   RATE_DURATION  seconds of run 2 (default 20, or DURATION when that is set)
#   RATE           deliveries/s of run 2 (default 1000)
#   CONCURRENCY    workers of run 1 and in-flight limit of run 2 (default 64)
#   WARMUP         warm-up seconds before each run, not counted (default 1)
#   BATCH          events per delivery (default 1)
#   E2E_RATE       events/s of run 3 (default 1000); E2E_DURATION seconds of runs 3-4 (default 60)
#   E2E_MAX_RATE   events/s of run 4 (default 2200)
#   BURST_RATE     messages/s of run 7 (default 2000)
#   BACKLOG        deliveries of run 5 (default 50000)
#   BURST_CONVERSATIONS  conversations of run 7 (default 20000)
#   BENCH_PROXY    where e2ebench's fake Meta proxy listens (default 127.0.0.1:18090)
#   BENCH_LISTEN   address the server listens on (default 127.0.0.1:8080; loopback only)
#   BENCH_TMPDIR   where the fresh database directory is created (default target/bench, i.e. the
#                  project's disk: a tmpfs /tmp would make fsync free and the numbers meaningless)
#   KEEP_DB=1      keep the database directory afterwards
#   NO_BUILD=1     skip `cargo build --release --bins`
#   ONLY           the runs to do, by number (e.g. ONLY="4 5"; default: all); the others are
#                  reported as not run
set -euo pipefail

cd "$(dirname "$0")/.."

RUN1_DURATION="${DURATION:-10}"
RUN2_DURATION="${RATE_DURATION:-${DURATION:-20}}"
RATE="${RATE:-1000}"
E2E_RATE="${E2E_RATE:-1000}"
E2E_DURATION="${E2E_DURATION:-60}"
E2E_MAX_RATE="${E2E_MAX_RATE:-2200}"
BURST_RATE="${BURST_RATE:-2000}"
BACKLOG="${BACKLOG:-50000}"
BURST_CONVERSATIONS="${BURST_CONVERSATIONS:-20000}"
CONCURRENCY="${CONCURRENCY:-64}"
WARMUP="${WARMUP:-1}"
BATCH="${BATCH:-1}"
BENCH_LISTEN="${BENCH_LISTEN:-127.0.0.1:8080}"
BENCH_TMPDIR="${BENCH_TMPDIR:-target/bench}"
export BENCH_LISTEN

case "$BENCH_LISTEN" in
  127.*:* | localhost:* | "[::1]":*) ;;
  *) echo "bench: BENCH_LISTEN must be a loopback address, got $BENCH_LISTEN" >&2; exit 2 ;;
esac
for v in RUN1_DURATION RUN2_DURATION RATE CONCURRENCY WARMUP BATCH E2E_RATE E2E_DURATION E2E_MAX_RATE BURST_RATE BACKLOG BURST_CONVERSATIONS; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
    echo "bench: $v must be a whole number, got '${!v}'" >&2
    exit 2
  fi
done

BASE="http://$BENCH_LISTEN"
SERVER_BIN=target/release/switchboard
LOADGEN_BIN=target/release/loadgen
SERVER_PID=""
LG_PID=""
WORKDIR=""

log() { printf 'bench: %s\n' "$*" >&2; }
# want N: whether run N is to be done (ONLY unset, or naming N).
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
# shellcheck source=scripts/lib/server.sh
source scripts/lib/server.sh  # the working directory is the repository (see the cd above)


cleanup() {
  if [ -n "$LG_PID" ] && kill -0 "$LG_PID" 2>/dev/null; then
    kill -TERM "$LG_PID" 2>/dev/null || true
    wait "$LG_PID" 2>/dev/null || true
  fi
  stop_server
  if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ] && [ "${KEEP_DB:-0}" != 1 ]; then
    rm -rf "$WORKDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU time (user + system) of a process, in clock ticks.
cpu_ticks() {
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

prepare_run
export BENCH_DB="$WORKDIR/switchboard.db"
FS_TYPE="$(df --output=fstype "$WORKDIR" 2>/dev/null | tail -n1 || echo unknown)"

# start_server CONFIG: starts the release server on a fresh database and waits for /readyz.
start_server() {
  local config="$1"
  log "checking $config"
  "$SERVER_BIN" check --config "$config" >&2
  log "starting $SERVER_BIN with $config on $BENCH_LISTEN, database $BENCH_DB ($FS_TYPE)"
  RUST_LOG=warn "$SERVER_BIN" serve --config "$config" >>"$WORKDIR/server.log" 2>&1 &
  SERVER_PID=$!
  wait_until_ready 10
}

INGEST_SERVER_RC="-"
DB_SIZE="-"
if want 1 || want 2; then
start_server config/bench.toml
fi

# run_loadgen NAME SECONDS ARGS...: runs loadgen (bounded in time), samples CPU with top midway,
# and leaves its output in $WORKDIR/NAME.out and CPU figures in $WORKDIR/NAME.cpu.
run_loadgen() {
  local name="$1" secs="$2"
  shift 2
  local limit=$((WARMUP + secs + 90))
  log "run $name: loadgen $*"
  local server_before
  server_before="$(cpu_ticks "$SERVER_PID")"
  timeout --signal=INT --kill-after=10 "$limit" \
    "$LOADGEN_BIN" --url "$BASE/webhooks/bench" --secret bench-secret \
    --warmup "$WARMUP" --duration "$secs" --batch "$BATCH" "$@" \
    >"$WORKDIR/$name.out" 2>&1 &
  local lg_pid=$!
  LG_PID=$lg_pid
  # One top sample (1 s, the second frame: the first one is since boot) in the middle of the
  # measured phase: the busiest processes on the machine, so other load shows up too.
  # (sleep in the background so that a SIGTERM/SIGINT is handled at once)
  sleep $((WARMUP + secs / 2)) &
  wait $!
  if kill -0 "$lg_pid" 2>/dev/null; then
    top -b -n2 -d1 -w 200 -o %CPU 2>/dev/null \
      | awk '/^top -/ { frame++ } frame == 2' | sed -n '1,3p;/PID/,+6p' >"$WORKDIR/$name.top" &
    local top1=$!
    # and the server's busiest threads (is one thread, e.g. the SQLite writer, saturated?)
    top -H -b -n2 -d1 -w 200 -o %CPU -p "$SERVER_PID" 2>/dev/null \
      | awk -v main="$SERVER_PID" '/^top -/ { frame++ } frame == 2 && $1 != main' \
      | sed -n '/PID/,+5p' >"$WORKDIR/$name.threads" &
    local top2=$!
    wait "$top1" "$top2" || true
  fi
  local rc=0
  wait "$lg_pid" || rc=$?
  LG_PID=""
  local server_after
  server_after="$(cpu_ticks "$SERVER_PID")"
  awk -v a="$server_before" -v b="$server_after" -v hz="$CLK_TCK" -v s="$((WARMUP + secs))" \
    'BEGIN { c = (b - a) / hz; printf "server CPU %.2f s over ~%d s of load (%.0f%% of one core, avg)\n", c, s, 100 * c / s }' \
    >"$WORKDIR/$name.cpu"
  return "$rc"
}

RC1=0
RC2=0
if want 1; then
  run_loadgen max "$RUN1_DURATION" --concurrency "$CONCURRENCY" || RC1=$?
fi
if want 2; then
  run_loadgen rate "$RUN2_DURATION" --rate "$RATE" --concurrency "$CONCURRENCY" || RC2=$?
fi

if want 1 || want 2; then
  DB_SIZE="$(du -sh "$WORKDIR" 2>/dev/null | cut -f1)"
  log "stopping the server (SIGTERM)"
  SERVER_RC=""
  stop_server
  log "server exited with status ${SERVER_RC:-?}"
  INGEST_SERVER_RC="${SERVER_RC:-?}"
fi

# 3-5. End to end: each pass on a fresh server and database whose echo route replies to every
#    message through e2ebench's Meta proxy (buffering off, 64 workers).
export BENCH_PROXY="${BENCH_PROXY:-127.0.0.1:18090}"
# run_e2e NAME SECONDS_LIMIT ARGS...: one e2ebench pass, output in $WORKDIR/NAME.out.
run_e2e() {
  local name="$1" limit="$2"
  shift 2
  # Start from a quiet disk: drop the previous database and flush its dirty pages.
  rm -f "$WORKDIR"/*.db "$WORKDIR"/*.db-* "$WORKDIR"/*.db.lock
  sync
  export BENCH_DB="$WORKDIR/$name.db"
  start_server "${run_e2e_config:-config/bench-e2e.toml}"
  log "run $name: e2ebench $*"
  local rc=0
  timeout --signal=INT --kill-after=10 "$limit" \
    target/release/e2ebench --url "$BASE/webhooks/bench" --secret bench-secret \
    --proxy-listen "$BENCH_PROXY" "$@" >"$WORKDIR/$name.out" 2>&1 || rc=$?
  stop_server
  return "$rc"
}
RC3=0
RC4=0
RC5=0
if want 3; then
  run_e2e e2e $((E2E_DURATION + 90)) --rate "$E2E_RATE" --duration "$E2E_DURATION" || RC3=$?
fi
if want 4; then
  run_e2e e2emax $((E2E_DURATION + 120)) --rate "$E2E_MAX_RATE" --duration "$E2E_DURATION" --drain 60 || RC4=$?
fi
if want 5; then
  run_e2e backlog 300 --backlog "$BACKLOG" --drain 120 || RC5=$?
fi
# 7. Buffering on (2 s window): BURST_CONVERSATIONS conversations each send a burst of 3 at
#    BURST_RATE messages/s; one reply per burst, carrying all three texts.
RC7=0
BURST_SECONDS=$(( (BURST_CONVERSATIONS * 3 + BURST_RATE - 1) / BURST_RATE ))
if want 7; then
  run_e2e_config=config/bench-e2e-buffered.toml run_e2e buffered $((BURST_SECONDS + 150)) \
    --rate "$BURST_RATE" --duration "$BURST_SECONDS" --warmup 0 --burst 3 \
    --conversations "$BURST_CONVERSATIONS" --buffer-window-ms 2000 --drain 60 || RC7=$?
fi

# 6. Claim cost by backlog size, on the job queue itself.
RC6=0
if want 6; then
  log "run claim: claimbench"
  timeout 600 target/release/claimbench --dir "$WORKDIR/claim" >"$WORKDIR/claim.out" 2>&1 || RC6=$?
fi

# shown NAME: a run's output, or why there is none.
shown() {
  if [ -f "$WORKDIR/$1.out" ]; then
    cat "$WORKDIR/$1.out"
  else
    echo "  (not run: ONLY=\"${ONLY:-}\")"
  fi
}

block() {
  local name="$1"
  shown "$name"
  if [ -f "$WORKDIR/$name.cpu" ]; then
    cat "$WORKDIR/$name.cpu"
  fi
  if [ -s "$WORKDIR/$name.top" ]; then
    echo "top -b -n2 -d1 midway (second frame):"
    sed 's/^/  /' "$WORKDIR/$name.top"
  fi
  if [ -s "$WORKDIR/$name.threads" ]; then
    echo "server threads (top -H), same second:"
    sed 's/^/  /' "$WORKDIR/$name.threads"
  fi
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
echo
echo "================ switchboard benchmark ================"
echo "date        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "nproc       $(nproc)"
echo "cpu         ${CPU_MODEL:-unknown}"
echo "kernel      $(uname -sr)"
echo "databases   fresh per server under $WORKDIR ($FS_TYPE), inbox synchronous = full; $DB_SIZE after runs 1-2"
echo "server      exit status $INGEST_SERVER_RC after SIGTERM"
echo
echo "--- 1. max throughput (closed loop, concurrency $CONCURRENCY, ${RUN1_DURATION}s) [loadgen exit $RC1]"
block max
echo
echo "--- 2. fixed rate (open loop, $RATE deliveries/s, ${RUN2_DURATION}s) [loadgen exit $RC2]"
block rate
echo
echo "--- 3. end to end (open loop, $E2E_RATE deliveries/s, ${E2E_DURATION}s, buffering off, echo reply through the Meta proxy) [e2ebench exit $RC3]"
shown e2e
echo
echo "--- 4. end to end at $E2E_MAX_RATE deliveries/s for ${E2E_DURATION}s [e2ebench exit $RC4]"
shown e2emax
echo
echo "--- 5. backlog: $BACKLOG deliveries posted as fast as accepted, then drained [e2ebench exit $RC5]"
shown backlog
echo
echo "--- 7. buffering on: $BURST_CONVERSATIONS conversations x a burst of 3 at $BURST_RATE messages/s, 2 s window [e2ebench exit $RC7]"
shown buffered
echo
echo "--- 6. claim cost by backlog (take = the next runnable job; finish = its outcome committed) [claimbench exit $RC6]"
shown claim
echo
THROUGHPUT="$(awk '/throughput/ { print $2; exit }' "$WORKDIR/max.out" 2>/dev/null || true)"
P99="$(awk '/latency ms/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 1); exit } }' "$WORKDIR/rate.out" 2>/dev/null || true)"
# verdict VALUE TARGET OP [RUN]: PASS or FAIL; "not run" when RUN was left out by ONLY.
verdict() { if [ -n "${4:-}" ] && ! want "$4"; then echo "not run"; return; fi; if awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { exit !(v != "" && (op == ">=" ? v + 0 >= t : v + 0 < t)) }'; then echo PASS; else echo FAIL; fi; }
echo "targets     max throughput >= 5000 deliveries/s: ${THROUGHPUT:-?} -> $(verdict "$THROUGHPUT" 5000 ">=" 1)"
echo "            p99 < 25 ms at $RATE deliveries/s:    ${P99:-?} ms -> $(verdict "$P99" 25 "<" 2)"
E2E_P99="$(awk '/e2e ms/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 1); exit } }' "$WORKDIR/e2e.out" 2>/dev/null || true)"
echo "            e2e p99 < 50 ms at $E2E_RATE events/s:   ${E2E_P99:-?} ms -> $(verdict "$E2E_P99" 50 "<" 3)"
MAX_RATE="$(awk '/^  rate / { print $2; exit }' "$WORKDIR/e2emax.out" 2>/dev/null || true)"
echo "            >= 2000 replies/s offered $E2E_MAX_RATE/s:  ${MAX_RATE:-?} -> $(verdict "$MAX_RATE" 2000 ">=" 4)"
DRAIN_RATE="$(awk '/^  rate / { print $2; exit }' "$WORKDIR/backlog.out" 2>/dev/null || true)"
echo "            backlog drains >= 2000 replies/s:   ${DRAIN_RATE:-?} -> $(verdict "$DRAIN_RATE" 2000 ">=" 5)"
FLUSH_P99="$(awk '/^  flushes/ { for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 2); exit } }' "$WORKDIR/buffered.out" 2>/dev/null || true)"
echo "            buffers flush <= 50 ms late (p99, server): ${FLUSH_P99:-?} ms -> $(verdict "$FLUSH_P99" 50.001 "<" 7)"
if [ "$RATE" != 1000 ]; then
  echo "            (the latency target is defined at 1000 deliveries/s; RATE=$RATE)"
fi
echo "======================================================="

if [ "$RC1" != 0 ] || [ "$RC2" != 0 ] || [ "$RC3" != 0 ] || [ "$RC4" != 0 ] || [ "$RC5" != 0 ] || [ "$RC6" != 0 ] || [ "$RC7" != 0 ]; then
  exit 1
fi
