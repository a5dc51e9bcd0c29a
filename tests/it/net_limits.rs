//! Connection limits on real loopback TCP: header, body and idle timeouts, the connection cap,
//! a shutdown bounded by `server.shutdown_grace_ms`, and the private ops listener.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::test_app::{metric, TestApp};

/// Upper bound for "it eventually happens" on a slow shared machine; never what makes a test pass.
const EVENTUALLY: Duration = Duration::from_secs(30);

fn addr(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// A connection that sent `bytes` (a request cut short) and then nothing.
async fn half_sent(url: &str, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr(url)).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    stream
}

/// Reads until the server closes `stream`; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(EVENTUALLY, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

async fn ops_metric(app: &TestApp, name: &str, labels: &[&str]) -> f64 {
    let ops = app.ops_url.as_deref().unwrap();
    // A fresh connection each time: a pooled one may be closed by the idle timeout as it is reused.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let text = client
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, name, labels)
}

/// Polls the ops listener's metrics until `name{labels}` is `value`.
async fn wait_for_metric(app: &TestApp, name: &str, labels: &[&str], value: f64) {
    let started = Instant::now();
    loop {
        let now = ops_metric(app, name, labels).await;
        if now == value {
            return;
        }
        assert!(
            started.elapsed() < EVENTUALLY,
            "{name} stayed at {now}, expected {value}"
        );
        tokio::task::yield_now().await;
    }
}

fn message(id: &str) -> serde_json::Value {
    json!({ "message": { "id": id, "type": "text", "text": { "body": "hi" } }, "conversation": { "id": "c1" } })
}

/// Slow-loris connections held open at once.
const LORIS: usize = 2_000;

#[tokio::test]
async fn slow_loris_connections_are_closed_after_the_header_timeout_while_deliveries_succeed() {
    // 2,000 clients that never finish their headers (the flood); the header timeout
    // leaves them time to all connect on a slow machine.
    let app = TestApp::spawn_with_ops("header_timeout_ms = 3000\nidle_timeout_ms = 1000\n").await;
    let mut loris = Vec::new();
    for _ in 0..LORIS {
        loris.push(
            half_sent(
                &app.base_url,
                "POST /webhooks/support HTTP/1.1\r\nHost: x\r\n",
            )
            .await,
        );
    }
    wait_for_metric(
        &app,
        "switchboard_http_connections",
        &["listener=\"public\""],
        LORIS as f64,
    )
    .await;

    let started = Instant::now();
    let status = app
        .deliver("whatsapp.message.received", &message("wamid.loris"))
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a signed delivery took {:?} beside the slow clients",
        started.elapsed()
    );

    for stream in &mut loris {
        read_until_closed(stream).await;
    }
    wait_for_metric(
        &app,
        "switchboard_http_connections",
        &["listener=\"public\""],
        0.0,
    )
    .await;
    let timeouts = ops_metric(&app, "switchboard_http_timeouts", &["listener=\"public\""]).await;
    assert!(timeouts >= LORIS as f64, "{timeouts} timeouts counted");
}

