//! The simulated Kapso: a real HTTP server on `127.0.0.1:0` that speaks the documented
//! contract (CONTRACT §7): the Platform API (webhooks, phone numbers), the Meta proxy (send,
//! mark read) with scriptable failures, and a webhook sender that signs and retries like Kapso.
//! Used by `switchboard demo` and by tests; it never talks to anything but the URLs it is given.

mod cursor;
pub mod deliver;
mod history;
mod messages;
mod outgoing;
mod paging;
mod platform;
mod proxy;
pub mod samples;
mod shapes;
mod state;
mod throughput;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use deliver::{
    DeliveryAttempt, DeliveryError, DeliveryOptions, DeliveryReport, DeliveryTarget,
};

pub use proxy::ScriptedResponse;
pub use shapes::WebhookShape;
pub use throughput::SendLimit;

use crate::config::KapsoConfig;
use crate::secret::Secret;
use state::{Records, SimState};

/// A phone number the simulated project has connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPhoneNumber {
    pub phone_number_id: String,
    /// As Meta formats it, e.g. `+1 555-010-0999`.
    pub display_phone_number: String,
    pub name: String,
    pub business_account_id: Option<String>,
    /// `throughput_tier` of the phone-number object (Kapso's OpenAPI example: `TIER_10K`).
    pub throughput_tier: Option<String>,
}

impl SimPhoneNumber {
    pub fn new(phone_number_id: &str, display_phone_number: &str) -> Self {
        SimPhoneNumber {
            phone_number_id: phone_number_id.to_owned(),
            display_phone_number: display_phone_number.to_owned(),
            name: "Support Line".to_owned(),
            business_account_id: Some("102290129340398".to_owned()),
            throughput_tier: Some("TIER_10K".to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The project API key the sim accepts (`X-API-Key`, or `Authorization: Bearer` on the proxy).
    pub api_key: String,
    pub phone_numbers: Vec<SimPhoneNumber>,
    pub project_id: String,
    /// Graph version in the proxy path (`/meta/whatsapp/{graph_version}`).
    pub graph_version: String,
    /// Whether the plan includes `project.event` (otherwise subscribing answers 402).
    pub project_events_enabled: bool,
    /// Opt-in: after an accepted send, deliver `sent` and `delivered` webhooks to the
    /// number's subscribed webhooks.
    pub status_webhooks: bool,
    /// Retry delays and timeout of the sim's own deliveries (test endpoint, status webhooks).
    pub delivery: DeliveryOptions,
    /// Which documented shape webhook objects have in the Platform API's answers.
    pub webhook_shape: WebhookShape,
    /// Meta's per-number throughput limit, enforced on messages (not read receipts): over it a
    /// send is refused with 130429. `None`: unlimited.
    pub send_limit: Option<SendLimit>,
    /// Kapso's clock: when it stores history and webhooks. Tests pass a manual clock to put
    /// Kapso's messages at chosen times (its webhook sender's retry waits have their own,
    /// [`DeliveryOptions::clock`]).
    pub clock: crate::clock::Clock,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: "kapso_sim_test_key".to_owned(),
            phone_numbers: vec![SimPhoneNumber::new("106540352242922", "+1 555-000-9999")],
            project_id: "0c3f6a2e-8d41-4b7a-9f15-3e2a1d7c5b90".to_owned(),
            graph_version: "v24.0".to_owned(),
            project_events_enabled: false,
            status_webhooks: false,
            delivery: DeliveryOptions::default(),
            webhook_shape: WebhookShape::default(),
            send_limit: None,
            clock: crate::clock::Clock::System,
        }
    }
}

/// One HTTP request the sim answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    pub api_key: Option<String>,
    pub content_type: Option<String>,
}

/// One accepted `POST /{phone_number_id}/messages`: a message, or a mark-read.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSend {
    pub phone_number_id: String,
    pub body: Value,
    /// The fresh wamid the sim answered with; for a mark-read, the `message_id` marked read.
    pub wamid: String,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// When the sim accepted it.
    pub accepted_at: std::time::Instant,
}

impl RecordedSend {
    pub fn is_mark_read(&self) -> bool {
        self.body.get("status").and_then(Value::as_str) == Some("read")
    }
}

