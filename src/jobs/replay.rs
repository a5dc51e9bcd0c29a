//! Replaying a stored event through the current routes: a new job for each route that matches
//! it now, recorded as a replay (`jobs.replay`). A route that already has a job for the event
//! (done, queued, running or dead) is skipped unless the replay is forced, so fixing a config
//! and replaying never sends a customer the same answer twice by accident: a dead job is
//! retried instead, and a done one was answered. Buffering is not applied: each replayed event
//! is its own job.

use serde::Serialize;
use sqlx::SqlitePool;

use super::store as job_store;
use super::{NewJob, Reach};
use crate::inbox::store as inbox_store;
use crate::router::{RoutableEvent, Router};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no event with id {0}")]
    NoEvent(i64),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Replayed {
    /// Routes that match the event now, in config order.
    pub matched: Vec<String>,
    /// `(route, new job id)`.
    pub jobs: Vec<(String, i64)>,
    /// Routes left out: they already have a job for the event.
    pub skipped: Vec<SkippedRoute>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SkippedRoute {
    pub route: String,
    /// The job the route already has for the event, and its state.
    pub job: i64,
    pub state: String,
}

/// Where a replay reads and writes, and who schedules its jobs.
pub struct Replayer<'a> {
    pub writer: &'a SqlitePool,
    pub reads: &'a SqlitePool,
    pub router: &'a Router,
    /// Who runs its jobs: by request, through `job_requests` as `switchboard jobs retry` does.
    pub schedule: Reach<'a>,
}

/// The routes in force that `event` matches, in config order: what a replay would run, and
/// what the admin API shows as an event's routes.
pub fn matching_routes<'r>(
    router: &'r Router,
    event: &crate::inbox::store::StoredEvent,
) -> Vec<&'r crate::router::Route> {
    let payload = event.payload_json();
    let routable = RoutableEvent::from_stored(
        &event.event_type,
        &event.webhook,
        event.phone_number_id.as_deref(),
        &payload,
    );
    router.matching(&routable)
}

impl Replayer<'_> {
    /// Replays event `event_id` at `now`; `force` also replays routes that already have a job
    /// for it.
    pub async fn replay(
        &self,
        event_id: i64,
        force: bool,
        now: i64,
    ) -> Result<Replayed, ReplayError> {
        let event = inbox_store::load_events(self.reads, &[event_id])
            .await?
            .pop()
            .ok_or(ReplayError::NoEvent(event_id))?;
        let existing = job_store::handling_event(self.reads, event_id).await?;
        let mut replayed = Replayed::default();
        let mut new_jobs = Vec::new();
        for route in matching_routes(self.router, &event) {
            replayed.matched.push(route.name.clone());
            let earlier = existing.iter().rev().find(|job| job.route == route.name);
            if let (Some(job), false) = (earlier, force) {
                replayed.skipped.push(SkippedRoute {
                    route: route.name.clone(),
                    job: job.id,
                    state: job.state.clone(),
                });
                continue;
            }
            new_jobs.extend(NewJob::for_events(route, std::slice::from_ref(&event), now));
        }
        if new_jobs.is_empty() {
            return Ok(replayed);
        }
        self.schedule.after_urgent().await;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let ids = job_store::enqueue_all(&mut tx, &new_jobs, now).await?;
        job_store::mark_replay(&mut tx, &ids).await?;
        if let Reach::ByRequest = self.schedule {
            for id in &ids {
                job_store::request_run(&mut tx, *id, now, false).await?;
            }
        }
        tx.commit().await?;
        replayed.jobs = new_jobs
            .iter()
            .map(|job| job.route.clone())
            .zip(ids.iter().copied())
            .collect();
        if let Reach::InProcess { queue, .. } = &self.schedule {
            queue.offer(NewJob::all_committed(new_jobs, ids, now));
        }
        Ok(replayed)
    }
}
