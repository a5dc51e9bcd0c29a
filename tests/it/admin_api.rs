//! The admin API under `/admin/api`: off without `admin.token`, every route refused without the
//! right bearer token, and with it: events found by text, one event's path (delivery, job,
//! outbound), and a dead job retried until its reply is sent.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::payloads::{message_received, text_at};
use crate::pipeline::{pipeline_config, refuse_next_send, settled_jobs, sim, LATE_ROUTE};
use crate::test_app::TestApp;

const TOKEN: &str = "adm_4f1c2b9e7d6a5f3c8b0e1d2a";
const WAIT: Duration = Duration::from_secs(15);

/// A route that acknowledges every message.
const ACK_ROUTE: &str = r#"
[[routes]]
name = "ack"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "got it" }
"#;

fn admin_config(rest: &str) -> String {
    format!("\n[admin]\ntoken = \"{TOKEN}\"\n{rest}")
}

/// Every admin route, as (method, path).
const ROUTES: [(&str, &str); 14] = [
    ("GET", "/admin/api/events"),
    ("POST", "/admin/api/events/1/replay"),
    ("GET", "/admin/api/conversations"),
    ("GET", "/admin/api/conversations/conv-a"),
    ("GET", "/admin/api/events/1"),
    ("GET", "/admin/api/quarantine"),
    ("GET", "/admin/api/jobs"),
    ("GET", "/admin/api/jobs/1"),
    ("POST", "/admin/api/jobs/1/retry"),
    ("POST", "/admin/api/jobs/retry"),
    ("GET", "/admin/api/routes"),
    ("POST", "/admin/api/routes/ack/pause"),
    ("POST", "/admin/api/routes/ack/resume"),
    ("GET", "/admin/api/no-such-route"),
];

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = call(app, "GET", path, Some(TOKEN)).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn without_a_token_in_the_config_the_admin_api_does_not_exist() {
    let app = TestApp::spawn().await;
    for (method, path) in ROUTES {
        let response = call(&app, method, path, Some(TOKEN)).await;
        assert_eq!(response.status(), 404, "{method} {path}");
    }
}

#[tokio::test]
async fn every_admin_route_refuses_a_missing_or_wrong_token() {
    let app = TestApp::spawn_with(&admin_config("")).await;
    let wrong = format!("{TOKEN}x");
    for (method, path) in ROUTES {
        for token in [None, Some(wrong.as_str()), Some(""), Some(&TOKEN[1..])] {
            let response = call(&app, method, path, token).await;
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            assert!(response.headers().contains_key("www-authenticate"));
            let body = response.text().await.unwrap();
            assert!(!body.contains(TOKEN), "the token is never echoed: {body}");
        }
    }
    // The webhooks themselves are untouched by the admin API.
    let body = message_received("wamid.A", "conv-a", "hello");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
}

#[tokio::test]
async fn events_are_found_by_text_and_paged_newest_first() {
    let app = TestApp::spawn_with(&admin_config("")).await;
    for (i, text) in ["where is my order", "hello", "order 42 is late", "thanks"]
        .iter()
        .enumerate()
    {
        let body = message_received(&format!("wamid.T{i}"), "conv-t", text);
        assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    }
    let found = get_json(&app, "/admin/api/events?text=order&limit=10").await;
    let texts: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["order 42 is late", "where is my order"]);
    assert!(found["next"].is_null(), "a short page is the last one");

    let first = get_json(&app, "/admin/api/events?limit=3").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let next = first["next"].as_i64().expect("a full page has a cursor");
    let second = get_json(&app, &format!("/admin/api/events?limit=3&before={next}")).await;
    let rest: Vec<&str> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["where is my order"]);

    let bad = call(&app, "GET", "/admin/api/events?limit=5000", Some(TOKEN)).await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert!(bad["error"].as_str().unwrap().contains("1 to 200"), "{bad}");
}