#[tokio::test]
async fn the_connection_cap_holds_and_deliveries_succeed_once_slots_free() {
    let app = TestApp::spawn_with_ops(
        "max_connections = 3\nheader_timeout_ms = 600000\nidle_timeout_ms = 600000\n",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(half_sent(&app.base_url, "GET /healthz HTTP/1.1\r\n").await);
    }
    wait_for_metric(
        &app,
        "switchboard_http_connections",
        &["listener=\"public\""],
        3.0,
    )
    .await;

    // A fourth client connects (the kernel queues it) but is not served while the slots are held.
    let body = serde_json::to_vec(&message("wamid.capped")).unwrap();
    let delivery = {
        let url = app.base_url.clone();
        let headers = crate::test_app::kapso_headers(
            crate::test_app::SECRET,
            "whatsapp.message.received",
            &body,
            None,
        );
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/webhooks/support"))
                .headers(headers)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let mut delivery = delivery;
    let waited = tokio::time::timeout(Duration::from_millis(300), &mut delivery).await;
    assert!(waited.is_err(), "a connection past the cap was served");
    assert_eq!(
        ops_metric(
            &app,
            "switchboard_http_connections",
            &["listener=\"public\""]
        )
        .await,
        3.0
    );

    held.clear();
    let status = tokio::time::timeout(EVENTUALLY, delivery)
        .await
        .expect("the delivery was served once slots freed")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_shutdown_past_the_grace() {
    let mut app = TestApp::spawn_with_ops(
        "shutdown_grace_ms = 2000\nheader_timeout_ms = 600000\nbody_timeout_ms = 600000\nidle_timeout_ms = 600000\n",
    )
    .await;
    let mut half_body = half_sent(
        &app.base_url,
        "POST /webhooks/support HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"message\":",
    )
    .await;
    let mut half_headers = half_sent(&app.base_url, "POST /webhooks/support HTTP/1.1\r\n").await;
    wait_for_metric(
        &app,
        "switchboard_http_connections",
        &["listener=\"public\""],
        2.0,
    )
    .await;

    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    // Twice the grace (4 s) before; the margin covers closing on a slow machine.
    assert!(took < Duration::from_millis(3000), "shutdown took {took:?}");
    read_until_closed(&mut half_body).await;
    read_until_closed(&mut half_headers).await;
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408_and_is_dropped() {
    let app = TestApp::spawn_with_ops("body_timeout_ms = 500\n").await;
    let mut slow = half_sent(
        &app.base_url,
        "POST /webhooks/support HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"message\":",
    )
    .await;
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let timeouts = ops_metric(&app, "switchboard_http_timeouts", &["listener=\"public\""]).await;
    assert_eq!(timeouts, 1.0);
    assert_eq!(
        app.deliver("whatsapp.message.received", &message("wamid.after"))
            .await,
        200
    );
}

#[tokio::test]
async fn bodies_past_the_memory_budget_get_503_at_once_and_their_memory_is_given_back() {
    // Two half-sent bodies that declare 4,096 bytes (the test server's largest) fill the budget.
    let app = TestApp::spawn_with_ops(
        "body_memory_bytes = 8192\nbody_timeout_ms = 600000\nrequest_deadline_ms = 9500\n",
    )
    .await;
    let head = "POST /webhooks/support HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n";
    let mut held = Vec::new();
    for part in ["{\"a\":", "{\"b\":"] {
        held.push(half_sent(&app.base_url, &format!("{head}{part}")).await);
    }
    wait_for_metric(&app, "switchboard_http_body_bytes", &[], 8192.0).await;

    // A signed delivery does not wait for memory: 503 at once (Kapso retries later).
    let started = Instant::now();
    assert_eq!(
        app.deliver("whatsapp.message.received", &message("wamid.budget"))
            .await,
        503
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}, not at once",
        started.elapsed()
    );
    let busy = ops_metric(&app, "switchboard_deliveries_total", &["result=\"busy\""]).await;
    assert_eq!(busy, 1.0);

    // An abandoned body gives its memory back, and the retry is stored.
    drop(held.pop());
    wait_for_metric(&app, "switchboard_http_body_bytes", &[], 4096.0).await;
    assert_eq!(
        app.deliver("whatsapp.message.received", &message("wamid.budget"))
            .await,
        200
    );
    wait_for_metric(&app, "switchboard_http_body_bytes", &[], 4096.0).await;
    drop(held);
    wait_for_metric(&app, "switchboard_http_body_bytes", &[], 0.0).await;
}

#[tokio::test]
async fn the_ops_listener_alone_serves_metrics_and_readyz() {
    let app = TestApp::spawn_with_ops("").await;
    let ops = app.ops_url.clone().unwrap();
    for path in ["/metrics", "/readyz", "/healthz"] {
        let status = app
            .client
            .get(format!("{ops}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "ops {path}");
    }
    for (path, expected) in [("/metrics", 404), ("/readyz", 404), ("/healthz", 200)] {
        assert_eq!(
            app.get(path).await.status().as_u16(),
            expected,
            "public {path}"
        );
    }
    assert_eq!(
        app.deliver("whatsapp.message.received", &message("wamid.ops"))
            .await,
        200
    );
}

#[tokio::test]
async fn without_an_ops_listener_the_public_one_serves_everything() {
    let app = TestApp::spawn().await;
    for path in ["/metrics", "/readyz", "/healthz"] {
        assert_eq!(app.get(path).await.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::spawn_with_ops("idle_timeout_ms = 300\n").await;
    let mut stream = half_sent(&app.base_url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let timeouts = ops_metric(&app, "switchboard_http_timeouts", &["listener=\"public\""]).await;
    assert_eq!(timeouts, 0.0, "closing an idle connection is not a timeout");
}
