//! The simulated webhook sender: signatures over the exact bytes, the §2.2 headers, retries of
//! identical requests on non-2xx, batches, tampering, and status webhooks after a send.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use switchboard::ingest::signature::{check, SignatureError};
use switchboard::kapso::{KapsoClient, WebhookRequest};
use switchboard::kapso_sim::samples::{self, SampleContext, SIGNATURE_VECTOR};
use switchboard::kapso_sim::{DeliveryOptions, DeliveryTarget, SimConfig, SimulatedKapso};
use switchboard::secret::Secret;
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

use super::{fast_policy, text_message, PHONE, WAIT};

/// A request that reached the test receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A stand-in for switchboard's ingest endpoint: answers the queued statuses, then 200.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    _stop: DropGuard,
}

type ReceiverState = (Arc<Mutex<VecDeque<u16>>>, mpsc::UnboundedSender<Received>);

async fn receive(
    State((statuses, tx)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    tx.send(Received { headers, body }).unwrap();
    let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start(statuses: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/support", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let state: ReceiverState = (Arc::new(Mutex::new(statuses.iter().copied().collect())), tx);
        let app = Router::new()
            .route("/webhooks/support", post(receive))
            .with_state(state);
        let stop = crate::test_app::serve_until_dropped(listener, app);
        Receiver {
            url,
            rx,
            _stop: stop,
        }
    }

    /// The next request, or a panic after 10 s.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("no delivery arrived within 10 s")
            .expect("receiver stopped")
    }
}

fn fast_retries() -> DeliveryOptions {
    DeliveryOptions::with_retry_delays(&[
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(30),
    ])
}

fn verifies(received: &Received, secret: &str) -> Result<(), SignatureError> {
    let header = received
        .headers
        .get("x-webhook-signature")
        .map(|v| v.as_bytes());
    check(&received.body, header, &[Secret::new(secret)])
}

#[tokio::test]
async fn deliver_signs_the_exact_bytes_and_retries_identical_requests() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let mut receiver = Receiver::start(&[500, 503]).await;
    let mut target = DeliveryTarget::new(&receiver.url, "whsec_test_switchboard");
    target
        .headers
        .push(("X-Switchboard-Env".to_owned(), "test".to_owned()));
    let payload =
        samples::text_received(&SampleContext::default(), "wamid.IN_TEXT_0001", "Hi there");

    let report = sim
        .deliver(
            &target,
            samples::MESSAGE_RECEIVED,
            vec![payload.clone()],
            &fast_retries(),
        )
        .await
        .unwrap();

    assert!(report.succeeded());
    assert_eq!(report.final_status, Some(200));
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    for attempt in &attempts {
        assert_eq!(
            attempt.body, attempts[0].body,
            "every retry sends identical bytes"
        );
        assert_eq!(
            attempt.headers, attempts[0].headers,
            "and identical headers"
        );
        assert_eq!(verifies(attempt, "whsec_test_switchboard"), Ok(()));
    }
    let first = &attempts[0];
    assert_eq!(first.json(), payload);
    assert_eq!(first.body, report.body);
    assert_eq!(
        first.header("x-webhook-event"),
        Some(samples::MESSAGE_RECEIVED)
    );
    assert_eq!(first.header("x-webhook-payload-version"), Some("v2"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("x-switchboard-env"), Some("test"));
    assert_eq!(
        first.header("x-idempotency-key"),
        Some(report.idempotency_key.as_str())
    );
    assert_eq!(first.header("x-webhook-batch"), None);
    assert_eq!(sim.deliveries().len(), 1);
}

#[tokio::test]
async fn delivery_gives_up_after_the_configured_retries() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start(&[500, 500, 500, 500, 500]).await;
    let target = DeliveryTarget::new(&receiver.url, "s");

    let report = sim
        .deliver(
            &target,
            samples::CONVERSATION_CREATED,
            vec![samples::conversation_created(&SampleContext::default())],
            &fast_retries(),
        )
        .await
        .unwrap();

    assert!(!report.succeeded());
    assert_eq!(
        report.attempts.len(),
        4,
        "the first attempt and three retries"
    );
    assert_eq!(report.final_status, Some(500));
}

