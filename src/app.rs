//! Wiring: builds the parts from a [`Config`], merges their routers, runs the server and the
//! pipeline loops (dispatcher with its conversation buffers, job workers) and the startup webhook sync, and
//! shuts everything down in order: stop accepting, finish requests and running jobs, drain the
//! inbox writer, close the database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::admin_api;
use crate::buffer::{self, OpenBuffers};
use crate::catch_up::serve::CatchUpStatus;
use crate::catch_up::CatchUp;
use crate::clock::Clock;
use crate::config::Config;
use crate::console;
use crate::db;
use crate::dispatch::Dispatcher;
use crate::handlers::store::Ledger;
use crate::handlers::Handlers;
use crate::http_server;
use crate::inbox::{GroupCommit, Inbox};
use crate::ingest::{self, BodyLimits, IngestState};
use crate::jobs::queue::LocalQueue;
use crate::jobs::runner::Runner;
use crate::kapso::KapsoClient;
use crate::metrics::Metrics;
use crate::pacing::{Pacer, Rates};
use crate::retention::Retention;
use crate::router::Router as Routes;
use crate::sync::{self, SyncReporting, SyncState, SyncStatus};
use crate::write_health::WriteHealth;
use crate::write_priority::WritePriority;
use crate::write_queue::WriteQueue;

/// Read connections for the pipeline (events, send plans).
const READ_CONNECTIONS: u32 = 4;
/// How often the WAL is checkpointed (outside the writer connection).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Most pipeline writes (claims, plans, sent marks, outcomes) committed together.
const PIPELINE_WRITE_BATCH: usize = 512;

/// A configured server whose database is open and migrated, ready to [`App::serve`].
pub struct App {
    config: Config,
    /// Held while serving: this process alone runs the database's jobs.
    lock: db::ServerLock,
    pool: SqlitePool,
    reads: SqlitePool,
    writes: WriteQueue,
    write_task: JoinHandle<()>,
    queue: Arc<LocalQueue>,
    /// The open conversation buffers as loaded at startup; the dispatcher takes them.
    buffers: OpenBuffers,
    priority: WritePriority,
    /// Whether commits succeed, for `/readyz`.
    health: WriteHealth,
    clock: Clock,
    inbox: Inbox,
    writer: JoinHandle<()>,
    metrics: Arc<Metrics>,
    routes: Arc<Routes>,
    kapso: Option<KapsoClient>,
    events_stored: Arc<Notify>,
    webhook_sync: watch::Sender<SyncState>,
    /// Paces sends per business number; shared by the job workers.
    pacer: Arc<Pacer>,
    /// The startup sync's client, when it runs: no per-call retries, since the sync itself
    /// retries with backoff (and so logs one error per outage, not one per call).
    sync_client: Option<KapsoClient>,
    /// The last catch-up run, for `/readyz`.
    catch_up_status: watch::Sender<CatchUpStatus>,
}

