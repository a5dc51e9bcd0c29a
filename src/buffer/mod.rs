//! Per-conversation debounce of `whatsapp.message.received`, durable in SQLite: the dispatcher
//! adds messages (see [`store::add`]), and [`Flusher`] turns each batch whose time has come
//! into one job. Flush times are stored, so after a restart batches flush when they were due.

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, until};
use crate::inbox::store::load_events;
use crate::jobs::{event_time_ms, store as job_store, NewJob};
use crate::router::Router;

pub struct Flusher {
    pub pool: SqlitePool,
    pub router: Arc<Router>,
    /// Woken when messages are buffered (a batch may now be full or due sooner).
    pub buffered: Arc<Notify>,
    pub jobs_ready: Arc<Notify>,
    pub poll_interval: Duration,
}

impl Flusher {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let notified = self.buffered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = match self.flush_due().await {
                Ok(()) => match store::next_flush(&self.pool).await {
                    Ok(Some(at)) => until(at).min(self.poll_interval),
                    Ok(None) => self.poll_interval,
                    Err(err) => {
                        tracing::error!(error = %err, "buffer: cannot read the next flush time");
                        self.poll_interval
                    }
                },
                Err(err) => {
                    tracing::error!(error = %err, "buffer: flush failed, will retry");
                    self.poll_interval
                }
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Turns every batch that is due into a job (one transaction per batch).
    pub async fn flush_due(&self) -> Result<(), sqlx::Error> {
        loop {
            let due = store::due(&self.pool, now_ms(), 64).await?;
            if due.is_empty() {
                return Ok(());
            }
            for (route_name, conversation) in due {
                self.flush(&route_name, &conversation).await?;
            }
            self.jobs_ready.notify_waiters();
        }
    }

    async fn flush(&self, route_name: &str, conversation: &str) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids = store::take(&mut tx, route_name, conversation).await?;
        let mut events = load_events(&mut *tx, &ids).await?;
        events.sort_by_key(|e| (event_time_ms(e), e.id));
        match self.router.get(route_name) {
            Some(route) => {
                if let Some(job) = NewJob::for_events(route, &events, now) {
                    job_store::enqueue(&mut tx, &job, now).await?;
                    tracing::debug!(route = route_name, messages = events.len(), "buffer flushed");
                }
            }
            None => tracing::warn!(
                route = route_name,
                messages = events.len(),
                "buffered messages belong to a route that is no longer configured; dropped from the buffer (they stay in the inbox)"
            ),
        }
        tx.commit().await
    }
}
