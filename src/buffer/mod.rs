//! Per-conversation debounce of `whatsapp.message.received`. The open batches live in memory
//! ([`OpenBuffers`]), owned by the dispatcher, which adds messages and flushes due batches in
//! turn; the tables `buffers` and `buffered_events` are their durable log ([`store`]), written
//! in the same transactions that route the messages and enqueue the batches' jobs. At startup
//! [`recover`] loads the open batches back, so after a restart batches flush when they were due
//! (at once, if that was during the downtime).

pub mod open;
pub mod store;

use std::collections::HashMap;

use sqlx::SqlitePool;

use crate::inbox::store::{load_events, StoredEvent};
use crate::jobs::NewJob;
use crate::router::Router;
pub use open::{Additions, Batch, BatchKey, OpenBuffers};

/// Events read per query when loading the open batches.
const LOAD_CHUNK: usize = 500;

/// Loads the open batches from their tables. Messages logged without their batch's row (which
/// the server never writes) get a batch due at `now`, so they are not left behind.
pub async fn recover(pool: &SqlitePool, now: i64) -> Result<OpenBuffers, sqlx::Error> {
    let batches = store::open_batches(pool).await?;
    let members = store::buffered_events(pool).await?;
    let ids: Vec<i64> = members.iter().map(|(_, _, id)| *id).collect();
    let mut events: HashMap<i64, StoredEvent> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(LOAD_CHUNK) {
        events.extend(
            load_events(pool, chunk)
                .await?
                .into_iter()
                .map(|e| (e.id, e)),
        );
    }
    let mut grouped: HashMap<BatchKey, Vec<StoredEvent>> = HashMap::new();
    for (route, conversation, id) in members {
        if let Some(event) = events.remove(&id) {
            grouped
                .entry(BatchKey {
                    route,
                    conversation,
                })
                .or_default()
                .push(event);
        }
    }
    let mut open = OpenBuffers::default();
    for stored in batches {
        let key = BatchKey {
            route: stored.route,
            conversation: stored.conversation,
        };
        let events = grouped.remove(&key).unwrap_or_default();
        let batch = Batch {
            first_at: stored.first_at,
            last_at: stored.last_at,
            flush_at: stored.flush_at,
            events,
        };
        open.open(key, batch);
    }
    for (key, events) in grouped {
        tracing::warn!(route = %key.route, messages = events.len(), "buffered messages without their batch: flushing them now");
        let batch = Batch {
            first_at: now,
            last_at: now,
            flush_at: now,
            events,
        };
        open.open(key, batch);
    }
    Ok(open)
}

/// Due batches and their jobs, to be committed in one transaction.
#[derive(Debug, Default)]
pub struct Flush {
    /// The batches to close.
    pub keys: Vec<BatchKey>,
    /// When each batch was due, in the order of `keys`.
    pub due_at: Vec<i64>,
    /// One job per batch whose route is still configured.
    pub jobs: Vec<NewJob>,
}

/// Turns up to `limit` batches due at `now` into jobs, earliest first; memory is unchanged
/// until [`OpenBuffers::close`]. A batch whose route is no longer configured is dropped from
/// the buffer with a warning (its messages stay in the inbox).
pub fn plan_flush(open: &OpenBuffers, router: &Router, now: i64, limit: usize) -> Flush {
    let keys = open.due(now, limit);
    let mut jobs = Vec::with_capacity(keys.len());
    let mut due_at = Vec::with_capacity(keys.len());
    for key in &keys {
        let Some(batch) = open.get(key) else {
            continue;
        };
        due_at.push(batch.flush_at);
        match router.get(&key.route) {
            Some(route) => jobs.extend(NewJob::for_events(route, &batch.in_event_order(), now)),
            None => tracing::warn!(
                route = %key.route,
                messages = batch.events.len(),
                "buffered messages belong to a route that is no longer configured; dropped from the buffer (they stay in the inbox)"
            ),
        }
    }
    Flush { keys, due_at, jobs }
}
