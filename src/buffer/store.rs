//! All SQL on `buffers` and `buffered_events`, the durable log of the open batches (which live
//! in memory, see [`super::open`]). Written with multi-row statements: one insert and one
//! upsert per dispatched batch of events, one delete per table per flushed group of batches.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::open::{BatchKey, Change};

/// Rows per multi-row statement: at most 6 binds each, well under SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Writes staged messages and their batches' new times. Runs inside the dispatcher's
/// transaction.
pub async fn save(
    conn: &mut SqliteConnection,
    changes: &[(BatchKey, Change)],
) -> Result<(), sqlx::Error> {
    let events: Vec<(&BatchKey, i64)> = changes
        .iter()
        .flat_map(|(key, change)| change.new_events.iter().map(move |e| (key, e.id)))
        .collect();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO buffered_events (route, conversation, event_id) ");
        query.push_values(chunk, |mut row, (key, id)| {
            row.push_bind(key.route.as_str())
                .push_bind(key.conversation.as_str())
                .push_bind(*id);
        });
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *conn).await?;
    }
    for chunk in changes.chunks(ROWS_PER_STATEMENT) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO buffers (route, conversation, first_at, last_at, messages, flush_at) ",
        );
        query.push_values(chunk, |mut row, (key, change)| {
            row.push_bind(key.route.as_str())
                .push_bind(key.conversation.as_str())
                .push_bind(change.first_at)
                .push_bind(change.last_at)
                .push_bind(i64::try_from(change.messages).unwrap_or(i64::MAX))
                .push_bind(change.flush_at);
        });
        query.push(
            " ON CONFLICT (route, conversation) DO UPDATE SET
                 first_at = excluded.first_at,
                 last_at = excluded.last_at,
                 messages = excluded.messages,
                 flush_at = excluded.flush_at",
        );
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes flushed batches and their messages. Runs inside the transaction that enqueues their
/// jobs.
pub async fn delete(conn: &mut SqliteConnection, keys: &[BatchKey]) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        for table in ["buffered_events", "buffers"] {
            // Through the primary key: a row value `IN (VALUES ...)` would scan the table.
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT t.rowid FROM (VALUES "
            ));
            let mut keys = query.separated(", ");
            for key in chunk {
                keys.push("(")
                    .push_bind_unseparated(key.route.as_str())
                    .push_unseparated(", ")
                    .push_bind_unseparated(key.conversation.as_str())
                    .push_unseparated(")");
            }
            query.push(format!(
                ") AS v JOIN {table} AS t ON t.route = v.column1 AND t.conversation = v.column2"
            ));
            query.push(")");
            query.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// An open batch as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredBatch {
    pub route: String,
    pub conversation: String,
    pub first_at: i64,
    pub last_at: i64,
    pub flush_at: i64,
}

/// Every open batch, earliest flush first.
pub async fn open_batches(pool: &SqlitePool) -> Result<Vec<StoredBatch>, sqlx::Error> {
    sqlx::query_as(
        "SELECT route, conversation, first_at, last_at, flush_at FROM buffers ORDER BY flush_at",
    )
    .fetch_all(pool)
    .await
}

/// Every buffered message: its batch's route and conversation, and the event id.
pub async fn buffered_events(pool: &SqlitePool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT route, conversation, event_id FROM buffered_events")
        .fetch_all(pool)
        .await
}
