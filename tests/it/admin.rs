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

#[tokio::test]
async fn unknown_methods_and_webhook_names_do_not_grow_the_metric_labels() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, format!("{}/webhooks/support", app.base_url))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
        let name = format!("made-up-{i}\nforged");
        let response = app
            .deliver_signed(
                &urlencode(&name),
                "whatever",
                "whatsapp.message.received",
                b"{}",
            )
            .await;
        assert_eq!(response.status(), 404);
    }
    let text = app.metrics().await;
    assert!(!text.contains("BREW"), "{text}");
    assert!(!text.contains("made-up"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("webhook=\"(unknown)\""), "{text}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
