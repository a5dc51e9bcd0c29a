//! All SQL that touches the inbox tables (`deliveries`, `events`, `quarantine`).

use std::collections::HashSet;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::{DeliveryOutcome, NewDelivery, NewQuarantine};
use crate::config::Synchronous;
use crate::event::{message_text, Event};
use crate::router::EventPattern;

/// Sets this connection's `synchronous` level (no I/O; only outside a transaction).
pub(super) async fn set_synchronous(
    conn: &mut SqliteConnection,
    level: Synchronous,
) -> Result<(), sqlx::Error> {
    // A fixed set of keywords, never user text.
    let statement = match level {
        Synchronous::Off => "PRAGMA synchronous = OFF",
        Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        Synchronous::Full => "PRAGMA synchronous = FULL",
        Synchronous::Extra => "PRAGMA synchronous = EXTRA",
    };
    sqlx::query(statement).execute(conn).await.map(|_| ())
}

pub(super) async fn begin_immediate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE")
        .execute(conn)
        .await
        .map(|_| ())
}

pub(super) async fn commit(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("COMMIT").execute(conn).await.map(|_| ())
}

/// Best effort: after a failed statement SQLite may already have rolled back.
pub(super) async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(conn).await;
}

/// The highest delivery id so far. Inside the writer's `BEGIN IMMEDIATE` transaction nothing
/// else can insert, so the writer numbers a group's deliveries from here.
pub(super) async fn last_delivery_id(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM deliveries")
        .fetch_one(conn)
        .await
}

/// Rows per multi-row INSERT (16 binds each; SQLite allows 32766 per statement).
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts a group's events with as few statements as possible, skipping those whose type and
/// dedupe key are already stored (or appear earlier in the group). Returns the keys that were
/// new; the first occurrence in group order is the one stored.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    rows: &[(i64, &NewDelivery, &Event)],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events
                 (delivery_id, webhook, event_type, dedupe_key, payload_version, phone_number_id,
                  conversation_id, message_id, message_type, direction, occurred_at, received_at,
                  idempotency_key, flags, payload, routed_at) ",
        );
        query.push_values(chunk, |mut row, (delivery_id, d, e)| {
            row.push_bind(*delivery_id)
                .push_bind(d.webhook.clone())
                .push_bind(e.event_type.clone())
                .push_bind(e.dedupe_key.as_str().to_owned())
                .push_bind(e.payload_version.as_str())
                .push_bind(e.phone_number_id.clone())
                .push_bind(e.conversation_id.clone())
                .push_bind(e.message_id.clone())
                .push_bind(e.message_type.clone())
                .push_bind(e.direction.clone())
                .push_bind(e.occurred_at)
                .push_bind(d.received_at_ms)
                .push_bind(d.idempotency_key.clone())
                .push_bind(e.flags_text())
                .push_bind(e.stored_payload())
                .push_bind((!e.awaits_routing).then_some(d.received_at_ms));
        });
        query.push(
            " ON CONFLICT (event_type, dedupe_key) DO NOTHING RETURNING event_type, dedupe_key",
        );
        let keys: Vec<(String, String)> = query.build_query_as().fetch_all(&mut *conn).await?;
        inserted.extend(keys);
    }
    Ok(inserted)
}

/// Logs a group's deliveries with their final counts, ids as numbered by the writer.
pub(super) async fn insert_deliveries(
    conn: &mut SqliteConnection,
    rows: &[(&NewDelivery, DeliveryOutcome)],
) -> Result<(), sqlx::Error> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO deliveries
                 (id, webhook, received_at, body_bytes, idempotency_key, event_header,
                  payload_version, batch, events, stored, duplicates, quarantined, result) ",
        );
        query.push_values(chunk, |mut row, (d, outcome)| {
            row.push_bind(outcome.delivery_id)
                .push_bind(d.webhook.clone())
                .push_bind(d.received_at_ms)
                .push_bind(count(d.body_bytes))
                .push_bind(d.idempotency_key.clone())
                .push_bind(d.event_header.clone())
                .push_bind(d.payload_version.clone())
                .push_bind(d.batch)
                .push_bind(count(d.events.len() + d.quarantine.len()))
                .push_bind(count(outcome.stored))
                .push_bind(count(outcome.duplicates))
                .push_bind(count(outcome.quarantined))
                .push_bind(outcome.result());
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Keeps a raw body that could not be understood; the same bytes on the same webhook are kept
/// once. True when inserted.
pub(super) async fn insert_quarantine(
    conn: &mut SqliteConnection,
    delivery_id: i64,
    d: &NewDelivery,
    q: &NewQuarantine,
) -> Result<bool, sqlx::Error> {
    let digest = hex::encode(Sha256::digest(&q.body));
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO quarantine
             (delivery_id, webhook, received_at, reason, event_header, idempotency_key, body_sha256, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (webhook, body_sha256) DO NOTHING
         RETURNING id",
    )
    .bind(delivery_id)
    .bind(&d.webhook)
    .bind(d.received_at_ms)
    .bind(&q.reason)
    .bind(&d.event_header)
    .bind(&d.idempotency_key)
    .bind(digest)
    .bind(&q.body)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// One line of `switchboard events list`.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: i64,
    pub received_at: i64,
    pub webhook: String,
    pub event_type: String,
    pub phone_number_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    /// The message's text (text body, button or list reply title, caption, ...), if any.
    pub text: Option<String>,
    /// As stored (comma-separated); serialized as an array.
    #[serde(serialize_with = "json_out::flags")]
    pub flags: Option<String>,
}

/// [`EventSummary`] as read, with the payload its text comes from.
#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: i64,
    received_at: i64,
    webhook: String,
    event_type: String,
    phone_number_id: Option<String>,
    conversation_id: Option<String>,
    message_id: Option<String>,
    message_type: Option<String>,
    flags: Option<String>,
    payload: String,
}

impl From<SummaryRow> for EventSummary {
    fn from(row: SummaryRow) -> Self {
        EventSummary {
            text: payload_text(&row.payload),
            id: row.id,
            received_at: row.received_at,
            webhook: row.webhook,
            event_type: row.event_type,
            phone_number_id: row.phone_number_id,
            conversation_id: row.conversation_id,
            message_id: row.message_id,
            message_type: row.message_type,
            flags: row.flags,
        }
    }
}

/// The text of the message a stored payload carries.
pub(crate) fn payload_text(payload: &str) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(payload).ok()?;
    payload.get("message").and_then(message_text)
}

