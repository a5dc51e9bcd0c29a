//! Workers: claim a job, run its handler, record the outcome (done, retry later, dead).
//! They wake when work is enqueued or finishes and otherwise sleep until the next job is due,
//! with `jobs.poll_interval_ms` as a fallback. On shutdown each finishes the job it holds.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::retry::{decide, Decision, Failure};
use super::store::{self, ClaimedJob, Finish};
use crate::clock::{now_ms, until};
use crate::config::JobsConfig;
use crate::handlers::{Handlers, JobInput};
use crate::inbox::store::load_events;
use crate::metrics::Metrics;
use crate::router::Router;

pub struct Runner {
    pub pool: SqlitePool,
    pub router: Arc<Router>,
    pub handlers: Arc<Handlers>,
    pub config: JobsConfig,
    /// Woken when jobs are enqueued or a job finishes (its successor may now run).
    pub jobs_ready: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

impl Runner {
    /// Starts `jobs.workers` workers on `tasks`.
    pub fn spawn(self: Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let instance: u32 = rand::random();
        for index in 0..self.config.workers {
            let owner = format!("{}-{instance:08x}-w{index}", std::process::id());
            tasks.spawn(self.clone().work(owner, shutdown.clone()));
        }
    }

    async fn work(self: Arc<Self>, owner: String, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let lease = i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX);
        while !shutdown.is_cancelled() {
            let notified = self.jobs_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match store::claim_next(&self.pool, &owner, now_ms(), lease).await {
                Ok(Some(job)) => {
                    self.run(job, &owner).await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::error!(error = %err, "jobs: claiming failed"),
            }
            let wait = match store::next_due(&self.pool, now_ms()).await {
                Ok(Some(at)) => until(at).clamp(Duration::from_millis(5), poll),
                _ => poll,
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    async fn run(&self, job: ClaimedJob, owner: &str) {
        let span =
            tracing::info_span!("job", job.id = job.id, route = %job.route, attempt = job.attempts);
        async {
            let started = std::time::Instant::now();
            let result = self.execute_with_heartbeat(&job, owner).await;
            let now = now_ms();
            let outcome = match &result {
                Ok(report) => {
                    tracing::debug!(sent = report.sent, already_sent = report.already_sent, "job done");
                    if report.sent > 0 {
                        self.metrics.observe_reply_latency(now - job.created_at);
                    }
                    match store::finish(&self.pool, &job, owner, Finish::Done, now).await {
                        Ok(true) => "done",
                        Ok(false) => "lease_lost",
                        Err(err) => {
                            tracing::error!(error = %err, "jobs: cannot mark done; the lease will expire and the job resume");
                            "error"
                        }
                    }
                }
                Err(failure) => self.record_failure(&job, owner, failure, now).await,
            };
            self.metrics.count_job(&job.route, outcome, started.elapsed());
            // The next job of this conversation may be waiting for this one.
            self.jobs_ready.notify_waiters();
        }
        .instrument(span)
        .await;
    }

    /// Runs the job while renewing its lease every third of `jobs.lease_ms`, so a slow handler
    /// (Kapso retries honouring Retry-After, a slow `http` service) is not mistaken for a dead
    /// worker. Only a worker that really stopped lets its lease expire.
    async fn execute_with_heartbeat(
        &self,
        job: &ClaimedJob,
        owner: &str,
    ) -> Result<crate::handlers::RunReport, Failure> {
        let lease = i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX);
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis((self.config.lease_ms / 3).max(1)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await; // the first tick is immediate; the claim just set the lease
        let execution = self.execute(job);
        tokio::pin!(execution);
        loop {
            tokio::select! {
                result = &mut execution => return result,
                _ = heartbeat.tick() => {
                    match store::extend_lease(&self.pool, job, owner, now_ms().saturating_add(lease)).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!("job lease lost while running; another worker may run it too"),
                        Err(err) => tracing::warn!(error = %err, "jobs: cannot extend the lease"),
                    }
                }
            }
        }
    }

    async fn execute(&self, job: &ClaimedJob) -> Result<crate::handlers::RunReport, Failure> {
        let route = self.router.get(&job.route).ok_or_else(|| {
            Failure::Fatal(format!("route `{}` is no longer configured", job.route))
        })?;
        let events = load_events(&self.pool, &job.event_ids())
            .await
            .map_err(|e| Failure::Retry(format!("database: {e}")))?;
        let input = JobInput {
            job,
            route,
            events: &events,
        };
        self.handlers.run(&self.pool, &input).await
    }

    async fn record_failure(
        &self,
        job: &ClaimedJob,
        owner: &str,
        failure: &Failure,
        now: i64,
    ) -> &'static str {
        let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        let max_attempts = u32::try_from(job.max_attempts).unwrap_or(1);
        let decision = decide(
            failure,
            attempts,
            max_attempts,
            now,
            &self.config,
            &mut rand::thread_rng(),
        );
        let error = failure.message();
        let (finish, outcome) = match decision {
            Decision::RetryAt(at) => {
                tracing::warn!(
                    error = failure.message(),
                    retry_in_ms = at - now,
                    "job failed, will retry"
                );
                (Finish::RetryAt { at, error }, "retry")
            }
            Decision::Dead => {
                tracing::error!(
                    error = failure.message(),
                    attempts,
                    "job dead-lettered: see `switchboard jobs list --dead`"
                );
                (Finish::Dead { error }, "dead")
            }
        };
        match store::finish(&self.pool, job, owner, finish, now).await {
            Ok(true) => outcome,
            Ok(false) => "lease_lost",
            Err(err) => {
                tracing::error!(error = %err, "jobs: cannot record the failure; the lease will expire and the job resume");
                "error"
            }
        }
    }
}
