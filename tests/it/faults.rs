//! Faults the server must answer correctly: a database another process holds locked.

use std::time::{Duration, Instant};

use crate::payloads::message_received;
use crate::test_app::TestApp;

const RECEIVED: &str = "whatsapp.message.received";

/// Polls `/readyz` until its status is `want` (a condition with a deadline, not a sleep).
async fn readyz_until(app: &TestApp, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {want}: {body}"
        );
        // A polling interval, not synchronisation: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_locked_database_gets_503_within_the_deadline_and_readyz_says_why_until_writes_succeed() {
    let app = TestApp::spawn_with_server("request_deadline_ms = 300", "").await;
    // Another process takes the write lock and keeps it.
    let other = app.db().await;
    let mut lock = other.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let body = message_received("wamid.locked", "conv-locked", "hello");
    let started = Instant::now();
    assert_eq!(
        app.deliver(RECEIVED, &body).await,
        503,
        "not committed: never 200"
    );
    // The deadline is 300 ms; the writer would wait 5 s (busy timeout) for the lock.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}, not at the deadline",
        started.elapsed()
    );

    // Readiness is read on a read connection: it answers while the writer waits.
    let started = Instant::now();
    let response = app.get("/readyz").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/readyz took {:?}: it waited for the writer",
        started.elapsed()
    );
    drop(response);

    // Once the inbox's commit has failed (busy timeout), /readyz says why.
    let not_ready = readyz_until(&app, 503).await;
    let reason = not_ready["database"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.starts_with("writes fail"), "{not_ready}");

    // The lock goes away; Kapso retries the same delivery until it gets 200 (on a loaded
    // machine a retry can itself miss the short deadline), and it is stored once.
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    other.close().await;
    let retries_until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.deliver(RECEIVED, &body).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only the deadline may refuse it");
        assert!(
            Instant::now() < retries_until,
            "never stored after the lock went away"
        );
    }
    assert_eq!(app.count("events").await, 1);
    let ready = readyz_until(&app, 200).await;
    assert_eq!(ready["database"], "ok");
}
