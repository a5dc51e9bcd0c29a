//! Conversations: the ones seen most recently, and one conversation as the customer saw it
//! (their messages, our replies with their latest status) with its 24-hour window.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_size, AdminApiState, ApiError};
use crate::handlers::conversations::Conversations;
use crate::inbox::timeline::{self, TimelineEvent};
use crate::jobs::store as job_store;
use crate::window::{format_rfc3339, Window};

/// Most events and outbound messages one conversation view shows (the latest).
pub const TIMELINE_LIMIT: i64 = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsQuery {
    limit: Option<i64>,
}

/// `{"conversations": [...]}`, most recent first, among the newest stored events.
pub async fn list(
    State(state): State<AdminApiState>,
    Query(query): Query<ConversationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_size(query.limit)?;
    let conversations = timeline::recent_conversations(&state.reads, limit).await?;
    Ok(Json(json!({
        "conversations": conversations,
        "scanned_events": timeline::RECENT_EVENTS_SCANNED,
    })))
}

/// `{"conversation", "window": {"last_inbound_at", "closes_at", "open"}, "events": [...],
/// "outbound": [{..., "status"}]}`; 404 when nothing of it is stored.
pub async fn show(
    State(state): State<AdminApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let events = timeline::conversation_events(&state.reads, &id, TIMELINE_LIMIT).await?;
    let outbound = job_store::outbound_of_conversation(&state.reads, &id, TIMELINE_LIMIT).await?;
    if events.is_empty() && outbound.is_empty() {
        return Err(ApiError::not_found(
            "no stored event or outbound message has this conversation id",
        ));
    }
    let last_inbound = Conversations::new(state.reads.clone())
        .last_inbound_ms(&id)
        .await?;
    let window = Window::default().merge(last_inbound);
    let outbound: Vec<Value> = outbound
        .iter()
        .map(|row| {
            let status = row.wamid.as_deref().and_then(|w| latest_status(&events, w));
            let mut value = json!(row);
            value["status"] = json!(status);
            value
        })
        .collect();
    Ok(Json(json!({
        "conversation": id,
        "window": {
            "last_inbound_at": window.last_inbound_ms,
            "closes_at": window.closes_at_ms(),
            "closes_at_text": window.closes_at_ms().and_then(format_rfc3339),
            "open": window.is_open(state.clock.now_ms()),
        },
        "events": events,
        "outbound": outbound,
    })))
}

/// The latest status (`sent`, `delivered`, `read`, `failed`) stored for our message `wamid`.
fn latest_status<'a>(events: &'a [TimelineEvent], wamid: &str) -> Option<&'a str> {
    events
        .iter()
        .filter(|e| e.message_id.as_deref() == Some(wamid))
        .filter_map(|e| e.event_type.strip_prefix("whatsapp.message."))
        .rfind(|status| ["sent", "delivered", "read", "failed"].contains(status))
}
