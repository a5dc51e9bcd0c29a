//! All SQL on the `jobs` table: enqueue (inside the caller's transaction), load the unfinished
//! jobs into the in-memory schedule, record claims and outcomes (through the pipeline's
//! group-committed writes), list and replay.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::inbox::store::StoredEvent;
use crate::write_queue::BoxFuture;

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
    /// The events themselves, as the dispatcher read them (routing, or flushing a buffer):
    /// the worker then need not read them again.
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

/// Every job state, in the order a job moves through them.
pub const STATES: [&str; 4] = ["queued", "running", "done", "dead"];

/// The columns of a [`JobRow`].
const JOB_ROW_COLUMNS: &str = "id, route, handler, event_type, conversation, state, attempts,
    max_attempts, run_at, last_error, event_ids, created_at, finished_at, replay";

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
    /// Created by replaying its event (the admin API), not by routing it on arrival.
    pub replay: bool,
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

/// Inserts `jobs` with consecutive ids in one statement (the rows go in as one JSON array, so
/// its text never changes and stays prepared) and returns the ids, in order. Runs inside the
/// caller's `BEGIN IMMEDIATE` transaction, which holds the write lock from the id lookup to
/// the insert, so the numbering cannot collide.
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
    let rows: Vec<_> = jobs
        .iter()
        .zip(&ids)
        .map(|(job, id)| {
            let event_ids =
                serde_json::to_string(&job.event_ids).unwrap_or_else(|_| "[]".to_owned());
            (
                *id,
                &job.route,
                &job.handler,
                &job.webhook,
                &job.event_type,
                &job.conversation,
                &job.ordering_key,
                job.order_ts,
                job.order_seq,
                event_ids,
                job.max_attempts,
                job.run_at,
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows)
        .map_err(|e| sqlx::Error::Protocol(format!("jobs as JSON: {e}")))?;
    sqlx::query(
        "INSERT INTO jobs (id, route, handler, webhook, event_type, conversation, ordering_key,
                           order_ts, order_seq, event_ids, max_attempts, run_at, created_at, updated_at)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, ?2, ?2
         FROM json_each(?1) ORDER BY key",
    )
    .bind(rows)
    .bind(now)
    .execute(&mut *conn)
    .await?;
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

/// How a job's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// Done without doing its work, for a reason recorded in `last_error` (e.g. a backfilled
    /// message too old to answer).
    DoneNoted {
        note: String,
    },
    /// Queued again, to run at this time (Unix ms).
    RetryAt {
        at: i64,
        error: String,
    },
    Dead {
        error: String,
    },
    /// Not an attempt: the job waits for its send's pace (see `crate::pacing`). Queued again
    /// to run at this time (Unix ms), with the attempt it just took given back.
    Deferred {
        at: i64,
    },
}

/// One entry of the job log the queue keeps in the table: a claim or an outcome.
#[derive(Debug, Clone)]
pub enum JobLog {
    /// A worker (`owner`, this process) took the job for attempt number `attempt`.
    Claim {
        id: i64,
        attempt: i64,
        owner: Arc<str>,
        at: i64,
    },
    /// The attempt ended.
    Finish {
        id: i64,
        attempt: i64,
        finish: Finish,
        at: i64,
    },
}

/// A job's row as a batch of log entries leaves it (the last entry of each field wins).
#[derive(Debug, Clone, PartialEq)]
struct LoggedRow {
    id: i64,
    state: &'static str,
    attempts: i64,
    lease_owner: Option<Arc<str>>,
    /// `None` keeps the stored run time.
    run_at: Option<i64>,
    /// Set by an outcome: `finished_at` and `last_error` (either may be NULL).
    outcome: Option<(Option<i64>, Option<String>)>,
    updated_at: i64,
}

