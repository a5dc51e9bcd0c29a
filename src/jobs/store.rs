//! All SQL on the `jobs` table: enqueue (inside the caller's transaction), load the unfinished
//! jobs into the in-memory schedule, record claims and outcomes (through the pipeline's
//! group-committed writes), list and replay.

use std::sync::Arc;

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::inbox::store::StoredEvent;

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
    /// The events themselves, as the dispatcher or the flusher read them: the worker then
    /// need not read them again.
    pub events: Option<Arc<[StoredEvent]>>,
}

/// What a worker needs to run a job; `attempts` is the attempt being run once claimed.
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
    /// Created by this process and never run before: no send plan can exist for it yet.
    /// Jobs read from the table (at startup, or put back by a manual retry) are not fresh.
    #[sqlx(skip)]
    pub fresh: bool,
    /// The job's events when they were at hand as it was created (see [`NewJob::events`]);
    /// otherwise the worker reads them.
    #[sqlx(skip)]
    pub events: Option<Arc<[StoredEvent]>>,
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

/// Rows per multi-row INSERT (14 variables each, well under SQLite's limit).
const INSERT_CHUNK: usize = 500;

/// Inserts `jobs` with consecutive ids in a few multi-row statements and returns the ids, in
/// order. Runs inside the caller's `BEGIN IMMEDIATE` transaction, which holds the write lock
/// from the id lookup to the insert, so the numbering cannot collide.
pub async fn enqueue_all(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    let ids: Vec<i64> = (1..).map(|n: i64| last + n).take(jobs.len()).collect();
    for (chunk, chunk_ids) in jobs.chunks(INSERT_CHUNK).zip(ids.chunks(INSERT_CHUNK)) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO jobs (id, route, handler, webhook, event_type, conversation, ordering_key,
                               order_ts, order_seq, event_ids, max_attempts, run_at, created_at, updated_at) ",
        );
        query.push_values(chunk.iter().zip(chunk_ids), |mut row, (job, id)| {
            let event_ids =
                serde_json::to_string(&job.event_ids).unwrap_or_else(|_| "[]".to_owned());
            row.push_bind(*id)
                .push_bind(job.route.clone())
                .push_bind(job.handler.clone())
                .push_bind(job.webhook.clone())
                .push_bind(job.event_type.clone())
                .push_bind(job.conversation.clone())
                .push_bind(job.ordering_key.clone())
                .push_bind(job.order_ts)
                .push_bind(job.order_seq)
                .push_bind(event_ids)
                .push_bind(i64::from(job.max_attempts))
                .push_bind(job.run_at)
                .push_bind(now)
                .push_bind(now);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(ids)
}

/// Columns of a job the workers need, as [`ClaimedJob`] reads them.
const JOB_COLUMNS: &str =
    "id, route, handler, webhook, event_type, event_ids, attempts, max_attempts, created_at";

/// A job the schedule holds: what a worker needs to run it, and where it sits in the schedule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnfinishedJob {
    #[sqlx(flatten)]
    pub job: ClaimedJob,
    pub ordering_key: Option<String>,
    pub order_ts: i64,
    pub order_seq: i64,
    pub run_at: i64,
}

/// Jobs a previous process of this server left running were interrupted: queue them again now.
/// Only valid while this process holds the database alone (see `db::lock`).
pub async fn requeue_interrupted(pool: &SqlitePool, now: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_at = MIN(run_at, ?1), lease_owner = NULL,
                         lease_until = NULL, updated_at = ?1
         WHERE state = 'running'",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Every queued job (after [`requeue_interrupted`], every unfinished one), for the schedule.
pub async fn unfinished(pool: &SqlitePool) -> Result<Vec<UnfinishedJob>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS}, ordering_key, order_ts, order_seq, run_at
         FROM jobs WHERE state IN ('queued', 'running')"
    ))
    .fetch_all(pool)
    .await
}

/// Queued jobs by id (those a manual retry put back), for the schedule.
pub async fn queued_by_id(
    pool: &SqlitePool,
    ids: &[i64],
) -> Result<Vec<UnfinishedJob>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
        "SELECT {JOB_COLUMNS}, ordering_key, order_ts, order_seq, run_at
         FROM jobs WHERE state = 'queued' AND id IN ("
    ));
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    query.build_query_as().fetch_all(pool).await
}

/// Dead-lettered jobs, for the gauge at startup (an index range, not a table scan).
pub async fn count_dead(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'dead'")
        .fetch_one(pool)
        .await
}

/// Marks a job taken by a worker (`owner`) for attempt number `attempt`.
pub async fn mark_running(
    conn: &mut SqliteConnection,
    id: i64,
    attempt: i64,
    owner: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = 'running', attempts = ?1, lease_owner = ?2, updated_at = ?3
         WHERE id = ?4 AND state = 'queued'",
    )
    .bind(attempt)
    .bind(owner)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// How a job's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// Queued again, to run at this time (Unix ms).
    RetryAt {
        at: i64,
        error: String,
    },
    Dead {
        error: String,
    },
}

/// Records the end of an attempt. Only a running job changes.
pub async fn finish(
    conn: &mut SqliteConnection,
    id: i64,
    finish: &Finish,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (state, run_at, finished_at, error) = match finish {
        Finish::Done => ("done", None, Some(now), None),
        Finish::RetryAt { at, error } => ("queued", Some(*at), None, Some(error.as_str())),
        Finish::Dead { error } => ("dead", None, Some(now), Some(error.as_str())),
    };
    sqlx::query(
        "UPDATE jobs SET state = ?1, run_at = COALESCE(?2, run_at), finished_at = ?3,
                         last_error = ?4, lease_owner = NULL, lease_until = NULL, updated_at = ?5
         WHERE id = ?6 AND state = 'running'",
    )
    .bind(state)
    .bind(run_at)
    .bind(finished_at)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Takes the manual retries queued for the running server (see [`retry_now`]).
pub async fn take_requests(conn: &mut SqliteConnection) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM job_requests RETURNING job_id")
        .fetch_all(conn)
        .await
}

/// Whether any manual retry waits for the server (a cheap read before [`take_requests`]).
pub async fn has_requests(pool: &SqlitePool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_requests)")
        .fetch_one(pool)
        .await
}

/// Puts a dead (or waiting) job back in the queue to run now, with a fresh attempt budget, and
/// asks a running server to schedule it (`job_requests`). False when there is no such job or it
/// is running or done.
pub async fn retry_now(pool: &SqlitePool, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let result = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?1,
                         finished_at = NULL, updated_at = ?1
         WHERE id = ?2 AND state IN ('dead', 'queued')",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO job_requests (job_id, requested_at) VALUES (?1, ?2)
         ON CONFLICT (job_id) DO UPDATE SET requested_at = excluded.requested_at",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
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

/// Jobs per state (a scan: for the command line and the demo, never for metrics).
pub async fn count_by_state(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(pool)
        .await
}
