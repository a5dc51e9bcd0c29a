//! All SQL that touches the inbox tables (`deliveries`, `events`, `quarantine`).

use std::collections::HashSet;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::{DeliveryOutcome, NewDelivery, NewQuarantine};
use crate::config::Synchronous;
use crate::event::Event;

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
                .push_bind(e.payload.to_string())
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
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventSummary {
    pub id: i64,
    pub received_at: i64,
    pub webhook: String,
    pub event_type: String,
    pub phone_number_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    pub flags: Option<String>,
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
    pub flags: Option<String>,
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
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Filters for [`list_events`]; all optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub webhook: Option<String>,
    pub event_type: Option<String>,
    pub flagged_only: bool,
    pub limit: i64,
}

/// Newest first.
pub async fn list_events(
    pool: &SqlitePool,
    filter: &EventFilter,
) -> Result<Vec<EventSummary>, sqlx::Error> {
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, received_at, webhook, event_type, phone_number_id, conversation_id,
                message_id, message_type, flags
         FROM events WHERE 1 = 1",
    );
    if let Some(webhook) = &filter.webhook {
        query.push(" AND webhook = ").push_bind(webhook);
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type);
    }
    if filter.flagged_only {
        query.push(" AND flags IS NOT NULL");
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit);
    query.build_query_as().fetch_all(pool).await
}

pub async fn get_event(pool: &SqlitePool, id: i64) -> Result<Option<EventDetail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, delivery_id, received_at, webhook, event_type, dedupe_key, payload_version,
                phone_number_id, conversation_id, message_id, message_type, direction,
                occurred_at, idempotency_key, flags, payload
         FROM events WHERE id = ?",
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
}

impl StoredEvent {
    /// The payload as JSON (`Null` if the stored text is somehow not JSON).
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// Events not yet routed, oldest first.
pub async fn unrouted(pool: &SqlitePool, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook, event_type, phone_number_id, conversation_id, message_id, occurred_at,
                received_at, payload
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
                received_at, payload
         FROM events WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json)
    .fetch_all(executor)
    .await?;
    events.sort_by_key(|e| ids.iter().position(|id| *id == e.id));
    Ok(events)
}
