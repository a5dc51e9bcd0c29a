//! `POST /webhooks/{name}`: body limit, signature check on the raw bytes, unwrap, hand to the
//! inbox, and answer only once the delivery is committed.

pub mod body;
pub mod delivery;
pub mod error;
pub mod meta;
pub mod signature;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use tracing::Instrument;

use crate::log_text::Untrusted;

use crate::config::WebhookConfig;
use crate::inbox::Inbox;
use crate::metrics::{Metrics, WebhookLabels};
use crate::router::Router as Routes;
use crate::secret::Secret;
pub use body::BodyLimits;
pub use error::IngestError;

pub const HEADER_SIGNATURE: &str = "x-webhook-signature";
pub const HEADER_EVENT: &str = "x-webhook-event";
pub const HEADER_IDEMPOTENCY_KEY: &str = "x-idempotency-key";
pub const HEADER_PAYLOAD_VERSION: &str = "x-webhook-payload-version";
pub const HEADER_BATCH: &str = "x-webhook-batch";
pub const HEADER_BATCH_SIZE: &str = "x-batch-size";

/// A request as it arrived, before anything in it is trusted.
#[derive(Debug)]
pub struct RawDelivery {
    pub webhook: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at_ms: i64,
}

impl RawDelivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the ingest route needs.
#[derive(Clone)]
pub struct IngestState {
    webhooks: Arc<HashMap<String, Vec<Secret>>>,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    routes: Arc<Routes>,
    bodies: BodyLimits,
    /// A delivery not committed within this long gets 503.
    deadline: Duration,
}

impl IngestState {
    pub fn new(
        webhooks: &[WebhookConfig],
        inbox: Inbox,
        metrics: Arc<Metrics>,
        routes: Arc<Routes>,
        bodies: BodyLimits,
        deadline: Duration,
    ) -> Self {
        let webhooks = webhooks
            .iter()
            .map(|w| (w.name.clone(), w.secrets.clone()))
            .collect();
        IngestState {
            webhooks: Arc::new(webhooks),
            inbox,
            metrics,
            routes,
            bodies,
            deadline,
        }
    }
}

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/webhooks/{name}", post(receive_delivery))
        .with_state(state)
}

/// Label used in metrics for requests to a webhook name that is not configured, so that
/// arbitrary names cannot blow up the label set.
const UNKNOWN_WEBHOOK: &str = "(unknown)";

async fn receive_delivery(
    State(state): State<IngestState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, IngestError> {
    // A configured name is ours; anything else came from the network.
    let span = if state.webhooks.contains_key(&name) {
        tracing::info_span!("delivery", webhook.name = %name)
    } else {
        tracing::info_span!("delivery", webhook.name = %Untrusted(&name))
    };
    async move {
        // Past the deadline Kapso is about to give up: a body still not received by then gets
        // 408, a delivery not committed by then 503 (it retries later) rather than a late 200.
        // A delivery already queued for its commit may still be stored; the retry is then
        // deduplicated.
        let deadline = tokio::time::Instant::now() + state.deadline;
        let result = accept_delivery(&state, name.clone(), headers, body, deadline).await;
        match &result {
            Ok(_) => {}
            Err(err) => {
                let label = if matches!(err, IngestError::UnknownWebhook) {
                    UNKNOWN_WEBHOOK
                } else {
                    &name
                };
                state.metrics.count_delivery(label, err.result_label());
                err.log();
            }
        }
        result.map(|outcome| (StatusCode::OK, Json(outcome)))
    }
    .instrument(span)
    .await
}

/// Verifies, unwraps and stores one delivery; returns once it is committed, or fails at
/// `deadline`.
async fn accept_delivery(
    state: &IngestState,
    name: String,
    headers: HeaderMap,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<crate::inbox::DeliveryOutcome, IngestError> {
    let secrets = state
        .webhooks
        .get(&name)
        .ok_or(IngestError::UnknownWebhook)?;
    // The body's memory stays counted until the delivery is committed (the inbox holds it).
    let (body, _memory) = tokio::time::timeout_at(deadline, state.bodies.read(&headers, body))
        .await
        .map_err(|_| body::BodyError::TooSlow)??;
    let raw = RawDelivery {
        webhook: name,
        headers,
        body,
        received_at_ms: crate::clock::now_ms(),
    };
    let verified = signature::verify(raw, secrets)?;
    let mut delivery = delivery::unwrap_delivery(verified);
    for event in &mut delivery.events {
        event.awaits_routing = state.routes.may_match(&event.event_type);
    }
    let flagged: Vec<String> = delivery
        .events
        .iter()
        .filter_map(|e| e.flags_text().map(|f| format!("{} ({f})", e.event_type)))
        .collect();
    let webhook = delivery.webhook.clone();
    let outcome = tokio::time::timeout_at(deadline, state.inbox.accept(delivery))
        .await
        .map_err(|_| IngestError::DeadlineExceeded {
            deadline_ms: u64::try_from(state.deadline.as_millis()).unwrap_or(u64::MAX),
        })??;

    let labels = WebhookLabels { webhook };
    let metrics = &state.metrics;
    metrics.count_delivery(&labels.webhook, outcome.result());
    metrics
        .events_stored
        .get_or_create(&labels)
        .inc_by(outcome.stored as u64);
    metrics
        .events_duplicate
        .get_or_create(&labels)
        .inc_by(outcome.duplicates as u64);
    metrics
        .events_quarantined
        .get_or_create(&labels)
        .inc_by(outcome.quarantined as u64);
    if outcome.quarantined > 0 {
        tracing::warn!(
            delivery.id = outcome.delivery_id,
            quarantined = outcome.quarantined,
            "delivery kept in quarantine: see `switchboard events list --quarantined`"
        );
    }
    if !flagged.is_empty() {
        tracing::info!(delivery.id = outcome.delivery_id, flagged = ?flagged, "stored events flagged for attention");
    }
    tracing::debug!(
        delivery.id = outcome.delivery_id,
        stored = outcome.stored,
        duplicates = outcome.duplicates,
        result = outcome.result(),
        "delivery committed"
    );
    Ok(outcome)
}
