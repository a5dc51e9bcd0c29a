//! A stand-in for the user's own service behind an `http` handler: records every request,
//! answers with scripted responses, and can hold a request until the test releases it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Received {
    /// The texts of the events carried, in order.
    pub fn texts(&self) -> Vec<String> {
        self.body["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| {
                        e["payload"]["message"]["text"]["body"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    responses: VecDeque<(u16, Value)>,
    /// Requests whose first event text equals the key wait until the gate is opened.
    gates: HashMap<String, Arc<Notify>>,
}

#[derive(Clone)]
pub struct UserService {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<usize>,
}

impl UserService {
    pub async fn start() -> UserService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/inbound", listener.local_addr().unwrap());
        let (changed, _) = watch::channel(0);
        let service = UserService {
            url,
            inner: Arc::default(),
            changed,
        };
        let app = Router::new()
            .route("/inbound", post(receive))
            .with_state(service.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        service
    }

    /// The next request gets this answer (default: 200 with no messages).
    pub fn respond(&self, status: u16, body: Value) {
        self.inner
            .lock()
            .unwrap()
            .responses
            .push_back((status, body));
    }

    /// Holds requests whose first event's text is `text` until [`UserService::open`].
    pub fn gate(&self, text: &str) {
        self.inner
            .lock()
            .unwrap()
            .gates
            .insert(text.to_owned(), Arc::new(Notify::new()));
    }

    /// Releases the held request (or the next one) and stops holding requests for `text`.
    pub fn open(&self, text: &str) {
        if let Some(gate) = self.inner.lock().unwrap().gates.remove(text) {
            gate.notify_one();
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived (they are recorded before any gate holds them).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mut rx = self.changed.subscribe();
        let waited =
            tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|count| *count >= n)).await;
        let received = self.received();
        assert!(
            waited.is_ok(),
            "expected {n} requests to the user service, got {}: {:?}",
            received.len(),
            received.iter().map(Received::texts).collect::<Vec<_>>()
        );
        received
    }
}

async fn receive(
    State(service): State<UserService>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let record = Received {
        headers,
        raw: raw.to_vec(),
        body,
    };
    let first_text = record.texts().into_iter().next().unwrap_or_default();
    let (gate, response, count) = {
        let mut inner = service.inner.lock().unwrap();
        inner.received.push(record);
        let gate = inner.gates.get(&first_text).cloned();
        let response = inner.responses.pop_front().unwrap_or((200, json!({})));
        (gate, response, inner.received.len())
    };
    service.changed.send_replace(count);
    if let Some(gate) = gate {
        gate.notified().await;
    }
    (StatusCode::from_u16(response.0).unwrap(), Json(response.1))
}
