//! Catch-up after an outage: Kapso gave up delivering while switchboard was down; on start,
//! switchboard reads Kapso's message history, stores exactly the missed messages (flagged
//! `backfilled`, the webhook's dedupe key), routes each once, and a late webhook for one of them
//! is a duplicate. Real SQLite file, real HTTP on loopback, the simulated Kapso.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard::catch_up::{run_standalone, RunOptions};
use switchboard::clock::{Clock, ManualTime};
use switchboard::kapso_sim::deliver::{DeliveryOptions, DeliveryTarget, RetryHook};
use switchboard::kapso_sim::samples::{self, MessageStatus, SampleContext};
use switchboard::kapso_sim::SimulatedKapso;
use switchboard::Config;

use crate::pipeline::{pipeline_config, settled_jobs, sim};
use crate::test_app::TestApp;

const RECEIVED: &str = "whatsapp.message.received";
const LINE_SECRET: &str = "whsec_line_secret";
const ECHO: &str = r#"
[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "echo: {{message.text}}" }
"#;

/// The pipeline config plus a number-scoped webhook `line` for the sample number, and
/// `[catch_up]` with `catch_up_keys`. Catch-up takes messages of any age
/// (`webhook_grace = "0s"`) unless the keys say otherwise: the messages of these tests were sent
/// seconds ago.
fn line_config(sim: &SimulatedKapso, routes: &str, catch_up_keys: &str) -> String {
    let grace = if catch_up_keys.contains("webhook_grace") {
        ""
    } else {
        "webhook_grace = \"0s\"\n"
    };
    format!(
        "{}\n[[webhooks]]\nname = \"line\"\nsecrets = [\"{LINE_SECRET}\"]\nphone_number_id = \"{}\"\n[catch_up]\n{grace}{catch_up_keys}\n",
        pipeline_config(sim, routes),
        SampleContext::default().phone_number_id
    )
}

/// Delivers `payload` to the `line` webhook as Kapso would (signed); the answer's status.
async fn deliver_on_line(app: &TestApp, event_type: &str, payload: &Value) -> u16 {
    let bytes = serde_json::to_vec(payload).unwrap();
    app.deliver_signed("line", LINE_SECRET, event_type, &bytes)
        .await
        .status()
        .as_u16()
}

/// A sample context whose messages were sent `ago_s` seconds ago.
fn context(ago_s: i64) -> SampleContext {
    SampleContext {
        timestamp: switchboard::clock::now_ms() / 1000 - ago_s,
        ..SampleContext::default()
    }
}

/// Kapso tries to deliver each message while switchboard is down, retries on its own schedule
/// (10 s, 40 s, 90 s after the first attempt), and gives up. Returns how much of Kapso's time
/// each delivery took from its first attempt to giving up.
async fn missed_while_down(
    sim: &SimulatedKapso,
    messages: &[(&str, &str)],
    ctx: &SampleContext,
) -> Vec<Duration> {
    let payloads = messages
        .iter()
        .map(|(wamid, text)| samples::text_received(ctx, wamid, text))
        .collect();
    missed_deliveries(sim, RECEIVED, payloads).await
}

/// Kapso tries to deliver each of `payloads` (one delivery each) to the server, which is down,
/// and gives up after its retries. The schedule is played on a manual clock that each retry
/// moves on by its wait, so nothing waits for real.
async fn missed_deliveries(
    sim: &SimulatedKapso,
    event_type: &str,
    payloads: Vec<Value>,
) -> Vec<Duration> {
    let down = DeliveryTarget::new("http://127.0.0.1:9/webhooks/line", LINE_SECRET);
    let kapso_time = ManualTime::starting_at(switchboard::clock::now_ms());
    let retries = DeliveryOptions {
        clock: Clock::Manual(kapso_time.clone()),
        on_retry: Some(RetryHook(Arc::new({
            let kapso_time = kapso_time.clone();
            move |_, _, wait| kapso_time.advance(wait)
        }))),
        ..DeliveryOptions::default()
    };
    let mut spans = Vec::new();
    for payload in payloads {
        let started = kapso_time.now_ms();
        let report = sim
            .deliver(&down, event_type, vec![payload], &retries)
            .await
            .unwrap();
        assert!(!report.succeeded(), "the server is down");
        assert!(report.attempts.iter().all(|a| a.unreachable), "{report:?}");
        let span = kapso_time.now_ms() - started;
        spans.push(Duration::from_millis(u64::try_from(span).unwrap()));
    }
    spans
}

