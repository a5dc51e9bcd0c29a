//! Deliveries the simulated Kapso starts by itself: the sample event of the webhook test
//! endpoint and the opt-in `sent`/`delivered` status webhooks after a send. Each runs in the
//! background, owned by the sim, and is recorded when it finishes.

use std::sync::Arc;

use serde_json::Value;

use super::deliver::{deliver, DeliveryOptions, DeliveryTarget};
use super::samples::{self, MessageStatus, SampleContext};
use super::state::{SimState, StoredWebhook};
use crate::secret::Secret;

/// The delivery target a stored webhook describes.
fn target_of(hook: &StoredWebhook) -> DeliveryTarget {
    let headers = hook
        .json
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    DeliveryTarget {
        url: hook.str("url").unwrap_or_default().to_owned(),
        secret: hook
            .str("secret_key")
            .filter(|s| !s.is_empty())
            .map(Secret::new),
        headers,
    }
}

/// Sends `events` to `hook` one after another in the background, recording each report.
pub(crate) fn spawn_deliveries(
    state: &Arc<SimState>,
    hook: &StoredWebhook,
    events: Vec<(String, Value)>,
) {
    let target = target_of(hook);
    let opts = DeliveryOptions {
        batch: false,
        payload_version: hook.str("payload_version").unwrap_or("v2").to_owned(),
        idempotency_key: None,
        ..state.config.delivery.clone()
    };
    let sim = state.clone();
    state.spawn(async move {
        for (event_type, payload) in events {
            match deliver(
                &sim.http,
                &target,
                &event_type,
                vec![payload],
                &opts,
                &sim.token,
            )
            .await
            {
                Ok(report) => sim.write(|r| r.deliveries.push(report)),
                Err(err) => {
                    tracing::warn!(error = %err, "simulated Kapso could not build a delivery")
                }
            }
        }
    });
}

/// `sent` then `delivered` (only `sent` for reactions) to each active `kapso` webhook of the
/// number that subscribes to them.
pub(crate) fn send_status_webhooks(
    state: &Arc<SimState>,
    phone: &str,
    wamid: &str,
    recipient: &str,
    kind: &str,
    body: &Value,
) {
    let hooks = state.read(|r| {
        r.webhooks
            .iter()
            .filter(|h| {
                h.str("phone_number_id") == Some(phone)
                    && h.str("kind") == Some("kapso")
                    && h.json.get("active").and_then(Value::as_bool) == Some(true)
            })
            .cloned()
            .collect::<Vec<_>>()
    });
    let statuses: &[MessageStatus] = if kind == "reaction" {
        &[MessageStatus::Sent]
    } else {
        &[MessageStatus::Sent, MessageStatus::Delivered]
    };
    let ctx = SampleContext {
        phone_number_id: phone.to_owned(),
        customer_phone: recipient.to_owned(),
        timestamp: time::OffsetDateTime::now_utc().unix_timestamp(),
        ..SampleContext::default()
    };
    // Kapso's history shows the newest status, whoever subscribes to it.
    state.write(|r| {
        for status in statuses {
            let payload = samples::status_update(&ctx, wamid, *status, body, &[]);
            r.keep(status.event_type(), &payload);
        }
    });
    for hook in hooks {
        let subscribed = |event: &str| {
            hook.json
                .get("events")
                .and_then(Value::as_array)
                .is_some_and(|events| events.iter().any(|e| e == event))
        };
        let events: Vec<(String, Value)> = statuses
            .iter()
            .filter(|status| subscribed(status.event_type()))
            .map(|status| {
                let payload = samples::status_update(&ctx, wamid, *status, body, &[]);
                (status.event_type().to_owned(), payload)
            })
            .collect();
        if !events.is_empty() {
            spawn_deliveries(state, &hook, events);
        }
    }
}
