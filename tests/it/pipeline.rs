//! After the inbox: buffering, routing, fan-out, durable jobs and replies through the Meta
//! proxy of a simulated Kapso on loopback.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::clock::{Clock, ManualTime};
use switchboard::kapso_sim::{ScriptedResponse, SimConfig, SimulatedKapso};

use crate::payloads::{batch, text_at, PHONE_NUMBER_ID};
use crate::test_app::TestApp;
use crate::user_service::UserService;

const RECEIVED: &str = "whatsapp.message.received";
const API_KEY: &str = "test-api-key";
const WAIT: Duration = Duration::from_secs(15);

pub(crate) async fn sim() -> SimulatedKapso {
    SimulatedKapso::start(SimConfig {
        api_key: API_KEY.to_owned(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A route that answers every message; with [`refuse_next_send`], its first job dies.
pub(crate) const LATE_ROUTE: &str = r#"
[[routes]]
name = "late"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "sorry for the wait" }
"#;

/// Kapso refuses the next send as outside the 24-hour window (131047): never retried, so its
/// job is dead.
pub(crate) fn refuse_next_send(sim: &SimulatedKapso) {
    sim.script(ScriptedResponse::graph_error(
        400,
        131047,
        "Re-engagement message",
    ));
}

/// Kapso pointed at the simulator, fast retries, sends not held back by pacing, buffering off
/// unless a route turns it on.
pub(crate) fn pipeline_config(sim: &SimulatedKapso, routes: &str) -> String {
    pipeline_config_with_lease(sim, 10_000, routes)
}

fn pipeline_config_with_lease(sim: &SimulatedKapso, lease_ms: u64, routes: &str) -> String {
    format!(
        r#"
[kapso]
base_url = "{base}"
api_key = "{API_KEY}"
max_retries = 0
timeout_ms = 5000
# These tests are about the pipeline (order, crashes, many replies in flight), not the pace of
# a number (tests/it/pacing.rs): the number may send as fast as the pipeline does.
default_send_rate = 10000
# Nor by Kapso's request budget per API key (tests/it/kapso/limits.rs): after a crash, every
# send whose outcome is unknown reads Kapso's history at once.
api_requests_per_minute = 100000

[jobs]
workers = 4
backoff_base_ms = 20
backoff_max_ms = 100
lease_ms = {lease_ms}
poll_interval_ms = 200

[buffer]
enabled = false
window_ms = 400
max_wait_ms = 5000
{routes}"#,
        base = sim.base_url()
    )
}

/// One route echoing every message (`echo: TEXT`), run by `workers` workers.
fn echo_config(sim: &SimulatedKapso, workers: usize) -> String {
    pipeline_config(
        sim,
        r#"
[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "echo: {{message.text}}" }
"#,
    )
    .replace("workers = 4", &format!("workers = {workers}"))
}

/// A route sending every inbound message to the user's service (`secret` empty: unsigned).
fn bot_route(service: &UserService, timeout_ms: u64, secret: &str) -> String {
    let secret = if secret.is_empty() {
        String::new()
    } else {
        format!(", secret = \"{secret}\"")
    };
    format!(
        "[[routes]]\nname = \"bot\"\non = \"whatsapp.message.received\"\nhandler = {{ kind = \"http\", url = \"{}\", timeout_ms = {timeout_ms}{secret} }}\n",
        service.url
    )
}

async fn job_rows(app: &TestApp) -> Vec<(String, String, i64, Option<String>, String)> {
    let pool = app.db().await;
    let rows = sqlx::query_as(
        "SELECT route, state, attempts, last_error, event_ids FROM jobs ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// Pipeline time for the tests that move it by hand (any fixed instant will do).
fn manual_time() -> std::sync::Arc<ManualTime> {
    ManualTime::starting_at(1_764_090_000_000)
}

/// Waits until the pipeline has done everything it can at `time`'s current instant: every
/// event routed, no buffer or job due, no job running, every write committed. With a manual
/// clock nothing else can happen until the test advances it.
async fn settled(app: &TestApp, time: &ManualTime) {
    let now = time.now_ms();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pool = app.db().await;
        let (unrouted, due_buffers, active): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE routed_at IS NULL),
                    (SELECT COUNT(*) FROM buffers WHERE flush_at <= ?1),
                    (SELECT COUNT(*) FROM jobs
                     WHERE state = 'running' OR (state = 'queued' AND run_at <= ?1))",
        )
        .bind(now)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        if (unrouted, due_buffers, active) == (0, 0, 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipeline did not settle: {unrouted} unrouted, {due_buffers} buffers due, {active} jobs due or running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (without sleeping blindly) until every job has reached `done` or `dead`.
pub(crate) async fn settled_jobs(
    app: &TestApp,
    expected: usize,
) -> Vec<(String, String, i64, Option<String>, String)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = job_rows(app).await;
        if rows.len() >= expected && rows.iter().all(|r| r.1 == "done" || r.1 == "dead") {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not settle: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A route on `whatsapp.message.failed` re-engages the customer: the status event's message is
/// the business's own, and Kapso may name the business's number as its `from`.
#[tokio::test]
async fn a_reply_to_an_outbound_status_event_goes_to_the_customer_not_the_business() {
    use switchboard::kapso_sim::samples::{
        meta_error, status_update, MessageStatus, SampleContext,
    };
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        r#"
[[routes]]
name = "reengage"
on = "whatsapp.message.failed"
handler = { kind = "template", name = "reengage_customer", language = "en_US", params = ["{{contact.name|there}}"] }
"#,
    ))
    .await;
    let ctx = SampleContext::default();
    let failed = status_update(
        &ctx,
        "wamid.OUT_FAILED",
        MessageStatus::Failed,
        &json!({"type": "text", "text": {"body": "Following up"}}),
        &[meta_error(
            131047,
            "Re-engagement message",
            "more than 24 hours",
        )],
    );
    assert_eq!(failed["message"]["from"], ctx.business_phone.as_str());
    assert_eq!(failed["message"]["to"], ctx.customer_phone.as_str());
    assert_eq!(app.deliver("whatsapp.message.failed", &failed).await, 200);

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["to"], ctx.customer_phone.as_str());
    assert_eq!(sends[0].body["type"], "template");
}

/// A template with a media header, body parameters and button parameters reaches the proxy in
/// the send-time shape (the simulated proxy checks every component), and the quick-reply
/// payload it carries routes the customer's tap by `when.reply_id`.
#[tokio::test]
async fn a_template_with_header_and_buttons_is_accepted_and_its_button_tap_is_routed_by_id() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        r#"
[[routes]]
name = "offer"
on = "whatsapp.message.received"
when = { text = "(?i)offer" }
handler = { kind = "template", name = "weekly_offer", language = "en", params = { name = "{{contact.name}}" }, header = { image = "https://example.com/offer.jpg" }, buttons = [{ index = 0, payload = "offer_yes" }, { index = 1, url = "{{message.id}}" }] }

[[routes]]
name = "accepted"
on = "whatsapp.message.received"
when = { reply_id = "offer_yes" }
handler = { kind = "reply", text = "Great, it's yours." }
"#,
    ))
    .await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at(
                "wamid.ASK",
                "conv-offer",
                "any offer?",
                1_764_093_600,
                false
            )
        )
        .await,
        200
    );
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(
        sends[0].body["template"]["components"],
        json!([
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/offer.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "parameter_name": "name", "text": "Dana Ruiz"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "offer_yes"}]},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "wamid.ASK"}]},
        ])
    );

    // The customer taps the button: WhatsApp sends its text and the payload.
    let mut tap = text_at("wamid.TAP", "conv-offer", "", 1_764_093_700, false);
    tap["message"]["type"] = json!("button");
    tap["message"]["button"] = json!({"payload": "offer_yes", "text": "Yes please"});
    tap["message"].as_object_mut().unwrap().remove("text");
    assert_eq!(app.deliver(RECEIVED, &tap).await, 200);
    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(sends[1].body["text"]["body"], "Great, it's yours.");
}

