//! POST /webhooks/{name}: signatures, batches, dedupe, quarantine, limits, restarts.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::payloads::{batch, message_received, message_status, PHONE_NUMBER_ID};
use crate::test_app::{kapso_headers, metric, TestApp, OLD_SECRET, SECRET};

const RECEIVED: &str = "whatsapp.message.received";

async fn event_row(
    app: &TestApp,
    wamid: &str,
) -> (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
) {
    let pool = app.db().await;
    let row: (String, Option<String>, Option<String>, Option<String>, String) = sqlx::query_as(
        "SELECT event_type, phone_number_id, conversation_id, flags, payload FROM events WHERE message_id = ?",
    )
    .bind(wamid)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    (
        row.0,
        row.1,
        row.2,
        row.3,
        serde_json::from_str(&row.4).unwrap(),
    )
}

#[tokio::test]
async fn single_event_is_stored_before_the_200() {
    let app = TestApp::spawn().await;
    let body = message_received("wamid.ONE", "conv-1", "Hi, is my order on its way?");

    let response = app
        .deliver_signed(
            "support",
            SECRET,
            RECEIVED,
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;

    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["stored"], 1);
    assert_eq!(outcome["duplicates"], 0);
    let (event_type, phone, conversation, flags, payload) = event_row(&app, "wamid.ONE").await;
    assert_eq!(event_type, RECEIVED);
    assert_eq!(phone.as_deref(), Some(PHONE_NUMBER_ID));
    assert_eq!(conversation.as_deref(), Some("conv-1"));
    assert_eq!(flags, None);
    assert_eq!(
        payload["message"]["text"]["body"],
        "Hi, is my order on its way?"
    );
    assert_eq!(app.count("deliveries").await, 1);
}

#[tokio::test]
async fn batch_of_three_is_unwrapped_into_three_events() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&batch(vec![
        message_received("wamid.B1", "conv-b", "hello?"),
        message_received("wamid.B2", "conv-b", "anyone"),
        message_received("wamid.B3", "conv-b", "there"),
    ]))
    .unwrap();
    let mut headers = kapso_headers(SECRET, RECEIVED, &body, None);
    headers.insert("x-webhook-batch", "true".parse().unwrap());
    headers.insert("x-batch-size", "3".parse().unwrap());

    let response = app.post("/webhooks/support", body, headers).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.count("events").await, 3);
    let pool = app.db().await;
    let batched: i64 = sqlx::query_scalar("SELECT batch FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(batched, 1);
}

/// `X-Batch-Size` that disagrees with the body: every event is still stored, flagged.
#[tokio::test]
async fn a_batch_whose_size_header_disagrees_is_stored_and_flagged() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&batch(vec![
        message_received("wamid.Z1", "conv-z", "one"),
        message_received("wamid.Z2", "conv-z", "two"),
    ]))
    .unwrap();
    let mut headers = kapso_headers(SECRET, RECEIVED, &body, None);
    headers.insert("x-webhook-batch", "true".parse().unwrap());
    headers.insert("x-batch-size", "3".parse().unwrap());
    assert_eq!(
        app.post("/webhooks/support", body, headers).await.status(),
        200
    );

    let pool = app.db().await;
    let flags: Vec<Option<String>> = sqlx::query_scalar("SELECT flags FROM events ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        flags,
        vec![
            Some("batch_size_mismatch".to_owned()),
            Some("batch_size_mismatch".to_owned())
        ]
    );
}

#[tokio::test]
async fn batch_is_recognised_by_body_flag_without_header() {
    let app = TestApp::spawn().await;
    let body = batch(vec![
        message_received("wamid.F1", "conv-f", "one"),
        message_received("wamid.F2", "conv-f", "two"),
    ]);
    assert_eq!(app.deliver(RECEIVED, &body).await, 200);
    assert_eq!(app.count("events").await, 2);
}

#[tokio::test]
async fn a_batch_larger_than_the_cap_is_quarantined_whole_not_split() {
    let app = TestApp::spawn().await;
    let items: Vec<Value> = (0..1_001).map(|i| json!(i % 10)).collect();
    let body = batch(items);
    assert_eq!(
        app.deliver(RECEIVED, &body).await,
        200,
        "stored, so Kapso stops retrying"
    );
    assert_eq!(app.count("events").await, 0);
    assert_eq!(
        app.count("quarantine").await,
        1,
        "one row: the body as sent"
    );
    let pool = app.db().await;
    let (reason, stored): (String, Vec<u8>) = sqlx::query_as("SELECT reason, body FROM quarantine")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        reason.contains("batch of 1001 events exceeds the limit of 1000"),
        "{reason}"
    );
    assert_eq!(
        stored,
        serde_json::to_vec(&body).unwrap(),
        "kept byte for byte"
    );
}

