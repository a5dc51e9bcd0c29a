//! All SQL on `buffers` and `buffered_events`.

use sqlx::{SqliteConnection, SqlitePool};

use crate::config::BufferConfig;

/// Adds a message to its route's open batch for the conversation, opening one if needed, and
/// moves the flush time: `last + window`, never past `first + max_wait`, and now when full.
/// Runs inside the dispatcher's transaction.
pub async fn add(
    conn: &mut SqliteConnection,
    route: &str,
    conversation: &str,
    event_id: i64,
    now: i64,
    config: &BufferConfig,
) -> Result<(), sqlx::Error> {
    let window = i64::try_from(config.window_ms).unwrap_or(i64::MAX);
    let max_wait = i64::try_from(config.max_wait_ms).unwrap_or(i64::MAX);
    let max_messages = i64::from(config.max_messages);
    sqlx::query(
        "INSERT INTO buffered_events (route, conversation, event_id) VALUES (?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(route)
    .bind(conversation)
    .bind(event_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO buffers (route, conversation, first_at, last_at, messages, flush_at)
         VALUES (?1, ?2, ?3, ?3, 1,
                 CASE WHEN ?6 <= 1 THEN ?3 ELSE MIN(?3 + ?4, ?3 + ?5) END)
         ON CONFLICT (route, conversation) DO UPDATE SET
             last_at = excluded.last_at,
             messages = buffers.messages + 1,
             flush_at = CASE WHEN buffers.messages + 1 >= ?6 THEN excluded.last_at
                             ELSE MIN(excluded.last_at + ?4, buffers.first_at + ?5) END",
    )
    .bind(route)
    .bind(conversation)
    .bind(now)
    .bind(window)
    .bind(max_wait)
    .bind(max_messages)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Batches whose flush time has come, earliest first.
pub async fn due(
    pool: &SqlitePool,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT route, conversation FROM buffers WHERE flush_at <= ? ORDER BY flush_at LIMIT ?",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Closes a batch and returns its event ids. Runs inside the transaction that enqueues its job.
pub async fn take(
    conn: &mut SqliteConnection,
    route: &str,
    conversation: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    let ids = sqlx::query_scalar(
        "DELETE FROM buffered_events WHERE route = ? AND conversation = ? RETURNING event_id",
    )
    .bind(route)
    .bind(conversation)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM buffers WHERE route = ? AND conversation = ?")
        .bind(route)
        .bind(conversation)
        .execute(conn)
        .await?;
    Ok(ids)
}

/// The earliest flush time of any open batch.
pub async fn next_flush(pool: &SqlitePool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(flush_at) FROM buffers")
        .fetch_one(pool)
        .await
}

/// Open batches and the messages waiting in them.
pub async fn open_counts(pool: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(messages), 0) FROM buffers")
        .fetch_one(pool)
        .await
}
