//! Where workers get jobs and report outcomes.
//!
//! [`JobQueue`] is the seam between the workers and the scheduling design. [`LocalQueue`] is the
//! single-process design: the schedule lives in memory ([`Schedule`], O(log n) per claim), and
//! the `jobs` table is its durable log (claims and outcomes are group-committed through the
//! [`WriteQueue`]). It needs the database to itself, which `db::lock` ensures; at startup it
//! takes back every job the previous process left running and loads every unfinished job. A
//! design shared by several processes (PostgreSQL with `FOR UPDATE SKIP LOCKED` and
//! `LISTEN/NOTIFY`) would implement the same trait.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::parked::Parked;
use super::pause::store as pause_store;
use super::schedule::{Schedule, Slot};
use super::store::{self, ClaimedJob, Finish, JobLog, UnfinishedJob};
use crate::clock::Clock;
use crate::metrics::{Metrics, StateLabels};
use crate::write_queue::{BoxFuture, Coalesced, WriteError, WriteQueue};

/// The scheduling interface the workers, and the dispatcher (routing and buffer flushes) use.
pub trait JobQueue: Send + Sync {
    /// Jobs whose rows were just committed (by the dispatcher, a buffer flush or a manual
    /// retry): schedule them.
    fn offer(&self, jobs: Vec<UnfinishedJob>);

    /// Waits for the next job allowed to run and takes it (its `attempts` is the attempt to
    /// run). `None` once `shutdown` is cancelled.
    fn take<'a>(&'a self, shutdown: &'a CancellationToken) -> BoxFuture<'a, Option<ClaimedJob>>;

    /// Records how a taken job's attempt ended. The next job of its conversation may then run.
    fn finish<'a>(
        &'a self,
        job: &'a ClaimedJob,
        finish: Finish,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    /// Reads the paused routes (`route_pauses`) again through `reads`, and holds or releases
    /// their jobs to match: a paused route's waiting jobs leave the schedule (running ones
    /// finish), a resumed route's come back.
    fn reload_pauses<'a>(&'a self, reads: &'a SqlitePool)
        -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// The in-memory schedule with the `jobs` table as its log.
pub struct LocalQueue {
    state: Mutex<State>,
    /// Wakes one idle worker when a job may have become runnable; a worker that takes a job
    /// while more are due wakes the next, so a burst of jobs wakes as many workers as it needs
    /// and a single job wakes one (not every idle worker).
    changed: Notify,
    writes: WriteQueue,
    /// Claims and outcomes, written many jobs to a statement.
    log: Coalesced<JobLog, ()>,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// Written as `lease_owner` on the jobs this process runs.
    owner: Arc<str>,
    dead: AtomicI64,
    /// One reload of the paused routes at a time, so an older read never wins.
    pause_reload: tokio::sync::Mutex<()>,
}

/// Most queued jobs that keep their events in memory (a few KB each); jobs beyond read them
/// when they run, so a large backlog costs table rows, not memory.
const MAX_JOBS_WITH_EVENTS: usize = 20_000;

#[derive(Default)]
struct State {
    schedule: Schedule,
    jobs: HashMap<i64, ClaimedJob>,
    /// Jobs in `jobs` that hold their events.
    with_events: usize,
    /// The paused routes and their waiting jobs, out of the schedule.
    parked: Parked,
}

impl State {
    fn remove(&mut self, id: i64) -> Option<ClaimedJob> {
        let job = self.jobs.remove(&id)?;
        if job.events.is_some() {
            self.with_events -= 1;
        }
        Some(job)
    }

    /// Holds waiting job `id` while its route is paused (a running job is left to finish).
    fn park(&mut self, id: i64) {
        let Some(slot) = self.schedule.remove_waiting(id) else {
            return;
        };
        let Some(job) = self.remove(id) else {
            return;
        };
        let job = UnfinishedJob {
            job,
            ordering_key: slot.ordering_key,
            order_ts: slot.order_ts,
            order_seq: slot.order_seq,
            run_at: slot.run_at,
        };
        if let Some(job) = self.parked.park(job) {
            insert(self, job);
        }
    }

    /// Schedules `job`, or holds it when its route is paused.
    fn offer(&mut self, job: UnfinishedJob) {
        if let Some(job) = self.parked.park(job) {
            insert(self, job);
        }
    }