#[tokio::test]
async fn payloads_and_quarantined_elements_are_kept_exactly_as_sent() {
    let app = TestApp::spawn().await;
    // Numbers and escapes that a parse-and-reserialise round trip would change.
    let single = br#"{"message": {"id": "wamid.EXACT", "type": "text", "timestamp": "1764093600", "text": {"body": "caf\u00e9 1.0e0"}, "kapso": {"direction": "inbound"}}, "conversation": {"id": "conv-exact", "phone_number_id": "123"}, "phone_number_id": "123", "amount": 1.0e0, "big": 12345678901234567890123}"#;
    let response = app
        .deliver_signed("support", SECRET, RECEIVED, single)
        .await;
    assert_eq!(response.status(), 200);
    let batch_body = br#"{"batch": true, "data": [1.0e0, {"no_type": "caf\u00e9"}, {"event": "whatsapp.message.received", "message": {"id": "wamid.EXACT2", "type": "text", "text": {"body": "x"}}, "conversation": {"id": "conv-exact", "phone_number_id": "123"}, "n": 2.50}]}"#;
    let mut headers = kapso_headers(SECRET, "", batch_body, None);
    headers.remove("x-webhook-event");
    headers.insert("x-webhook-batch", "true".parse().unwrap());
    let response = app
        .post("/webhooks/support", batch_body.to_vec(), headers)
        .await;
    assert_eq!(response.status(), 200);

    let pool = app.db().await;
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM events ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        payloads[0].as_bytes(),
        single,
        "the whole body, byte for byte"
    );
    assert_eq!(
        payloads[1],
        r#"{"event": "whatsapp.message.received", "message": {"id": "wamid.EXACT2", "type": "text", "text": {"body": "x"}}, "conversation": {"id": "conv-exact", "phone_number_id": "123"}, "n": 2.50}"#,
        "a batch element, byte for byte"
    );
    let quarantined: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM quarantine ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        quarantined,
        vec![b"1.0e0".to_vec(), br#"{"no_type": "caf\u00e9"}"#.to_vec()]
    );
}

#[tokio::test]
async fn same_delivery_posted_three_times_is_stored_once() {
    let app = TestApp::spawn().await;
    let body = message_received("wamid.RETRY", "conv-r", "are you there");
    for _ in 0..3 {
        assert_eq!(app.deliver(RECEIVED, &body).await, 200);
    }
    assert_eq!(app.count("events").await, 1);
    assert_eq!(app.count("deliveries").await, 3, "every delivery is logged");
    let pool = app.db().await;
    let results: Vec<String> = sqlx::query_scalar("SELECT result FROM deliveries ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(results, ["stored", "duplicate", "duplicate"]);
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "switchboard_events_duplicate_total",
            &["webhook=\"support\""]
        ),
        2.0
    );
}

#[tokio::test]
async fn same_message_in_two_different_batches_is_stored_once() {
    let app = TestApp::spawn().await;
    let first = batch(vec![
        message_received("wamid.X1", "conv-x", "a"),
        message_received("wamid.X2", "conv-x", "b"),
    ]);
    // Kapso resends a failed batch's messages under new idempotency keys (CONTRACT.md §2.5).
    let second = batch(vec![
        message_received("wamid.X2", "conv-x", "b"),
        message_received("wamid.X3", "conv-x", "c"),
    ]);
    assert_eq!(app.deliver(RECEIVED, &first).await, 200);
    assert_eq!(app.deliver(RECEIVED, &second).await, 200);

    let pool = app.db().await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM events ORDER BY message_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, ["wamid.X1", "wamid.X2", "wamid.X3"]);
}

#[tokio::test]
async fn status_events_of_one_message_are_distinct_events() {
    let app = TestApp::spawn().await;
    for status in ["sent", "delivered", "read"] {
        let event = format!("whatsapp.message.{status}");
        assert_eq!(
            app.deliver(&event, &message_status("wamid.OUT", status))
                .await,
            200
        );
    }
    // `read` before `delivered` and a repeated `delivered` are both tolerated.
    assert_eq!(
        app.deliver(
            "whatsapp.message.delivered",
            &message_status("wamid.OUT", "delivered")
        )
        .await,
        200
    );
    assert_eq!(app.count("events").await, 3);
}

