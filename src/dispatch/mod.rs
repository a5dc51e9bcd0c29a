//! The dispatcher: takes newly stored events, asks the router which routes match, and in one
//! transaction enqueues a job per match (or adds the message to the route's conversation
//! buffer) and marks the events routed. A crash before the commit leaves them unrouted, so
//! they are dispatched again; never twice.
//!
//! It also owns the open conversation buffers ([`OpenBuffers`]) and flushes them when they are
//! due ([`flush`]): adding and flushing happen in turn in this one task, so they never race,
//! and the next flush time is read from memory, never polled from the database.

mod flush;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::buffer::{self, Additions, BatchKey, OpenBuffers};
use crate::clock::Clock;
use crate::inbox::store::{self as inbox_store, StoredEvent};
use crate::jobs::queue::JobQueue;
use crate::jobs::{store as job_store, NewJob};
use crate::metrics::Metrics;
use crate::router::{RoutableEvent, Router};
use crate::write_priority::WritePriority;

const BATCH: i64 = 256;

pub struct Dispatcher {
    /// The writer connection.
    pub pool: SqlitePool,
    /// Read connections (unrouted events are read here).
    pub reads: SqlitePool,
    pub router: Arc<Router>,
    /// Woken by the inbox after each commit.
    pub events_stored: Arc<Notify>,
    /// Where new jobs are scheduled once committed.
    pub queue: Arc<dyn JobQueue>,
    /// How long to wait before looking for unrouted events again without a wake-up, and
    /// before retrying after an error.
    pub poll_interval: Duration,
    /// Holds this writer back while the inbox waits for the connection.
    pub priority: WritePriority,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The open conversation buffers, as loaded at startup ([`buffer::recover`]); this task
    /// alone changes them.
    pub buffers: OpenBuffers,
}

impl Dispatcher {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let events_stored = self.events_stored.clone();
        loop {
            let notified = events_stored.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Due buffers first: a backlog of events to route does not hold them back by more
            // than one batch.
            let flushed = match self.flush_due().await {
                Ok(()) => true,
                Err(err) => {
                    tracing::error!(error = %err, "buffer: flush failed, will retry");
                    false
                }
            };
            match self.dispatch_batch().await {
                Ok(n) if n as i64 == BATCH && flushed => continue,
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "dispatcher: routing failed, will retry"),
            }
            // After a failed flush, the next try waits for the poll interval.
            let next_flush = if flushed {
                self.buffers.next_flush()
            } else {
                None
            };
            let due = self.clock.sleep_until_some(next_flush);
            tokio::select! {
                () = &mut notified => {}
                () = due => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Routes up to [`BATCH`] unrouted events; returns how many.
    pub async fn dispatch_batch(&mut self) -> Result<usize, sqlx::Error> {
        let events = inbox_store::unrouted(&self.reads, BATCH).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut new_jobs = Vec::new();
        let mut additions = Additions::default();
        for event in &events {
            let payload = event.payload_json();
            let mut routable = RoutableEvent::from_stored(
                &event.event_type,
                &event.webhook,
                event.phone_number_id.as_deref(),
                &payload,
            );
            routable.backfilled = event.is_backfilled();
            for route in self.router.matching(&routable) {
                match buffer_key(route.buffers(&event.event_type), &route.name, event) {
                    Some(key) => {
                        self.buffers
                            .stage(&mut additions, key, event.clone(), now, &route.buffer);
                    }
                    None => {
                        new_jobs.extend(NewJob::for_events(
                            route,
                            std::slice::from_ref(event),
                            now,
                        ));
                    }
                }
            }
        }
        let mut tx = {
            self.priority.after_urgent().await;
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        };
        buffer::store::save(&mut tx, additions.changes()).await?;
        let job_ids = job_store::enqueue_all(&mut tx, &new_jobs, now).await?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        inbox_store::mark_routed(&mut tx, &ids, now).await?;
        tx.commit().await?;
        let buffered = additions.messages();
        self.buffers.apply(additions);
        self.publish_buffered();
        let enqueued = NewJob::all_committed(new_jobs, job_ids, now);
        tracing::debug!(
            events = events.len(),
            jobs = enqueued.len(),
            buffered,
            "dispatched"
        );
        self.queue.offer(enqueued);
        Ok(events.len())
    }

    /// The `buffered_messages` gauge, from memory.
    fn publish_buffered(&self) {
        let messages = i64::try_from(self.buffers.messages()).unwrap_or(i64::MAX);
        self.metrics.buffered_messages.set(messages);
    }
}

/// Buffered messages are grouped by conversation; without one there is nothing to group by.
fn buffer_key(buffers: bool, route: &str, event: &StoredEvent) -> Option<BatchKey> {
    if !buffers {
        return None;
    }
    event.conversation_id.as_ref().map(|conversation| BatchKey {
        route: route.to_owned(),
        conversation: conversation.clone(),
    })
}
