//! The simulated Kapso's message history behind `GET /{phone_number_id}/messages` (Kapso's
//! `listMessages`): every message the proxy accepted (outbound) and every message the webhook
//! sender was asked to deliver (inbound), whether or not the delivery succeeded, newest first,
//! with the `direction`, `status`, `conversation_id`, `since`/`until` filters, `limit` (at most
//! 100), opaque keyset cursors `after` (older) and `before` (newer) (see [`super::cursor`]) and
//! `fields` (absent: Kapso's default set; `kapso()`: no `kapso` object; `kapso(a,b)`: only those
//! keys), answered as `{"data": [...], "paging": {"cursors": {"before", "after"}}}` like Kapso's
//! examples; the last page's `after` (and the first's `before`) is `null`, as Kapso's own Chat
//! SDK adapter mocks it. Inbound items read like Kapso's list examples
//! (`kapso.status: "delivered"`, `processing_status: "completed"`, no webhook-only `origin`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::proxy::graph_error;
use super::state::{parse_iso_millis, SimState};

/// One message Kapso holds.
#[derive(Debug, Clone)]
pub(crate) struct HistoryEntry {
    pub phone_number_id: String,
    /// When Kapso stored it (Unix ms).
    pub created_ms: i128,
    /// The message as `listMessages` returns it, with its `kapso` fields.
    pub message: Value,
}

/// The message of an event payload the webhook sender delivers, if it carries one the customer
/// sent.
pub(crate) fn inbound_entry(
    event_type: &str,
    payload: &Value,
    now_ms: i128,
) -> Option<HistoryEntry> {
    if event_type != "whatsapp.message.received" {
        return None;
    }
    let mut message = payload.get("message")?.clone();
    let phone_number_id = payload
        .get("phone_number_id")
        .or_else(|| payload.pointer("/conversation/phone_number_id"))?
        .as_str()?
        .to_owned();
    let kapso = message
        .as_object_mut()?
        .entry("kapso")
        .or_insert_with(|| json!({}));
    if let Some(kapso) = kapso.as_object_mut() {
        kapso.entry("direction").or_insert(json!("inbound"));
        // The history shows what Kapso did with it, not the webhook's `received`.
        kapso.insert("status".into(), json!("delivered"));
        kapso.insert("processing_status".into(), json!("completed"));
        kapso.remove("origin");
        if let Some(id) = payload.pointer("/conversation/id") {
            kapso.insert("whatsapp_conversation_id".into(), id.clone());
        }
        if let Some(phone) = payload.pointer("/conversation/phone_number") {
            kapso.insert("phone_number".into(), phone.clone());
        }
        if let Some(name) = payload.pointer("/conversation/kapso/contact_name") {
            kapso.insert("contact_name".into(), name.clone());
        }
    }
    Some(HistoryEntry {
        phone_number_id,
        created_ms: now_ms,
        message,
    })
}

/// Moves the outbound message a status event names (`message.id`) to the event's status, as
/// Kapso's list shows a message's newest status: forward only (`sent` < `delivered` < `read`),
/// and `failed` from any. False when no outbound message has that id or the event is not a
/// status.
pub(crate) fn apply_status(
    history: &mut [HistoryEntry],
    event_type: &str,
    payload: &Value,
) -> bool {
    const ORDER: [&str; 3] = ["sent", "delivered", "read"];
    let Some(status) = event_type.strip_prefix("whatsapp.message.") else {
        return false;
    };
    if status != "failed" && !ORDER.contains(&status) {
        return false;
    }
    let Some(wamid) = payload.pointer("/message/id").and_then(Value::as_str) else {
        return false;
    };
    let Some(entry) = history.iter_mut().find(|e| {
        e.message.get("id").and_then(Value::as_str) == Some(wamid)
            && e.message
                .pointer("/kapso/direction")
                .and_then(Value::as_str)
                == Some("outbound")
    }) else {
        return false;
    };
    let rank = |s: &str| ORDER.iter().position(|o| *o == s);
    let current = entry
        .message
        .pointer("/kapso/status")
        .and_then(Value::as_str)
        .unwrap_or("sent");
    let forward = match (rank(current), rank(status)) {
        (Some(now), Some(next)) => next > now,
        (_, None) => current != "failed",
        (None, Some(_)) => false,
    };
    if forward {
        entry.message["kapso"]["status"] = json!(status);
    }
    true
}