/// Folds log entries (in the order they happened) into one row per job, in first-seen order.
fn fold_log(entries: Vec<JobLog>) -> Vec<LoggedRow> {
    let mut rows: Vec<LoggedRow> = Vec::with_capacity(entries.len());
    let mut index: HashMap<i64, usize> = HashMap::with_capacity(entries.len());
    for entry in entries {
        let id = match &entry {
            JobLog::Claim { id, .. } | JobLog::Finish { id, .. } => *id,
        };
        let slot = *index.entry(id).or_insert_with(|| {
            rows.push(LoggedRow {
                id,
                state: "queued",
                attempts: 0,
                lease_owner: None,
                run_at: None,
                outcome: None,
                updated_at: 0,
            });
            rows.len() - 1
        });
        let row = &mut rows[slot];
        match entry {
            JobLog::Claim {
                attempt, owner, at, ..
            } => {
                row.state = "running";
                row.attempts = attempt;
                row.lease_owner = Some(owner);
                row.updated_at = at;
            }
            JobLog::Finish {
                attempt,
                finish,
                at,
                ..
            } => {
                if let Finish::Deferred { at: later } = finish {
                    row.state = "queued";
                    row.attempts = attempt.saturating_sub(1).max(0);
                    row.lease_owner = None;
                    row.run_at = Some(later);
                    row.updated_at = at;
                    continue;
                }
                let (state, run_at, finished_at, error) = match finish {
                    Finish::Done => ("done", None, Some(at), None),
                    Finish::DoneNoted { note } => ("done", None, Some(at), Some(note)),
                    Finish::RetryAt { at: retry, error } => {
                        ("queued", Some(retry), None, Some(error))
                    }
                    Finish::Dead { error } => ("dead", None, Some(at), Some(error)),
                    Finish::Deferred { .. } => continue,
                };
                row.state = state;
                row.attempts = attempt;
                row.lease_owner = None;
                if run_at.is_some() {
                    row.run_at = run_at;
                }
                row.outcome = Some((finished_at, error));
                row.updated_at = at;
            }
        }
    }
    rows
}

/// Writes a batch of claims and outcomes in one UPDATE, whatever the number of entries: the
/// rows go in as one JSON array, so the statement's text never changes and stays prepared.
/// Only unfinished rows change (a finished job's row is final).
pub fn write_log<'c>(
    conn: &'c mut SqliteConnection,
    entries: Vec<JobLog>,
) -> BoxFuture<'c, Result<Vec<()>, sqlx::Error>> {
    Box::pin(async move {
        let count = entries.len();
        let rows = fold_log(entries);
        let values: Vec<_> = rows
            .iter()
            .map(|row| {
                let (finished_at, error) = row.outcome.clone().unwrap_or_default();
                (
                    row.id,
                    row.state,
                    row.attempts,
                    row.lease_owner.as_deref(),
                    row.run_at,
                    row.outcome.is_some(),
                    finished_at,
                    error,
                    row.updated_at,
                )
            })
            .collect();
        let values = serde_json::to_string(&values)
            .map_err(|e| sqlx::Error::Protocol(format!("job log as JSON: {e}")))?;
        // `+jobs.state`: look jobs up by id, never scan them by state.
        sqlx::query(
            "UPDATE jobs SET state = v.state, attempts = v.attempts, lease_owner = v.owner,
                 lease_until = NULL, run_at = COALESCE(v.run_at, jobs.run_at),
                 finished_at = CASE WHEN v.ended THEN v.finished_at ELSE jobs.finished_at END,
                 last_error = CASE WHEN v.ended THEN v.error ELSE jobs.last_error END,
                 updated_at = v.at
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS state, value ->> 2 AS attempts,
                          value ->> 3 AS owner, value ->> 4 AS run_at, value ->> 5 AS ended,
                          value ->> 6 AS finished_at, value ->> 7 AS error, value ->> 8 AS at
                   FROM json_each(?)) AS v
             WHERE jobs.id = v.id AND +jobs.state IN ('queued', 'running')",
        )
        .bind(values)
        .execute(&mut *conn)
        .await?;
        Ok(vec![(); count])
    })
}

/// Takes the manual retries queued for the running server (see [`retry_now`]).
pub async fn take_requests(conn: &mut SqliteConnection) -> Result<Vec<(i64, bool)>, sqlx::Error> {
    sqlx::query_as("DELETE FROM job_requests RETURNING job_id, was_dead")
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
    let was: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
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
    request_run(&mut tx, id, now, was.as_deref() == Some("dead")).await?;
    tx.commit().await?;
    Ok(true)
}

/// Asks a running server to schedule queued job `id` (`job_requests`), saying whether it was
/// dead until now; a server that is not running loads every queued job when it starts. Part of
/// the caller's transaction.
pub async fn request_run(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    was_dead: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_requests (job_id, requested_at, was_dead) VALUES (?1, ?2, ?3)
         ON CONFLICT (job_id) DO UPDATE SET requested_at = excluded.requested_at,
                                            was_dead = max(was_dead, excluded.was_dead)",
    )
    .bind(id)
    .bind(now)
    .bind(was_dead)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub route: Option<String>,
    /// Only jobs with an id below this (the cursor of the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(pool: &SqlitePool, filter: &JobFilter) -> Result<Vec<JobRow>, sqlx::Error> {
    let mut query: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {JOB_ROW_COLUMNS} FROM jobs WHERE 1 = 1"));
    if let Some(state) = &filter.state {
        query.push(" AND state = ").push_bind(state);
    }
    if let Some(route) = &filter.route {
        query.push(" AND route = ").push_bind(route);
    }
    if let Some(before) = filter.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit);
    query.build_query_as().fetch_all(pool).await
}

