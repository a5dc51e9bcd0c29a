//! Per-conversation debounce of `whatsapp.message.received`, durable in SQLite: the dispatcher
//! adds messages (see [`store::add`]), and [`Flusher`] turns each batch whose time has come
//! into one job, many batches per transaction. Flush times are stored, so after a restart
//! batches flush when they were due.

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::inbox::store::load_events;
use crate::jobs::queue::JobQueue;
use crate::jobs::{event_time_ms, store as job_store, NewJob};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::write_priority::WritePriority;

/// Most batches flushed in one transaction.
const FLUSH_BATCH: i64 = 256;

pub struct Flusher {
    /// The writer connection.
    pub pool: SqlitePool,
    /// Read connections (due batches are found here).
    pub reads: SqlitePool,
    pub router: Arc<Router>,
    /// Woken when messages are buffered (a batch may now be full or due sooner).
    pub buffered: Arc<Notify>,
    /// Where the flushed batches' jobs are scheduled once committed.
    pub queue: Arc<dyn JobQueue>,
    pub poll_interval: Duration,
    /// Holds this writer back while the inbox waits for the connection.
    pub priority: WritePriority,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
}

impl Flusher {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let notified = self.buffered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The next flush time on the pipeline's clock, if one is known.
            let next = match self.flush_due().await {
                Ok(()) => match store::next_flush(&self.reads).await {
                    Ok(next) => next,
                    Err(err) => {
                        tracing::error!(error = %err, "buffer: cannot read the next flush time");
                        None
                    }
                },
                Err(err) => {
                    tracing::error!(error = %err, "buffer: flush failed, will retry");
                    None
                }
            };
            let due = self.clock.sleep_until_some(next);
            tokio::select! {
                () = &mut notified => {}
                () = due => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Turns every batch that is due into a job, up to [`FLUSH_BATCH`] batches per transaction.
    pub async fn flush_due(&self) -> Result<(), sqlx::Error> {
        loop {
            let now = self.clock.now_ms();
            let due = store::due(&self.reads, now, FLUSH_BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut new_jobs = Vec::with_capacity(due.len());
            let mut messages = 0;
            let mut tx = {
                self.priority.after_urgent().await;
                self.pool.begin_with("BEGIN IMMEDIATE").await?
            };
            for (route_name, conversation) in &due {
                let ids = store::take(&mut tx, route_name, conversation).await?;
                messages += ids.len();
                let mut events = load_events(&mut *tx, &ids).await?;
                events.sort_by_key(|e| (event_time_ms(e), e.id));
                match self.router.get(route_name) {
                    Some(route) => {
                        new_jobs.extend(NewJob::for_events(route, &events, now));
                    }
                    None => tracing::warn!(
                        route = %route_name,
                        messages = events.len(),
                        "buffered messages belong to a route that is no longer configured; dropped from the buffer (they stay in the inbox)"
                    ),
                }
            }
            let ids = job_store::enqueue_all(&mut tx, &new_jobs, now).await?;
            tx.commit().await?;
            let jobs = NewJob::all_committed(new_jobs, ids, now);
            self.metrics
                .buffered_messages
                .dec_by(i64::try_from(messages).unwrap_or(i64::MAX));
            tracing::debug!(batches = due.len(), jobs = jobs.len(), "buffers flushed");
            self.queue.offer(jobs);
        }
    }
}
