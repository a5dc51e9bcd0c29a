//! Workers: take a job from the [`JobQueue`], run its handler, record the outcome (done, retry
//! later, dead). On shutdown each finishes the job it holds. One more task takes the manual
//! retries and route pauses other processes leave for the server.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::queue::{JobQueue, LocalQueue};
use super::retry::{decide, Decision};
use super::store::{ClaimedJob, Finish};
use crate::clock::Clock;
use crate::config::JobsConfig;
use crate::handlers::{Failure, Handlers, JobContext, JobInput, RunReport};
use crate::inbox::store::{load_events, StoredEvent};
use crate::metrics::Metrics;
use crate::router::Router;

pub struct Runner {
    /// Read connections: events and send plans are read here, never on the writer.
    pub reads: SqlitePool,
    pub queue: Arc<LocalQueue>,
    pub router: Arc<Router>,
    pub handlers: Arc<Handlers>,
    pub config: JobsConfig,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
}

impl Runner {
    /// Starts `jobs.workers` workers and the manual-retry poller on `tasks`.
    pub fn spawn(self: Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        for _ in 0..self.config.workers {
            tasks.spawn(self.clone().work(shutdown.clone()));
        }
        tasks.spawn(self.poll_requests(shutdown.clone()));
    }

    async fn work(self: Arc<Self>, shutdown: CancellationToken) {
        while let Some(job) = self.queue.take(&shutdown).await {
            self.run(job).await;
        }
    }

    async fn poll_requests(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            if let Err(err) = self.queue.take_requests(&self.reads).await {
                tracing::warn!(error = %err, "jobs: cannot read manual retries");
            }
            if let Err(err) = self.queue.take_pause_requests(&self.reads).await {
                tracing::warn!(error = %err, "jobs: cannot read route pauses");
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    async fn run(&self, job: ClaimedJob) {
        let span =
            tracing::info_span!("job", job.id = job.id, route = %job.route, attempt = job.attempts);
        async {
            let started = std::time::Instant::now();
            let result = self.execute(&job).await;
            let now = self.clock.now_ms();
            let (finish, outcome) = match &result {
                Ok(report) => {
                    tracing::debug!(
                        sent = report.sent,
                        already_sent = report.already_sent,
                        "job done"
                    );
                    if report.sent > 0 {
                        self.metrics.observe_reply_latency(now - job.created_at);
                    }
                    match report.not_sent {
                        Some(reason) => {
                            tracing::info!(reason, "job done without sending");
                            (
                                Finish::DoneNoted {
                                    note: reason.to_owned(),
                                },
                                "done",
                            )
                        }
                        None => (Finish::Done, "done"),
                    }
                }
                Err(failure) => self.failure_outcome(&job, failure, now),
            };
            let outcome = match self.queue.finish(&job, finish).await {
                Ok(()) => outcome,
                Err(err) => {
                    tracing::error!(error = %err, "jobs: cannot record the outcome; the job runs again");
                    "error"
                }
            };
            self.metrics.count_job(&job.route, outcome, started.elapsed());
        }
        .instrument(span)
        .await;
    }

    async fn execute(&self, job: &ClaimedJob) -> Result<RunReport, Failure> {
        let route = self.router.get(&job.route).ok_or_else(|| {
            Failure::Fatal(format!("route `{}` is no longer configured", job.route))
        })?;
        let loaded;
        let events: &[StoredEvent] = match &job.events {
            Some(events) => events,
            None => {
                loaded = load_events(&self.reads, &job.event_ids())
                    .await
                    .map_err(|e| Failure::Retry(format!("database: {e}")))?;
                &loaded
            }
        };
        let input = JobInput {
            job: JobContext {
                id: job.id,
                attempt: job.attempts,
                fresh: job.fresh && job.attempts == 1,
                event_type: &job.event_type,
                webhook: &job.webhook,
            },
            route,
            events,
        };
        self.handlers.run(&input).await
    }

    fn failure_outcome(
        &self,
        job: &ClaimedJob,
        failure: &Failure,
        now: i64,
    ) -> (Finish, &'static str) {
        if let Failure::Deferred(reason, at) = failure {
            tracing::debug!(reason = %reason, run_in_ms = at - now, "job deferred");
            return (Finish::Deferred { at: *at }, "deferred");
        }
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
        let error = failure.message().to_owned();
        match decision {
            Decision::RetryAt(at) => {
                tracing::warn!(error = %error, retry_in_ms = at - now, "job failed, will retry");
                (Finish::RetryAt { at, error }, "retry")
            }
            Decision::Dead => {
                tracing::error!(
                    error = %error,
                    attempts,
                    "job dead-lettered: see `switchboard jobs list --dead`"
                );
                (Finish::Dead { error }, "dead")
            }
        }
    }
}
