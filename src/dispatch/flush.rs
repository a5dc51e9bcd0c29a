//! Flushing due conversation buffers: each group of due batches is closed in one transaction
//! that deletes their rows and enqueues their jobs; memory follows once it commits.

use super::Dispatcher;
use crate::buffer::{self, store};
use crate::jobs::{store as job_store, NewJob};

/// Most batches flushed in one transaction.
pub(super) const FLUSH_BATCH: usize = 512;

impl Dispatcher {
    /// Turns every batch that is due into a job, up to [`FLUSH_BATCH`] batches per
    /// transaction. If a transaction fails, its batches stay open (in memory and in the
    /// tables) and are flushed on the next call.
    pub async fn flush_due(&mut self) -> Result<(), sqlx::Error> {
        loop {
            let now = self.clock.now_ms();
            let flush = buffer::plan_flush(&self.buffers, &self.router, now, FLUSH_BATCH);
            if flush.keys.is_empty() {
                return Ok(());
            }
            let mut tx = {
                self.priority.after_urgent().await;
                self.pool.begin_with("BEGIN IMMEDIATE").await?
            };
            store::delete(&mut tx, &flush.keys).await?;
            let ids = job_store::enqueue_all(&mut tx, &flush.jobs, now).await?;
            tx.commit().await?;
            let committed = self.clock.now_ms();
            for due in &flush.due_at {
                self.metrics.observe_flush_lateness(committed - due);
            }
            self.buffers.close(&flush.keys);
            self.publish_buffered();
            let jobs = NewJob::all_committed(flush.jobs, ids, now);
            tracing::debug!(
                batches = flush.keys.len(),
                jobs = jobs.len(),
                "buffers flushed"
            );
            self.queue.offer(jobs);
            if flush.keys.len() < FLUSH_BATCH {
                return Ok(());
            }
        }
    }
}