async fn backfilled(app: &TestApp) -> Vec<(String, Option<String>)> {
    let pool = app.db().await;
    let rows = sqlx::query_as(
        "SELECT message_id, flags FROM events WHERE event_type = ? ORDER BY message_id",
    )
    .bind(RECEIVED)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// Waits until `/readyz` shows a finished catch-up run, and returns its `catch_up` object.
async fn catch_up_done(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready: Value = app.get("/readyz").await.json().await.unwrap();
        if ready["catch_up"]["state"] != "pending" {
            return ready["catch_up"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn messages_kapso_gave_up_on_are_caught_up_on_start_and_answered_once() {
    let sim = sim().await;
    let ctx = context(120);
    let missed = [
        ("wamid.MISSED1", "are you open?"),
        ("wamid.MISSED2", "hello??"),
        ("wamid.MISSED3", "anyone there"),
    ];
    // Kapso tried each message four times over 140 s of its time, then gave up: the server was
    // down for longer than Kapso's whole retry window.
    let spans = missed_while_down(&sim, &missed, &ctx).await;
    assert_eq!(spans, vec![Duration::from_secs(140); 3]);
    let attempts: Vec<usize> = sim.deliveries().iter().map(|d| d.attempts.len()).collect();
    assert_eq!(attempts, vec![4; 3], "one attempt and three retries each");

    let app = TestApp::spawn_with(&line_config(&sim, ECHO, "")).await;
    let status = catch_up_done(&app).await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["found"], 3, "{status}");
    // The webhook never delivered anything while Kapso held messages for it.
    assert_eq!(
        status["silent_webhooks"],
        serde_json::json!(["line"]),
        "{status}"
    );
    let jobs = settled_jobs(&app, 3).await;
    assert!(jobs.iter().all(|j| j.1 == "done"), "{jobs:?}");
    let mut replies: Vec<String> = sim
        .sends()
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    replies.sort();
    assert_eq!(
        replies,
        vec!["echo: anyone there", "echo: are you open?", "echo: hello??"]
    );
    let stored = backfilled(&app).await;
    assert_eq!(stored.len(), 3);
    assert!(stored
        .iter()
        .all(|(_, flags)| flags.as_deref() == Some("backfilled")));

    // Kapso's late delivery of one of them is a duplicate: stored once, answered once.
    let late = samples::text_received(&ctx, "wamid.MISSED2", "hello??");
    assert_eq!(deliver_on_line(&app, RECEIVED, &late).await, 200);
    assert_eq!(app.count("events").await, 3);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("switchboard_catch_up_runs_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_catch_up_events_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_catch_up_last_run_timestamp_seconds"));
    assert!(
        metrics.contains("switchboard_catch_up_silent_webhooks 1"),
        "{metrics}"
    );

    // Running it again (by hand, the server stopped) stores nothing twice.
    let mut app = app;
    app.stop().await;
    let config = Config::load(&app.config_path()).unwrap();
    let again = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(again.result(), "ok");
    assert_eq!(again.numbers[0].new, 0);
    assert_eq!(again.numbers[0].already_stored, 3);
    assert_eq!(backfilled(&app).await.len(), 3);
    assert_eq!(sim.sends().len(), 3, "nothing answered twice");
}

#[tokio::test]
async fn catch_up_by_hand_pages_through_thousands_and_dry_run_stores_nothing() {
    let sim = sim().await;
    let ctx = context(60);
    let payloads: Vec<Value> = (0..2_500)
        .map(|n| samples::text_received(&ctx, &format!("wamid.BULK{n:05}"), "bulk"))
        .collect();
    sim.keep_in_history(RECEIVED, &payloads);
    // No route: this test is about storing, not answering.
    let app = TestApp::spawn_with(&line_config(&sim, "", "on_startup = false\n")).await;
    let config = Config::load(&app.config_path()).unwrap();

    let dry = run_standalone(
        &config,
        RunOptions {
            since_ms: Some(3_600_000),
            dry_run: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.numbers[0].new, 2_500);
    assert_eq!(
        dry.numbers[0].pages,
        25 + 1,
        "25 of messages, 1 of outbound statuses"
    );
    assert_eq!(app.count("events").await, 0, "--dry-run stores nothing");
    assert_eq!(
        app.count("catch_up").await,
        0,
        "--dry-run moves no checkpoint"
    );

    let run = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(run.result(), "ok");
    assert_eq!(run.numbers[0].seen, 2_500);
    assert_eq!(run.numbers[0].new, 2_500);
    assert_eq!(app.count("events").await, 2_500);
    let again = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.numbers[0].new, again.numbers[0].already_stored),
        (0, 2_500)
    );
    assert_eq!(app.count("events").await, 2_500);
}

/// `catch_up.reply_max_age`: a backfilled message older than it is stored and routed, its job
/// ends done with the reason recorded, and nothing is sent; `when.backfilled = false` keeps a
/// route to what webhooks deliver.
#[tokio::test]
async fn an_old_backfilled_message_is_stored_but_not_answered() {
    let sim = sim().await;
    missed_while_down(
        &sim,
        &[("wamid.OLD", "from this morning")],
        &context(3 * 3600),
    )
    .await;
    missed_while_down(&sim, &[("wamid.NEW", "just now")], &context(60)).await;
    let routes = format!(
        "{ECHO}\n[[routes]]\nname = \"live-only\"\non = \"whatsapp.message.received\"\nwhen = {{ backfilled = false }}\nhandler = {{ kind = \"reply\", text = \"live\" }}\n"
    );
    let app = TestApp::spawn_with(&line_config(&sim, &routes, "")).await;
    assert_eq!(catch_up_done(&app).await["found"], 2);
    let jobs = settled_jobs(&app, 2).await;
    assert_eq!(
        jobs.len(),
        2,
        "only the echo route took the backfilled messages: {jobs:?}"
    );
    let pool = app.db().await;
    let notes: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT state, last_error FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(notes.iter().all(|(state, _)| state == "done"), "{notes:?}");
    assert_eq!(
        notes
            .iter()
            .filter_map(|(_, note)| note.as_deref())
            .collect::<Vec<_>>(),
        [switchboard::handlers::TOO_OLD_TO_ANSWER]
    );
    let replies: Vec<String> = sim
        .sends()
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(replies, ["echo: just now"]);

    // A message a webhook delivers goes to both routes.
    let live = samples::text_received(&context(0), "wamid.LIVE", "hello");
    assert_eq!(deliver_on_line(&app, RECEIVED, &live).await, 200);
    settled_jobs(&app, 4).await;
    let mut replies: Vec<String> = sim
        .sends()
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    replies.sort();
    assert_eq!(replies, ["echo: hello", "echo: just now", "live"]);
}

/// Kapso's own example items (tests/fixtures/kapso-history) are caught up: the inbound ones are
/// stored with the conversation rebuilt from their `kapso` fields, the outbound one as the
/// status event of its current status (`sent`).
#[tokio::test]
async fn kapsos_example_items_are_caught_up() {
    let mut items = Vec::new();
    for name in ["inbound_text", "outbound_image", "location_message"] {
        let text =
            std::fs::read_to_string(format!("tests/fixtures/kapso-history/{name}.json")).unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        items.extend(page["data"].as_array().unwrap().iter().cloned());
    }
    let last: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/kapso-history/last_page.json").unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // One page per direction, as Kapso's `direction` filter answers.
    let app = axum::Router::new().fallback(
        move |query: axum::extract::Query<std::collections::HashMap<String, String>>| {
            let direction = query.get("direction").cloned().unwrap_or_default();
            let data: Vec<Value> = items
                .iter()
                .filter(|item| item["kapso"]["direction"] == direction.as_str())
                .cloned()
                .collect();
            let page = serde_json::json!({ "data": data, "paging": last["paging"] });
            async move { axum::Json(page) }
        },
    );
    let _kapso = crate::test_app::serve_until_dropped(listener, app);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let text = crate::test_app::config_text(
        &db,
        &format!(
            "[kapso]\nbase_url = \"{base}\"\napi_key = \"k\"\nmax_retries = 0\n[[webhooks]]\nname = \"line\"\nsecrets = [\"{LINE_SECRET}\"]\nphone_number_id = \"110987654321\"\n"
        ),
    );
    let config = Config::parse("test.toml", &text, |_| None).unwrap();
    let report = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.result(), "ok", "{report:?}");
    let number = &report.numbers[0];
    assert_eq!(
        (number.seen, number.new, number.new_statuses, number.skipped),
        (3, 2, 1, 0),
        "{number:?}"
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let status: (String, String) = sqlx::query_as(
        "SELECT event_type, dedupe_key FROM events WHERE event_type != 'whatsapp.message.received'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        status,
        (
            "whatsapp.message.sent".to_owned(),
            "msg:wamid.HBgNMTU1NTE0OTU5Nzg1FQIAERgSMDhGRjdBMDEyOTcxQzFFQkFCAA==:sent".to_owned()
        )
    );
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT dedupe_key, conversation_id, flags, payload FROM events
         WHERE event_type = 'whatsapp.message.received' ORDER BY dedupe_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].0,
        "msg:wamid.HBgNMTU1NTE0OTU5Nzg1FQIAERgSMDhGRjdBMDEyOTcxQzFFQkFBAA=="
    );
    assert!(rows
        .iter()
        .all(|r| r.1 == "123e4567-e89b-12d3-a456-426614174000"
            && r.2.as_deref() == Some("backfilled")));
    let payload: Value = serde_json::from_str(&rows[0].3).unwrap();
    assert_eq!(payload["conversation"]["phone_number"], "+15551234567");
    assert_eq!(payload["conversation"]["kapso"]["contact_name"], "John Doe");
    assert_eq!(payload["phone_number_id"], "110987654321");
}

