//! All SQL on `outbound`: what a job sends, recorded before sending, marked once confirmed.
//! Reads go to the read pool; writes are group-committed through the [`WriteQueue`].

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};

use super::Action;
use crate::write_queue::{BoxFuture, Coalesced, WriteError, WriteQueue};

/// Where a job's send plan lives: read from `reads`, written through the pipeline's write
/// queue, many jobs to a statement.
#[derive(Clone)]
pub struct Ledger {
    reads: SqlitePool,
    plans: Coalesced<PlannedActions, Vec<OutboundRow>>,
    sent: Coalesced<SentMark, ()>,
    replaced: Coalesced<Replacement, ()>,
}

/// A pending row's message replaced before it is sent (the `outside_window` template in place
/// of a free-form message Kapso refused).
pub struct Replacement {
    id: i64,
    body: String,
}

/// A job's plan to record.
pub struct PlannedActions {
    job_id: i64,
    actions: Vec<Action>,
    at: i64,
}

/// Kapso confirmed an outbound row.
pub struct SentMark {
    id: i64,
    wamid: Option<String>,
    at: i64,
}

impl Ledger {
    pub fn new(reads: SqlitePool, writes: WriteQueue) -> Ledger {
        Ledger {
            reads,
            plans: Coalesced::new(writes.clone(), record_plans),
            sent: Coalesced::new(writes.clone(), mark_sent),
            replaced: Coalesced::new(writes, replace_bodies),
        }
    }

    /// Whether any outbound row records `wamid` (a message some job's send was confirmed as).
    pub async fn knows_wamid(&self, wamid: &str) -> Result<bool, WriteError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM outbound WHERE wamid = ? LIMIT 1")
                .bind(wamid)
                .fetch_optional(&self.reads)
                .await?;
        Ok(found.is_some())
    }

    /// The read pool the ledger reads from.
    pub fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// Replaces the message of pending row `id`; returns once committed, so a retry resumes
    /// the new message, never the old.
    pub async fn replace_body(&self, id: i64, body: &serde_json::Value) -> Result<(), WriteError> {
        self.replaced
            .write(Replacement {
                id,
                body: body.to_string(),
            })
            .await
    }

    /// What the job already planned, in order (empty on its first run).
    pub async fn planned(&self, job_id: i64) -> Result<Vec<OutboundRow>, WriteError> {
        Ok(planned(&self.reads, job_id).await?)
    }

    /// Records the plan; returns once it is committed, so nothing is sent before it is.
    pub async fn record_plan(
        &self,
        job_id: i64,
        actions: Vec<Action>,
        at: i64,
    ) -> Result<Vec<OutboundRow>, WriteError> {
        self.plans
            .write(PlannedActions {
                job_id,
                actions,
                at,
            })
            .await
    }

    /// Records Kapso's confirmation. Queued, not awaited: the job's outcome, written after
    /// it, commits in the same or a later transaction.
    pub fn mark_sent(&self, id: i64, wamid: Option<String>, at: i64) -> Result<(), WriteError> {
        self.sent.send(SentMark { id, wamid, at })
    }

    /// Marks `id` sent (again: the mark is idempotent) and waits for the commit. Marks are
    /// written in order, so every mark queued before it has committed too.
    pub async fn mark_sent_committed(
        &self,
        id: i64,
        wamid: Option<String>,
        at: i64,
    ) -> Result<(), WriteError> {
        self.sent.write(SentMark { id, wamid, at }).await
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
    /// When the row was planned (Unix ms).
    pub created_at: i64,
}

/// What the job already planned, in order (empty on its first run).
pub async fn planned(pool: &SqlitePool, job_id: i64) -> Result<Vec<OutboundRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, seq, phone_number_id, action, body, state, wamid, created_at
         FROM outbound WHERE job_id = ? ORDER BY seq",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Records the plans of several jobs in one statement, before anything of them is sent, and
/// returns each job's rows in order. A job whose plan already exists gets no rows back. The
/// rows go in as one JSON array, so the statement's text never changes and stays prepared.
fn record_plans<'c>(
    conn: &'c mut SqliteConnection,
    plans: Vec<PlannedActions>,
) -> BoxFuture<'c, Result<Vec<Vec<OutboundRow>>, sqlx::Error>> {
    Box::pin(async move {
        let rows: Vec<_> = plans
            .iter()
            .flat_map(|plan| {
                plan.actions.iter().enumerate().map(|(seq, action)| {
                    let (kind, phone_number_id, body) = action.to_row();
                    (plan.job_id, seq, phone_number_id, kind, body, plan.at)
                })
            })
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Protocol(format!("send plans as JSON: {e}")))?;
        let inserted: Vec<PlannedRow> = sqlx::query_as(
            "INSERT INTO outbound (job_id, seq, phone_number_id, action, body, created_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5
             FROM json_each(?) WHERE true
             ON CONFLICT (job_id, seq) DO NOTHING
             RETURNING job_id, id, seq, phone_number_id, action, body, state, wamid, created_at",
        )
        .bind(rows)
        .fetch_all(&mut *conn)
        .await?;
        let mut by_job: HashMap<i64, Vec<OutboundRow>> = HashMap::with_capacity(plans.len());
        for row in inserted {
            by_job.entry(row.job_id).or_default().push(row.row);
        }
        Ok(plans
            .iter()
            .map(|plan| {
                let mut rows = by_job.remove(&plan.job_id).unwrap_or_default();
                rows.sort_by_key(|r| r.seq);
                rows
            })
            .collect())
    })
}

/// An inserted outbound row with its job.
#[derive(sqlx::FromRow)]
struct PlannedRow {
    job_id: i64,
    #[sqlx(flatten)]
    row: OutboundRow,
}

/// New messages for pending rows. One statement for the lot.
fn replace_bodies<'c>(
    conn: &'c mut SqliteConnection,
    replacements: Vec<Replacement>,
) -> BoxFuture<'c, Result<Vec<()>, sqlx::Error>> {
    Box::pin(async move {
        let rows: Vec<_> = replacements
            .iter()
            .map(|r| (r.id, r.body.as_str()))
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Protocol(format!("replacements as JSON: {e}")))?;
        sqlx::query(
            "UPDATE outbound SET body = v.body
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS body FROM json_each(?)) AS v
             WHERE outbound.id = v.id AND outbound.state = 'pending'",
        )
        .bind(rows)
        .execute(&mut *conn)
        .await?;
        Ok(vec![(); replacements.len()])
    })
}

/// Kapso confirmed these rows: never send them again. One statement for the lot.
fn mark_sent<'c>(
    conn: &'c mut SqliteConnection,
    marks: Vec<SentMark>,
) -> BoxFuture<'c, Result<Vec<()>, sqlx::Error>> {
    Box::pin(async move {
        let rows: Vec<_> = marks
            .iter()
            .map(|mark| (mark.id, mark.wamid.as_deref(), mark.at))
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Protocol(format!("sent marks as JSON: {e}")))?;
        sqlx::query(
            "UPDATE outbound SET state = 'sent', wamid = v.wamid, sent_at = v.at
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS wamid, value ->> 2 AS at
                   FROM json_each(?)) AS v
             WHERE outbound.id = v.id",
        )
        .bind(rows)
        .execute(&mut *conn)
        .await?;
        Ok(vec![(); marks.len()])
    })
}
