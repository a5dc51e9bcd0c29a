//! Pausing and resuming a route, through the admin API, the console and `switchboard routes`:
//! while paused, its events are stored and its jobs created but none runs (other routes go
//! on); resumed, its jobs run in their original order, each once; the pause survives a
//! restart; a job running when its route is paused finishes its attempt, and its retry waits.

use std::time::Duration;

use serde_json::Value;

use crate::payloads::text_at;
use crate::pipeline::{pipeline_config, sim};
use crate::test_app::{metric, TestApp};
use crate::user_service::UserService;

const TOKEN: &str = "adm_4f1c2b9e7d6a5f3c8b0e1d2a";
const WAIT: Duration = Duration::from_secs(15);

/// `echo` answers each message with its own text (so the order of the replies shows); `audit`
/// logs every message and is never paused.
const ROUTES: &str = r#"
[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "echo: {{message.text}}" }

[[routes]]
name = "audit"
on = "whatsapp.message.*"
handler = { kind = "log" }
"#;

fn config(sim: &switchboard::kapso_sim::SimulatedKapso) -> String {
    pipeline_config(sim, &format!("\n[admin]\ntoken = \"{TOKEN}\"\n{ROUTES}"))
}

async fn api(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = app
        .client
        .request(method, format!("{}{path}", app.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    api(app, reqwest::Method::POST, path).await
}

async fn route_of(app: &TestApp, name: &str) -> Value {
    let (status, body) = api(app, reqwest::Method::GET, "/admin/api/routes").await;
    assert_eq!(status, 200);
    body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("route {name} not listed: {body}"))
}

/// Delivers messages `texts` of one conversation, a second apart.
async fn deliver_texts(app: &TestApp, prefix: &str, texts: &[&str]) {
    for (i, text) in texts.iter().enumerate() {
        let body = text_at(
            &format!("wamid.{prefix}{i}"),
            "conv-pause",
            text,
            1_764_098_000 + i as i64,
            false,
        );
        assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    }
}

/// `(route, state)` of every job, oldest first.
async fn jobs(app: &TestApp) -> Vec<(String, String)> {
    let pool = app.db().await;
    let rows = sqlx::query_as("SELECT route, state FROM jobs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

/// Waits until `audit` has finished `done` jobs and `echo` has `held` jobs held by the pause
/// (created, queued, and out of the schedule: the `paused` gauge counts them).
async fn until_held(app: &TestApp, done: usize, held: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = jobs(app).await;
        let count = |route: &str, state: &str| {
            rows.iter()
                .filter(|(r, s)| r == route && s == state)
                .count()
        };
        let gauge = metric(
            &app.metrics().await,
            "switchboard_jobs",
            &["state=\"paused\""],
        );
        if count("audit", "done") == done && count("echo", "queued") == held && gauge == held as f64
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs not held as expected: {rows:?}, paused gauge {gauge}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn texts(sends: &[switchboard::kapso_sim::RecordedSend]) -> Vec<String> {
    sends
        .iter()
        .map(|s| {
            s.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Waits until every job is done, then checks that exactly `expected` replies went out.
async fn settled_with_replies(
    app: &TestApp,
    sim: &switchboard::kapso_sim::SimulatedKapso,
    expected: &[&str],
) {
    let sends = sim.wait_for_sends(expected.len(), WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !jobs(app).await.iter().all(|(_, state)| state == "done") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            jobs(app).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(texts(&sends), expected);
    assert_eq!(texts(&sim.sends()), expected, "each job ran once");
}

#[tokio::test]
async fn a_paused_route_keeps_its_jobs_waiting_and_runs_them_in_order_once_resumed() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&config(&sim)).await;

    let (status, paused) = post(&app, "/admin/api/routes/echo/pause").await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["changed"], true);
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_by"], "admin api");
    let paused_at = paused["paused_at"].as_i64().expect("a time");
    let (status, again) = post(&app, "/admin/api/routes/echo/pause").await;
    assert_eq!(status, 200);
    assert_eq!(again["changed"], false, "pausing twice is harmless");
    assert_eq!(again["paused_at"], paused_at, "and keeps the first time");

    deliver_texts(&app, "P", &["one", "two", "three"]).await;
    until_held(&app, 3, 3).await;
    assert_eq!(app.count("events").await, 3, "every event is stored");
    assert!(sim.sends().is_empty(), "no job of the paused route ran");
    let echo = route_of(&app, "echo").await;
    assert_eq!(echo["paused"], true);
    assert_eq!(echo["handler"], "reply");
    assert_eq!(echo["on"], serde_json::json!(["whatsapp.message.received"]));
    assert_eq!(echo["jobs"]["queued"], 3);
    let audit = route_of(&app, "audit").await;
    assert_eq!(audit["paused"], false);
    assert_eq!(audit["on"], serde_json::json!(["whatsapp.message.*"]));
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "switchboard_paused_routes", &[]), 1.0);

    let (status, resumed) = post(&app, "/admin/api/routes/echo/resume").await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["changed"], true);
    assert_eq!(resumed["paused"], false);
    settled_with_replies(&app, &sim, &["echo: one", "echo: two", "echo: three"]).await;
    let (_, again) = post(&app, "/admin/api/routes/echo/resume").await;
    assert_eq!(again["changed"], false, "resuming twice is harmless");
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "switchboard_paused_routes", &[]), 0.0);
    assert_eq!(
        metric(&metrics, "switchboard_jobs", &["state=\"paused\""]),
        0.0
    );
}