pub async fn get(pool: &SqlitePool, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB_ROW_COLUMNS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The jobs that handle event `event_id`, oldest first (a scan of every job's event list: for
/// the admin API's one-event view, never for the pipeline).
pub async fn handling_event(pool: &SqlitePool, event_id: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {JOB_ROW_COLUMNS} FROM jobs
         WHERE id IN (SELECT jobs.id FROM jobs, json_each(jobs.event_ids) AS e WHERE e.value = ?)
         ORDER BY id"
    ))
    .bind(event_id)
    .fetch_all(pool)
    .await
}

/// One message a job sent or plans to send (the outbound ledger).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutboundRow {
    pub id: i64,
    pub job_id: i64,
    pub seq: i64,
    pub phone_number_id: String,
    pub action: String,
    pub state: String,
    pub wamid: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// The request body as sent to Kapso; serialized as the embedded JSON object.
    #[serde(serialize_with = "crate::inbox::store::json_out::embedded")]
    pub body: String,
}

/// The columns of an [`OutboundRow`], for every query that reads one.
const OUTBOUND_COLUMNS: &str =
    "id, job_id, seq, phone_number_id, action, state, wamid, created_at, sent_at, body";

/// The outbound rows of job `job_id`, in send order.
pub async fn outbound_of(pool: &SqlitePool, job_id: i64) -> Result<Vec<OutboundRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {OUTBOUND_COLUMNS} FROM outbound WHERE job_id = ? ORDER BY seq"
    ))
    .bind(job_id)
    .fetch_all(pool)
    .await
}

/// Marks jobs `ids` as created by a replay; part of the transaction that enqueued them.
pub async fn mark_replay(conn: &mut SqliteConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
    sqlx::query("UPDATE jobs SET replay = 1 WHERE id IN (SELECT value FROM json_each(?))")
        .bind(json)
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest `limit` outbound rows of the jobs of `conversation`, oldest first (a scan of the
/// jobs: for the admin API's conversation view, never for the pipeline).
pub async fn outbound_of_conversation(
    pool: &SqlitePool,
    conversation: &str,
    limit: i64,
) -> Result<Vec<OutboundRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT * FROM (SELECT {OUTBOUND_COLUMNS} FROM outbound
                        WHERE job_id IN (SELECT id FROM jobs WHERE conversation = ?1)
                        ORDER BY id DESC LIMIT ?2)
         ORDER BY id"
    ))
    .bind(conversation)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Jobs per state (a scan: for the command line and the demo, never for metrics).
pub async fn count_by_state(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: i64, attempt: i64, at: i64) -> JobLog {
        JobLog::Claim {
            id,
            attempt,
            owner: "me".into(),
            at,
        }
    }

    fn finish(id: i64, attempt: i64, finish: Finish, at: i64) -> JobLog {
        JobLog::Finish {
            id,
            attempt,
            finish,
            at,
        }
    }

    #[test]
    fn a_claim_and_its_outcome_in_one_batch_leave_the_outcome() {
        let rows = fold_log(vec![
            claim(1, 1, 10),
            claim(2, 1, 11),
            finish(1, 1, Finish::Done, 12),
        ]);
        assert_eq!(rows.len(), 2, "one row per job, in first-seen order");
        assert_eq!(
            rows[0],
            LoggedRow {
                id: 1,
                state: "done",
                attempts: 1,
                lease_owner: None,
                run_at: None,
                outcome: Some((Some(12), None)),
                updated_at: 12,
            }
        );
        assert_eq!((rows[1].id, rows[1].state), (2, "running"));
        assert_eq!(rows[1].lease_owner.as_deref(), Some("me"));
        assert_eq!(rows[1].outcome, None, "a claim keeps the stored error");
    }

    #[test]
    fn a_retry_claimed_again_in_the_same_batch_runs_with_the_earlier_error_kept() {
        let retry = Finish::RetryAt {
            at: 50,
            error: "kapso: 503".into(),
        };
        let rows = fold_log(vec![finish(7, 1, retry, 20), claim(7, 2, 50)]);
        assert_eq!(
            rows,
            vec![LoggedRow {
                id: 7,
                state: "running",
                attempts: 2,
                lease_owner: Some("me".into()),
                run_at: Some(50),
                outcome: Some((None, Some("kapso: 503".into()))),
                updated_at: 50,
            }]
        );
    }

    #[test]
    fn a_dead_job_records_its_error_and_end() {
        let dead = Finish::Dead {
            error: "kapso: 131047".into(),
        };
        let rows = fold_log(vec![finish(3, 4, dead, 99)]);
        assert_eq!(rows[0].state, "dead");
        assert_eq!(rows[0].attempts, 4);
        assert_eq!(
            rows[0].outcome,
            Some((Some(99), Some("kapso: 131047".into())))
        );
    }
}