#[tokio::test]
async fn bad_missing_and_wrong_secret_signatures_are_401_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&message_received("wamid.EVIL", "conv-e", "x")).unwrap();

    let mut tampered = kapso_headers(SECRET, RECEIVED, &body, None);
    tampered.insert("x-webhook-signature", "0".repeat(64).parse().unwrap());
    let mut missing = kapso_headers(SECRET, RECEIVED, &body, None);
    missing.remove("x-webhook-signature");
    let wrong_secret = kapso_headers("whsec_sales_only", RECEIVED, &body, None);
    let mut prefixed_wrong = kapso_headers(SECRET, RECEIVED, &body, None);
    prefixed_wrong.insert(
        "x-webhook-signature",
        format!("sha256={}", "0".repeat(64)).parse().unwrap(),
    );
    let mut body_changed = body.clone();
    body_changed.push(b'\n');

    for headers in [tampered, missing, wrong_secret, prefixed_wrong] {
        let response = app.post("/webhooks/support", body.clone(), headers).await;
        assert_eq!(response.status(), 401);
    }
    let response = app
        .post(
            "/webhooks/support",
            body_changed,
            kapso_headers(SECRET, RECEIVED, &body, None),
        )
        .await;
    assert_eq!(response.status(), 401);

    for table in ["events", "deliveries", "quarantine"] {
        assert_eq!(app.count(table).await, 0, "{table} must stay empty");
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "switchboard_deliveries_total",
            &["webhook=\"support\"", "result=\"unauthorized\""]
        ),
        5.0
    );
}

/// Kapso sends lowercase hex; the same MAC in uppercase, or after a `sha256=` prefix (which two
/// of Kapso's own receivers strip), is accepted rather than turned into an outage.
#[tokio::test]
async fn uppercase_and_sha256_prefixed_signatures_are_accepted() {
    let app = TestApp::spawn().await;
    for (n, variant) in [
        |hex: &str| hex.to_uppercase(),
        |hex: &str| format!("sha256={hex}"),
        |hex: &str| format!("SHA256={}", hex.to_uppercase()),
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            serde_json::to_vec(&message_received(&format!("wamid.V{n}"), "conv-v", "x")).unwrap();
        let mut headers = kapso_headers(SECRET, RECEIVED, &body, None);
        let hex = headers["x-webhook-signature"].to_str().unwrap().to_owned();
        headers.insert("x-webhook-signature", variant(&hex).parse().unwrap());
        let response = app.post("/webhooks/support", body, headers).await;
        assert_eq!(response.status(), 200, "variant {n}");
    }
    assert_eq!(app.count("events").await, 3);
}

/// The decision on events that reach two webhooks (two webhooks subscribed to one number): the
/// event is stored and routed once, under the webhook that delivered it first; the second copy
/// is a duplicate. Routing it twice would answer the customer twice.
#[tokio::test]
async fn an_event_delivered_by_two_webhooks_is_stored_once_under_the_first() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&message_received("wamid.TWICE", "conv-t", "x")).unwrap();
    let first = app.deliver_signed("support", SECRET, RECEIVED, &body).await;
    assert_eq!(first.status(), 200);
    let second = app
        .deliver_signed("sales", "whsec_sales_only", RECEIVED, &body)
        .await;
    assert_eq!(second.status(), 200);
    let outcome: Value = second.json().await.unwrap();
    assert_eq!(outcome["stored"], 0);
    assert_eq!(outcome["duplicates"], 1);
    let pool = app.db().await;
    let webhooks: Vec<String> = sqlx::query_scalar("SELECT webhook FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(webhooks, vec!["support".to_owned()]);
    assert_eq!(
        app.count("deliveries").await,
        2,
        "both deliveries are logged"
    );
}

