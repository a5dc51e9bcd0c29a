//! The durable job queue: one row per handler run, claimed with a lease, retried with backoff,
//! dead-lettered when it cannot succeed. Jobs of one conversation and route run in order.

pub mod parked;
pub mod pause;
pub mod queue;
pub mod replay;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod store;

use crate::inbox::store::StoredEvent;
use crate::router::Route;
pub use store::NewJob;
use store::{ClaimedJob, UnfinishedJob};

/// How an operator's change (a replay, a pause) reaches the job schedule: this process's own
/// (the server's admin API and console), or the running server's, through a request table it
/// reads every `jobs.poll_interval_ms` (the command line; when no server runs, the next one
/// loads the change at startup).
pub enum Reach<'a> {
    /// This process's schedule, after its own inbox writes.
    InProcess {
        queue: &'a dyn queue::JobQueue,
        priority: &'a crate::write_priority::WritePriority,
    },
    /// The running server, asked through a request row written with the change.
    ByRequest,
}

impl Reach<'_> {
    /// In process, waits until the inbox's urgent writes are through (operator writes come
    /// after the pipeline's); by request, there is nothing to wait for.
    pub async fn after_urgent(&self) {
        if let Reach::InProcess { priority, .. } = self {
            priority.after_urgent().await;
        }
    }
}

/// The key that makes a route's jobs for one conversation run one at a time.
pub fn ordering_key(route: &str, conversation: Option<&str>) -> Option<String> {
    conversation.map(|c| format!("{route}\u{1f}{c}"))
}

/// When an event happened, for ordering: its own timestamp, else its arrival (Unix ms).
pub fn event_time_ms(event: &StoredEvent) -> i64 {
    event
        .occurred_at
        .map_or(event.received_at, |s| s.saturating_mul(1000))
}

impl NewJob {
    /// A job running `route` on `events` (oldest first; at least one).
    pub fn for_events(route: &Route, events: &[StoredEvent], now: i64) -> Option<NewJob> {
        let first = events.first()?;
        let conversation = first.conversation_id.clone();
        Some(NewJob {
            route: route.name.clone(),
            handler: route.handler.kind().to_owned(),
            webhook: first.webhook.clone(),
            event_type: first.event_type.clone(),
            ordering_key: ordering_key(&route.name, conversation.as_deref()),
            conversation,
            order_ts: event_time_ms(first),
            order_seq: first.id,
            event_ids: events.iter().map(|e| e.id).collect(),
            max_attempts: route.max_attempts,
            run_at: now,
            events: Some(events.into()),
        })
    }

    /// The jobs as the schedule holds them, once their rows (`ids`, in order) are committed.
    pub fn all_committed(jobs: Vec<NewJob>, ids: Vec<i64>, now: i64) -> Vec<UnfinishedJob> {
        jobs.into_iter()
            .zip(ids)
            .map(|(job, id)| job.into_unfinished(id, now))
            .collect()
    }

    /// The job as the schedule holds it, once its row `id` is committed.
    pub fn into_unfinished(self, id: i64, now: i64) -> UnfinishedJob {
        UnfinishedJob {
            job: ClaimedJob {
                id,
                route: self.route,
                handler: self.handler,
                webhook: self.webhook,
                event_type: self.event_type,
                event_ids: serde_json::to_string(&self.event_ids).unwrap_or_else(|_| "[]".into()),
                attempts: 0,
                max_attempts: i64::from(self.max_attempts),
                created_at: now,
                fresh: true,
                events: self.events,
            },
            ordering_key: self.ordering_key,
            order_ts: self.order_ts,
            order_seq: self.order_seq,
            run_at: self.run_at,
        }
    }
}
