//! The real `KapsoClient` against the real `SimulatedKapso` on loopback: sends, mark-read,
//! error decoding and retry behaviour, webhook management with paging, and the simulated
//! webhook sender (signatures, retries, batches).

mod conformance;
mod delivery;
mod history;
mod limits;
mod openapi;
mod shapes;
mod webhooks;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::kapso::{KapsoClient, KapsoError, RetryHint, RetryPolicy};
use switchboard::kapso_sim::{ScriptedResponse, SimConfig, SimulatedKapso};
use switchboard::secret::Secret;

pub const PHONE: &str = "106540352242922";
pub const WAIT: Duration = Duration::from_secs(10);

/// Backoff short enough for tests; `Retry-After` is still honoured up to 30 s.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        conflict_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

pub async fn sim_and_client() -> (SimulatedKapso, KapsoClient) {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let client = KapsoClient::new(&sim.kapso_config())
        .unwrap()
        .with_retry_policy(fast_policy());
    (sim, client)
}

pub fn text_message(body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550100200",
           "type": "text", "text": {"body": body}})
}

fn message_posts(sim: &SimulatedKapso) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .count()
}

#[tokio::test]
async fn send_text_reaches_the_proxy_with_the_api_key() {
    let (sim, client) = sim_and_client().await;
    let body = text_message("Your order #4471 ships today.");

    let sent = client.send_message(PHONE, &body).await.unwrap();

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].phone_number_id, PHONE);
    assert_eq!(sends[0].body, body);
    assert_eq!(sends[0].api_key.as_deref(), Some(sim.api_key()));
    assert_eq!(sends[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(sends[0].wamid, sent.message_id);
    assert!(sent.message_id.starts_with("wamid."), "{}", sent.message_id);
    assert_eq!(sent.raw["contacts"][0]["wa_id"], "15550100200");
}

#[tokio::test]
async fn mark_read_sends_status_read_with_typing_indicator() {
    let (sim, client) = sim_and_client().await;

    client
        .mark_read(PHONE, "wamid.IN_TEXT_0001", true)
        .await
        .unwrap();

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(
        sends[0].body,
        json!({"messaging_product": "whatsapp", "status": "read",
               "message_id": "wamid.IN_TEXT_0001", "typing_indicator": {"type": "text"}})
    );
    assert!(sends[0].is_mark_read());
    assert_eq!(sends[0].wamid, "wamid.IN_TEXT_0001");
}

#[tokio::test]
async fn invalid_message_is_a_graph_error_with_code_100_and_not_retried() {
    let (sim, client) = sim_and_client().await;
    let buttons: Vec<Value> = (0..4)
        .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": "Pick"}}))
        .collect();
    let body = json!({"messaging_product": "whatsapp", "to": "15550100200", "type": "interactive",
        "interactive": {"type": "button", "body": {"text": "Choose"}, "action": {"buttons": buttons}}});

    let err = client.send_message(PHONE, &body).await.unwrap_err();

    let KapsoError::Graph { status, error, .. } = &err else {
        panic!("expected a Graph error, got {err:?}")
    };
    assert_eq!((*status, error.code), (400, 100));
    assert!(error.message.contains("1 to 3"), "{}", error.message);
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    assert_eq!(message_posts(&sim), 1);
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn server_error_then_success_is_retried_inside_the_client_and_sent_once() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([ScriptedResponse::server_error()]);

    let sent = client
        .send_message(PHONE, &text_message("hello"))
        .await
        .unwrap();

    assert_eq!(message_posts(&sim), 2);
    let sends = sim.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].wamid, sent.message_id);
}