#[tokio::test]
async fn each_webhook_only_accepts_its_own_secrets() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&message_received("wamid.S", "conv-s", "x")).unwrap();
    let response = app.deliver_signed("sales", SECRET, RECEIVED, &body).await;
    assert_eq!(response.status(), 401);
    let response = app
        .deliver_signed("sales", "whsec_sales_only", RECEIVED, &body)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn rotated_secret_is_accepted() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&message_received("wamid.ROT", "conv-rot", "x")).unwrap();
    let response = app
        .deliver_signed("support", OLD_SECRET, RECEIVED, &body)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_not_stored() {
    let app = TestApp::spawn().await; // body_limit_bytes = 4096
    let body = serde_json::to_vec(&message_received(
        "wamid.BIG",
        "conv-big",
        &"x".repeat(5000),
    ))
    .unwrap();
    let response = app.deliver_signed("support", SECRET, RECEIVED, &body).await;
    assert_eq!(response.status(), 413);

    // Without Content-Length (chunked transfer), the limit still holds.
    let headers = kapso_headers(SECRET, RECEIVED, &body, None);
    let status = post_chunked(&app, "/webhooks/support", &headers, &body).await;
    assert_eq!(status, 413);
    assert_eq!(app.count("deliveries").await, 0);
}

/// A raw HTTP/1.1 request with `Transfer-Encoding: chunked` (no Content-Length); returns the status.
async fn post_chunked(app: &TestApp, path: &str, headers: &HeaderMap, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    for chunk in body.chunks(1000) {
        let sent = async {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            stream.write_all(chunk).await?;
            stream.write_all(b"\r\n").await
        };
        if sent.await.is_err() {
            break; // the server may answer 413 and close before reading everything
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn unknown_webhook_is_404_and_wrong_method_is_405() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&message_received("wamid.N", "c", "x")).unwrap();
    let response = app.deliver_signed("nobody", SECRET, RECEIVED, &body).await;
    assert_eq!(response.status(), 404);
    let response = app.get("/webhooks/support").await;
    assert_eq!(response.status(), 405);
    assert_eq!(app.count("deliveries").await, 0);
}

#[tokio::test]
async fn signed_garbage_is_quarantined_with_200() {
    let app = TestApp::spawn().await;
    let garbage = b"this is {not json".to_vec();
    let response = app
        .deliver_signed("support", SECRET, RECEIVED, &garbage)
        .await;
    assert_eq!(response.status(), 200, "Kapso must stop retrying");

    // JSON of no recognisable shape: an array, and a batch without a data array.
    let array = b"[1, 2, 3]".to_vec();
    assert_eq!(
        app.deliver_signed("support", SECRET, RECEIVED, &array)
            .await
            .status(),
        200
    );
    let no_data = serde_json::to_vec(&json!({"batch": true, "data": "nope"})).unwrap();
    assert_eq!(
        app.deliver_signed("support", SECRET, RECEIVED, &no_data)
            .await
            .status(),
        200
    );

    assert_eq!(app.count("events").await, 0);
    assert_eq!(app.count("quarantine").await, 3);
    let pool = app.db().await;
    let (body, reason): (Vec<u8>, String) =
        sqlx::query_as("SELECT body, reason FROM quarantine ORDER BY id LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(body, garbage, "kept byte for byte");
    assert!(reason.contains("not valid JSON"), "{reason}");
}

#[tokio::test]
async fn bad_element_of_a_batch_is_quarantined_and_the_rest_stored() {
    let app = TestApp::spawn().await;
    let body = batch(vec![
        message_received("wamid.GOOD", "conv-g", "ok"),
        json!("not an object"),
    ]);
    assert_eq!(app.deliver(RECEIVED, &body).await, 200);
    assert_eq!(app.count("events").await, 1);
    assert_eq!(app.count("quarantine").await, 1);
}

#[tokio::test]
async fn unknown_event_type_is_stored_and_flagged() {
    let app = TestApp::spawn().await;
    let body = json!({"phone_number_id": PHONE_NUMBER_ID, "something": {"new": true}});
    assert_eq!(app.deliver("whatsapp.brand_new.event", &body).await, 200);
    // The same delivery again (same idempotency key) is a duplicate, not a second event.
    assert_eq!(app.deliver("whatsapp.brand_new.event", &body).await, 200);

    let pool = app.db().await;
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_type, flags FROM events")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [(
            "whatsapp.brand_new.event".to_owned(),
            Some("unknown_event_type".to_owned())
        )]
    );
}

#[tokio::test]
async fn event_type_falls_back_to_the_body_when_the_header_is_missing() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({
        "event": RECEIVED,
        "data": message_received("wamid.OLDFORM", "conv-o", "hi")
    }))
    .unwrap();
    let mut headers = kapso_headers(SECRET, RECEIVED, &body, None);
    headers.remove("x-webhook-event");
    assert_eq!(
        app.post("/webhooks/support", body, headers).await.status(),
        200
    );
    let (event_type, ..) = event_row(&app, "wamid.OLDFORM").await;
    assert_eq!(event_type, RECEIVED);
}