/// A running simulated Kapso. Dropping it stops the server and its background deliveries;
/// [`SimulatedKapso::shutdown`] also waits for them to finish.
pub struct SimulatedKapso {
    state: Arc<SimState>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl SimulatedKapso {
    /// Binds `127.0.0.1:0` and serves until shutdown or drop.
    pub async fn start(config: SimConfig) -> std::io::Result<SimulatedKapso> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let phone_numbers = state::phone_number_objects(&config.phone_numbers);
        let state = Arc::new(SimState::new(
            config,
            format!("http://{addr}"),
            phone_numbers,
            token.clone(),
        ));
        let app = Router::new()
            .nest("/platform/v1", platform::router(state.clone()))
            .nest("/meta/whatsapp", proxy::router(state.clone()))
            .fallback(|| async { platform::error(404, "Not found") })
            .layer(from_fn_with_state(state.clone(), state::record_requests));
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "simulated Kapso server stopped");
            }
        });
        Ok(SimulatedKapso {
            state,
            addr,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`: host only, like `kapso.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.state.config.api_key
    }

    /// A `[kapso]` config pointing at this sim with its key.
    pub fn kapso_config(&self) -> KapsoConfig {
        KapsoConfig {
            base_url: self.base_url(),
            api_key: Some(Secret::new(self.api_key())),
            graph_version: self.state.config.graph_version.clone(),
            // The sim keeps no per-key request limit.
            api_requests_per_minute: 100_000,
            ..KapsoConfig::default()
        }
    }

    /// Queues one canned answer for the next proxy send.
    pub fn script(&self, response: ScriptedResponse) {
        self.script_sends([response]);
    }

    /// Queues canned answers for the next proxy sends, in order.
    pub fn script_sends(&self, responses: impl IntoIterator<Item = ScriptedResponse>) {
        self.state.write(|r| r.script.extend(responses));
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.read(|r| r.requests.clone())
    }

    pub fn sends(&self) -> Vec<RecordedSend> {
        self.state.read(|r| r.sends.clone())
    }

    /// Messages refused with 130429 by [`SimConfig::send_limit`], by `phone_number_id`.
    pub fn throttled(&self) -> Vec<String> {
        self.state.read(|r| r.throttled.clone())
    }

    pub fn deliveries(&self) -> Vec<DeliveryReport> {
        self.state.read(|r| r.deliveries.clone())
    }

    /// The stored webhooks (`WhatsappWebhook` objects), newest first.
    pub fn webhooks(&self) -> Vec<Value> {
        let mut hooks = self.state.read(|r| r.webhooks.clone());
        hooks.sort_by_key(|h| std::cmp::Reverse(h.seq));
        hooks.into_iter().map(|h| Value::Object(h.json)).collect()
    }

    /// Turns a webhook on or off as Kapso's auto-pause would. False if there is no such id.
    pub fn set_webhook_active(&self, webhook_id: &str, active: bool) -> bool {
        self.state.write(|r| {
            let now = r.now_iso();
            match r
                .webhooks
                .iter_mut()
                .find(|h| h.str("id") == Some(webhook_id))
            {
                Some(hook) => {
                    hook.json.insert("active".into(), json!(active));
                    hook.json.insert("updated_at".into(), json!(now));
                    true
                }
                None => false,
            }
        })
    }

    /// Returns the sends once at least `n` were accepted. Woken on every change, never
    /// polling; panics after `timeout`, listing the sends seen so far.
    pub async fn wait_for_sends(&self, n: usize, timeout: Duration) -> Vec<RecordedSend> {
        self.wait_for("sends", n, timeout, |r| &r.sends).await
    }

    /// Returns the reports once at least `n` deliveries have finished (succeeded or given
    /// up); panics after `timeout`, listing the ones seen so far.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<DeliveryReport> {
        self.wait_for("deliveries", n, timeout, |r| &r.deliveries)
            .await
    }

    async fn wait_for<T: Clone + std::fmt::Debug>(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pick: impl Fn(&Records) -> &Vec<T>,
    ) -> Vec<T> {
        let mut changes = self.state.subscribe();
        let wait = async {
            loop {
                let seen = self.state.read(|r| pick(r).clone());
                if seen.len() >= n {
                    return seen;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(seen) => seen,
            Err(_) => {
                let seen = self.state.read(|r| pick(r).clone());
                panic!(
                    "simulated Kapso: waited {timeout:?} for {n} {what}, saw {}: {seen:#?}",
                    seen.len()
                )
            }
        }
    }

    /// Keeps `payloads` in the message history as if Kapso had received them and never
    /// delivered them (no webhook call): what an outage leaves behind, in bulk.
    pub fn keep_in_history(&self, event_type: &str, payloads: &[Value]) {
        self.state.write(|r| {
            for payload in payloads {
                r.keep(event_type, payload);
            }
        });
    }

    /// Delivers `payloads` to `target` as Kapso would (see [`deliver::deliver`]) and records
    /// the report. Runs in the caller's task: returns after success or the last retry.
    pub async fn deliver(
        &self,
        target: &DeliveryTarget,
        event_type: &str,
        payloads: Vec<Value>,
        opts: &DeliveryOptions,
    ) -> Result<DeliveryReport, DeliveryError> {
        // Kapso keeps the messages it delivers, whether or not the delivery succeeds.
        self.state.write(|r| {
            for payload in &payloads {
                r.keep(event_type, payload);
            }
        });
        let report = deliver::deliver(
            &self.state.http,
            target,
            event_type,
            payloads,
            opts,
            &self.state.token,
        )
        .await?;
        self.state.write(|r| r.deliveries.push(report.clone()));
        Ok(report)
    }

    /// Stops accepting requests, cancels background deliveries and waits for both.
    pub async fn shutdown(mut self) {
        self.state.token.cancel();
        if let Some(server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                tracing::warn!("simulated Kapso did not stop within 5 s");
            }
        }
        self.state.take_tasks().shutdown().await;
    }
}

impl Drop for SimulatedKapso {
    fn drop(&mut self) {
        // The server sees the cancellation and shuts down gracefully on its own.
        self.state.token.cancel();
        self.state.take_tasks().abort_all();
    }
}
