//! One conversation as stored: its events in order (the customer's messages, the statuses of
//! ours, conversation lifecycle events), and the conversations seen most recently. For the admin
//! API; the pipeline never reads these.

use serde::Serialize;
use sqlx::SqlitePool;

use super::store::payload_text;

/// Newest events scanned for [`recent_conversations`]: the list covers the conversations active
/// in them, whatever the history holds.
pub const RECENT_EVENTS_SCANNED: i64 = 20_000;

/// One conversation in the list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub phone_number_id: Option<String>,
    /// When its newest event arrived (Unix ms).
    pub last_received_at: i64,
    /// Its events among the newest [`RECENT_EVENTS_SCANNED`].
    pub events: i64,
}

/// Conversations with events among the newest [`RECENT_EVENTS_SCANNED`], most recent first.
pub async fn recent_conversations(
    pool: &SqlitePool,
    limit: i64,
) -> Result<Vec<ConversationSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT conversation_id, MAX(phone_number_id) AS phone_number_id,
                MAX(received_at) AS last_received_at, COUNT(*) AS events
         FROM (SELECT conversation_id, phone_number_id, received_at FROM events
               WHERE conversation_id IS NOT NULL ORDER BY id DESC LIMIT ?1)
         GROUP BY conversation_id ORDER BY last_received_at DESC LIMIT ?2",
    )
    .bind(RECENT_EVENTS_SCANNED)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One stored event of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub id: i64,
    pub event_type: String,
    pub direction: Option<String>,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    /// The event's own time (Unix seconds), when the payload has one.
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    /// The message's text, if any.
    pub text: Option<String>,
    /// As stored (comma-separated); serialized as an array.
    #[serde(serialize_with = "super::store::json_out::flags")]
    pub flags: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TimelineRow {
    id: i64,
    event_type: String,
    direction: Option<String>,
    message_id: Option<String>,
    message_type: Option<String>,
    occurred_at: Option<i64>,
    received_at: i64,
    flags: Option<String>,
    payload: String,
}

/// The events of `conversation_id` in the order they happened (their own time, then arrival),
/// at most `limit` of the latest.
pub async fn conversation_events(
    pool: &SqlitePool,
    conversation_id: &str,
    limit: i64,
) -> Result<Vec<TimelineEvent>, sqlx::Error> {
    let rows: Vec<TimelineRow> = sqlx::query_as(
        "SELECT * FROM (SELECT id, event_type, direction, message_id, message_type, occurred_at,
                               received_at, flags, payload
                        FROM events WHERE conversation_id = ?1
                        ORDER BY occurred_at DESC, id DESC LIMIT ?2)
         ORDER BY occurred_at, id",
    )
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| TimelineEvent {
            text: payload_text(&row.payload),
            id: row.id,
            event_type: row.event_type,
            direction: row.direction,
            message_id: row.message_id,
            message_type: row.message_type,
            occurred_at: row.occurred_at,
            received_at: row.received_at,
            flags: row.flags,
        })
        .collect())
}

/// Newest events [`types_of_recent`] counts: a bounded read, whatever the history holds.
pub const RECENT_TYPES_SCANNED: i64 = 1_000;

/// Event types among the newest [`RECENT_TYPES_SCANNED`] events, most frequent first (read
/// through the primary key: its cost does not grow with the table).
pub async fn types_of_recent(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_type, COUNT(*) AS n
         FROM (SELECT event_type FROM events ORDER BY id DESC LIMIT ?1)
         GROUP BY event_type ORDER BY n DESC, event_type",
    )
    .bind(RECENT_TYPES_SCANNED)
    .fetch_all(pool)
    .await
}
