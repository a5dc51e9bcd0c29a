//! `kind = "meta"` webhooks: Meta's own body, forwarded and signed by Kapso, becomes the same
//! events as a Kapso-kind webhook's (fixtures from Kapso's SDK tests: tests/fixtures/meta-webhooks).

use serde_json::Value;

use crate::payloads::message_received;
use crate::test_app::{kapso_headers, TestApp, SECRET};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/meta-webhooks/{name}")).unwrap()
}

/// Meta deliveries carry no `X-Webhook-Event`: the body says what it is.
async fn post_meta(app: &TestApp, body: Vec<u8>) -> Value {
    let mut headers = kapso_headers(SECRET, "", &body, Some("meta-delivery-1"));
    headers.remove("x-webhook-event");
    let response = app.post("/webhooks/support", body, headers).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn events(app: &TestApp) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
    let pool = app.db().await;
    sqlx::query_as("SELECT event_type, message_id, conversation_id, flags FROM events ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn meta_messages_and_statuses_become_kapso_events_with_the_same_dedupe_keys() {
    let app = TestApp::spawn().await;
    let outcome = post_meta(&app, fixture("messages-statuses.json")).await;
    assert_eq!(outcome["stored"], 6, "{outcome}");

    let stored = events(&app).await;
    let summary: Vec<(&str, Option<&str>)> = stored
        .iter()
        .map(|(t, m, _, _)| (t.as_str(), m.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("whatsapp.message.received", Some("wamid.order")),
            ("whatsapp.message.received", Some("wamid.sticker")),
            ("whatsapp.message.received", Some("wamid.flow")),
            ("meta.calls", None),
            ("whatsapp.message.sent", Some("wamid.order")),
            ("whatsapp.message.failed", Some("wamid.reengage")),
        ]
    );
    // One conversation per customer and business number, so order and buffering hold.
    assert_eq!(stored[0].2.as_deref(), Some("wa:16315558151:15551234567"));
    assert_eq!(stored[5].2.as_deref(), Some("wa:16315558151:15551234567"));
    assert_eq!(stored[0].3, None, "a known event, not flagged");
    assert_eq!(stored[3].3.as_deref(), Some("unknown_event_type"));

    // The Kapso-kind twin of a message already received through Meta is a duplicate.
    let twin = serde_json::to_vec(&message_received("wamid.order", "conv-k", "hi")).unwrap();
    let response = app
        .post(
            "/webhooks/support",
            twin.clone(),
            kapso_headers(SECRET, "whatsapp.message.received", &twin, None),
        )
        .await;
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["duplicates"], 1, "{outcome}");

    // Kapso's retry of the Meta delivery stores nothing again.
    let again = post_meta(&app, fixture("messages-statuses.json")).await;
    assert_eq!(again["stored"], 0);
    assert_eq!(again["duplicates"], 6);
}

#[tokio::test]
async fn every_other_meta_field_is_stored_flagged_and_echoes_are_outbound() {
    let app = TestApp::spawn().await;
    post_meta(&app, fixture("all-fields.json")).await;
    let stored = events(&app).await;
    let types: Vec<&str> = stored.iter().map(|(t, _, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "meta.account_update",
            "meta.message_template_status_update",
            "whatsapp.message.received",
            "whatsapp.message.sent",
            "whatsapp.message.delivered",
            "whatsapp.message.sent",
            "meta.phone_number_quality_update",
        ]
    );
    // An echo is a message the business sent: its conversation is with the recipient.
    assert_eq!(stored[3].2.as_deref(), Some("wa:1:222"));
    assert_eq!(stored[5].1.as_deref(), Some("wamid.echo2"));
    assert_eq!(app.count("quarantine").await, 0, "nothing was left unread");
}
