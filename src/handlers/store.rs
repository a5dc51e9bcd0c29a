//! All SQL on `outbound`: what a job sends, recorded before sending, marked once confirmed.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

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

/// Records the job's plan in one statement (atomic), before anything is sent, and returns it.
pub async fn record_plan(
    pool: &SqlitePool,
    job_id: i64,
    actions: &[Action],
    now: i64,
) -> Result<Vec<OutboundRow>, sqlx::Error> {
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO outbound (job_id, seq, phone_number_id, action, body, created_at) ",
    );
    query.push_values(actions.iter().enumerate(), |mut row, (seq, action)| {
        let (kind, phone_number_id, body) = action.to_row();
        row.push_bind(job_id)
            .push_bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .push_bind(phone_number_id.to_owned())
            .push_bind(kind)
            .push_bind(body)
            .push_bind(now);
    });
    query.push(
        " ON CONFLICT (job_id, seq) DO NOTHING
         RETURNING id, seq, phone_number_id, action, body, state, wamid",
    );
    let mut rows: Vec<OutboundRow> = query.build_query_as().fetch_all(pool).await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
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