#[tokio::test]
async fn a_pause_survives_a_restart() {
    let sim = sim().await;
    let mut app = TestApp::spawn_with(&config(&sim)).await;
    assert_eq!(post(&app, "/admin/api/routes/echo/pause").await.0, 200);
    deliver_texts(&app, "R", &["before"]).await;
    until_held(&app, 1, 1).await;

    app.restart().await;
    deliver_texts(&app, "S", &["after"]).await;
    until_held(&app, 2, 2).await;
    assert!(sim.sends().is_empty(), "still paused after the restart");
    assert_eq!(route_of(&app, "echo").await["paused"], true);

    assert_eq!(post(&app, "/admin/api/routes/echo/resume").await.0, 200);
    settled_with_replies(&app, &sim, &["echo: before", "echo: after"]).await;
}

#[tokio::test]
async fn unknown_routes_are_not_found_and_the_token_is_required() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&config(&sim)).await;
    for path in [
        "/admin/api/routes/nope/pause",
        "/admin/api/routes/nope/resume",
    ] {
        let (status, body) = post(&app, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    }
    for (method, path) in [
        ("GET", "/admin/api/routes"),
        ("POST", "/admin/api/routes/echo/pause"),
        ("POST", "/admin/api/routes/echo/resume"),
    ] {
        for token in [None, Some("wrong-token-wrong-token-wrong")] {
            let mut request = app.client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", app.base_url),
            );
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            assert_eq!(request.send().await.unwrap().status(), 401, "{path}");
        }
    }
    assert_eq!(app.count("route_pauses").await, 0, "nothing was paused");
}

#[tokio::test]
async fn the_cli_pauses_and_resumes_a_running_server_and_reports_routes_gone_from_the_config() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&config(&sim)).await;
    let config_path = app.config_path();
    let config = config_path.to_str().unwrap();
    let run = |args: &[&str]| {
        let output = crate::cli::switchboard(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let out = run(&["routes", "pause", "echo", "--config", config]);
    assert!(out.contains("route `echo` paused"), "{out}");
    // The server applies it within jobs.poll_interval_ms: the gauge shows when it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&app.metrics().await, "switchboard_paused_routes", &[]) != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never paused echo"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliver_texts(&app, "C", &["first", "second"]).await;
    until_held(&app, 2, 2).await;
    let listed: Value =
        serde_json::from_str(&run(&["routes", "list", "--json", "--config", config])).unwrap();
    let echo = &listed.as_array().unwrap()[0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["paused"], true);
    assert_eq!(echo["paused_by"], "cli");
    assert_eq!(echo["jobs"]["queued"], 2);
    let table = run(&["routes", "list", "--config", config]);
    assert!(table.contains("paused since"), "{table}");

    // A config without `echo` lists the pause as a route the config no longer has.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n\n[[webhooks]]\nname = \"support\"\nsecrets = [\"whsec_x\"]\n",
            app.db_path.display()
        ),
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let gone: Value =
        serde_json::from_str(&run(&["routes", "list", "--json", "--config", other])).unwrap();
    assert_eq!(gone[0]["name"], "echo");
    assert_eq!(gone[0]["configured"], false);
    assert_eq!(gone[0]["paused"], true);
    let unknown = crate::cli::switchboard(&["routes", "pause", "nope", "--config", config]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no route named `nope`"));

    let out = run(&["routes", "resume", "echo", "--config", config]);
    assert!(out.contains("route `echo` resumed"), "{out}");
    settled_with_replies(&app, &sim, &["echo: first", "echo: second"]).await;
}

/// `(state, attempts)` of job `id`.
async fn job_state(app: &TestApp, id: i64) -> (String, i64) {
    let pool = app.db().await;
    let row = sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row
}

#[tokio::test]
async fn a_job_running_when_its_route_is_paused_finishes_its_attempt_and_its_retry_waits() {
    let sim = sim().await;
    let service = UserService::start().await;
    let bot = format!(
        "\n[admin]\ntoken = \"{TOKEN}\"\n[[routes]]\nname = \"bot\"\non = \"whatsapp.message.received\"\nhandler = {{ kind = \"http\", url = \"{}\", timeout_ms = 5000 }}\n",
        service.url
    );
    let app = TestApp::spawn_with(&pipeline_config(&sim, &bot)).await;
    service.gate("first");
    service.respond(500, serde_json::json!({ "error": "busy" }));
    deliver_texts(&app, "H", &["first"]).await;
    service.wait_for(1).await;

    assert_eq!(post(&app, "/admin/api/routes/bot/pause").await.0, 200);
    deliver_texts(&app, "I", &["second"]).await;
    let gauge = || async {
        metric(
            &app.metrics().await,
            "switchboard_jobs",
            &["state=\"paused\""],
        )
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while gauge().await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second job not held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The running attempt ends (a 500: retry later); its retry waits for the resume too.
    service.open("first");
    while !(gauge().await == 2.0 && job_state(&app, 1).await == ("queued".to_owned(), 1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry was not held: {:?}",
            job_state(&app, 1).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.received().len(), 1, "no new run while paused");

    assert_eq!(post(&app, "/admin/api/routes/bot/resume").await.0, 200);
    let received = service.wait_for(3).await;
    let texts: Vec<Vec<String>> = received.iter().map(|r| r.texts()).collect();
    assert_eq!(
        texts,
        [vec!["first"], vec!["first"], vec!["second"]],
        "the retry first, then the next message of the conversation"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while jobs(&app).await.iter().any(|(_, state)| state != "done") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            jobs(&app).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.received().len(), 3, "each run once");
}
