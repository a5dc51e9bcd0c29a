//! Conversations: the ones seen most recently, and one conversation as the customer saw it
//! (their messages, our replies with their latest status) with its 24-hour window. The console's
//! timeline page reads the same [`ConversationView`].

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqlitePool;

use super::{page_size, AdminApiState, ApiError};
use crate::handlers::conversations::Conversations;
use crate::inbox::timeline::{self, TimelineEvent};
use crate::jobs::store::{self as job_store, OutboundRow};
use crate::window::{format_rfc3339, Window};

/// Most events and outbound messages one conversation view shows (the latest).
pub const TIMELINE_LIMIT: i64 = 500;

/// One conversation as stored: its events in order, every message our jobs sent or plan to send
/// in it with the latest status stored for it, and its 24-hour window.
#[derive(Debug, Clone)]
pub struct ConversationView {
    pub events: Vec<TimelineEvent>,
    /// Our messages, each with its latest status (`sent`, `delivered`, `read`, `failed`).
    pub outbound: Vec<(OutboundRow, Option<String>)>,
    pub window: Window,
    /// Whether a free-form message may be sent now (`None`: no message of the customer stored).
    pub open: Option<bool>,
}

impl ConversationView {
    /// Conversation `id` at `now_ms`; `None` when nothing of it is stored.
    pub async fn load(
        reads: &SqlitePool,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<ConversationView>, sqlx::Error> {
        let events = timeline::conversation_events(reads, id, TIMELINE_LIMIT).await?;
        let outbound = job_store::outbound_of_conversation(reads, id, TIMELINE_LIMIT).await?;
        if events.is_empty() && outbound.is_empty() {
            return Ok(None);
        }
        let last_inbound = Conversations::new(reads.clone())
            .last_inbound_ms(id)
            .await?;
        let window = Window::default().merge(last_inbound);
        let outbound = outbound
            .into_iter()
            .map(|row| {
                let status = row
                    .wamid
                    .as_deref()
                    .and_then(|w| latest_status(&events, w))
                    .map(str::to_owned);
                (row, status)
            })
            .collect();
        Ok(Some(ConversationView {
            open: window.is_open(now_ms),
            events,
            outbound,
            window,
        }))
    }
}

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
    let Some(view) = ConversationView::load(&state.reads, &id, state.clock.now_ms()).await? else {
        return Err(ApiError::not_found(
            "no stored event or outbound message has this conversation id",
        ));
    };
    let outbound: Vec<Value> = view
        .outbound
        .iter()
        .map(|(row, status)| {
            let mut value = json!(row);
            value["status"] = json!(status);
            value
        })
        .collect();
    Ok(Json(json!({
        "conversation": id,
        "window": {
            "last_inbound_at": view.window.last_inbound_ms,
            "closes_at": view.window.closes_at_ms(),
            "closes_at_text": view.window.closes_at_ms().and_then(format_rfc3339),
            "open": view.open,
        },
        "events": view.events,
        "outbound": outbound,
    })))
}

/// The latest status (`sent`, `delivered`, `read`, `failed`) stored for our message `wamid`.
pub fn latest_status<'a>(events: &'a [TimelineEvent], wamid: &str) -> Option<&'a str> {
    events
        .iter()
        .filter(|e| e.message_id.as_deref() == Some(wamid))
        .filter_map(|e| e.event_type.strip_prefix("whatsapp.message."))
        .rfind(|status| ["sent", "delivered", "read", "failed"].contains(status))
}