#[tokio::test]
async fn v1_payload_is_normalised() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({
        "message": { "id": "wamid.V1", "message_type": "text", "content": "Hi from v1",
                     "direction": "inbound", "origin": "cloud_api" },
        "conversation": { "id": "conv-v1", "phone_number": "+15550100200", "status": "active",
                          "whatsapp_config_id": "cfg-1" },
        "whatsapp_config": { "id": "cfg-1", "phone_number_id": PHONE_NUMBER_ID },
        "is_new_conversation": true
    }))
    .unwrap();
    let mut headers = kapso_headers(SECRET, RECEIVED, &body, None);
    headers.insert("x-webhook-payload-version", "v1".parse().unwrap());
    assert_eq!(
        app.post("/webhooks/support", body, headers).await.status(),
        200
    );

    let (_, phone, conversation, flags, payload) = event_row(&app, "wamid.V1").await;
    assert_eq!(phone.as_deref(), Some(PHONE_NUMBER_ID));
    assert_eq!(conversation.as_deref(), Some("conv-v1"));
    assert_eq!(flags, None);
    assert_eq!(payload["message"]["type"], "text");
    assert_eq!(payload["message"]["text"]["body"], "Hi from v1");
    assert_eq!(payload["message"]["kapso"]["direction"], "inbound");
    let pool = app.db().await;
    let version: String = sqlx::query_scalar("SELECT payload_version FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(version, "v1");
}

#[tokio::test]
async fn two_hundred_concurrent_deliveries_with_fifty_duplicates_give_exact_counts() {
    let app = TestApp::spawn().await;
    let mut bodies: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            serde_json::to_vec(&message_received(
                &format!("wamid.C{i}"),
                &format!("conv-{}", i % 7),
                "hi",
            ))
            .unwrap()
        })
        .collect();
    let duplicates: Vec<Vec<u8>> = bodies.iter().step_by(3).cloned().collect();
    assert_eq!(duplicates.len(), 50);
    bodies.extend(duplicates);

    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let client = app.client.clone();
        let url = format!("{}/webhooks/support", app.base_url);
        tasks.spawn(async move {
            let headers: HeaderMap = kapso_headers(SECRET, RECEIVED, &body, None);
            client
                .post(url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    assert_eq!(app.count("events").await, 150);
    assert_eq!(app.count("deliveries").await, 200);
    let pool = app.db().await;
    let (stored, duplicates): (i64, i64) =
        sqlx::query_as("SELECT SUM(stored), SUM(duplicates) FROM deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((stored, duplicates), (150, 50));
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "switchboard_events_stored_total",
            &["webhook=\"support\""]
        ),
        150.0
    );
    assert_eq!(
        metric(
            &text,
            "switchboard_events_duplicate_total",
            &["webhook=\"support\""]
        ),
        50.0
    );
}

#[tokio::test]
async fn restart_on_the_same_file_keeps_events_and_still_deduplicates() {
    let mut app = TestApp::spawn().await;
    let body = message_received("wamid.PERSIST", "conv-p", "remember me");
    assert_eq!(app.deliver(RECEIVED, &body).await, 200);

    app.restart().await;

    assert_eq!(app.count("events").await, 1);
    assert_eq!(app.deliver(RECEIVED, &body).await, 200);
    assert_eq!(app.count("events").await, 1);
    let pool = app.db().await;
    let last: String = sqlx::query_scalar("SELECT result FROM deliveries ORDER BY id DESC LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(last, "duplicate");
}

#[tokio::test]
async fn inactive_conversation_events_with_new_anchors_are_kept() {
    let app = TestApp::spawn().await;
    let inactive = |since: &str, minutes: u32| {
        json!({ "conversation": {"id": "conv-i", "phone_number_id": PHONE_NUMBER_ID},
                "since_message": {"id": since, "whatsapp_message_id": "wamid.X"},
                "inactivity": {"minutes": minutes}, "phone_number_id": PHONE_NUMBER_ID })
    };
    let event = "whatsapp.conversation.inactive";
    assert_eq!(app.deliver(event, &inactive("m1", 30)).await, 200);
    assert_eq!(app.deliver(event, &inactive("m1", 30)).await, 200);
    assert_eq!(app.deliver(event, &inactive("m2", 30)).await, 200);
    assert_eq!(app.deliver(event, &inactive("m2", 60)).await, 200);
    assert_eq!(app.count("events").await, 3);
}