#[tokio::test]
async fn greeting_route_replies_with_the_filled_template() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        r#"
[[routes]]
name = "greet"
on = "whatsapp.message.received"
when = { text = "(?i)^(hi|hello)\\b", new_conversation = true }
handler = { kind = "reply", text = "Hi {{contact.name}}, how can we help with \"{{message.text}}\"?" }
"#,
    ))
    .await;

    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at(
                "wamid.HELLO",
                "conv-1",
                "Hello, order 4471?",
                1_764_093_600,
                true
            )
        )
        .await,
        200
    );
    // Not a greeting, and not a new conversation: no route matches.
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.OTHER", "conv-2", "where is it", 1_764_093_601, false)
        )
        .await,
        200
    );

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(
        sends[0].body,
        json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550100200",
            "type": "text",
            "text": { "body": "Hi Dana Ruiz, how can we help with \"Hello, order 4471?\"?", "preview_url": false },
            "context": { "message_id": "wamid.HELLO" }
        })
    );
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].0.as_str(), jobs[0].1.as_str()), ("greet", "done"));
    let pool = app.db().await;
    let (state, wamid): (String, Option<String>) =
        sqlx::query_as("SELECT state, wamid FROM outbound")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(state, "sent");
    assert_eq!(wamid.as_deref(), Some(sends[0].wamid.as_str()));
    assert_eq!(sim.sends().len(), 1);
}

