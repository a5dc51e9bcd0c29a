//! All SQL on the `jobs` table: enqueue (inside the caller's transaction), claim in one
//! statement, finish with the claim's fencing (owner + attempt), list and replay.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

/// A job to create. `ordering_key` serialises jobs of one conversation and route.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub route: String,
    pub handler: String,
    pub webhook: String,
    pub event_type: String,
    pub conversation: Option<String>,
    pub ordering_key: Option<String>,
    pub order_ts: i64,
    pub order_seq: i64,
    pub event_ids: Vec<i64>,
    pub max_attempts: u32,
    pub run_at: i64,
}

/// A job this worker now holds a lease on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: i64,
    pub route: String,
    pub handler: String,
    pub webhook: String,
    pub event_type: String,
    pub event_ids: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
}

impl ClaimedJob {
    pub fn event_ids(&self) -> Vec<i64> {
        serde_json::from_str(&self.event_ids).unwrap_or_default()
    }
}

/// One row of `switchboard jobs list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub route: String,
    pub handler: String,
    pub event_type: String,
    pub conversation: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    /// JSON text as stored (`[1,2]`); serialized as the array of numbers.
    #[serde(serialize_with = "event_ids_array")]
    pub event_ids: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl JobRow {
    /// The ids of the events this job handles, in order.
    pub fn event_ids(&self) -> Result<Vec<i64>, serde_json::Error> {
        serde_json::from_str(&self.event_ids)
    }
}

fn event_ids_array<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let ids: Vec<i64> = serde_json::from_str(text)
        .map_err(|e| S::Error::custom(format!("stored event_ids are not a list of ids: {e}")))?;
    ids.serialize(s)
}

pub async fn enqueue(
    conn: &mut SqliteConnection,
    job: &NewJob,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let event_ids = serde_json::to_string(&job.event_ids).unwrap_or_else(|_| "[]".to_owned());
    sqlx::query_scalar(
        "INSERT INTO jobs (route, handler, webhook, event_type, conversation, ordering_key,
                           order_ts, order_seq, event_ids, max_attempts, run_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING id",
    )
    .bind(&job.route)
    .bind(&job.handler)
    .bind(&job.webhook)
    .bind(&job.event_type)
    .bind(&job.conversation)
    .bind(&job.ordering_key)
    .bind(job.order_ts)
    .bind(job.order_seq)
    .bind(event_ids)
    .bind(i64::from(job.max_attempts))
    .bind(job.run_at)
    .bind(now)
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Claims the next runnable job in one statement: a queued job that is due, or a running job
/// whose lease expired (its worker died). A job waits while an earlier job (by event time, then
/// arrival) with the same ordering key is unfinished, or any job with that key holds a live lease.
/// The candidates are walked in claim order on the partial index `jobs_active` and the walk stops
/// at the first claimable one (no OR across states, which made SQLite sort every candidate).
pub async fn claim_next(
    pool: &SqlitePool,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs
         SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_until = ?2 + ?3,
             updated_at = ?2
         WHERE id = (
             SELECT j.id FROM jobs j
             WHERE j.state IN ('queued', 'running')
               AND CASE j.state WHEN 'queued' THEN j.run_at <= ?2 ELSE j.lease_until < ?2 END
               AND (j.ordering_key IS NULL OR NOT EXISTS (
                     SELECT 1 FROM jobs e
                     WHERE e.ordering_key = j.ordering_key AND e.id != j.id
                       AND e.state IN ('queued', 'running')
                       AND ((e.state = 'running' AND e.lease_until >= ?2)
                            OR (e.order_ts, e.order_seq) < (j.order_ts, j.order_seq))))
             ORDER BY j.run_at, j.order_ts, j.order_seq
             LIMIT 1)
         RETURNING id, route, handler, webhook, event_type, event_ids, attempts, max_attempts, created_at",
    )
    .bind(owner)
    .bind(now)
    .bind(lease_ms)
    .fetch_optional(pool)
    .await
}

/// How a claimed job's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    Done,
    /// Queued again, to run at this time (Unix ms).
    RetryAt {
        at: i64,
        error: &'a str,
    },
    Dead {
        error: &'a str,
    },
}

/// Records the end of an attempt and releases the lease. False when the lease was lost
/// (another worker took the job over), in which case nothing is changed.
pub async fn finish(
    pool: &SqlitePool,
    job: &ClaimedJob,
    owner: &str,
    finish: Finish<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (state, run_at, finished_at, error) = match finish {
        Finish::Done => ("done", None, Some(now), None),
        Finish::RetryAt { at, error } => ("queued", Some(at), None, Some(error)),
        Finish::Dead { error } => ("dead", None, Some(now), Some(error)),
    };
    let result = sqlx::query(
        "UPDATE jobs SET state = ?1, run_at = COALESCE(?2, run_at), finished_at = ?3,
                         last_error = ?4, lease_owner = NULL, lease_until = NULL, updated_at = ?5
         WHERE id = ?6 AND state = 'running' AND lease_owner = ?7 AND attempts = ?8",
    )
    .bind(state)
    .bind(run_at)
    .bind(finished_at)
    .bind(error)
    .bind(now)
    .bind(job.id)
    .bind(owner)
    .bind(job.attempts)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The next time, after `now`, at which a waiting job becomes due or a lease expires. Jobs that
/// are due but wait for an earlier job of their conversation are not counted: that job's
/// completion wakes the workers.
pub async fn next_due(pool: &SqlitePool, now: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(t) FROM (
             SELECT MIN(run_at) AS t FROM jobs WHERE state = 'queued' AND run_at > ?1
             UNION ALL
             SELECT MIN(lease_until) AS t FROM jobs WHERE state = 'running' AND lease_until > ?1)",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// Extends a held lease while the job is still running. False when the lease was lost.
pub async fn extend_lease(
    pool: &SqlitePool,
    job: &ClaimedJob,
    owner: &str,
    lease_until: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE jobs SET lease_until = ?1
         WHERE id = ?2 AND state = 'running' AND lease_owner = ?3 AND attempts = ?4",
    )
    .bind(lease_until)
    .bind(job.id)
    .bind(owner)
    .bind(job.attempts)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Puts a dead (or waiting) job back in the queue to run now, with a fresh attempt budget.
/// False when there is no such job or it is running or done.
pub async fn retry_now(pool: &SqlitePool, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?1, finished_at = NULL, updated_at = ?1
         WHERE id = ?2 AND state IN ('dead', 'queued')",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub route: Option<String>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(pool: &SqlitePool, filter: &JobFilter) -> Result<Vec<JobRow>, sqlx::Error> {
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, route, handler, event_type, conversation, state, attempts, max_attempts, run_at,
                last_error, event_ids, created_at, finished_at
         FROM jobs WHERE 1 = 1",
    );
    if let Some(state) = &filter.state {
        query.push(" AND state = ").push_bind(state);
    }
    if let Some(route) = &filter.route {
        query.push(" AND route = ").push_bind(route);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit);
    query.build_query_as().fetch_all(pool).await
}

pub async fn get(pool: &SqlitePool, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, route, handler, event_type, conversation, state, attempts, max_attempts, run_at,
                last_error, event_ids, created_at, finished_at
         FROM jobs WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Jobs per state, for the queue-depth gauge.
pub async fn count_by_state(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(pool)
        .await
}