impl App {
    /// Opens the database, applies migrations and starts the inbox writer.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_with_clock(config, Clock::System).await
    }

    /// Like [`App::build`], with the pipeline's time read from `clock` (debounce windows, due
    /// times, backoff), so tests can move it by hand.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<App> {
        let routes = Arc::new(Routes::new(&config).context("compiling [[routes]]")?);
        let kapso = match &config.kapso.api_key {
            Some(_) => {
                Some(KapsoClient::new(&config.kapso).context("setting up the Kapso client")?)
            }
            None => None,
        };
        // Opening first: it creates the directory and explains an unwritable one.
        let pool = db::open_for_server(&config.storage).await?;
        let lock = db::lock_for_server(&config.storage)?;
        let reads = db::open_reads(&config.storage, READ_CONNECTIONS).await?;
        let metrics = Arc::new(Metrics::new());
        let pacer = Arc::new(Pacer::new(
            Rates::from_config(&config.kapso),
            clock.clone(),
            metrics.clone(),
        ));
        let priority = WritePriority::default();
        let health = WriteHealth::default();
        let (writes, write_task) = WriteQueue::start(
            pool.clone(),
            PIPELINE_WRITE_BATCH,
            priority.clone(),
            health.clone(),
        );
        let queue = LocalQueue::recover(&pool, writes.clone(), clock.clone(), metrics.clone())
            .await
            .context("loading the job queue")?;
        for route in queue.paused_routes() {
            match routes.get(&route) {
                Some(_) => tracing::info!(route, "route paused: its jobs wait until it is resumed"),
                None => tracing::warn!(
                    route,
                    "a paused route is no longer in the config: its waiting jobs stay held; `switchboard routes resume` releases them (they then fail as unconfigured)"
                ),
            }
        }
        let buffers = buffer::recover(&pool, clock.now_ms())
            .await
            .context("loading the open conversation buffers")?;
        metrics
            .buffered_messages
            .set(i64::try_from(buffers.messages()).unwrap_or(i64::MAX));
        let group_commit = GroupCommit {
            max_batch: config.storage.group_commit_max,
            synchronous: config.storage.synchronous,
            connection_synchronous: config.storage.pipeline_synchronous,
            ..GroupCommit::default()
        };
        let events_stored = Arc::new(Notify::new());
        let (inbox, writer) = Inbox::start(
            pool.clone(),
            group_commit,
            events_stored.clone(),
            priority.clone(),
            health.clone(),
        );
        // Single attempts (the sync retries as a whole), sharing the key's request budget.
        let sync_client = match &kapso {
            Some(kapso) if sync::runs_at_startup(&config) => {
                Some(kapso.clone().with_max_retries(0))
            }
            _ => None,
        };
        let sync_status = match sync_client {
            Some(_) => SyncStatus::Pending,
            None => SyncStatus::Disabled,
        };
        let catch_up_status = watch::Sender::new(crate::catch_up::serve::initial_status(&config));
        Ok(App {
            config,
            lock,
            pool,
            reads,
            writes,
            write_task,
            queue: Arc::new(queue),
            buffers,
            priority,
            health,
            clock,
            inbox,
            writer,
            metrics,
            routes,
            kapso,
            events_stored,
            webhook_sync: watch::Sender::new(SyncState::new(sync_status)),
            pacer,
            catch_up_status,
            sync_client,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The background webhook sync's state, as `/readyz` shows it (tests wait on it).
    pub fn webhook_sync(&self) -> watch::Receiver<SyncState> {
        self.webhook_sync.subscribe()
    }

    /// The background catch-up's last run, as `/readyz` shows it (`pending` until the first
    /// run ends).
    pub fn catch_up_status(&self) -> watch::Receiver<CatchUpStatus> {
        self.catch_up_status.subscribe()
    }

    /// The public listener's routes (webhooks, `/healthz`, and `/readyz` and `/metrics`
    /// unless `ops` is served apart), and the ops listener's when `ops` is true.
    fn routers(&self, ops: bool) -> (Router, Option<Router>) {
        let ingest = ingest::router(IngestState::new(
            &self.config.webhooks,
            self.inbox.clone(),
            self.metrics.clone(),
            self.routes.clone(),
            BodyLimits::new(
                self.config.server.body_limit_bytes,
                self.config.server.body_memory_bytes,
                self.metrics.http_body_bytes.clone(),
            ),
            Duration::from_millis(self.config.server.request_deadline_ms),
        ));
        let admin = AdminState {
            reads: self.reads.clone(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            webhook_sync: self.webhook_sync.subscribe(),
            catch_up: self.catch_up_status.subscribe(),
        };
        let track = |router: Router| {
            router.route_layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                admin::track_latency,
            ))
        };
        let admin_api = self.config.admin.token.clone().map(|token| {
            let api = admin_api::AdminApiState {
                reads: self.reads.clone(),
                writer: self.pool.clone(),
                token,
                clock: self.clock.clone(),
                router: self.routes.clone(),
                queue: self.queue.clone(),
                priority: self.priority.clone(),
            };
            let secure_cookie = self
                .config
                .server
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"));
            let live = console::LiveSources {
                metrics: self.metrics.clone(),
                webhook_sync: self.webhook_sync.subscribe(),
                catch_up: self.catch_up_status.subscribe(),
            };
            let console =
                console::router(console::ConsoleState::new(api.clone(), live, secure_cookie));
            admin_api::router(api).merge(console)
        });
        let with_admin_api = |router: Router| match &admin_api {
            Some(api) => router.merge(api.clone()),
            None => router,
        };
        if ops {
            let public = track(ingest.merge(admin::health_router()));
            (
                public,
                Some(track(with_admin_api(admin::ops_router(admin)))),
            )
        } else {
            (
                track(with_admin_api(ingest.merge(admin::router(admin)))),
                None,
            )
        }
    }

    /// The catch-up `serve` runs in the background, when it runs (see
    /// [`crate::catch_up::serve::runs_in_serve`]).
    fn catch_up(&self) -> Option<CatchUp> {
        if !crate::catch_up::serve::runs_in_serve(&self.config) {
            return None;
        }
        Some(CatchUp {
            config: Arc::new(self.config.clone()),
            kapso: self.kapso.clone()?,
            pool: self.pool.clone(),
            inbox: self.inbox.clone(),
            routes: self.routes.clone(),
            clock: self.clock.clone(),
        })
    }

    /// Starts the dispatcher (which flushes the conversation `buffers` too) and the job
    /// workers on `tasks`.
    fn spawn_pipeline(
        &self,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
        buffers: OpenBuffers,
    ) {
        let poll = Duration::from_millis(self.config.jobs.poll_interval_ms);
        let dispatcher = Dispatcher {
            pool: self.pool.clone(),
            reads: self.reads.clone(),
            router: self.routes.clone(),
            events_stored: self.events_stored.clone(),
            queue: self.queue.clone(),
            poll_interval: poll,
            priority: self.priority.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            buffers,
        };
        tasks.spawn(dispatcher.run(shutdown.clone()));
        let ledger = Ledger::new(self.reads.clone(), self.writes.clone());
        let runner = Arc::new(Runner {
            reads: self.reads.clone(),
            queue: self.queue.clone(),
            router: self.routes.clone(),
            handlers: Arc::new(
                Handlers::new(self.kapso.clone(), ledger, self.pacer.clone()).with_reply_max_age(
                    Some(crate::config::catch_up::age_ms(
                        self.config.catch_up.reply_max_age,
                    )),
                ),
            ),
            config: self.config.jobs,
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        });
        runner.spawn(tasks, shutdown);
        if let Some(kapso) = self.kapso.clone() {
            let (pacer, shutdown) = (self.pacer.clone(), shutdown.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = pacer.load_tier_rates(&kapso) => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        tasks.spawn(
            Retention {
                pool: self.pool.clone(),
                config: self.config.retention,
                clock: self.clock.clone(),
                priority: self.priority.clone(),
                metrics: self.metrics.clone(),
            }
            .run(shutdown.clone()),
        );
    }

    /// Serves on `listener` until `shutdown` is cancelled, then finishes in-flight requests and
    /// running jobs (up to `server.shutdown_grace_ms`), commits what the inbox holds and closes
    /// the database. Dropping this future instead (a crash) abandons everything: jobs that were
    /// running are picked up again after their lease expires.
    ///
    /// With `server.public_url` set (and `[sync] on_startup`), the Kapso webhooks are synced in
    /// the background once the server listens, retried with backoff on failure. Serving never
    /// waits for it; `/readyz` shows its state.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let ops = match self.config.server.ops_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (server.ops_listen)"))?,
            ),
            None => None,
        };
        self.serve_with_ops(listener, ops, shutdown).await
    }

    /// Like [`App::serve`], with `/metrics` and `/readyz` served on `ops` (when given) instead
    /// of `listener`, whatever `server.ops_listen` says.
    ///
    /// Shutdown takes at most `server.shutdown_grace_ms` in all: requests in flight get all of
    /// it but a reserve (a fifth, at most 2 s) kept for committing and closing; connections
    /// still open then are dropped, and background work still running at the end is abandoned
    /// (its jobs resume after their lease).
    pub async fn serve_with_ops(
        mut self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (router, ops_router) = self.routers(ops.is_some());
        let mut endpoints = vec![http_server::Endpoint {
            name: "public",
            listener,
            router,
        }];
        if let (Some(listener), Some(router)) = (ops, ops_router) {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "ops endpoints (/metrics, /readyz) listening");
            }
            endpoints.push(http_server::Endpoint {
                name: "ops",
                listener,
                router,
            });
        }
        let mut tasks = JoinSet::new();
        let buffers = std::mem::take(&mut self.buffers);
        self.spawn_pipeline(&mut tasks, &shutdown, buffers);
        let checkpoints = tokio::spawn(db::checkpoint_loop(
            self.config.storage.clone(),
            self.pool.clone(),
            self.priority.clone(),
            CHECKPOINT_EVERY,
            shutdown.clone(),
        ));
        let catch_up = self.catch_up();
        let App {
            config,
            lock,
            pool,
            reads,
            writes,
            write_task,
            queue,
            inbox,
            writer,
            webhook_sync,
            metrics,
            sync_client,
            clock,
            catch_up_status,
            ..
        } = self;
        let sync_reporting = SyncReporting {
            state: webhook_sync,
            metrics: metrics.clone(),
            clock,
        };
        drop(queue);
        drop(inbox);
        // If this future is dropped before it finishes (a test's simulated crash), the tasks
        // outside the JoinSet go with it instead of writing on beside the next server.
        let _abort_on_drop = AbortOnDrop(vec![
            checkpoints.abort_handle(),
            write_task.abort_handle(),
            writer.abort_handle(),
        ]);
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        if let Ok(addr) = endpoints[0].listener.local_addr() {
            tracing::info!(%addr, webhooks = config.webhooks.len(), routes = config.routes.len(), "switchboard listening");
        }

        let metrics_for_catch_up = metrics.catch_up.clone();
        let server = http_server::serve(
            endpoints,
            http_server::Limits::from_config(&config.server),
            metrics,
            shutdown.clone(),
            grace.saturating_sub(shutdown_reserve(grace)),
        );
        match sync_client {
            Some(kapso) => {
                let startup_sync = sync::run_startup_sync(
                    config.clone(),
                    kapso,
                    sync_reporting,
                    shutdown.child_token(),
                );
                tasks.spawn(startup_sync);
            }
            None => tracing::info!(
                "webhook sync at startup is off (needs server.public_url, kapso.api_key and [sync] on_startup; not --no-sync)"
            ),
        }
        match catch_up {
            Some(catch_up) => {
                tasks.spawn(crate::catch_up::serve::run_periodically(
                    catch_up,
                    metrics_for_catch_up,
                    catch_up_status,
                    shutdown.child_token(),
                ));
            }
            None => tracing::info!(
                "catch-up from Kapso's history is off (needs kapso.api_key, a webhook with phone_number_id and [catch_up] on_startup)"
            ),
        }
        // One budget for the whole shutdown, counted from the cancellation.
        let stopping = async {
            shutdown.cancelled().await;
            Instant::now() + grace
        };
        let ((), deadline) = tokio::join!(server, stopping);

        // Every Inbox handle is gone with the router, so the writer commits what is queued and ends.
        let drained = async {
            let _ = writer.await;
            while tasks.join_next().await.is_some() {}
            // The pipeline's last writes (outcomes of the jobs that just finished) commit
            // once every handle on the write queue is gone.
            drop(writes);
            let _ = write_task.await;
        };
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::warn!("background work did not finish within the grace period; running jobs resume after their lease");
        }
        let closed = async {
            let _ = checkpoints.await;
            reads.close().await;
            pool.close().await;
        };
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            tracing::warn!("the database did not close within the grace period");
        }
        drop(lock);
        tracing::info!("switchboard stopped");
        Ok(())
    }
}

/// The part of the shutdown grace kept for committing and closing after the HTTP connections:
/// a fifth of it, at most 2 s.
fn shutdown_reserve(grace: Duration) -> Duration {
    (grace / 5).min(Duration::from_secs(2))
}

/// Builds and serves `config` on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    App::build(config).await?.serve(listener, shutdown).await
}

/// Aborts its tasks when dropped (a no-op for those that have finished).
struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