#[tokio::test]
async fn burst_of_three_messages_inside_the_window_is_one_handler_run() {
    let sim = sim().await;
    let time = manual_time();
    let app = TestApp::spawn_with_clock(
        &pipeline_config(
            &sim,
            r#"
[[routes]]
name = "summarise"
on = "whatsapp.message.received"
buffer = { enabled = true, window_ms = 400 }
handler = { kind = "reply", quote = false, text = "{{messages.count}} messages: {{messages.text}}" }
"#,
        ),
        Clock::Manual(time.clone()),
    )
    .await;

    for (i, text) in ["hello?", "anyone there", "my order is late"]
        .iter()
        .enumerate()
    {
        let payload = text_at(
            &format!("wamid.BURST{i}"),
            "conv-burst",
            text,
            1_764_094_000 + i as i64,
            false,
        );
        assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
        // 300 ms apart: each message restarts the 400 ms window.
        settled(&app, &time).await;
        time.advance(Duration::from_millis(300));
    }
    settled(&app, &time).await;
    assert!(sim.sends().is_empty(), "100 ms of the window are left");
    time.advance(Duration::from_millis(99));
    settled(&app, &time).await;
    assert!(sim.sends().is_empty(), "1 ms of the window is left");

    time.advance(Duration::from_millis(1));
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(
        sends[0].body["text"]["body"],
        "3 messages: hello?\nanyone there\nmy order is late"
    );
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs.len(), 1, "one run for the burst: {jobs:?}");
    let ids: Vec<i64> = serde_json::from_str(&jobs[0].4).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(sim.sends().len(), 1);
}

#[tokio::test]
async fn every_matching_route_gets_its_own_job() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        r#"
[[routes]]
name = "seen"
on = "whatsapp.message.*"
handler = { kind = "mark_read", typing_indicator = true }

[[routes]]
name = "ack"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "Got it" }

[[routes]]
name = "never"
on = "whatsapp.conversation.created"
handler = { kind = "log" }
"#,
    ))
    .await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.FAN", "conv-fan", "two routes", 1_764_095_000, false)
        )
        .await,
        200
    );

    let sends = sim.wait_for_sends(2, WAIT).await;
    let read = sends
        .iter()
        .find(|s| s.body["status"] == "read")
        .expect("a read receipt");
    assert_eq!(read.body["message_id"], "wamid.FAN");
    assert_eq!(read.body["typing_indicator"], json!({"type": "text"}));
    let reply = sends
        .iter()
        .find(|s| s.body["type"] == "text")
        .expect("a reply");
    assert_eq!(reply.body["text"]["body"], "Got it");
    let jobs = settled_jobs(&app, 2).await;
    let mut routes: Vec<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
    routes.sort_unstable();
    assert_eq!(routes, ["ack", "seen"]);
}

