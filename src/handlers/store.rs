//! All SQL on `outbound`: what a job sends, recorded before sending, marked once confirmed.

use sqlx::SqlitePool;

use super::Action;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboundRow {
    pub id: i64,
    pub seq: i64,
    pub phone_number_id: String,
    pub action: String,
    pub body: String,
    pub state: String,
    pub wamid: Option<String>,
}

/// What the job already planned, in order (empty on its first run).
pub async fn planned(pool: &SqlitePool, job_id: i64) -> Result<Vec<OutboundRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, seq, phone_number_id, action, body, state, wamid
         FROM outbound WHERE job_id = ? ORDER BY seq",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Records the job's plan in one transaction, before anything is sent.
pub async fn record_plan(
    pool: &SqlitePool,
    job_id: i64,
    actions: &[Action],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for (seq, action) in actions.iter().enumerate() {
        let (kind, phone_number_id, body) = action.to_row();
        sqlx::query(
            "INSERT INTO outbound (job_id, seq, phone_number_id, action, body, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (job_id, seq) DO NOTHING",
        )
        .bind(job_id)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(phone_number_id)
        .bind(kind)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Kapso confirmed the send: never send this row again.
pub async fn mark_sent(
    pool: &SqlitePool,
    id: i64,
    wamid: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbound SET state = 'sent', wamid = ?, sent_at = ? WHERE id = ?")
        .bind(wamid)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}
