//! The deletion statements of retention, one batch at a time, and the counts `prune --dry-run`
//! reports. Every statement finds its rows through an index (see `migrations/0004_retention.sql`)
//! and takes at most `limit` of them, oldest first.

use serde::Serialize;
use sqlx::SqlitePool;

/// Before which time (Unix ms) each kind of row is old; `None`: kept forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    pub done_jobs: Option<i64>,
    pub dead_jobs: Option<i64>,
    pub events: Option<i64>,
    pub deliveries: Option<i64>,
    pub quarantine: Option<i64>,
}

/// Rows deleted (or that would be), per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub jobs: u64,
    pub outbound: u64,
    pub job_requests: u64,
    pub events: u64,
    pub deliveries: u64,
    pub quarantine: u64,
}

impl Pruned {
    pub fn add(&mut self, other: Pruned) {
        self.jobs += other.jobs;
        self.outbound += other.outbound;
        self.job_requests += other.job_requests;
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.quarantine += other.quarantine;
    }

    /// `(table, rows)`, in the order they are pruned.
    pub fn tables(&self) -> [(&'static str, u64); 6] {
        [
            ("jobs", self.jobs),
            ("outbound", self.outbound),
            ("job_requests", self.job_requests),
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("quarantine", self.quarantine),
        ]
    }

    pub fn total(&self) -> u64 {
        self.tables().iter().map(|(_, n)| n).sum()
    }
}

/// One kind of deletion. Jobs go first: a dead job past its age stops holding its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    DoneJobs,
    DeadJobs,
    Events,
    Deliveries,
    Quarantine,
}

impl Pass {
    pub const ALL: [Pass; 5] = [
        Pass::DoneJobs,
        Pass::DeadJobs,
        Pass::Events,
        Pass::Deliveries,
        Pass::Quarantine,
    ];

    pub fn cutoff(self, cutoffs: &Cutoffs) -> Option<i64> {
        match self {
            Pass::DoneJobs => cutoffs.done_jobs,
            Pass::DeadJobs => cutoffs.dead_jobs,
            Pass::Events => cutoffs.events,
            Pass::Deliveries => cutoffs.deliveries,
            Pass::Quarantine => cutoffs.quarantine,
        }
    }

    /// The rows a batch deletes: ids of the oldest `?2` rows older than `?1`, walked in order
    /// on the named index (`INDEXED BY` makes the statement fail rather than scan; for jobs,
    /// the literal state matches the partial index, which a bound parameter would not).
    fn oldest(self) -> &'static str {
        match self {
            Pass::DoneJobs => {
                "SELECT id FROM jobs INDEXED BY jobs_done_finished_at WHERE state = 'done' AND finished_at < ?1 ORDER BY finished_at LIMIT ?2"
            }
            Pass::DeadJobs => {
                "SELECT id FROM jobs INDEXED BY jobs_dead_finished_at WHERE state = 'dead' AND finished_at < ?1 ORDER BY finished_at LIMIT ?2"
            }
            Pass::Events => {
                "SELECT id FROM events INDEXED BY events_received_at WHERE received_at < ?1 AND routed_at IS NOT NULL AND id NOT IN (SELECT event_id FROM buffered_events) AND id NOT IN (SELECT held.value FROM jobs, json_each(jobs.event_ids) AS held WHERE jobs.state IN ('queued', 'running', 'dead') AND NOT (jobs.state = 'dead' AND jobs.finished_at < ?3)) ORDER BY received_at LIMIT ?2"
            }
            Pass::Deliveries => {
                "SELECT id FROM deliveries INDEXED BY deliveries_received_at WHERE received_at < ?1 ORDER BY received_at LIMIT ?2"
            }
            Pass::Quarantine => {
                "SELECT id FROM quarantine INDEXED BY quarantine_received_at WHERE received_at < ?1 ORDER BY received_at LIMIT ?2"
            }
        }
    }

    /// The deletion statements of one batch, children first (`outbound` and `job_requests`
    /// reference `jobs`); the last one deletes the pass's own rows.
    pub fn statements(self) -> Vec<(&'static str, String)> {
        let oldest = self.oldest();
        match self {
            Pass::DoneJobs | Pass::DeadJobs => vec![
                (
                    "outbound",
                    format!("DELETE FROM outbound WHERE job_id IN ({oldest})"),
                ),
                (
                    "job_requests",
                    format!("DELETE FROM job_requests WHERE job_id IN ({oldest})"),
                ),
                ("jobs", format!("DELETE FROM jobs WHERE id IN ({oldest})")),
            ],
            Pass::Events => vec![(
                "events",
                format!("DELETE FROM events WHERE id IN ({oldest})"),
            )],
            Pass::Deliveries => vec![(
                "deliveries",
                format!("DELETE FROM deliveries WHERE id IN ({oldest})"),
            )],
            Pass::Quarantine => vec![(
                "quarantine",
                format!("DELETE FROM quarantine WHERE id IN ({oldest})"),
            )],
        }
    }
}

fn record(pruned: &mut Pruned, table: &str, rows: u64) {
    match table {
        "jobs" => pruned.jobs += rows,
        "outbound" => pruned.outbound += rows,
        "job_requests" => pruned.job_requests += rows,
        "events" => pruned.events += rows,
        "deliveries" => pruned.deliveries += rows,
        _ => pruned.quarantine += rows,
    }
}

/// Deletes one batch of `pass` (at most `limit` rows of its table, older than `cutoff`) in one
/// transaction. `BEGIN IMMEDIATE` takes the write lock first, so the rows the statements
/// select cannot change between them.
pub async fn delete_batch(
    pool: &SqlitePool,
    pass: Pass,
    cutoff: i64,
    limit: i64,
) -> Result<Pruned, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut pruned = Pruned::default();
    for (table, sql) in pass.statements() {
        let mut query = sqlx::query(&sql).bind(cutoff).bind(limit);
        if sql.contains("?3") {
            // Every dead job holds its events while it exists.
            query = query.bind(i64::MIN);
        }
        let result = query.execute(&mut *tx).await?;
        record(&mut pruned, table, result.rows_affected());
    }
    tx.commit().await?;
    Ok(pruned)
}

/// What pruning with `cutoffs` would delete now, without deleting. Events count as freed from
/// the dead jobs the run would delete first, so the numbers match a real run.
pub async fn count(pool: &SqlitePool, cutoffs: &Cutoffs) -> Result<Pruned, sqlx::Error> {
    let mut pruned = Pruned::default();
    for pass in Pass::ALL {
        let Some(cutoff) = pass.cutoff(cutoffs) else {
            continue;
        };
        for (table, sql) in pass.statements() {
            // `DELETE FROM t WHERE col IN (...)` → `SELECT COUNT(*) FROM t WHERE col IN (...)`
            // without the batch limit.
            let select = sql.replacen("DELETE FROM", "SELECT COUNT(*) FROM", 1);
            let mut query = sqlx::query_scalar(&select).bind(cutoff).bind(-1_i64);
            if select.contains("?3") {
                query = query.bind(cutoffs.dead_jobs.unwrap_or(i64::MIN));
            }
            let rows: i64 = query.fetch_one(pool).await?;
            record(&mut pruned, table, u64::try_from(rows).unwrap_or(0));
        }
    }
    Ok(pruned)
}