#[tokio::test]
async fn http_handler_reply_is_delivered_through_the_proxy() {
    let sim = sim().await;
    let service = UserService::start().await;
    service.respond(200, json!({ "messages": [ { "text": "Your order ships today" },
        { "type": "interactive", "interactive": { "type": "button", "body": { "text": "Track it?" },
          "action": { "buttons": [ { "type": "reply", "reply": { "id": "track", "title": "Track" } } ] } } } ] }));
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        &bot_route(&service, 5000, "bot-secret"),
    ))
    .await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at(
                "wamid.BOT",
                "conv-bot",
                "status of 4471?",
                1_764_096_000,
                false
            )
        )
        .await,
        200
    );

    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "Your order ships today");
    assert_eq!(sends[0].body["to"], "15550100200");
    assert_eq!(sends[1].body["interactive"]["type"], "button");

    let request = &service.received()[0];
    assert_eq!(request.texts(), ["status of 4471?"]);
    assert_eq!(request.body["route"], "bot");
    let signature = request.headers["x-switchboard-signature"].to_str().unwrap();
    assert_eq!(
        signature,
        switchboard::ingest::signature::sign(b"bot-secret", &request.raw)
    );
}

#[tokio::test]
async fn proxy_500_then_200_retries_after_the_backoff_and_sends_once() {
    let sim = sim().await;
    sim.script(ScriptedResponse::status(500));
    let time = manual_time();
    let app = TestApp::spawn_with_clock(&echo_config(&sim, 4), Clock::Manual(time.clone())).await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.R500", "conv-500", "ping", 1_764_097_000, false)
        )
        .await,
        200
    );

    // The first attempt failed; the retry waits for its backoff (10-20 ms with base 20 ms).
    settled(&app, &time).await;
    let jobs = job_rows(&app).await;
    assert_eq!((jobs[0].1.as_str(), jobs[0].2), ("queued", 1), "{jobs:?}");
    assert!(sim.sends().is_empty());

    time.advance(Duration::from_millis(20));
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "done");
    assert_eq!(
        jobs[0].2, 2,
        "first attempt failed with 500, second succeeded"
    );
    assert_eq!(
        sim.sends().len(),
        1,
        "the message was accepted exactly once"
    );
    assert_eq!(sim.sends()[0].body["text"]["body"], "echo: ping");
}