/// Serializers that turn columns holding lists or JSON text into JSON values.
pub mod json_out {
    use serde::ser::Error;
    use serde::{Serialize, Serializer};

    /// `"a,b"` as `["a", "b"]`; no flags as `[]`.
    pub fn flags<S: Serializer>(flags: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<&str> = flags
            .as_deref()
            .map(|f| f.split(',').filter(|f| !f.is_empty()).collect())
            .unwrap_or_default();
        list.serialize(s)
    }

    /// Stored JSON text embedded as JSON.
    pub fn embedded<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| S::Error::custom(format!("stored payload is not JSON: {e}")))?;
        value.serialize(s)
    }
}

/// Everything stored about one event (`switchboard events show`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventDetail {
    pub id: i64,
    pub delivery_id: i64,
    pub received_at: i64,
    pub webhook: String,
    pub event_type: String,
    pub dedupe_key: String,
    pub payload_version: String,
    pub phone_number_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    pub direction: Option<String>,
    pub occurred_at: Option<i64>,
    pub idempotency_key: Option<String>,
    /// As stored (comma-separated); serialized as an array.
    #[serde(serialize_with = "json_out::flags")]
    pub flags: Option<String>,
    /// The message's text (text body, button or list reply title, caption, ...), if any.
    #[sqlx(skip)]
    pub text: Option<String>,
    /// JSON text as stored; serialized as the embedded JSON object.
    #[serde(serialize_with = "json_out::embedded")]
    pub payload: String,
}

/// One quarantined body.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QuarantineEntry {
    pub id: i64,
    pub delivery_id: i64,
    pub received_at: i64,
    pub webhook: String,
    pub reason: String,
    pub event_header: Option<String>,
    pub idempotency_key: Option<String>,
    pub body_sha256: String,
    /// The raw body; `switchboard events show --quarantined --json` adds it.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Filters for [`list_events`]; all optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub webhook: Option<String>,
    /// An event-type pattern as routes take it ([`EventPattern`]): exact, `prefix.*` or `*`.
    pub event_type: Option<String>,
    pub flagged_only: bool,
    pub conversation_id: Option<String>,
    /// Text the stored payload contains (as Kapso sent it; case-sensitive).
    pub text: Option<String>,
    /// Only events carrying this flag (e.g. `backfilled`, `unknown_event_type`).
    pub flag: Option<String>,
    /// Only events received at or after this time (Unix ms).
    pub received_since_ms: Option<i64>,
    /// Only events received before this time (Unix ms).
    pub received_until_ms: Option<i64>,
    /// Only events with an id below this (the cursor of the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list_events(
    pool: &SqlitePool,
    filter: &EventFilter,
) -> Result<Vec<EventSummary>, sqlx::Error> {
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, received_at, webhook, event_type, phone_number_id, conversation_id,
                message_id, message_type, flags, payload
         FROM events WHERE 1 = 1",
    );
    if let Some(webhook) = &filter.webhook {
        query.push(" AND webhook = ").push_bind(webhook);
    }
    if let Some(pattern) = &filter.event_type {
        push_type_pattern(&mut query, &EventPattern::parse(pattern));
    }
    if filter.flagged_only {
        // `backfilled` alone (catch-up) needs no attention.
        query
            .push(" AND flags IS NOT NULL AND flags <> ")
            .push_bind(crate::event::FLAG_BACKFILLED);
    }
    if let Some(conversation) = &filter.conversation_id {
        query
            .push(" AND conversation_id = ")
            .push_bind(conversation);
    }
    if let Some(text) = &filter.text {
        query
            .push(" AND instr(payload, ")
            .push_bind(text)
            .push(") > 0");
    }
    if let Some(flag) = &filter.flag {
        query
            .push(" AND instr(',' || flags || ',', ',' || ")
            .push_bind(flag)
            .push(" || ',') > 0");
    }
    if let Some(since) = filter.received_since_ms {
        query.push(" AND received_at >= ").push_bind(since);
    }
    if let Some(until) = filter.received_until_ms {
        query.push(" AND received_at < ").push_bind(until);
    }
    if let Some(before) = filter.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit);
    let rows: Vec<SummaryRow> = query.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(EventSummary::from).collect())
}