/// Runs the real binary's `catch-up` off the runtime (the simulated Kapso runs on it).
async fn cli_catch_up(args: &[&str]) -> std::process::Output {
    let mut all = vec!["catch-up"];
    all.extend_from_slice(args);
    cli(&all).await
}

async fn cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .env_remove("SWITCHBOARD_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `switchboard catch-up --dry-run --json` counts what it would store and stores nothing; without
/// `--dry-run` it stores and prints a row per number.
#[tokio::test]
async fn the_catch_up_command_prints_per_number_and_dry_run_stores_nothing() {
    let sim = sim().await;
    let ctx = context(30);
    let payloads: Vec<Value> = (0..3)
        .map(|n| samples::text_received(&ctx, &format!("wamid.CLI{n}"), "hi"))
        .collect();
    sim.keep_in_history(RECEIVED, &payloads);
    let app = TestApp::spawn_with(&line_config(&sim, "", "on_startup = false\n")).await;
    let path = app.config_path();
    let path = path.to_str().unwrap();

    let dry = cli_catch_up(&["--config", path, "--since", "2h", "--dry-run", "--json"]).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["numbers"][0]["new"], 3, "{report}");
    assert_eq!(
        report["numbers"][0]["pages"], 2,
        "messages, then outbound statuses"
    );
    assert_eq!(app.count("events").await, 0);

    let run = cli_catch_up(&["--config", path]).await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(table.starts_with("NUMBER"), "{table}");
    assert!(table.contains(&ctx.phone_number_id), "{table}");
    assert_eq!(app.count("events").await, 3);
    // Backfilled events are listed, but not as needing attention.
    let flagged = cli(&["events", "list", "--config", path, "--flagged", "--json"]).await;
    assert!(
        flagged.status.success(),
        "{}",
        String::from_utf8_lossy(&flagged.stderr)
    );
    let flagged: Value = serde_json::from_slice(&flagged.stdout).unwrap();
    assert_eq!(flagged, serde_json::json!([]));

    let bad = cli_catch_up(&["--config", path, "--since", "soon"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

/// While the server runs, catch-up comes back every `catch_up.interval`: a message Kapso kept
/// but never delivered (here: never even tried) is found by the next run and answered.
#[tokio::test]
async fn catch_up_runs_again_every_interval_while_serving() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&line_config(&sim, ECHO, "interval = \"10s\"\n")).await;
    let first = catch_up_done(&app).await;
    assert_eq!(first["found"], 0, "{first}");
    let ctx = context(5);
    sim.keep_in_history(
        RECEIVED,
        &[samples::text_received(&ctx, "wamid.LATER", "still there?")],
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready: Value = app.get("/readyz").await.json().await.unwrap();
        if ready["catch_up"]["found"] == 1 {
            assert_ne!(ready["catch_up"]["last_run_at"], first["last_run_at"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sends = sim.wait_for_sends(1, Duration::from_secs(15)).await;
    assert_eq!(sends[0].body["text"]["body"], "echo: still there?");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("switchboard_catch_up_runs_total{result=\"ok\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_webhook_silent_while_catch_up_keeps_finding_messages_is_a_likely_delivery_problem() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&line_config(&sim, "", "on_startup = false\n")).await;
    // The webhook works: one live delivery.
    let live = samples::text_received(&context(1), "wamid.LIVE", "hi");
    assert_eq!(deliver_on_line(&app, RECEIVED, &live).await, 200);
    let mut app = app;
    app.stop().await;
    let config = Config::load(&app.config_path()).unwrap();

    // A short outage: Kapso gave up on one message, but the webhook delivered a moment ago.
    missed_while_down(&sim, &[("wamid.SHORT", "still there?")], &context(1)).await;
    let short = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(short.numbers[0].new, 1);
    assert_eq!(short.numbers[0].delivery_problem, None, "{short:?}");

    // The webhook has delivered nothing for half an hour, yet Kapso holds new messages for it.
    let pool = app.db().await;
    sqlx::query("UPDATE deliveries SET received_at = received_at - 30 * 60 * 1000")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    missed_while_down(&sim, &[("wamid.SILENT", "hello?")], &context(1)).await;
    let silent = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(silent.numbers[0].new, 1);
    let problem = silent.numbers[0]
        .delivery_problem
        .clone()
        .expect("a delivery problem");
    assert!(
        problem.contains("webhook `line` has delivered nothing for 30 minutes"),
        "{problem}"
    );
    assert_eq!(silent.silent_webhooks(), vec!["line".to_owned()]);
}

#[tokio::test]
async fn status_changes_kapso_gave_up_on_are_caught_up_as_the_messages_current_status() {
    let sim = sim().await;
    let routes = format!(
        "{ECHO}\n[[routes]]\nname = \"seen\"\non = \"whatsapp.message.read\"\nhandler = {{ kind = \"log\" }}\n"
    );
    let mut app = TestApp::spawn_with(&line_config(&sim, &routes, "")).await;
    assert_eq!(catch_up_done(&app).await["found"], 0);
    let ctx = context(1);
    let live = samples::text_received(&ctx, "wamid.ASK", "where is my order?");
    assert_eq!(deliver_on_line(&app, RECEIVED, &live).await, 200);
    settled_jobs(&app, 1).await;
    let reply = sim.sends().pop().expect("the echo reply");
    app.stop().await;

    // While the server is down the customer receives and reads the reply; Kapso gives up on
    // both status webhooks.
    let statuses = [MessageStatus::Delivered, MessageStatus::Read]
        .map(|status| samples::status_update(&ctx, &reply.wamid, status, &reply.body, &[]));
    for (status, payload) in [MessageStatus::Delivered, MessageStatus::Read]
        .into_iter()
        .zip(statuses.clone())
    {
        missed_deliveries(&sim, status.event_type(), vec![payload]).await;
    }

    app.start_again().await;
    let status = catch_up_done(&app).await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["found"], 1, "{status}");
    // Kapso's list shows only the newest status: `read` comes back, `delivered` cannot.
    let pool = app.db().await;
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_type, flags FROM events WHERE event_type != ?1 ORDER BY id")
            .bind(RECEIVED)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(
        stored,
        vec![(
            "whatsapp.message.read".to_owned(),
            Some("backfilled".to_owned())
        )]
    );
    let jobs = settled_jobs(&app, 2).await;
    assert!(
        jobs.iter().any(|j| j.0 == "seen" && j.1 == "done"),
        "{jobs:?}"
    );

    // Kapso's late `read` webhook is a duplicate.
    assert_eq!(
        deliver_on_line(&app, "whatsapp.message.read", &statuses[1]).await,
        200
    );
    assert_eq!(
        app.count("events").await,
        2,
        "the message and its read status"
    );

    // With `catch_up.statuses = false`, outbound messages are not read.
    app.stop().await;
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    let config = Config::parse(
        "test.toml",
        &text.replace("[catch_up]\n", "[catch_up]\nstatuses = false\n"),
        |_| None,
    )
    .unwrap();
    let report = run_standalone(
        &config,
        RunOptions {
            since_ms: Some(3_600_000),
            dry_run: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.numbers[0].pages, 1, "{report:?}");
}

/// A message sent moments ago may still reach the server through Kapso's webhook retries, with
/// the payload catch-up cannot rebuild (`is_new_conversation`, ...): catch-up leaves it for
/// `webhook_grace`, and a later run takes it if no webhook brought it.
#[tokio::test]
async fn messages_younger_than_the_webhook_grace_are_left_to_kapsos_retries() {
    let sim = sim().await;
    missed_while_down(&sim, &[("wamid.OLD", "since this morning")], &context(600)).await;
    missed_while_down(&sim, &[("wamid.NEW", "just now")], &context(30)).await;
    let app = TestApp::spawn_with(&line_config(
        &sim,
        "",
        "on_startup = false\nwebhook_grace = \"2m\"\n",
    ))
    .await;
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    drop(app);
    let config = Config::parse("test.toml", &text, |_| None).unwrap();

    let first = run_standalone(&config, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (first.numbers[0].new, first.numbers[0].recent),
        (1, 1),
        "{first:?}"
    );

    // No webhook came for it; once it has aged past the grace, the next run takes it: the
    // checkpoint did not move past it.
    let aged = Config::parse(
        "test.toml",
        &text.replace("webhook_grace = \"2m\"", "webhook_grace = \"10s\""),
        |_| None,
    )
    .unwrap();
    let second = run_standalone(&aged, RunOptions::default()).await.unwrap();
    assert_eq!(
        (
            second.numbers[0].new,
            second.numbers[0].already_stored,
            second.numbers[0].recent
        ),
        (1, 1, 0),
        "{second:?}"
    );
}