#[tokio::test]
async fn non_retryable_error_dead_letters_without_retrying_and_can_be_replayed() {
    let sim = sim().await;
    refuse_next_send(&sim);
    let app = TestApp::spawn_with(&pipeline_config(&sim, LATE_ROUTE)).await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.LATE", "conv-late", "hello?", 1_764_098_000, false)
        )
        .await,
        200
    );

    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "dead");
    assert_eq!(jobs[0].2, 1, "no retry for 131047");
    assert!(
        jobs[0].3.as_deref().unwrap_or_default().contains("131047"),
        "{:?}",
        jobs[0].3
    );
    assert!(sim.sends().is_empty());

    // The operator fixes things and replays the dead job from the command line.
    let config = app.config_path();
    let list = crate::cli::switchboard(&[
        "jobs",
        "list",
        "--dead",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let dead: Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = dead[0]["id"].as_i64().unwrap();
    assert_eq!(dead[0]["route"], "late");
    let retry = crate::cli::switchboard(&[
        "jobs",
        "retry",
        &id.to_string(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "sorry for the wait");
}

#[tokio::test]
async fn restart_during_a_buffer_window_still_flushes_when_it_closes() {
    let sim = sim().await;
    let time = manual_time();
    let mut app = TestApp::spawn_with_clock(
        &pipeline_config(
            &sim,
            r#"
[[routes]]
name = "later"
on = "whatsapp.message.received"
buffer = { enabled = true, window_ms = 1500, max_wait_ms = 5000 }
handler = { kind = "reply", text = "{{messages.count}}: {{messages.text}}" }
"#,
        ),
        Clock::Manual(time.clone()),
    )
    .await;
    for (wamid, text, at) in [("wamid.W1", "first", 0), ("wamid.W2", "second", 1)] {
        let payload = text_at(wamid, "conv-w", text, 1_764_099_000 + at, false);
        assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
    }
    settled(&app, &time).await;
    assert_eq!(app.count("buffered_events").await, 2);
    time.advance(Duration::from_millis(1_499));
    settled(&app, &time).await;
    assert!(sim.sends().is_empty(), "1 ms of the window is left");

    app.restart().await;
    settled(&app, &time).await;
    assert!(sim.sends().is_empty(), "a restart does not flush early");
    assert_eq!(app.count("buffered_events").await, 2);

    time.advance(Duration::from_millis(1));
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "2: first\nsecond");
    settled(&app, &time).await;
    assert_eq!(app.count("buffered_events").await, 0);
}

/// A route batching each conversation's messages for 1.5 s (at most 5 s).
fn later_route(sim: &SimulatedKapso) -> String {
    pipeline_config(
        sim,
        r#"
[[routes]]
name = "later"
on = "whatsapp.message.received"
buffer = { enabled = true, window_ms = 1500, max_wait_ms = 5000 }
handler = { kind = "reply", quote = false, text = "{{messages.count}}: {{messages.text}}" }
"#,
    )
}

fn reply_texts(sim: &SimulatedKapso) -> Vec<String> {
    sim.sends()
        .iter()
        .map(|s| {
            s.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn open_buffers_survive_a_crash_and_each_flushes_once_at_its_due_time() {
    let sim = sim().await;
    let time = manual_time();
    let mut app = TestApp::spawn_with_clock(&later_route(&sim), Clock::Manual(time.clone())).await;
    let t = 1_764_099_100;
    for (wamid, conversation, text, at) in [
        ("wamid.CA1", "conv-ca", "a1", t),
        ("wamid.CA2", "conv-ca", "a2", t + 1),
    ] {
        let payload = text_at(wamid, conversation, text, at, false);
        assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
    }
    settled(&app, &time).await;
    time.advance(Duration::from_millis(500));
    // Kapso delivers B's messages out of order.
    for (wamid, text, at) in [
        ("wamid.CB3", "b3", t + 4),
        ("wamid.CB1", "b1", t + 2),
        ("wamid.CB2", "b2", t + 3),
    ] {
        let payload = text_at(wamid, "conv-cb", text, at, false);
        assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
    }
    settled(&app, &time).await;
    assert_eq!(app.count("buffered_events").await, 5);

    app.kill().await;
    app.start_again().await;
    settled(&app, &time).await;
    assert!(sim.sends().is_empty(), "nothing is due yet");
    assert_eq!(app.count("buffered_events").await, 5);

    // A's window closes: A alone, with both its messages.
    time.advance(Duration::from_millis(1_000));
    sim.wait_for_sends(1, WAIT).await;
    settled(&app, &time).await;
    assert_eq!(reply_texts(&sim), ["2: a1\na2"]);

    time.advance(Duration::from_millis(499));
    settled(&app, &time).await;
    assert_eq!(sim.sends().len(), 1, "1 ms of B's window is left");
    time.advance(Duration::from_millis(1));
    sim.wait_for_sends(2, WAIT).await;
    settled(&app, &time).await;
    assert_eq!(reply_texts(&sim), ["2: a1\na2", "3: b1\nb2\nb3"]);
    assert_eq!(app.count("buffered_events").await, 0);
    assert_eq!(settled_jobs(&app, 2).await.len(), 2, "one run per burst");
}

#[tokio::test]
async fn a_buffer_due_while_the_server_was_down_flushes_at_startup() {
    let sim = sim().await;
    let time = manual_time();
    let mut app = TestApp::spawn_with_clock(&later_route(&sim), Clock::Manual(time.clone())).await;
    for (wamid, text, at) in [("wamid.D1", "d1", 0), ("wamid.D2", "d2", 1)] {
        let payload = text_at(wamid, "conv-down", text, 1_764_099_200 + at, false);
        assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
    }
    settled(&app, &time).await;
    app.kill().await;
    time.advance(Duration::from_millis(10_000));

    app.start_again().await;
    sim.wait_for_sends(1, WAIT).await;
    settled(&app, &time).await;
    assert_eq!(reply_texts(&sim), ["2: d1\nd2"]);
    assert_eq!(app.count("buffered_events").await, 0);
    assert_eq!(settled_jobs(&app, 1).await.len(), 1);
}

#[tokio::test]
async fn a_killed_servers_job_runs_again_at_restart_without_waiting_for_its_lease() {
    let sim = sim().await;
    let service = UserService::start().await;
    service.gate("stuck");
    service.respond(200, json!({}));
    service.respond(200, json!({ "messages": [ { "text": "recovered" } ] }));
    // A lease far longer than the test may wait: only an immediate restart can pass.
    let mut app = TestApp::spawn_with(&pipeline_config_with_lease(
        &sim,
        3_600_000,
        &bot_route(&service, 900, ""),
    ))
    .await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.STUCK", "conv-k", "stuck", 1_764_100_000, false)
        )
        .await,
        200
    );
    service.wait_for(1).await; // the worker holds the job, blocked in the user's service
                               // Its claim is committed with the next group of pipeline writes: wait for it, so the crash
                               // leaves a job that is `running` in the file (a claim not yet committed dies with the process).
    let deadline = tokio::time::Instant::now() + WAIT;
    while job_rows(&app).await[0].1 != "running" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    app.kill().await;
    let running: Vec<_> = job_rows(&app).await;
    assert_eq!(running[0].1, "running", "the crash left the job running");
    service.open("stuck");

    app.start_again().await;
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "recovered");
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!((jobs[0].1.as_str(), jobs[0].2), ("done", 2));
}

#[tokio::test]
async fn a_second_server_on_the_same_database_is_refused() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, "")).await;
    let config = app.config_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--no-sync", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("another `switchboard serve` is using this database"),
        "{err}"
    );
    assert!(err.contains("switchboard.db.lock"), "{err}");
}

