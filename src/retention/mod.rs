//! Retention: deletes rows past their age (`[retention]`) in small batches, so the database
//! stops growing under steady load. The server runs [`Retention::run`] every
//! `retention.interval`; `switchboard prune` runs the same [`prune`] by hand.
//!
//! The server has one writer connection, shared with the inbox: before each batch the pruner
//! waits while the inbox waits ([`WritePriority::after_urgent`]), each batch is one short
//! transaction of at most `retention.batch_size` rows per statement, and it pauses between
//! batches `retention.pause_ms`, or [`PAUSE_PER_BATCH_TIME`] times as long as the last batch
//! took when that is longer: deleting rows with large payloads writes megabytes per batch, and
//! the inbox's fsyncs queue behind those writes, so the pruner keeps to a share of the disk
//! whatever its batches cost.
//!
//! What is never deleted: an event that is not routed yet, that an open buffer holds
//! (`buffered_events`) or that a queued, running or dead job lists; the outbound rows of any
//! job that is not itself deleted (only `done` jobs and dead jobs past their age are, with
//! their outbound rows and retry requests).

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::RetentionConfig;
use crate::metrics::Metrics;
use crate::write_priority::WritePriority;
pub use store::{Cutoffs, Pass, Pruned};

/// The cutoffs of `config` at `now_ms`.
pub fn cutoffs(config: &RetentionConfig, now_ms: i64) -> Cutoffs {
    Cutoffs {
        done_jobs: config.done_jobs.cutoff(now_ms),
        dead_jobs: config.dead_jobs.cutoff(now_ms),
        events: config.events.cutoff(now_ms),
        deliveries: config.deliveries.cutoff(now_ms),
        quarantine: config.quarantine.cutoff(now_ms),
    }
}

/// After a batch that took `d`, the pruner pauses at least `d` times this: it spends at most a
/// fifth of the time deleting.
pub const PAUSE_PER_BATCH_TIME: u32 = 4;

/// How a pruning run shares the database.
pub struct Pacing {
    /// Most rows of a pass's table per batch.
    pub batch_size: i64,
    /// Pause before each batch but the first.
    pub pause: Duration,
    /// The server's writer priority (the inbox first); `None` for the command line, which
    /// writes through a connection of its own.
    pub priority: Option<WritePriority>,
    /// Stops between batches when cancelled.
    pub shutdown: CancellationToken,
}

/// Deletes every row older than its cutoff, batch after batch, children before parents; returns
/// the rows deleted per table. Each batch is counted in `metrics` as soon as it commits.
pub async fn prune(
    pool: &SqlitePool,
    cutoffs: &Cutoffs,
    pacing: &Pacing,
    metrics: Option<&Metrics>,
) -> Result<Pruned, sqlx::Error> {
    let mut total = Pruned::default();
    let mut first = true;
    let mut pause = pacing.pause;
    for pass in Pass::ALL {
        let Some(cutoff) = pass.cutoff(cutoffs) else {
            continue;
        };
        loop {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = pacing.shutdown.cancelled() => {}
                }
            }
            first = false;
            if pacing.shutdown.is_cancelled() {
                return Ok(total);
            }
            if let Some(priority) = &pacing.priority {
                priority.after_urgent().await;
            }
            let started = std::time::Instant::now();
            let batch = store::delete_batch(pool, pass, cutoff, pacing.batch_size).await?;
            let took = started.elapsed();
            tracing::debug!(
                pass = ?pass,
                rows = batch.total(),
                took_us = took.as_micros() as u64,
                "retention: batch"
            );
            pause = pacing.pause.max(took.saturating_mul(PAUSE_PER_BATCH_TIME));
            if let Some(metrics) = metrics {
                for (table, rows) in batch.tables() {
                    metrics.count_pruned(table, rows);
                }
            }
            total.add(batch);
            let own = match pass {
                Pass::DoneJobs | Pass::DeadJobs => batch.jobs,
                Pass::Events => batch.events,
                Pass::Deliveries => batch.deliveries,
                Pass::Quarantine => batch.quarantine,
            };
            if own < u64::try_from(pacing.batch_size).unwrap_or(0) {
                break;
            }
        }
    }
    Ok(total)
}

/// The server's pruning loop.
pub struct Retention {
    /// The writer connection.
    pub pool: SqlitePool,
    pub config: RetentionConfig,
    /// Where ages are measured from.
    pub clock: Clock,
    pub priority: WritePriority,
    pub metrics: Arc<Metrics>,
}

impl Retention {
    /// Prunes every `retention.interval` (on the pipeline's clock) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.config.interval.0.unwrap_or(Duration::from_secs(300));
        let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        let pacing = Pacing {
            batch_size: self.config.batch_size,
            pause: Duration::from_millis(self.config.pause_ms),
            priority: Some(self.priority.clone()),
            shutdown: shutdown.clone(),
        };
        loop {
            let next = self.clock.now_ms().saturating_add(every_ms);
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                () = shutdown.cancelled() => break,
            }
            let cutoffs = cutoffs(&self.config, self.clock.now_ms());
            let started = std::time::Instant::now();
            match prune(&self.pool, &cutoffs, &pacing, Some(&self.metrics)).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    jobs = pruned.jobs,
                    outbound = pruned.outbound,
                    events = pruned.events,
                    deliveries = pruned.deliveries,
                    quarantine = pruned.quarantine,
                    took_ms = started.elapsed().as_millis() as u64,
                    "retention: pruned old rows"
                ),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "retention: pruning failed, will retry at the next interval")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