    /// Makes the paused routes `paused`: holds the waiting jobs of the routes paused now,
    /// schedules the held jobs of those resumed.
    fn set_paused(&mut self, paused: &HashSet<String>) {
        for route in self.parked.paused_routes() {
            if !paused.contains(&route) {
                for job in self.parked.resume(&route).unwrap_or_default() {
                    insert(self, job);
                }
            }
        }
        for route in paused {
            if self.parked.pause(route) {
                let ids: Vec<i64> = self
                    .jobs
                    .iter()
                    .filter(|(_, job)| &job.route == route)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.park(id);
                }
            }
        }
    }
}

impl LocalQueue {
    /// Takes back the jobs an earlier process of this server left running (they run again at
    /// once, not after a lease), loads every unfinished job and starts scheduling them.
    pub async fn recover(
        writer: &SqlitePool,
        writes: WriteQueue,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<LocalQueue, sqlx::Error> {
        let interrupted = store::requeue_interrupted(writer, clock.now_ms()).await?;
        if interrupted > 0 {
            tracing::info!(
                jobs = interrupted,
                "jobs interrupted by the last stop run again now"
            );
        }
        let unfinished = store::unfinished(writer).await?;
        let dead = store::count_dead(writer).await?;
        let paused = pause_store::names(writer).await?;
        let queue = LocalQueue {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            log: Coalesced::new(writes.clone(), store::write_log),
            writes,
            clock,
            metrics,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()).into(),
            dead: AtomicI64::new(dead),
            pause_reload: tokio::sync::Mutex::new(()),
        };
        queue.lock().set_paused(&paused);
        queue.offer(unfinished);
        Ok(queue)
    }