/// Many conversations at once, each conversation's messages sent in order by its own client,
/// handled by many workers: every conversation's replies reach the proxy once each, in order.
#[tokio::test]
async fn a_flood_of_conversations_keeps_each_conversations_order_at_the_proxy() {
    const CONVERSATIONS: usize = 40;
    const MESSAGES: usize = 10;
    let sim = sim().await;
    let config = echo_config(&sim, 16);
    let app = std::sync::Arc::new(TestApp::spawn_with(&config).await);
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let app = app.clone();
        senders.spawn(async move {
            for m in 0..MESSAGES {
                let t = 1_764_200_000 + i64::try_from(m).unwrap();
                let payload = text_at(
                    &format!("wamid.F{c}-{m}"),
                    &format!("conv-flood-{c}"),
                    &format!("c{c}-{m}"),
                    t,
                    false,
                );
                assert_eq!(app.deliver(RECEIVED, &payload).await, 200);
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }

    let sends = sim.wait_for_sends(CONVERSATIONS * MESSAGES, WAIT).await;
    assert_eq!(
        sends.len(),
        CONVERSATIONS * MESSAGES,
        "each reply exactly once"
    );
    let mut per_conversation = vec![Vec::new(); CONVERSATIONS];
    for send in &sends {
        let text = send.body["text"]["body"].as_str().unwrap();
        let (c, m) = text
            .strip_prefix("echo: c")
            .and_then(|rest| rest.split_once('-'))
            .unwrap();
        per_conversation[c.parse::<usize>().unwrap()].push(m.parse::<usize>().unwrap());
    }
    for (c, order) in per_conversation.iter().enumerate() {
        assert_eq!(
            order,
            &(0..MESSAGES).collect::<Vec<_>>(),
            "conversation {c} replied out of order"
        );
    }
}

#[tokio::test]
async fn one_conversation_runs_in_timestamp_order_while_others_proceed() {
    let sim = sim().await;
    let service = UserService::start().await;
    service.gate("a1");
    let app = TestApp::spawn_with(&pipeline_config(&sim, &bot_route(&service, 5000, ""))).await;
    let t = 1_764_101_000;
    assert_eq!(
        app.deliver(RECEIVED, &text_at("wamid.A1", "conv-a", "a1", t, false))
            .await,
        200
    );
    service.wait_for(1).await; // a1 is being handled (held by the service)

    // Kapso delivers conversation A's next two messages out of order.
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.A3", "conv-a", "a3", t + 20, false)
        )
        .await,
        200
    );
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.A2", "conv-a", "a2", t + 10, false)
        )
        .await,
        200
    );
    // Conversation B is not held up by A.
    assert_eq!(
        app.deliver(RECEIVED, &text_at("wamid.B1", "conv-b", "b1", t + 5, false))
            .await,
        200
    );
    let received = service.wait_for(2).await;
    assert_eq!(
        received[1].texts(),
        ["b1"],
        "B ran while A's first message was still in progress"
    );

    service.open("a1");
    let received = service.wait_for(4).await;
    let order: Vec<String> = received.iter().flat_map(|r| r.texts()).collect();
    assert_eq!(order, ["a1", "b1", "a2", "a3"]);
    settled_jobs(&app, 4).await;
}

