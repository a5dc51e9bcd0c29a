//! The background sync of `serve`: it never stops the server from taking deliveries, `/readyz`
//! reports its state (staying 200), and it retries until Kapso can be reached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio_util::sync::DropGuard;

use super::{sim, PUBLIC_URL};
use crate::payloads::message_received;
use crate::test_app::TestApp;

const WAIT: Duration = Duration::from_secs(15);

/// `[kapso]` at `base_url` with `api_key`, and fast startup-sync retries.
fn kapso_section(base_url: &str, api_key: &str) -> String {
    format!(
        "[kapso]\nbase_url = \"{base_url}\"\napi_key = \"{api_key}\"\nmax_retries = 0\ntimeout_ms = 5000\n[sync]\nretry_initial_ms = 20\nretry_max_ms = 100\n"
    )
}

fn public_url() -> String {
    format!("public_url = \"{PUBLIC_URL}\"")
}

/// Polls `/readyz` (which must answer 200 throughout) until `webhook_sync` satisfies `done`.
async fn sync_state(app: &TestApp, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = app.get("/readyz").await;
        assert_eq!(
            response.status(),
            200,
            "sync state must not make the server unready"
        );
        let body: Value = response.json().await.unwrap();
        let state = body["webhook_sync"].as_str().unwrap().to_owned();
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "webhook_sync stayed `{state}`");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP gate in front of the simulated Kapso: answers 503 (Kapso down) until opened, then
/// forwards every request.
struct Gate {
    url: String,
    open: Arc<AtomicBool>,
    _stop: DropGuard,
}

#[derive(Clone)]
struct GateState {
    open: Arc<AtomicBool>,
    target: String,
    http: reqwest::Client,
}

async fn forward(State(gate): State<GateState>, request: Request) -> Response {
    if !gate.open.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outbound = gate
        .http
        .request(parts.method, format!("{}{path}", gate.target))
        .body(body);
    for name in ["x-api-key", "content-type", "accept"] {
        if let Some(value) = parts.headers.get(name) {
            outbound = outbound.header(name, value);
        }
    }
    let response = outbound.send().await.unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        [("content-type", "application/json")],
        Body::from(bytes),
    )
        .into_response()
}

impl Gate {
    async fn start(target: String) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(false));
        let state = GateState {
            open: open.clone(),
            target,
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let stop = crate::test_app::serve_until_dropped(listener, app);
        Gate {
            url,
            open,
            _stop: stop,
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_rejected_api_key_at_startup_does_not_stop_serving() {
    let sim = sim().await;
    let app =
        TestApp::spawn_with_server(&public_url(), &kapso_section(&sim.base_url(), "wrong-key"))
            .await;

    let state = sync_state(&app, |s| s.starts_with("retrying:")).await;

    assert!(
        state.contains("Kapso rejected the API key (kapso.api_key)"),
        "{state}"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status(),
        200,
        "a failed sync never makes the server unready"
    );
    let last = &ready.json::<Value>().await.unwrap()["webhook_sync_last"];
    assert_eq!(last["result"], "failed", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("API key"),
        "{last}"
    );
    assert_eq!(last["last_success_at"], Value::Null, "{last}");
    let body = message_received("wamid.DURING_SYNC_FAILURE", "conv-sync", "still there?");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    assert_eq!(app.count("events").await, 1);
    assert!(sim.webhooks().is_empty());
}

#[tokio::test]
async fn startup_sync_retries_until_kapso_is_reachable_then_reports_ok() {
    let sim = sim().await;
    let gate = Gate::start(sim.base_url()).await;
    let app =
        TestApp::spawn_with_server(&public_url(), &kapso_section(&gate.url, sim.api_key())).await;

    let state = sync_state(&app, |s| s.starts_with("retrying:")).await;
    assert!(state.contains("503"), "{state}");
    let body = message_received("wamid.WHILE_DOWN", "conv-down", "hello?");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);

    gate.open();
    sync_state(&app, |s| s == "ok").await;

    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    let last = &ready["webhook_sync_last"];
    assert_eq!(last["result"], "ok", "{ready}");
    assert_eq!(
        last["changes"],
        serde_json::json!({"created": 2}),
        "{ready}"
    );
    assert_eq!(last["at"], last["last_success_at"], "{ready}");
    assert!(last["at"].as_str().unwrap().ends_with('Z'), "{ready}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("switchboard_webhook_sync_runs_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_webhook_sync_runs_total{result=\"failed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_webhook_sync_changes_total{action=\"created\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_webhook_sync_last_success_timestamp_seconds "),
        "{metrics}"
    );

    let mut urls: Vec<String> = sim
        .webhooks()
        .iter()
        .map(|h| h["url"].as_str().unwrap().to_owned())
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            format!("{PUBLIC_URL}/webhooks/sales"),
            format!("{PUBLIC_URL}/webhooks/support")
        ]
    );
}

#[tokio::test]
async fn sync_turned_off_or_without_public_url_reports_disabled() {
    let plain = TestApp::spawn().await;
    assert_eq!(sync_state(&plain, |_| true).await, "disabled");

    let sim = sim().await;
    let off = format!(
        "{}on_startup = false\n",
        kapso_section(&sim.base_url(), sim.api_key())
    );
    let app = TestApp::spawn_with_server(&public_url(), &off).await;
    assert_eq!(sync_state(&app, |_| true).await, "disabled");
    // The only call is the send pacer reading the numbers' throughput (it may not have
    // happened yet): no webhook was listed, created or changed.
    let asked: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| !(r.method == "GET" && r.path.ends_with("/whatsapp/phone_numbers")))
        .collect();
    assert!(
        asked.is_empty(),
        "nothing about webhooks was asked of Kapso: {asked:?}"
    );
}

#[tokio::test]
async fn a_webhook_paused_while_the_server_runs_is_active_again_after_one_interval() {
    use switchboard::clock::{Clock, ManualTime};
    let sim = sim().await;
    let time = ManualTime::starting_at(1_000_000);
    let extra = format!(
        "{}interval = \"5m\"\n",
        kapso_section(&sim.base_url(), sim.api_key())
    );
    let app =
        TestApp::spawn_with_server_and_clock(&public_url(), &extra, Clock::Manual(time.clone()))
            .await;
    let mut sync = app.webhook_sync();
    sync.wait_for(|s| s.runs >= 1).await.unwrap();
    let support_url = format!("{PUBLIC_URL}/webhooks/support");
    let hooks = sim.webhooks();
    let support = hooks
        .iter()
        .find(|h| h["url"] == support_url.as_str())
        .unwrap();
    assert!(sim.set_webhook_active(support["id"].as_str().unwrap(), false));

    time.advance(Duration::from_secs(5 * 60));
    sync.wait_for(|s| s.runs >= 2).await.unwrap();

    let hooks = sim.webhooks();
    let support = hooks
        .iter()
        .find(|h| h["url"] == support_url.as_str())
        .unwrap();
    assert_eq!(support["active"], true);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["webhook_sync"], "ok", "{body}");
    assert_eq!(
        body["webhook_sync_last"]["changes"],
        serde_json::json!({"reactivated": 1}),
        "{body}"
    );
}