#[tokio::test]
async fn reengagement_window_error_is_not_retried() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([ScriptedResponse::reengagement_window()]);

    let err = client
        .send_message(PHONE, &text_message("late reply"))
        .await
        .unwrap_err();

    assert_eq!(err.graph_code(), Some(131047));
    assert_eq!(err.http_status(), Some(422));
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    let KapsoError::Graph { error, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(error.details().unwrap_or_default().contains("24 hours"));
    assert_eq!(message_posts(&sim), 1);
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn retry_after_is_honoured_before_retrying_a_throttled_send() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([ScriptedResponse::throttled(429, 130429).with_retry_after("1")]);
    let started = Instant::now();

    client
        .send_message(PHONE, &text_message("hi"))
        .await
        .unwrap();

    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(message_posts(&sim), 2);
    assert_eq!(sim.sends().len(), 1);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_waits_only_the_cap() {
    let (sim, client) = sim_and_client().await;
    let client = client.with_retry_policy(RetryPolicy {
        retry_after_cap: Duration::from_millis(20),
        ..fast_policy()
    });
    sim.script_sends([ScriptedResponse::throttled(400, 131056).with_retry_after("3600")]);
    let started = Instant::now();

    client
        .send_message(PHONE, &text_message("hi"))
        .await
        .unwrap();

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(message_posts(&sim), 2);
}

#[tokio::test]
async fn throttled_sends_are_handed_back_at_once_for_the_pacer() {
    let (sim, client) = sim_and_client().await;
    for (status, code) in [(400, 130429), (429, 130429), (400, 131056)] {
        sim.script_sends([ScriptedResponse::throttled(status, code).with_retry_after("7")]);
        let started = Instant::now();
        let err = client
            .send_message_paced(PHONE, &text_message("hi"))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "not slept on");
        assert_eq!(err.graph_code(), Some(code));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }
    assert_eq!(message_posts(&sim), 3, "no retries inside the call");
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn in_flight_conflict_is_retried_but_insufficient_credits_is_final() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([ScriptedResponse::in_flight()]);
    client
        .send_message(PHONE, &text_message("one"))
        .await
        .unwrap();
    assert_eq!(message_posts(&sim), 2);

    sim.script_sends([ScriptedResponse::insufficient_credits()]);
    let err = client
        .send_message(PHONE, &text_message("two"))
        .await
        .unwrap_err();
    let KapsoError::PaymentRequired { billing_url, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(billing_url.is_some());
    assert_eq!(err.kapso_code(), Some("insufficient_credits"));
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    assert_eq!(message_posts(&sim), 3);
}

#[tokio::test]
async fn marketing_stop_is_a_final_validation_error() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([ScriptedResponse::marketing_preference_stopped()]);

    let err = client
        .send_message(PHONE, &text_message("promo"))
        .await
        .unwrap_err();

    assert!(matches!(err, KapsoError::Validation { .. }), "{err:?}");
    assert_eq!(err.kapso_code(), Some("marketing_preference_stopped"));
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    assert_eq!(message_posts(&sim), 1);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_max_retries() {
    let (sim, client) = sim_and_client().await;
    sim.script_sends([
        ScriptedResponse::server_error(),
        ScriptedResponse::server_error(),
        ScriptedResponse::server_error(),
    ]);

    let err = client
        .send_message(PHONE, &text_message("hi"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, KapsoError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(message_posts(&sim), 3, "one attempt plus max_retries = 2");
}

#[tokio::test]
async fn wrong_api_key_is_unauthorized_on_both_apis_and_never_echoed() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let mut config = sim.kapso_config();
    config.api_key = Some(Secret::new("sk_wrong_key_123"));
    let client = KapsoClient::new(&config).unwrap();

    let platform = client.list_phone_numbers().await.unwrap_err();
    let proxy = client
        .send_message(PHONE, &text_message("hi"))
        .await
        .unwrap_err();

    for err in [&platform, &proxy] {
        assert!(matches!(err, KapsoError::Unauthorized { .. }), "{err:?}");
        assert!(err.to_string().contains("kapso.api_key"));
        assert!(!err.to_string().contains("sk_wrong_key_123"));
        assert!(!format!("{err:?}").contains("sk_wrong_key_123"));
        assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    }
    assert_eq!(sim.requests().len(), 2, "401 is never retried");
}

#[tokio::test]
async fn unknown_phone_number_is_not_found() {
    let (_sim, client) = sim_and_client().await;

    let err = client
        .send_message("999", &text_message("hi"))
        .await
        .unwrap_err();

    assert!(matches!(err, KapsoError::NotFound { .. }), "{err:?}");
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
}

#[tokio::test]
async fn missing_api_key_fails_clearly_without_any_request() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let mut config = sim.kapso_config();
    config.api_key = None;
    let client = KapsoClient::new(&config).unwrap();

    let err = client.list_project_webhooks().await.unwrap_err();

    assert!(matches!(err, KapsoError::MissingApiKey));
    assert!(err.to_string().contains("set kapso.api_key"));
    assert!(sim.requests().is_empty());
}