    /// Unfinished jobs known (queued or running), those of paused routes included.
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.schedule.len() + state.parked.jobs()
    }

    /// The paused routes, sorted.
    pub fn paused_routes(&self) -> Vec<String> {
        self.lock().parked.paused_routes()
    }

    /// Pauses changed by another process (`switchboard routes pause|resume` leaves a request):
    /// reads the paused routes again. `reads` is a read connection.
    pub async fn take_pause_requests(&self, reads: &SqlitePool) -> Result<bool, WriteError> {
        if !pause_store::has_requests(reads).await? {
            return Ok(false);
        }
        self.writes
            .write(|conn| Box::pin(async move { pause_store::take_requests(conn).await }))
            .await?;
        self.reload(reads).await?;
        Ok(true)
    }

    async fn reload(&self, reads: &SqlitePool) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.pause_reload.lock().await;
        let paused = pause_store::names(reads).await?;
        {
            let mut state = self.lock();
            state.set_paused(&paused);
            self.publish(&state);
        }
        self.changed.notify_one();
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Manual retries (`switchboard jobs retry`) put jobs back in the table; schedule them.
    /// `reads` is a read connection; the requests are taken through the write queue.
    pub async fn take_requests(&self, reads: &SqlitePool) -> Result<usize, WriteError> {
        if !store::has_requests(reads).await? {
            return Ok(0);
        }
        let requests = self
            .writes
            .write(|conn| Box::pin(async move { store::take_requests(conn).await }))
            .await?;
        let ids: Vec<i64> = requests.iter().map(|(id, _)| *id).collect();
        let were_dead: HashSet<i64> = requests
            .iter()
            .filter(|(_, was_dead)| *was_dead)
            .map(|(id, _)| *id)
            .collect();
        let jobs = store::queued_by_id(reads, &ids).await?;
        let count = jobs.len();
        {
            let mut state = self.lock();
            for job in jobs {
                let id = job.job.id;
                if state.schedule.contains(id) {
                    // Waiting already (a retry after backoff): run it now, with its new budget.
                    state.schedule.reschedule(id, job.run_at);
                    state.remove(id);
                    state.jobs.insert(id, job.job);
                } else if state.parked.contains(&job.job.route, id) {
                    // Held, its route paused: it keeps waiting, with its new budget.
                    state.offer(job);
                } else {
                    // A dead job retried, or a new one (a replay's).
                    if were_dead.contains(&id) {
                        self.dead.fetch_sub(1, Ordering::Relaxed);
                    }
                    state.offer(job);
                }
            }
            self.publish(&state);
        }
        self.changed.notify_one();
        Ok(count)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        let set = |name: &str, value: i64| {
            self.metrics
                .jobs
                .get_or_create(&StateLabels {
                    state: name.to_owned(),
                })
                .set(value);
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        set("queued", count(state.schedule.queued()));
        set("running", count(state.schedule.running()));
        set("paused", count(state.parked.jobs()));
        set("dead", self.dead.load(Ordering::Relaxed));
        self.metrics.paused_routes.set(count(state.parked.routes()));
    }

    async fn next(&self, shutdown: &CancellationToken) -> Option<ClaimedJob> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_due = {
                let mut state = self.lock();
                let now = self.clock.now_ms();
                if let Some(id) = state.schedule.take_due(now) {
                    let job = state.jobs.get_mut(&id).map(|job| {
                        job.attempts += 1;
                        job.clone()
                    });
                    self.publish(&state);
                    let more_due = state.schedule.next_due().is_some_and(|at| at <= now);
                    drop(state);
                    if more_due {
                        self.changed.notify_one();
                    }
                    match job {
                        Some(job) => {
                            self.record_claim(&job, now);
                            return Some(job);
                        }
                        None => {
                            tracing::error!(job.id = id, "jobs: scheduled job without its data");
                            continue;
                        }
                    }
                }
                state.schedule.next_due()
            };
            let wait = self.clock.sleep_until_some(next_due);
            tokio::select! {
                () = &mut changed => {}
                () = wait => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// The claim is logged, not awaited: if the process dies first, the job was still queued
    /// on disk and simply runs again.
    fn record_claim(&self, job: &ClaimedJob, now: i64) {
        let logged = self.log.send(JobLog::Claim {
            id: job.id,
            attempt: job.attempts,
            owner: self.owner.clone(),
            at: now,
        });
        if let Err(err) = logged {
            tracing::warn!(error = %err, job.id = job.id, "jobs: cannot record the claim");
        }
    }

    /// The outcome is logged, not awaited: the next job of the conversation may run at once.
    /// If the process dies before the outcome commits, the job runs again after the restart,
    /// and its recorded plan keeps confirmed sends from repeating (only a send whose
    /// confirmation was not yet written can go out twice).
    fn end(&self, job: &ClaimedJob, finish: Finish) -> Result<(), WriteError> {
        let now = self.clock.now_ms();
        let id = job.id;
        let retry_at = match &finish {
            Finish::RetryAt { at, .. } | Finish::Deferred { at } => Some(*at),
            Finish::Done | Finish::DoneNoted { .. } | Finish::Dead { .. } => None,
        };
        let deferred = matches!(finish, Finish::Deferred { .. });
        let is_dead = matches!(finish, Finish::Dead { .. });
        let logged = self.log.send(JobLog::Finish {
            id,
            attempt: job.attempts,
            finish,
            at: now,
        });
        {
            let mut state = self.lock();
            match retry_at {
                None => {
                    state.schedule.complete(id);
                    state.remove(id);
                    if is_dead {
                        self.dead.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(at) => {
                    if deferred {
                        // The attempt is given back; what it planned is in the ledger now.
                        if let Some(job) = state.jobs.get_mut(&id) {
                            job.attempts = job.attempts.saturating_sub(1);
                            job.fresh = false;
                        }
                    }
                    state.schedule.requeue(id, at);
                    if state.parked.is_paused(&job.route) {
                        // Its route was paused while it ran: it waits for the resume.
                        state.park(id);
                    }
                }
            }
            self.publish(&state);
        }
        self.changed.notify_one();
        logged
    }
}

fn insert(state: &mut State, mut job: UnfinishedJob) {
    let slot = Slot {
        id: job.job.id,
        ordering_key: job.ordering_key,
        order_ts: job.order_ts,
        order_seq: job.order_seq,
        run_at: job.run_at,
    };
    if state.schedule.insert(slot) {
        if job.job.events.is_some() {
            if state.with_events < MAX_JOBS_WITH_EVENTS {
                state.with_events += 1;
            } else {
                job.job.events = None;
            }
        }
        state.jobs.insert(job.job.id, job.job);
    }
}

impl JobQueue for LocalQueue {
    fn offer(&self, jobs: Vec<UnfinishedJob>) {
        if jobs.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for job in jobs {
                state.offer(job);
            }
            self.publish(&state);
        }
        self.changed.notify_one();
    }

    fn take<'a>(&'a self, shutdown: &'a CancellationToken) -> BoxFuture<'a, Option<ClaimedJob>> {
        Box::pin(self.next(shutdown))
    }

    fn finish<'a>(
        &'a self,
        job: &'a ClaimedJob,
        finish: Finish,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(std::future::ready(self.end(job, finish)))
    }

    fn reload_pauses<'a>(
        &'a self,
        reads: &'a SqlitePool,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(self.reload(reads))
    }
}
