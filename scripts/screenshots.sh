#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/screenshots/: runs `switchboard demo` into a fresh
# database (a conversation, a debounced burst, a failed message and its template), serves that
# database with the console on and Kapso unreachable, posts one more message with `switchboard
# simulate` (its reply cannot be sent, so its job is dead), then drives headless Chromium through
# chromedriver (WebDriver over curl) to sign in and capture the pages: the overview, events, one
# event's path, its conversation's timeline, jobs, quarantine, and two pages at phone width.
#
#   scripts/screenshots.sh            # debug build; PROFILE=release for the release one
#
# Needs cargo, curl, jq, base64, openssl, chromium and chromedriver (Debian: apt-get install chromium
# chromium-driver). SHOTS_LISTEN (default 127.0.0.1:18089) and SHOTS_DRIVER_PORT (default 19515)
# must be free. Everything stays on 127.0.0.1; nothing is sent anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
LISTEN="${SHOTS_LISTEN:-127.0.0.1:18089}"
DRIVER_PORT="${SHOTS_DRIVER_PORT:-19515}"
OUT="docs/screenshots"
BASE="http://$LISTEN"
DRIVER="http://127.0.0.1:$DRIVER_PORT"

log() { printf 'screenshots: %s\n' "$*" >&2; }

for tool in cargo curl jq base64 openssl chromedriver; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is required (chromedriver: apt-get install chromium chromium-driver)"
    exit 1
  fi
done
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$CHROMIUM" ]; then
  log "chromium is required (apt-get install chromium chromium-driver)"
  exit 1
fi
for url in "$BASE/healthz" "$DRIVER/status"; do
  if curl -s -o /dev/null --max-time 2 "$url"; then
    log "something already answers at $url: stop it or set SHOTS_LISTEN / SHOTS_DRIVER_PORT"
    exit 2
  fi
done

if [ "$PROFILE" = release ]; then
  cargo build --release --bin switchboard
else
  cargo build --bin switchboard
fi
BIN="target/$PROFILE/switchboard"

WORKDIR="$(mktemp -d)"
SERVER_PID=""
DRIVER_PID=""
cleanup() {
  [ -n "$DRIVER_PID" ] && curl -s -o /dev/null --max-time 5 "$DRIVER/shutdown" || true
  for pid in $DRIVER_PID $SERVER_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

# poll SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds; fails after SECONDS.
poll() {
  local seconds="$1" what="$2"
  shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  log "$what did not happen within $seconds s"
  exit 1
}

log "playing the demo into $WORKDIR/switchboard.db"
"$BIN" demo --db "$WORKDIR/switchboard.db" >"$WORKDIR/demo.log" 2>&1 || {
  cat "$WORKDIR/demo.log" >&2
  exit 1
}

TOKEN="shots_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CONFIG="$WORKDIR/switchboard.toml"
cat >"$CONFIG" <<EOF
[server]
listen = "$LISTEN"

[storage]
url = "sqlite://$WORKDIR/switchboard.db"

# Nothing answers on port 9 of loopback: a reply fails at once, and its job is dead.
[kapso]
base_url = "http://127.0.0.1:9"
api_key = "screenshots-offline"
max_retries = 0
timeout_ms = 1000

[sync]
on_startup = false

[catch_up]
on_startup = false
interval = "off"

[buffer]
enabled = false

[jobs]
poll_interval_ms = 100

[admin]
token = "$TOKEN"

[[webhooks]]
name = "acme"
phone_number_id = "106540352242922"
secrets = ["whsec_screenshots_only"]

[[routes]]
name = "support"
on = "whatsapp.message.received"
max_attempts = 1
handler = { kind = "reply", text = "Thanks, an agent will answer shortly." }
EOF

log "serving it on $BASE with the console on"
"$BIN" serve --config "$CONFIG" >"$WORKDIR/server.log" 2>&1 &
SERVER_PID=$!
poll 30 "the server answering /readyz" curl -sf --max-time 1 "$BASE/readyz"

"$BIN" simulate --config "$CONFIG" --webhook acme --conversation conv-lisbon \
  --text "Do you ship to Lisbon? I'd like 3 of the blue mugs" >/dev/null
dead_job() {
  curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/admin/api/jobs?state=dead" \
    | jq -e '.jobs | length > 0'
}
poll 30 "a dead job" dead_job
# A body cut short in transit, signed as Kapso signs: no parser understands it, so it is
# quarantined (for the quarantine page).
CUT='{"message": {"id": "wamid.cut", "type": "text", "text": {"body": "Do you ship to Po'
SIGNATURE="$(printf '%s' "$CUT" | openssl dgst -sha256 -hmac whsec_screenshots_only -r | cut -d' ' -f1)"
curl -sf -o /dev/null -X POST --data-binary "$CUT" -H 'content-type: application/json' \
  -H "x-webhook-signature: $SIGNATURE" -H 'x-webhook-event: whatsapp.message.received' \
  -H 'x-webhook-payload-version: v2' -H 'x-idempotency-key: screenshots-cut-body' "$BASE/webhooks/acme"

EVENT="$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/admin/api/events?text=can%20you%20check" \
  | jq -c '.events[0]')"
