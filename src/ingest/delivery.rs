//! Turns a verified delivery into the events it carries: batch unwrapping, event type from the
//! header or the body, v1/v2 detection. What cannot be understood is quarantined, never dropped.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::meta;
use super::signature::Verified;
use super::{
    RawDelivery, HEADER_BATCH, HEADER_BATCH_SIZE, HEADER_EVENT, HEADER_IDEMPOTENCY_KEY,
    HEADER_PAYLOAD_VERSION,
};
use crate::event::{Event, Origin, PayloadVersion, FLAG_BATCH_SIZE_MISMATCH};
use crate::inbox::{NewDelivery, NewQuarantine};

/// Kapso's idempotency keys are opaque strings of at most 255 characters (CONTRACT.md §2.2).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Splits a verified delivery into events and quarantined parts, ready for the inbox.
/// Most events one batched delivery may carry. Kapso's batches hold at most 100; a larger one
/// is kept whole in quarantine (stored, answered `200`, nothing lost) instead of being split,
/// so one signed body cannot hold up every other delivery while thousands of elements are
/// stored one by one.
pub const MAX_BATCH_EVENTS: usize = 1_000;

pub fn unwrap_delivery(verified: Verified<RawDelivery>) -> NewDelivery {
    let raw = verified.into_inner();
    let event_header = raw
        .header(HEADER_EVENT)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let idempotency_key = raw
        .header(HEADER_IDEMPOTENCY_KEY)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| truncate(s, MAX_IDEMPOTENCY_KEY).to_owned());
    let version_header = raw.header(HEADER_PAYLOAD_VERSION).map(str::to_owned);
    let batch_header = raw
        .header(HEADER_BATCH)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));

    let mut delivery = NewDelivery {
        webhook: raw.webhook.clone(),
        received_at_ms: raw.received_at_ms,
        body_bytes: raw.body.len(),
        idempotency_key,
        event_header,
        payload_version: version_header.clone(),
        batch: batch_header,
        events: Vec::new(),
        quarantine: Vec::new(),
    };

    let body: Value = match serde_json::from_slice(&raw.body) {
        Ok(value) => value,
        Err(err) => {
            delivery.quarantine_whole(&raw.body, format!("body is not valid JSON: {err}"));
            return delivery;
        }
    };
    let Value::Object(mut root) = body else {
        delivery.quarantine_whole(&raw.body, "body is JSON but not an object".to_owned());
        return delivery;
    };

    if meta::is_meta_body(&root) {
        let events = meta::events(&root);
        if events.is_empty() {
            delivery.quarantine_whole(
                &raw.body,
                "Meta webhook body without any change switchboard can read".to_owned(),
            );
        }
        for (index, (event_type, payload)) in events.into_iter().enumerate() {
            delivery.push_item(Value::Object(payload), None, Some(&event_type), index);
        }
        return delivery;
    }

    let is_batch = batch_header || root.get("batch") == Some(&Value::Bool(true));
    if is_batch {
        delivery.batch = true;
        let batch_type = take_string(&root, "type");
        let Some(Value::Array(items)) = root.remove("data") else {
            delivery.quarantine_whole(
                &raw.body,
                "batched delivery without a `data` array".to_owned(),
            );
            return delivery;
        };
        if items.len() > MAX_BATCH_EVENTS {
            delivery.quarantine_whole(
                &raw.body,
                format!(
                    "batch of {} events exceeds the limit of {MAX_BATCH_EVENTS} (Kapso's batches hold at most 100); kept whole",
                    items.len()
                ),
            );
            return delivery;
        }
        let default_type = delivery.event_header.clone().or(batch_type);
        // Each element's own bytes, to store and quarantine exactly what Kapso sent.
        let texts = serde_json::from_slice::<RawBatch<'_>>(&raw.body)
            .ok()
            .map(|b| b.data)
            .filter(|texts| texts.len() == items.len());
        // Kapso says how many elements it sent; a different count is flagged, never dropped.
        let declared_size = raw.header(HEADER_BATCH_SIZE).map(str::trim);
        let size_mismatch =
            declared_size.is_some_and(|size| size.parse::<usize>().ok() != Some(items.len()));
        for (index, item) in items.into_iter().enumerate() {
            let text = texts.as_ref().and_then(|t| t.get(index)).map(|t| t.get());
            delivery.push_item(item, text, default_type.as_deref(), index);
        }
        if size_mismatch {
            for event in &mut delivery.events {
                event.flags.push(FLAG_BATCH_SIZE_MISMATCH);
            }
        }
        return delivery;
    }

    // An older Kapso form wraps the payload as `{ "event": ..., "data": {...} }`.
    if delivery.event_header.is_none() && root.get("data").is_some_and(Value::is_object) {
        if let Some(event) = take_string(&root, "event") {
            if let Some(data) = root.remove("data") {
                let text = serde_json::from_slice::<RawWrapped<'_>>(&raw.body).ok();
                delivery.push_item(data, text.map(|t| t.data.get()), Some(&event), 0);
                return delivery;
            }
        }
    }
    let event_type = delivery.event_header.clone();
    let text = std::str::from_utf8(&raw.body).ok();
    delivery.push_item(Value::Object(root), text, event_type.as_deref(), 0);
    delivery
}

/// A batch's elements as the text Kapso sent.
#[derive(serde::Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// The older `{ "event", "data" }` form's payload as the text Kapso sent.
#[derive(serde::Deserialize)]
struct RawWrapped<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

impl NewDelivery {
    fn quarantine_whole(&mut self, body: &[u8], reason: String) {
        self.quarantine.push(NewQuarantine {
            reason,
            body: body.to_vec(),
        });
    }

    /// Adds one event payload (a batch element or the whole body); `text` is its JSON text as
    /// received, when known.
    fn push_item(
        &mut self,
        item: Value,
        text: Option<&str>,
        default_type: Option<&str>,
        index: usize,
    ) {
        let as_received = |item: &Value| match text {
            Some(text) => text.as_bytes().to_vec(),
            None => item.to_string().into_bytes(),
        };
        let Value::Object(payload) = item else {
            let reason = format!("event #{index} is not a JSON object");
            self.quarantine.push(NewQuarantine {
                reason,
                body: as_received(&item),
            });
            return;
        };
        let event_type = default_type
            .map(str::to_owned)
            .or_else(|| body_event_type(&payload));
        let Some(event_type) = event_type else {
            let reason = format!(
                "event #{index} has no event type (no X-Webhook-Event header, no `event`/`type` field)"
            );
            self.quarantine.push(NewQuarantine {
                reason,
                body: as_received(&Value::Object(payload)),
            });
            return;
        };
        let version = PayloadVersion::detect(self.payload_version.as_deref(), &payload);
        let origin = Origin {
            idempotency_key: self.idempotency_key.as_deref(),
            index,
        };
        let mut event = Event::from_payload(&event_type, version, payload, origin);
        if version != PayloadVersion::V1 {
            event.payload_text = text.map(str::to_owned);
        }
        self.events.push(event);
    }
}

/// The event type named in the body, for deliveries that lack the header.
fn body_event_type(payload: &Map<String, Value>) -> Option<String> {
    take_string(payload, "event")
        .or_else(|| take_string(payload, "type").filter(|t| t.contains('.')))
}

fn take_string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
