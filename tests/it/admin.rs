//! /healthz, /readyz, /metrics.

use serde_json::Value;

use crate::payloads::message_received;
use crate::test_app::{metric, TestApp};

#[tokio::test]
async fn healthz_and_readyz_answer_when_the_database_is_migrated() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn readyz_fails_when_migrations_are_missing() {
    let app = TestApp::spawn().await;
    let pool = app.db().await;
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "migrations pending");
}

#[tokio::test]
async fn metrics_count_deliveries_by_result_and_time_requests() {
    let app = TestApp::spawn().await;
    let body = message_received("wamid.M", "conv-m", "hi");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let bad = app
        .deliver_signed("support", "wrong", "whatsapp.message.received", b"{}")
        .await;
    assert_eq!(bad.status(), 401);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let deliveries = |result: &str| {
        let label = format!("result=\"{result}\"");
        metric(
            &text,
            "switchboard_deliveries_total",
            &["webhook=\"support\"", &label],
        )
    };
    assert_eq!(deliveries("stored"), 1.0);
    assert_eq!(deliveries("duplicate"), 1.0);
    assert_eq!(deliveries("unauthorized"), 1.0);
    assert_eq!(
        metric(
            &text,
            "switchboard_events_stored_total",
            &["webhook=\"support\""]
        ),
        1.0
    );
    let timed = metric(
        &text,
        "switchboard_http_request_duration_seconds_count",
        &["path=\"/webhooks/{name}\"", "status=\"200\""],
    );
    assert_eq!(timed, 2.0);
}
