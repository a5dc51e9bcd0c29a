//! All SQL on `outbound`: what a job sends, recorded before sending, marked once confirmed.
//! Reads go to the read pool; writes are group-committed through the [`WriteQueue`].

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::Action;
use crate::write_queue::{WriteError, WriteQueue};

/// Where a job's send plan lives: read from `reads`, written through `writes`.
#[derive(Clone)]
pub struct Ledger {
    pub reads: SqlitePool,
    pub writes: WriteQueue,
}

impl Ledger {
    /// What the job already planned, in order (empty on its first run).
    pub async fn planned(&self, job_id: i64) -> Result<Vec<OutboundRow>, WriteError> {
        Ok(planned(&self.reads, job_id).await?)
    }

    /// Records the plan; returns once it is committed, so nothing is sent before it is.
    pub async fn record_plan(
        &self,
        job_id: i64,
        actions: Vec<Action>,
        now: i64,
    ) -> Result<Vec<OutboundRow>, WriteError> {
        self.writes
            .write(move |conn| {
                Box::pin(async move { record_plan(conn, job_id, &actions, now).await })
            })
            .await
    }

    /// Records Kapso's confirmation. Queued, not awaited: the job's outcome, written after
    /// it, commits in the same or a later transaction.
    pub fn mark_sent(&self, id: i64, wamid: Option<String>, now: i64) -> Result<(), WriteError> {
        self.writes.send(move |conn| {
            Box::pin(async move { mark_sent(conn, id, wamid.as_deref(), now).await })
        })
    }
}

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
    conn: &mut SqliteConnection,
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
    let mut rows: Vec<OutboundRow> = query.build_query_as().fetch_all(conn).await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Kapso confirmed the send: never send this row again.
pub async fn mark_sent(
    conn: &mut SqliteConnection,
    id: i64,
    wamid: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbound SET state = 'sent', wamid = ?, sent_at = ? WHERE id = ?")
        .bind(wamid)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .map(|_| ())
}
