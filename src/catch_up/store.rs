//! All SQL of catch-up: the per-number checkpoints (`catch_up`, migration 0006) and what the
//! inbox already holds.

use sqlx::SqlitePool;

/// A number's `catch_up` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub phone_number_id: String,
    pub checkpoint: Option<i64>,
    pub last_run_at: i64,
    pub last_result: String,
    pub last_found: i64,
}

pub async fn checkpoint(
    pool: &SqlitePool,
    phone_number_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT checkpoint FROM catch_up WHERE phone_number_id = ?",
    )
    .bind(phone_number_id)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Every number's row, by number.
pub async fn checkpoints(pool: &SqlitePool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let rows: Vec<(String, Option<i64>, i64, String, i64)> = sqlx::query_as(
        "SELECT phone_number_id, checkpoint, last_run_at, last_result, last_found
           FROM catch_up ORDER BY phone_number_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(phone_number_id, checkpoint, last_run_at, last_result, last_found)| Checkpoint {
                phone_number_id,
                checkpoint,
                last_run_at,
                last_result,
                last_found,
            },
        )
        .collect())
}

/// When the newest event stored for the number arrived (Unix ms).
pub async fn newest_received(
    pool: &SqlitePool,
    phone_number_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(received_at) FROM events WHERE phone_number_id = ?",
    )
    .bind(phone_number_id)
    .fetch_one(pool)
    .await
}

/// Whether an event of this type and dedupe key is stored.
pub async fn is_stored(
    pool: &SqlitePool,
    event_type: &str,
    dedupe_key: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM events WHERE event_type = ? AND dedupe_key = ?",
    )
    .bind(event_type)
    .bind(dedupe_key)
    .fetch_one(pool)
    .await
    .map(|n| n > 0)
}

/// Records a run: `checkpoint` is kept as it was when `None` (a run that did not read to the
/// end).
pub async fn record_run(
    pool: &SqlitePool,
    phone_number_id: &str,
    checkpoint: Option<i64>,
    run_at: i64,
    result: &str,
    found: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catch_up (phone_number_id, checkpoint, last_run_at, last_result, last_found)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (phone_number_id) DO UPDATE SET
             checkpoint = COALESCE(excluded.checkpoint, catch_up.checkpoint),
             last_run_at = excluded.last_run_at,
             last_result = excluded.last_result,
             last_found = excluded.last_found",
    )
    .bind(phone_number_id)
    .bind(checkpoint)
    .bind(run_at)
    .bind(result)
    .bind(found)
    .execute(pool)
    .await
    .map(|_| ())
}