#[tokio::test]
async fn events_are_found_by_flag_and_by_when_they_arrived() {
    let app = TestApp::spawn_with(&admin_config("")).await;
    for (wamid, text) in [("wamid.OLD", "an hour ago"), ("wamid.NEW", "just now")] {
        let body = message_received(wamid, "conv-w", text);
        assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    }
    // An event type Kapso may add later: stored, flagged `unknown_event_type`.
    let odd = serde_json::json!({"message": {"id": "wamid.ODD"}, "phone_number_id": "1"});
    assert_eq!(app.deliver("whatsapp.something.new", &odd).await, 200);
    let pool = app.db().await;
    sqlx::query(
        "UPDATE events SET received_at = received_at - 3600000 WHERE message_id = 'wamid.OLD'",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let ids = |page: &Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap_or("-").to_owned())
            .collect()
    };

    let flagged = get_json(&app, "/admin/api/events?flag=unknown_event_type").await;
    assert_eq!(ids(&flagged), ["wamid.ODD"]);
    assert_eq!(
        ids(&get_json(&app, "/admin/api/events?flag=backfilled").await),
        Vec::<String>::new()
    );

    let half_an_hour_ago = switchboard::clock::now_ms() - 30 * 60_000;
    let since = switchboard::window::format_rfc3339(half_an_hour_ago).unwrap();
    let recent = get_json(
        &app,
        &format!("/admin/api/events?type=whatsapp.message.*&since={since}"),
    )
    .await;
    assert_eq!(ids(&recent), ["wamid.NEW"]);
    let older = get_json(&app, &format!("/admin/api/events?until={half_an_hour_ago}")).await;
    assert_eq!(ids(&older), ["wamid.OLD"]);

    let bad = call(
        &app,
        "GET",
        "/admin/api/events?since=yesterday",
        Some(TOKEN),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("since must be an RFC 3339 time"),
        "{bad}"
    );

    // The CLI filters the same way.
    let config = app.config_path();
    let out = crate::cli::switchboard(&[
        "events",
        "list",
        "--since",
        "30m",
        "--flag",
        "unknown_event_type",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["message_id"], "wamid.ODD");
}