/// `event_type` matching `pattern` exactly as [`EventPattern::matches`] does: a prefix is
/// compared with `substr` (case-sensitive, no wildcard characters), not with `LIKE`.
fn push_type_pattern(query: &mut QueryBuilder<'_, Sqlite>, pattern: &EventPattern) {
    match pattern {
        EventPattern::Any => {}
        EventPattern::Exact(event_type) => {
            query
                .push(" AND event_type = ")
                .push_bind(event_type.clone());
        }
        EventPattern::Prefix(prefix) => {
            // SQLite's substr and length count characters, as `chars()` does.
            let chars = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
            query
                .push(" AND substr(event_type, 1, ")
                .push_bind(chars)
                .push(") = ")
                .push_bind(prefix.clone());
        }
    }
}

pub async fn get_event(pool: &SqlitePool, id: i64) -> Result<Option<EventDetail>, sqlx::Error> {
    let event: Option<EventDetail> = sqlx::query_as(
        "SELECT id, delivery_id, received_at, webhook, event_type, dedupe_key, payload_version,
                phone_number_id, conversation_id, message_id, message_type, direction,
                occurred_at, idempotency_key, flags, payload
         FROM events WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(event.map(|event| EventDetail {
        text: payload_text(&event.payload),
        ..event
    }))
}

/// One delivery (an HTTP request Kapso made) as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook: String,
    pub received_at: i64,
    pub body_bytes: i64,
    pub idempotency_key: Option<String>,
    pub event_header: Option<String>,
    pub payload_version: Option<String>,
    pub batch: bool,
    pub events: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub result: String,
}

pub async fn get_delivery(pool: &SqlitePool, id: i64) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook, received_at, body_bytes, idempotency_key, event_header,
                payload_version, batch, events, stored, duplicates, quarantined, result
         FROM deliveries WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Newest first.
pub async fn list_quarantine(
    pool: &SqlitePool,
    limit: i64,
) -> Result<Vec<QuarantineEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, delivery_id, received_at, webhook, reason, event_header, idempotency_key,
                body_sha256, body
         FROM quarantine ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn get_quarantine(
    pool: &SqlitePool,
    id: i64,
) -> Result<Option<QuarantineEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, delivery_id, received_at, webhook, reason, event_header, idempotency_key,
                body_sha256, body
         FROM quarantine WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// An event as the pipeline after the inbox reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub webhook: String,
    pub event_type: String,
    pub phone_number_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    pub payload: String,
    /// The event's flags, comma-separated (`None` when fully understood).
    #[sqlx(default)]
    pub flags: Option<String>,
}

impl StoredEvent {
    /// The payload as JSON (`Null` if the stored text is somehow not JSON).
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    /// Whether catch-up read it back from Kapso's history (flag `backfilled`) instead of a
    /// webhook delivering it.
    pub fn is_backfilled(&self) -> bool {
        self.flags.as_deref().is_some_and(|f| {
            f.split(',')
                .any(|flag| flag == crate::event::FLAG_BACKFILLED)
        })
    }
}

/// Events not yet routed, oldest first.
pub async fn unrouted(pool: &SqlitePool, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook, event_type, phone_number_id, conversation_id, message_id, occurred_at,
                received_at, payload, flags
         FROM events WHERE routed_at IS NULL ORDER BY id LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Marks events routed; part of the transaction that created their jobs or buffer entries.
pub async fn mark_routed(
    conn: &mut SqliteConnection,
    ids: &[i64],
    now: i64,
) -> Result<(), sqlx::Error> {
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
    sqlx::query("UPDATE events SET routed_at = ? WHERE id IN (SELECT value FROM json_each(?))")
        .bind(now)
        .bind(ids)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The events of a job, in the order given.
pub async fn load_events<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    ids: &[i64],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
    let mut events: Vec<StoredEvent> = sqlx::query_as(
        "SELECT id, webhook, event_type, phone_number_id, conversation_id, message_id, occurred_at,
                received_at, payload, flags
         FROM events WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json)
    .fetch_all(executor)
    .await?;
    events.sort_by_key(|e| ids.iter().position(|id| *id == e.id));
    Ok(events)
}
