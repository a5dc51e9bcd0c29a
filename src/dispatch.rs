//! The dispatcher: takes newly stored events, asks the router which routes match, and in one
//! transaction enqueues a job per match (or adds the message to the route's conversation
//! buffer) and marks the events routed. A crash before the commit leaves them unrouted, so
//! they are dispatched again; never twice.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::buffer;
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
    /// Woken after messages are buffered.
    pub buffered: Arc<Notify>,
    pub poll_interval: Duration,
    /// Holds this writer back while the inbox waits for the connection.
    pub priority: WritePriority,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let notified = self.events_stored.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = match self.dispatch_batch().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => self.poll_interval,
                Err(err) => {
                    tracing::error!(error = %err, "dispatcher: routing failed, will retry");
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

    /// Routes up to [`BATCH`] unrouted events; returns how many.
    pub async fn dispatch_batch(&self) -> Result<usize, sqlx::Error> {
        let events = inbox_store::unrouted(&self.reads, BATCH).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut new_jobs = Vec::new();
        let mut buffered = 0;
        let mut tx = {
            self.priority.after_urgent().await;
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        };
        for event in &events {
            let payload = event.payload_json();
            let routable = RoutableEvent::from_stored(
                &event.event_type,
                &event.webhook,
                event.phone_number_id.as_deref(),
                &payload,
            );
            for route in self.router.matching(&routable) {
                match buffer_key(route.buffers(&event.event_type), event) {
                    Some(conversation) => {
                        buffer::store::add(
                            &mut tx,
                            &route.name,
                            conversation,
                            event.id,
                            now,
                            &route.buffer,
                        )
                        .await?;
                        buffered += 1;
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
        let job_ids = job_store::enqueue_all(&mut tx, &new_jobs, now).await?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        inbox_store::mark_routed(&mut tx, &ids, now).await?;
        tx.commit().await?;
        let enqueued = NewJob::all_committed(new_jobs, job_ids, now);
        tracing::debug!(
            events = events.len(),
            jobs = enqueued.len(),
            buffered,
            "dispatched"
        );
        self.queue.offer(enqueued);
        self.metrics.buffered_messages.inc_by(buffered);
        if buffered > 0 {
            self.buffered.notify_waiters();
        }
        Ok(events.len())
    }
}

/// Buffered messages are grouped by conversation; without one there is nothing to group by.
fn buffer_key(buffers: bool, event: &StoredEvent) -> Option<&str> {
    if buffers {
        event.conversation_id.as_deref()
    } else {
        None
    }
}
