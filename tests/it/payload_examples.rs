//! Every payload example of Kapso's event-types reference (tests/fixtures/kapso-webhooks, with its
//! source), replayed through ingest: each is stored as a known event, unflagged, with the
//! identifiers routes use, and its retry is a duplicate; a route on a failure's error code
//! matches Kapso's own `whatsapp.message.failed` example.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::test_app::TestApp;

/// event type, flags, message id, conversation id, phone number id
type StoredRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn examples() -> Map<String, Value> {
    let text = std::fs::read_to_string("tests/fixtures/kapso-webhooks/event-types.json").unwrap();
    match serde_json::from_str(&text).unwrap() {
        Value::Object(map) => map,
        _ => panic!("the fixture is an object keyed by event type"),
    }
}

#[tokio::test]
async fn kapsos_documented_payloads_are_stored_known_and_deduplicated() {
    let app = TestApp::spawn().await;
    let examples = examples();
    assert_eq!(examples.len(), 12);
    for (event_type, payload) in &examples {
        let body = serde_json::to_vec(payload).unwrap();
        let first = app
            .deliver_signed("support", crate::test_app::SECRET, event_type, &body)
            .await;
        assert_eq!(first.status(), 200, "{event_type}");
        let outcome: Value = first.json().await.unwrap();
        assert_eq!(outcome["stored"], 1, "{event_type}: {outcome}");
        let retry = app
            .deliver_signed("support", crate::test_app::SECRET, event_type, &body)
            .await;
        let outcome: Value = retry.json().await.unwrap();
        assert_eq!(
            outcome["duplicates"], 1,
            "{event_type}: its retry: {outcome}"
        );
    }

    let pool = app.db().await;
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT event_type, flags, message_id, conversation_id, phone_number_id FROM events",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), examples.len());
    for (event_type, flags, message_id, conversation_id, phone_number_id) in &rows {
        assert_eq!(flags, &None, "{event_type} was flagged");
        if event_type.starts_with("whatsapp.") {
            assert_eq!(
                phone_number_id.as_deref(),
                Some("123456789012345"),
                "{event_type}"
            );
        }
        if event_type.starts_with("whatsapp.message.") {
            assert!(message_id.is_some(), "{event_type}");
        }
        if event_type.starts_with("whatsapp.message.")
            || event_type.starts_with("whatsapp.conversation.")
        {
            assert!(conversation_id.is_some(), "{event_type}");
        }
    }
}

#[tokio::test]
async fn a_route_on_the_window_error_code_matches_kapsos_failed_example() {
    let app = TestApp::spawn_with(
        r#"
[[routes]]
name = "window_closed"
on = "whatsapp.message.failed"
when = { error_code = 131047 }
handler = { kind = "log" }

[[routes]]
name = "other_failure"
on = "whatsapp.message.failed"
when = { error_code = 131026 }
handler = { kind = "log" }
"#,
    )
    .await;
    let payload = &examples()["whatsapp.message.failed"];
    assert_eq!(app.deliver("whatsapp.message.failed", payload).await, 200);
    let pool = app.db().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let routes: Vec<String> = loop {
        let routes: Vec<String> = sqlx::query_scalar("SELECT route FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
        if !routes.is_empty() {
            break routes;
        }
        assert!(Instant::now() < deadline, "no job was created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(routes, vec!["window_closed".to_owned()]);
}
