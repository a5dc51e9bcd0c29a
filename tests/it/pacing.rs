//! Send pacing per business number against a simulated Kapso that enforces Meta's per-number
//! throughput limit (130429 over it).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::clock::Clock;
use switchboard::kapso::KapsoClient;
use switchboard::kapso_sim::{
    RecordedSend, ScriptedResponse, SendLimit, SimConfig, SimPhoneNumber, SimulatedKapso,
};
use switchboard::metrics::Metrics;
use switchboard::pacing::{Pacer, Rates};

use crate::payloads::{batch, message_received};
use crate::test_app::{kapso_headers, metric, TestApp, SECRET};
use crate::user_service::UserService;
use tokio::task::JoinSet;

const RECEIVED: &str = "whatsapp.message.received";
const API_KEY: &str = "test-api-key";
const BUSY: &str = "106540352242922";
const QUIET: &str = "106540352242923";
/// Long enough for a slow, shared machine; the tests poll, they never sleep this long.
const WAIT: Duration = Duration::from_secs(90);

async fn sim(limit: SendLimit) -> SimulatedKapso {
    SimulatedKapso::start(SimConfig {
        api_key: API_KEY.to_owned(),
        phone_numbers: vec![
            SimPhoneNumber::new(BUSY, "+1 555-000-9999"),
            SimPhoneNumber::new(QUIET, "+1 555-000-9998"),
        ],
        send_limit: Some(limit),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// An echo route; `rates` is the `[kapso.send_rates]` table.
fn config(sim: &SimulatedKapso, rates: &str, max_attempts: u32) -> String {
    let echo = "[[routes]]\nname = \"echo\"\non = \"whatsapp.message.received\"\nhandler = { kind = \"reply\", text = \"echo: {{message.text}}\" }\n";
    config_with_route(sim, rates, echo).replace(
        "max_attempts = 1\n",
        &format!("max_attempts = {max_attempts}\n"),
    )
}

/// `route` (a `[[routes]]` entry), one attempt per job unless replaced.
fn config_with_route(sim: &SimulatedKapso, rates: &str, route: &str) -> String {
    format!(
        r#"
[kapso]
base_url = "{base}"
api_key = "{API_KEY}"
max_retries = 0
timeout_ms = 5000

[kapso.send_rates]
{rates}

[jobs]
workers = 8
max_attempts = 1
backoff_base_ms = 20
backoff_max_ms = 100
poll_interval_ms = 200

[buffer]
enabled = false

{route}"#,
        base = sim.base_url()
    )
}

/// `count` inbound messages to `number`, each in its own conversation (so nothing but the
/// pace orders them), delivered as Kapso batches of 4 (the test server takes bodies up to
/// 4 KiB), 16 deliveries at a time so the backlog builds faster than it drains.
async fn deliver_backlog(app: &TestApp, number: &str, count: usize) {
    let items: Vec<Value> = (0..count)
        .map(|i| {
            let mut item = message_received(
                &format!("wamid.{number}.{i}"),
                &format!("conv-{number}-{i}"),
                "hi",
            );
            item["phone_number_id"] = json!(number);
            item["conversation"]["phone_number_id"] = json!(number);
            item
        })
        .collect();
    let url = format!("{}/webhooks/support", app.base_url);
    let mut deliveries = JoinSet::new();
    for chunk in items.chunks(4) {
        let body = serde_json::to_vec(&batch(chunk.to_vec())).unwrap();
        let (client, url) = (app.client.clone(), url.clone());
        deliveries.spawn(async move {
            let headers = kapso_headers(SECRET, RECEIVED, &body, None);
            let response = client.post(url).headers(headers).body(body).send();
            response.await.unwrap().status().as_u16()
        });
        while deliveries.len() >= 16 {
            assert_eq!(deliveries.join_next().await.unwrap().unwrap(), 200);
        }
    }
    while let Some(status) = deliveries.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
}

fn sends_of<'a>(sends: &'a [RecordedSend], number: &str) -> Vec<&'a RecordedSend> {
    let mut of: Vec<_> = sends
        .iter()
        .filter(|s| s.phone_number_id == number)
        .collect();
    of.sort_by_key(|s| s.accepted_at);
    of
}

fn span(sends: &[&RecordedSend]) -> Duration {
    match (sends.first(), sends.last()) {
        (Some(first), Some(last)) => last.accepted_at.duration_since(first.accepted_at),
        _ => Duration::ZERO,
    }
}

/// Jobs by (state, attempts), once every one of `expected` jobs is done or dead.
async fn settled(app: &TestApp, expected: i64) -> Vec<(String, i64)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pool = app.db().await;
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, attempts FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        let finished = rows
            .iter()
            .filter(|r| r.0 == "done" || r.0 == "dead")
            .count();
        if finished as i64 >= expected {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{finished} of {expected} jobs finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backlog_on_one_number_leaves_at_its_pace_while_another_keeps_full_speed() {
    // Meta's limit as the sim enforces it: 250 messages/s per number, bursts of up to 100
    // (so a send that leaves a little late does not make the next ones a "burst").
    let pace = 250.0;
    let sim = sim(SendLimit {
        per_second: pace,
        burst: 100.0,
    })
    .await;
    let rates = format!("\"{BUSY}\" = {pace}\n\"{QUIET}\" = {pace}");
    let app = TestApp::spawn_with(&config(&sim, &rates, 8)).await;

    deliver_backlog(&app, BUSY, 1_000).await;
    deliver_backlog(&app, QUIET, 100).await;
    let sends = sim.wait_for_sends(1_100, WAIT).await;

    assert_eq!(sim.throttled(), Vec::<String>::new(), "not one 130429");
    let busy = sends_of(&sends, BUSY);
    let quiet = sends_of(&sends, QUIET);
    assert_eq!((busy.len(), quiet.len()), (1_000, 100));
    // At the pace, never faster: 999 intervals of 4 ms between the first and the last (a
    // little less if the first one reached the sim late).
    let busy_span = span(&busy);
    assert!(
        busy_span >= Duration::from_millis(3_996 - 400),
        "1,000 sends in {busy_span:?}: faster than 250/s"
    );
    // The quiet number did not queue behind the backlog: its sends were all accepted while
    // the busy number still had more than a second of its backlog to go.
    let quiet_done = quiet.last().unwrap().accepted_at;
    let busy_after = busy.iter().filter(|s| s.accepted_at > quiet_done).count();
    assert!(
        busy_after >= 250,
        "the quiet number finished with only {busy_after} busy sends left"
    );
    let jobs = settled(&app, 1_100).await;
    assert!(
        jobs.iter().all(|j| j == &("done".to_owned(), 1)),
        "{jobs:?}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "switchboard_sends_throttled_total", &[]),
        0.0
    );
    assert!(
        metric(&metrics, "switchboard_send_pacing_wait_seconds_count", &[]) >= 1_100.0,
        "every send went through the pacer"
    );
}

#[tokio::test]
async fn throttling_answers_slow_the_number_and_never_use_up_attempts() {
    // switchboard is told the number may send 400/s; Meta allows 100/s (bursts of 10).
    let sim = sim(SendLimit {
        per_second: 100.0,
        burst: 10.0,
    })
    .await;
    let rates = format!("\"{BUSY}\" = 400");
    // One attempt each: a throttling answer counted as an attempt would dead-letter the job.
    let app = TestApp::spawn_with(&config(&sim, &rates, 1)).await;
    deliver_backlog(&app, BUSY, 60).await;

    let sends = sim.wait_for_sends(60, WAIT).await;
    assert_eq!(sends.len(), 60);
    let throttled = sim.throttled();
    assert!(
        !throttled.is_empty(),
        "the sim never throttled: the test proves nothing"
    );
    let jobs = settled(&app, 60).await;
    assert!(
        jobs.iter().all(|j| j == &("done".to_owned(), 1)),
        "a throttled send cost an attempt: {jobs:?}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "switchboard_sends_throttled_total",
            &[&format!("phone_number_id=\"{BUSY}\""), "limit=\"number\""]
        ),
        throttled.len() as f64
    );
}

#[tokio::test]
async fn the_rate_comes_from_kapsos_phone_number_object_when_it_names_one() {
    let mut high = SimPhoneNumber::new(BUSY, "+1 555-000-9999");
    high.throughput_tier = Some("HIGH".to_owned());
    // Kapso's documented example value: a messaging-limit tier, not a rate.
    let limit_tier = SimPhoneNumber::new(QUIET, "+1 555-000-9998");
    let sim = SimulatedKapso::start(SimConfig {
        api_key: API_KEY.to_owned(),
        phone_numbers: vec![high, limit_tier],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = KapsoClient::new(&sim.kapso_config()).unwrap();
    let rates = Rates {
        default: 80.0,
        overrides: Default::default(),
    };
    let pacer = Pacer::new(rates, Clock::System, std::sync::Arc::new(Metrics::new()));
    assert_eq!(pacer.load_tier_rates(&client).await, 1);
    assert_eq!(pacer.rate_of(BUSY), 1_000.0);
    assert_eq!(pacer.rate_of(QUIET), 80.0);

    // Kapso unreachable: the default applies.
    drop(sim);
    let pacer = Pacer::new(
        Rates {
            default: 80.0,
            overrides: Default::default(),
        },
        Clock::System,
        std::sync::Arc::new(Metrics::new()),
    );
    assert_eq!(pacer.load_tier_rates(&client).await, 0);
    assert_eq!(pacer.rate_of(BUSY), 80.0);
}

#[tokio::test]
async fn a_job_paced_between_its_messages_sends_each_once() {
    // 10 jobs, each answered by the user's service with 4 messages, on a number paced at
    // 1,000/s: most jobs give their worker back between two of their messages and run again
    // a millisecond or two later, before a sent mark queued without waiting would commit.
    let sim = sim(SendLimit {
        per_second: 1_000.0,
        burst: 50.0,
    })
    .await;
    let service = UserService::start().await;
    let parts: Vec<Value> = (1..=4)
        .map(|k| json!({ "text": format!("part {k}") }))
        .collect();
    for _ in 0..10 {
        service.respond(200, json!({ "messages": parts }));
    }
    let route = format!(
        "[[routes]]\nname = \"bot\"\non = \"whatsapp.message.received\"\nhandler = {{ kind = \"http\", url = \"{}\", timeout_ms = 5000 }}\n",
        service.url
    );
    let config = config_with_route(&sim, &format!("\"{BUSY}\" = 1000"), &route);
    let app = TestApp::spawn_with(&config).await;
    deliver_backlog(&app, BUSY, 10).await;

    let sends = sim.wait_for_sends(40, WAIT).await;
    let jobs = settled(&app, 10).await;
    assert!(
        jobs.iter().all(|j| j == &("done".to_owned(), 1)),
        "{jobs:?}"
    );
    assert_eq!(sim.sends().len(), 40, "no message went twice");
    for k in 1..=4 {
        let text = format!("part {k}");
        let count = sends
            .iter()
            .filter(|s| s.body["text"]["body"] == text)
            .count();
        assert_eq!(count, 10, "{text}");
    }
    assert_eq!(service.received().len(), 10, "each plan was made once");
    assert_eq!(sim.throttled(), Vec::<String>::new());
}

#[tokio::test]
async fn a_pair_rate_limit_holds_back_that_recipient_only() {
    let sim = sim(SendLimit {
        per_second: 1_000.0,
        burst: 100.0,
    })
    .await;
    // Meta's pair rate limit on the first send, asking for a 1 s wait.
    sim.script(ScriptedResponse::throttled(400, 131056).with_retry_after("1"));
    let app = TestApp::spawn_with(&config(&sim, "", 1)).await;
    let to = |recipient: &str, wamid: &str| {
        let mut item = message_received(wamid, &format!("conv-{recipient}"), "hi");
        item["message"]["from"] = json!(recipient);
        item
    };
    assert_eq!(
        app.deliver(RECEIVED, &to("15550100201", "wamid.P1")).await,
        200
    );
    let deadline = Instant::now() + WAIT;
    while !sim.requests().iter().any(|r| r.status == 400) {
        assert!(
            Instant::now() < deadline,
            "the scripted 131056 was never answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let throttled_at = Instant::now();
    assert_eq!(
        app.deliver(RECEIVED, &to("15550100202", "wamid.P2")).await,
        200
    );

    let sends = sim.wait_for_sends(2, WAIT).await;
    let recipients: Vec<_> = sends.iter().map(|s| s.body["to"].clone()).collect();
    assert_eq!(
        recipients,
        [json!("15550100202"), json!("15550100201")],
        "the other recipient did not wait for the paused one"
    );
    assert!(
        sends[1].accepted_at >= throttled_at + Duration::from_millis(900),
        "the paused recipient was messaged again before its Retry-After"
    );
    let jobs = settled(&app, 2).await;
    assert!(
        jobs.iter().all(|j| j == &("done".to_owned(), 1)),
        "{jobs:?}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "switchboard_sends_throttled_total",
            &["limit=\"recipient\""]
        ),
        1.0
    );
}
