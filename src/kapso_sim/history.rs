//! The simulated Kapso's message history behind `GET /{phone_number_id}/messages` (Kapso's
//! `listMessages`): every message the proxy accepted (outbound) and every message the webhook
//! sender was asked to deliver (inbound), whether or not the delivery succeeded, newest first,
//! with the `direction`, `conversation_id`, `since`/`until` filters, `limit` (at most 100) and an
//! opaque `after` cursor, answered as `{"data": [...], "paging": {"cursors": {"after"}}}` like
//! Kapso's own examples (a cursor comes with every non-empty page).

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
    let offset = match query.get("after") {
        None => 0,
        Some(cursor) => match cursor
            .strip_prefix("sim-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(offset) => offset,
            None => return graph_error(400, 100, "(#100) Invalid cursor."),
        },
    };
    let direction = query.get("direction");
    let conversation = query.get("conversation_id");
    let matching: Vec<Value> = state.read(|records| {
        let mut entries: Vec<&HistoryEntry> = records
            .history
            .iter()
            .filter(|e| e.phone_number_id == phone)
            .filter(|e| since.is_none_or(|s| e.created_ms >= s))
            .filter(|e| until.is_none_or(|u| e.created_ms <= u))
            .filter(|e| {
                direction.is_none_or(|d| {
                    e.message
                        .pointer("/kapso/direction")
                        .and_then(Value::as_str)
                        == Some(d)
                })
            })
            .filter(|e| {
                conversation.is_none_or(|c| {
                    e.message
                        .pointer("/kapso/whatsapp_conversation_id")
                        .and_then(Value::as_str)
                        == Some(c)
                })
            })
            .collect();
        // Newest first; equal times in reverse order of storing.
        entries.reverse();
        entries.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
        entries.into_iter().map(|e| e.message.clone()).collect()
    });
    let page: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    let count = page.len();
    let mut body = json!({ "data": page });
    if count > 0 {
        body["paging"] = json!({ "cursors": { "after": format!("sim-{}", offset + count) } });
    }
    Json(body).into_response()
}
