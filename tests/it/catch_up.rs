//! Catch-up after an outage: Kapso gave up delivering while switchboard was down; on start,
//! switchboard reads Kapso's message history, stores exactly the missed messages (flagged
//! `backfilled`, the webhook's dedupe key), routes each once, and a late webhook for one of them
//! is a duplicate. Real SQLite file, real HTTP on loopback, the simulated Kapso.

use std::time::Duration;

use serde_json::Value;
use switchboard::catch_up::{run_standalone, RunOptions};
use switchboard::kapso_sim::deliver::{DeliveryOptions, DeliveryTarget};
use switchboard::kapso_sim::samples::{self, SampleContext};
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

/// The pipeline config plus a number-scoped webhook `line` for the sample number.
fn line_config(sim: &SimulatedKapso, routes: &str, extra: &str) -> String {
    format!(
        "{}\n[[webhooks]]\nname = \"line\"\nsecrets = [\"{LINE_SECRET}\"]\nphone_number_id = \"{}\"\n{extra}\n",
        pipeline_config(sim, routes),
        SampleContext::default().phone_number_id
    )
}

/// A sample context whose messages were sent `ago_s` seconds ago.
fn context(ago_s: i64) -> SampleContext {
    SampleContext {
        timestamp: switchboard::clock::now_ms() / 1000 - ago_s,
        ..SampleContext::default()
    }
}

/// Kapso tries to deliver each message while switchboard is down, retries, and gives up.
async fn missed_while_down(sim: &SimulatedKapso, messages: &[(&str, &str)], ctx: &SampleContext) {
    let down = DeliveryTarget::new("http://127.0.0.1:9/webhooks/line", LINE_SECRET);
    let retries = DeliveryOptions {
        retry_delays: vec![Duration::from_millis(5), Duration::from_millis(5)],
        retry_unreachable: true,
        ..DeliveryOptions::default()
    };
    for (wamid, text) in messages {
        let payload = samples::text_received(ctx, wamid, text);
        let report = sim
            .deliver(&down, RECEIVED, vec![payload], &retries)
            .await
            .unwrap();
        assert!(!report.succeeded(), "the server is down");
    }
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
    missed_while_down(&sim, &missed, &ctx).await;

    let app = TestApp::spawn_with(&line_config(&sim, ECHO, "")).await;
    let status = catch_up_done(&app).await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["found"], 3, "{status}");
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
    let bytes = serde_json::to_vec(&late).unwrap();
    let answer = app
        .deliver_signed("line", LINE_SECRET, RECEIVED, &bytes)
        .await;
    assert_eq!(answer.status(), 200);
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
    let app = TestApp::spawn_with(&line_config(&sim, "", "[catch_up]\non_startup = false\n")).await;
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
    assert_eq!(dry.numbers[0].pages, 25);
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