#[tokio::test]
async fn batch_delivery_carries_batch_headers_and_envelope() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let mut receiver = Receiver::start(&[]).await;
    let ctx = SampleContext::default();
    let payloads = vec![
        samples::text_received(&ctx, "wamid.BATCH_A", "hello?"),
        samples::text_received(&ctx, "wamid.BATCH_B", "anyone there"),
    ];
    let opts = DeliveryOptions {
        batch: true,
        idempotency_key: Some("batch-key-1".to_owned()),
        ..fast_retries()
    };

    sim.deliver(
        &DeliveryTarget::new(&receiver.url, "s"),
        samples::MESSAGE_RECEIVED,
        payloads,
        &opts,
    )
    .await
    .unwrap();

    let received = receiver.next().await;
    assert_eq!(received.header("x-webhook-batch"), Some("true"));
    assert_eq!(received.header("x-batch-size"), Some("2"));
    assert_eq!(received.header("x-idempotency-key"), Some("batch-key-1"));
    let body = received.json();
    assert_eq!(body["type"], samples::MESSAGE_RECEIVED);
    assert_eq!(body["batch"], true);
    assert_eq!(body["data"][1]["message"]["id"], "wamid.BATCH_B");
    assert_eq!(verifies(&received, "s"), Ok(()));
}

#[tokio::test]
async fn tampered_signature_fails_verification_and_contract_vector_passes() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let mut receiver = Receiver::start(&[]).await;
    let opts = DeliveryOptions {
        tamper_signature: true,
        ..fast_retries()
    };

    sim.deliver(
        &DeliveryTarget::new(&receiver.url, "s"),
        samples::MESSAGE_RECEIVED,
        vec![json!({"a": 1})],
        &opts,
    )
    .await
    .unwrap();

    assert_eq!(
        verifies(&receiver.next().await, "s"),
        Err(SignatureError::Mismatch)
    );
    let (secret, body, signature) = SIGNATURE_VECTOR;
    assert_eq!(
        check(
            body.as_bytes(),
            Some(signature.as_bytes()),
            &[Secret::new(secret)]
        ),
        Ok(())
    );
}

#[tokio::test]
async fn status_webhooks_follow_an_accepted_send_when_enabled() {
    let config = SimConfig {
        status_webhooks: true,
        delivery: fast_retries(),
        ..SimConfig::default()
    };
    let sim = SimulatedKapso::start(config).await.unwrap();
    let client = KapsoClient::new(&sim.kapso_config())
        .unwrap()
        .with_retry_policy(fast_policy());
    let mut receiver = Receiver::start(&[]).await;
    let events = [
        samples::MESSAGE_SENT,
        samples::MESSAGE_DELIVERED,
        samples::MESSAGE_FAILED,
    ];
    let request = WebhookRequest::kapso(
        &receiver.url,
        Secret::new("whsec_status"),
        events.map(str::to_owned).to_vec(),
    );
    client.create_webhook(Some(PHONE), &request).await.unwrap();

    let sent = client
        .send_message(PHONE, &text_message("Your order ships today."))
        .await
        .unwrap();

    let reports = sim.wait_for_deliveries(2, WAIT).await;
    assert!(reports.iter().all(|r| r.succeeded()));
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.header("x-webhook-event"), Some(samples::MESSAGE_SENT));
    assert_eq!(
        second.header("x-webhook-event"),
        Some(samples::MESSAGE_DELIVERED)
    );
    for received in [&first, &second] {
        assert_eq!(received.json()["message"]["id"], sent.message_id.as_str());
        assert_eq!(received.json()["phone_number_id"], PHONE);
        assert_eq!(verifies(received, "whsec_status"), Ok(()));
    }
    assert_eq!(
        second.json()["message"]["kapso"]["statuses"][1]["status"],
        "delivered"
    );
}

#[tokio::test]
async fn status_webhooks_are_off_by_default() {
    let config = SimConfig {
        delivery: fast_retries(),
        ..SimConfig::default()
    };
    let sim = SimulatedKapso::start(config).await.unwrap();
    let client = KapsoClient::new(&sim.kapso_config()).unwrap();
    let mut receiver = Receiver::start(&[]).await;
    let request = WebhookRequest::kapso(
        &receiver.url,
        Secret::new("s"),
        vec![samples::MESSAGE_SENT.to_owned()],
    );
    let hook = client.create_webhook(Some(PHONE), &request).await.unwrap();

    client
        .send_message(PHONE, &text_message("hi"))
        .await
        .unwrap();
    // A later, explicit test event is the only delivery.
    client.test_webhook(&hook.id, None).await.unwrap();

    let received = receiver.next().await;
    assert_eq!(received.json()["message"]["id"], "wamid.TEST_EVENT_0001");
    let reports = sim.wait_for_deliveries(1, WAIT).await;
    assert_eq!(reports.len(), 1);
    sim.shutdown().await;
}