EVENT_ID="$(jq -r '.id' <<<"$EVENT")"
CONVERSATION="$(jq -r '.conversation_id | @uri' <<<"$EVENT")"

log "starting chromedriver on $DRIVER"
chromedriver --port="$DRIVER_PORT" >"$WORKDIR/chromedriver.log" 2>&1 &
DRIVER_PID=$!
poll 20 "chromedriver answering /status" sh -c "curl -sf '$DRIVER/status' | jq -e '.value.ready'"

# wd METHOD PATH [JSON]: one WebDriver command of the session; prints its value.
SESSION=""
wd() {
  local method="$1" path="$2" body="${3:-}" answer
  if [ -n "$body" ]; then
    answer="$(curl -s -X "$method" -H 'content-type: application/json' -d "$body" "$DRIVER/session$SESSION$path")"
  else
    answer="$(curl -s -X "$method" "$DRIVER/session$SESSION$path")"
  fi
  if jq -e '.value.error? // empty' <<<"$answer" >/dev/null; then
    log "WebDriver $method ${path:-/session} failed: ${answer:0:600}"
    exit 1
  fi
  jq -c '.value' <<<"$answer"
}
ELEMENT_KEY="element-6066-11e4-a52e-4f735466cecf"
find_element() {
  wd POST /element "$(jq -nc --arg css "$1" '{using: "css selector", value: $css}')" \
    | jq -r --arg key "$ELEMENT_KEY" '.[$key]'
}

PROFILE_DIR="$WORKDIR/chromium-profile"
CAPABILITIES="$(jq -nc --arg bin "$CHROMIUM" --arg profile "$PROFILE_DIR" '{capabilities: {alwaysMatch: {
  browserName: "chrome",
  "goog:chromeOptions": {binary: $bin, args: ["--headless=new", "--no-sandbox", "--disable-gpu",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=\($profile)", "--window-size=1280,800"]}}}}')"
SESSION="/$(wd POST "" "$CAPABILITIES" | jq -r '.sessionId')"

log "signing in"
wd POST /url "$(jq -nc --arg url "$BASE/admin" '{url: $url}')" >/dev/null
field="$(find_element 'input[name=token]')"
wd POST "/element/$field/value" "$(jq -nc --arg text "$TOKEN" '{text: $text}')" >/dev/null
wd POST "/element/$(find_element 'form.login button[type=submit]')/click" '{}' >/dev/null
title="$(wd POST /execute/sync '{"script": "return document.title", "args": []}')"
case "$title" in
  *Overview*) ;;
  *) log "signing in failed: the page is $title"; exit 1 ;;
esac

# The overview's chart draws a point per sample (one every 5 s): wait for three.
chart_drawn() {
  wd POST /url "$(jq -nc --arg url "$BASE/admin" '{url: $url}')" >/dev/null
  wd POST /execute/sync '{"script": "return document.querySelector(\"polyline\").getAttribute(\"points\").split(\" \").length >= 3", "args": []}' \
    | jq -e .
}
poll 30 "the overview's chart" chart_drawn

# shot PATH FILE WIDTH HEIGHT: the page at PATH, WIDTH x HEIGHT CSS pixels, into $OUT/FILE.
shot() {
  wd POST /window/rect "$(jq -nc --argjson w "$3" --argjson h "$4" '{width: $w, height: $h}')" >/dev/null
  wd POST /url "$(jq -nc --arg url "$BASE$1" '{url: $url}')" >/dev/null
  wd GET /screenshot | jq -r . | base64 -d >"$OUT/$2"
  log "wrote $OUT/$2 ($(wc -c <"$OUT/$2") bytes)"
}
mkdir -p "$OUT"
shot /admin overview.png 1280 800
shot /admin/events events.png 1280 800
shot "/admin/events/$EVENT_ID" event.png 1280 800
shot /admin/jobs jobs.png 1280 800
shot "/admin/conversations/$CONVERSATION" conversation.png 1280 800
shot /admin/quarantine quarantine.png 1280 800
shot "/admin/events/$EVENT_ID" phone-event.png 390 844
shot /admin/events phone-events.png 390 844

wd DELETE "" >/dev/null
log "done"