/// A message the proxy accepted, as the history lists it.
pub(crate) fn outbound_entry(
    phone_number_id: &str,
    wamid: &str,
    body: &Value,
    conversation_id: Option<&str>,
    now_ms: i128,
) -> HistoryEntry {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("text");
    let to = body
        .get("to")
        .or_else(|| body.get("recipient"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut message = json!({
        "id": wamid,
        "timestamp": (now_ms / 1000).to_string(),
        "type": kind,
        "to": to,
        "kapso": { "direction": "outbound", "status": "sent", "phone_number": format!("+{to}") },
    });
    if let Some(object) = body.get(kind) {
        message[kind] = object.clone();
    }
    if let Some(id) = conversation_id {
        message["kapso"]["whatsapp_conversation_id"] = json!(id);
    }
    HistoryEntry {
        phone_number_id: phone_number_id.to_owned(),
        created_ms: now_ms,
        message,
    }
}

/// `GET /{version}/{phone_number_id}/messages`.
pub(crate) async fn list(
    State(state): State<Arc<SimState>>,
    Path((version, phone)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = super::proxy::refuse(&state, &headers, &version, &phone) {
        return refused;
    }
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => return graph_error(400, 100, "(#100) Param limit must be between 1 and 100."),
    };
    // An unreadable bound is refused, like Kapso's own parameter errors.
    let bound = |key: &str| {
        query
            .get(key)
            .map(|text| parse_iso_millis(text).ok_or(key.to_owned()))
    };
    let (since, until) = match (bound("since").transpose(), bound("until").transpose()) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(key), _) | (_, Err(key)) => {
            return graph_error(
                400,
                100,
                &format!("(#100) Param {key} must be an ISO 8601 time."),
            )
        }
    };
    let cursor = |key: &str| match query.get(key) {
        None => Ok(None),
        Some(text) => super::cursor::decode(text).map(Some).ok_or(()),
    };
    let (Ok(after), Ok(before)) = (cursor("after"), cursor("before")) else {
        return graph_error(400, 100, "(#100) Invalid cursor.");
    };
    let direction = query.get("direction");
    let status = query.get("status");
    let conversation = query.get("conversation_id");
    let text_at = |e: &HistoryEntry, pointer: &str| {
        e.message
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // Newest first by the keyset (created_ms, seq), seq being the order of storing.
    let matching: Vec<((i128, usize), Value)> = state.read(|records| {
        let mut entries: Vec<((i128, usize), &HistoryEntry)> = records
            .history
            .iter()
            .enumerate()
            .map(|(seq, e)| ((e.created_ms, seq), e))
            .filter(|(_, e)| e.phone_number_id == phone)
            .filter(|(_, e)| since.is_none_or(|s| e.created_ms >= s))
            .filter(|(_, e)| until.is_none_or(|u| e.created_ms <= u))
            .filter(|(_, e)| {
                direction.is_none_or(|d| text_at(e, "/kapso/direction").as_ref() == Some(d))
            })
            .filter(|(_, e)| status.is_none_or(|s| text_at(e, "/kapso/status").as_ref() == Some(s)))
            .filter(|(_, e)| {
                conversation.is_none_or(|c| {
                    text_at(e, "/kapso/whatsapp_conversation_id").as_ref() == Some(c)
                })
            })
            .collect();
        entries.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        entries
            .into_iter()
            .map(|(key, e)| (key, e.message.clone()))
            .collect()
    });
    // `after`: the items older than the cursor; `before`: the `limit` newer ones closest to it.
    let (start, end) = match (after, before) {
        (Some(key), _) => {
            let start = matching.partition_point(|(k, _)| *k >= key);
            (start, (start + limit).min(matching.len()))
        }
        (None, Some(key)) => {
            let end = matching.partition_point(|(k, _)| *k > key);
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(matching.len())),
    };
    let fields = query.get("fields").map(String::as_str);
    let page: Vec<Value> = matching[start..end]
        .iter()
        .map(|(_, message)| select_fields(message.clone(), fields))
        .collect();
    let key_at = |i: usize| {
        matching
            .get(i)
            .map(|(key, _)| super::cursor::encode(key.0, key.1))
    };
    let newer = (start > 0 && end > start).then(|| key_at(start)).flatten();
    let older = (end < matching.len() && end > start)
        .then(|| key_at(end - 1))
        .flatten();
    Json(json!({
        "data": page,
        "paging": { "cursors": { "before": newer, "after": older } },
    }))
    .into_response()
}

/// Applies `fields` to a message: absent (or `kapso(*)`, `kapso(all)`, `kapso(default)`) keeps
/// Kapso's fields, `kapso()` drops them, `kapso(a,b)` keeps only the named ones (Kapso's
/// TypeScript SDK docs, "kapso-extensions").
fn select_fields(mut message: Value, fields: Option<&str>) -> Value {
    let Some(list) = fields
        .map(str::trim)
        .and_then(|f| f.strip_prefix("kapso("))
        .and_then(|f| f.strip_suffix(')'))
    else {
        return message;
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if matches!(names.as_slice(), ["*"] | ["all"] | ["default"]) {
        return message;
    }
    let Some(object) = message.as_object_mut() else {
        return message;
    };
    if names.is_empty() {
        object.remove("kapso");
    } else if let Some(Value::Object(kapso)) = object.get_mut("kapso") {
        kapso.retain(|key, _| names.contains(&key.as_str()));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_event_moves_the_outbound_message_forward_only() {
        let mut history = vec![outbound_entry(
            "111",
            "wamid.O",
            &json!({"type": "text", "to": "15550001111", "text": {"body": "hi"}}),
            None,
            1_000,
        )];
        let status = |s: &str| format!("whatsapp.message.{s}");
        let payload = json!({"message": {"id": "wamid.O"}});
        let now = |h: &[HistoryEntry]| h[0].message["kapso"]["status"].clone();
        assert!(apply_status(&mut history, &status("read"), &payload));
        assert_eq!(now(&history), "read");
        // A late `delivered` does not move it back; `failed` wins from anywhere.
        apply_status(&mut history, &status("delivered"), &payload);
        assert_eq!(now(&history), "read");
        apply_status(&mut history, &status("failed"), &payload);
        assert_eq!(now(&history), "failed");
        apply_status(&mut history, &status("read"), &payload);
        assert_eq!(now(&history), "failed");
        // Other ids and other events change nothing.
        assert!(!apply_status(
            &mut history,
            &status("read"),
            &json!({"message": {"id": "x"}})
        ));
        assert!(!apply_status(
            &mut history,
            "whatsapp.message.received",
            &payload
        ));
    }
}