#[tokio::test]
async fn a_job_slower_than_its_lease_keeps_it_and_sends_once() {
    let sim = sim().await;
    // Kapso throttles the first send and asks to wait 2 s: longer than the 1 s lease.
    sim.script(ScriptedResponse::throttled(429, 130429).with_retry_after("2"));
    let config = pipeline_config_with_lease(
        &sim,
        1_000,
        r#"
[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "patience: {{message.text}}" }
"#,
    )
    .replace("max_retries = 0", "max_retries = 1");
    let app = TestApp::spawn_with(&config).await;
    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.SLOW", "conv-slow", "slow", 1_764_102_000, false)
        )
        .await,
        200
    );

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "patience: slow");
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(
        (jobs[0].1.as_str(), jobs[0].2),
        ("done", 1),
        "no other worker took the job over"
    );
    let proxy_calls = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .count();
    assert_eq!(
        proxy_calls, 2,
        "one throttled call and one accepted, nothing more"
    );
    assert_eq!(sim.sends().len(), 1);
}

#[tokio::test]
async fn events_no_route_listens_to_are_stored_already_routed() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&echo_config(&sim, 4)).await;
    let status = crate::payloads::message_status("wamid.OUT-1", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    let pool = app.db().await;
    let routed: Option<i64> = sqlx::query_scalar("SELECT routed_at FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        routed.is_some(),
        "nothing listens to statuses: no dispatch needed"
    );

    assert_eq!(
        app.deliver(
            RECEIVED,
            &text_at("wamid.ECHO", "conv-e", "hi", 1_764_103_000, false)
        )
        .await,
        200
    );
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "echo: hi");
    assert_eq!(job_rows(&app).await.len(), 1, "only the message got a job");
}

/// A crash under load repeats no reply: every message is answered after the restart, and
/// each exactly once. Replies planned before the crash are sent again only after Kapso's message
/// history shows it never took them (see docs/ARCHITECTURE.md, "No double replies").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_under_load_repeats_no_reply() {
    const MESSAGES: usize = 300;
    let sim = sim().await;
    let config = echo_config(&sim, 16);
    let mut app = TestApp::spawn_with(&config).await;
    // Kapso batches of 5 (the test server takes 4 KB bodies): the jobs are queued nearly at once, so many replies are in flight
    // together.
    let items: Vec<Value> = (0..MESSAGES)
        .map(|m| {
            text_at(
                &format!("wamid.K{m}"),
                &format!("conv-kill-{m}"),
                &format!("k{m}"),
                1_764_300_000,
                false,
            )
        })
        .collect();
    let mut posts = tokio::task::JoinSet::new();
    for chunk in items.chunks(5) {
        let bytes = serde_json::to_vec(&batch(chunk.to_vec())).unwrap();
        let headers =
            crate::test_app::kapso_headers(crate::test_app::SECRET, RECEIVED, &bytes, None);
        let request = reqwest::Client::new()
            .post(format!("{}/webhooks/support", app.base_url))
            .headers(headers)
            .body(bytes);
        posts.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    // Every delivery is stored; kill while the replies are going out.
    app.kill().await;
    let before_restart = sim.sends().len();

    app.start_again().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let counts = loop {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for send in sim.sends() {
            let text = send.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *counts.entry(text).or_default() += 1;
        }
        if counts.len() == MESSAGES {
            settled_jobs(&app, MESSAGES).await;
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {MESSAGES} messages were answered",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let repeated = counts.values().filter(|n| **n > 1).count();
    eprintln!(
        "crash under load: {before_restart} replies before the kill, {repeated} repeated after the restart"
    );
    assert_eq!(
        repeated, 0,
        "{repeated} replies went out twice ({before_restart} had gone out before the kill)"
    );
}
