# Shared by scripts/bench.sh and scripts/soak.sh (sourced, not run): building and a fresh run
# directory, stopping the server they started, and waiting for it to be ready. Each script
# defines `log` and sets BASE (http://host:port), BENCH_LISTEN and BENCH_TMPDIR, and SERVER_PID
# and WORKDIR (holding server.log) once it has started the server.

# prepare_run: builds the release binaries (unless NO_BUILD=1), refuses to run when something
# already answers on BENCH_LISTEN, and sets WORKDIR to a fresh absolute directory under
# BENCH_TMPDIR.
prepare_run() {
  if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    timeout 900 cargo build --release --bins
  fi
  if curl -s -o /dev/null --max-time 2 "$BASE/healthz"; then
    log "something already answers on $BENCH_LISTEN: stop it or set BENCH_LISTEN"
    exit 2
  fi
  mkdir -p "$BENCH_TMPDIR"
  WORKDIR="$(mktemp -d "$BENCH_TMPDIR/run.XXXXXX")"
  WORKDIR="$(cd "$WORKDIR" && pwd)"
}

# stop_server: SIGTERM, wait for the graceful shutdown (bounded), then SIGKILL. Sets SERVER_RC.
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server $SERVER_PID did not stop within 15 s of SIGTERM: killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "$SERVER_PID" ]; then
    wait "$SERVER_PID" 2>/dev/null && SERVER_RC=0 || SERVER_RC=$?
    SERVER_PID=""
  fi
}

# wait_until_ready SECONDS: polls /readyz until it answers 200; exits the script (showing the
# server's log) if the server exits meanwhile or is not ready within SECONDS.
wait_until_ready() {
  local seconds="$1" code
  for _ in $(seq 1 $((seconds * 10))); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "the server exited during start-up; its log:"
      cat "$WORKDIR/server.log" >&2
      SERVER_PID=""
      exit 1
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/readyz" || true)"
    if [ "$code" = 200 ]; then
      log "server ready (pid $SERVER_PID)"
      return 0
    fi
    sleep 0.1
  done
  log "the server did not answer 200 on /readyz within $seconds s; its log:"
  cat "$WORKDIR/server.log" >&2
  exit 1
}