#[tokio::test]
async fn a_dead_job_is_seen_with_its_event_and_retried_until_the_reply_is_sent() {
    let sim = sim().await;
    refuse_next_send(&sim);
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin_config(LATE_ROUTE))).await;
    let body = text_at(
        "wamid.LATE",
        "conv-late",
        "<script>alert(1)</script>",
        1_764_098_000,
        false,
    );
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "dead");

    let dead = get_json(&app, "/admin/api/jobs?state=dead").await;
    let job = &dead["jobs"][0];
    assert_eq!(job["route"], "late");
    assert!(
        job["last_error"].as_str().unwrap().contains("131047"),
        "{job}"
    );
    let event_id = job["event_ids"][0].as_i64().unwrap();

    let path = get_json(&app, &format!("/admin/api/events/{event_id}")).await;
    assert_eq!(path["event"]["message_id"], "wamid.LATE");
    assert_eq!(
        path["event"]["text"], "<script>alert(1)</script>",
        "JSON carries the customer's text as data"
    );
    assert_eq!(path["delivery"]["webhook"], "support");
    assert_eq!(path["delivery"]["result"], "stored");
    assert_eq!(
        path["routes"],
        serde_json::json!(["late"]),
        "the routes in force that match it"
    );
    assert_eq!(path["jobs"][0]["job"]["state"], "dead");

    let job_id = job["id"].as_i64().unwrap();
    let retried = call(
        &app,
        "POST",
        &format!("/admin/api/jobs/{job_id}/retry"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(retried.status(), 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "sorry for the wait");
    let done = settled_jobs(&app, 1).await;
    assert_eq!(done[0].1, "done");

    let shown = get_json(&app, &format!("/admin/api/jobs/{job_id}")).await;
    assert_eq!(shown["outbound"][0]["state"], "sent");
    assert_eq!(
        shown["outbound"][0]["body"]["text"]["body"],
        "sorry for the wait"
    );

    let again = call(
        &app,
        "POST",
        &format!("/admin/api/jobs/{job_id}/retry"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(again.status(), 409, "a done job is not sent again");
    let missing = call(&app, "GET", "/admin/api/events/999999", Some(TOKEN)).await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_real_binary_never_logs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"sqlite://{}\"\n\n[[webhooks]]\nname = \"support\"\nsecrets = [\"whsec_x\"]\n\n[admin]\ntoken = \"{TOKEN}\"\n",
            dir.path().join("switchboard.db").display()
        ),
    )
    .unwrap();
    let server =
        tokio::task::spawn_blocking(move || crate::server_process::ServerProcess::start(&config))
            .await
            .unwrap();
    let client = reqwest::Client::new();
    for token in [TOKEN, "wrong-token-wrong-token-wrong"] {
        for path in ["/admin/api/events", "/admin/api/jobs/7/retry"] {
            let _ = client
                .get(server.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
        }
    }
    let ok = client
        .get(server.url("/admin/api/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.terminate();
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(30));
        (status, server.log_lines())
    })
    .await
    .unwrap();
    assert!(exit.0.success());
    for line in &exit.1 {
        assert!(!line.contains(TOKEN), "the token was logged: {line}");
    }
}

#[tokio::test]
async fn a_conversation_shows_the_customers_message_our_reply_its_status_and_the_window() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin_config(ACK_ROUTE))).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = text_at(
        "wamid.IN1",
        "conv-tl",
        "is my order shipped?",
        now - 60,
        false,
    );
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
    let wamid = sends[0].wamid.clone();
    let mut status = crate::payloads::message_status(&wamid, "delivered");
    status["conversation"]["id"] = "conv-tl".into();
    status["message"]["timestamp"] = now.to_string().into();
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );

    let list = get_json(&app, "/admin/api/conversations").await;
    assert_eq!(list["conversations"][0]["conversation_id"], "conv-tl");
    let view = get_json(&app, "/admin/api/conversations/conv-tl").await;
    let events = view["events"].as_array().unwrap();
    assert_eq!(events[0]["text"], "is my order shipped?");
    assert_eq!(events[1]["event_type"], "whatsapp.message.delivered");
    assert_eq!(view["outbound"][0]["body"]["text"]["body"], "got it");
    assert_eq!(view["outbound"][0]["wamid"], wamid.as_str());
    assert_eq!(view["outbound"][0]["status"], "delivered");
    assert_eq!(view["window"]["open"], true);
    assert_eq!(
        view["window"]["closes_at"].as_i64(),
        Some((now - 60) * 1000 + 24 * 3600 * 1000)
    );
    let missing = call(
        &app,
        "GET",
        "/admin/api/conversations/conv-none",
        Some(TOKEN),
    )
    .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_replay_skips_routes_that_answered_unless_forced_and_is_recorded() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin_config(ACK_ROUTE))).await;
    let body = message_received("wamid.R1", "conv-r", "hello");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    sim.wait_for_sends(1, WAIT).await;
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
    let event_id = get_json(&app, "/admin/api/events").await["events"][0]["id"]
        .as_i64()
        .unwrap();

    let plain = call(
        &app,
        "POST",
        &format!("/admin/api/events/{event_id}/replay"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(plain.status(), 200);
    let plain: Value = plain.json().await.unwrap();
    assert_eq!(plain["matched"], serde_json::json!(["ack"]));
    assert_eq!(plain["jobs"].as_array().unwrap().len(), 0, "{plain}");
    assert_eq!(plain["skipped"][0]["route"], "ack");
    assert_eq!(plain["skipped"][0]["state"], "done");
    assert_eq!(app.count("jobs").await, 1, "no job, so no second answer");

    let forced = call(
        &app,
        "POST",
        &format!("/admin/api/events/{event_id}/replay?force=true"),
        Some(TOKEN),
    )
    .await;
    let forced: Value = forced.json().await.unwrap();
    let job_id = forced["jobs"][0][1].as_i64().expect("a new job");
    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(sends[1].body["text"]["body"], "got it");
    let job = get_json(&app, &format!("/admin/api/jobs/{job_id}")).await;
    assert_eq!(job["job"]["replay"], true);
    let path = get_json(&app, &format!("/admin/api/events/{event_id}")).await;
    assert_eq!(path["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(path["jobs"][0]["job"]["replay"], false);

    let missing = call(&app, "POST", "/admin/api/events/424242/replay", Some(TOKEN)).await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_cli_replays_through_the_same_operation_and_the_running_server_runs_the_job() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, ACK_ROUTE)).await;
    let body = message_received("wamid.C1", "conv-c", "hello");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    sim.wait_for_sends(1, WAIT).await;
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
    let config = app.config_path();
    let config = config.to_str().unwrap();

    let plain = crate::cli::switchboard(&["events", "replay", "1", "--config", config]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let out = String::from_utf8_lossy(&plain.stdout);
    assert!(
        out.contains("route `ack` skipped: it already has job"),
        "{out}"
    );
    assert_eq!(app.count("jobs").await, 1);

    let forced = crate::cli::switchboard(&[
        "events", "replay", "1", "--force", "--json", "--config", config,
    ]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let replayed: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(replayed["jobs"][0][0], "ack");
    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(
        sends[1].body["text"]["body"], "got it",
        "the server ran the replayed job"
    );
    // The replayed job was never dead: the count of dead jobs stays at zero.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("switchboard_jobs{state=\"dead\"} 0"),
        "{metrics}"
    );
}
