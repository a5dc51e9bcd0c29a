//! Wiring: builds the parts from a [`Config`], merges their routers, runs the server and the
//! pipeline loops (dispatcher, buffer flusher, job workers) and the startup webhook sync, and
//! shuts everything down in order: stop accepting, finish requests and running jobs, drain the
//! inbox writer, close the database.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::buffer::Flusher;
use crate::config::{Config, KapsoConfig};
use crate::db;
use crate::dispatch::Dispatcher;
use crate::handlers::Handlers;
use crate::inbox::{GroupCommit, Inbox};
use crate::ingest::{self, IngestState};
use crate::jobs::runner::Runner;
use crate::kapso::KapsoClient;
use crate::metrics::Metrics;
use crate::router::Router as Routes;
use crate::sync::{self, SyncStatus};

/// A configured server whose database is open and migrated, ready to [`App::serve`].
pub struct App {
    config: Config,
    pool: SqlitePool,
    inbox: Inbox,
    writer: JoinHandle<()>,
    metrics: Arc<Metrics>,
    routes: Arc<Routes>,
    kapso: Option<KapsoClient>,
    events_stored: Arc<Notify>,
    webhook_sync: watch::Sender<SyncStatus>,
    /// The startup sync's client, when it runs: no per-call retries, since the sync itself
    /// retries with backoff (and so logs one error per outage, not one per call).
    sync_client: Option<KapsoClient>,
}

impl App {
    /// Opens the database, applies migrations and starts the inbox writer.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let routes = Arc::new(Routes::new(&config).context("compiling [[routes]]")?);
        let kapso = match &config.kapso.api_key {
            Some(_) => {
                Some(KapsoClient::new(&config.kapso).context("setting up the Kapso client")?)
            }
            None => None,
        };
        let pool = db::open_for_server(&config.storage).await?;
        let group_commit = GroupCommit {
            max_batch: config.storage.group_commit_max,
            synchronous: config.storage.synchronous,
            connection_synchronous: config.storage.pipeline_synchronous,
            ..GroupCommit::default()
        };
        let events_stored = Arc::new(Notify::new());
        let (inbox, writer) = Inbox::start(pool.clone(), group_commit, events_stored.clone());
        let sync_client = if sync::runs_at_startup(&config) {
            let single_attempts = KapsoConfig {
                max_retries: 0,
                ..config.kapso.clone()
            };
            Some(KapsoClient::new(&single_attempts).context("setting up the Kapso client")?)
        } else {
            None
        };
        let sync_status = match sync_client {
            Some(_) => SyncStatus::Pending,
            None => SyncStatus::Disabled,
        };
        Ok(App {
            config,
            pool,
            inbox,
            writer,
            metrics: Arc::new(Metrics::new()),
            routes,
            kapso,
            events_stored,
            webhook_sync: watch::Sender::new(sync_status),
            sync_client,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn router(&self) -> Router {
        let ingest = ingest::router(IngestState::new(
            &self.config.webhooks,
            self.inbox.clone(),
            self.metrics.clone(),
            self.routes.clone(),
            self.config.server.body_limit_bytes,
        ));
        let admin = admin::router(AdminState {
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            webhook_sync: self.webhook_sync.subscribe(),
        });
        ingest
            .merge(admin)
            .route_layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                admin::track_latency,
            ))
    }

    /// Starts the dispatcher, the buffer flusher and the job workers on `tasks`.
    fn spawn_pipeline(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let jobs_ready = Arc::new(Notify::new());
        let buffered = Arc::new(Notify::new());
        let poll = Duration::from_millis(self.config.jobs.poll_interval_ms);
        let dispatcher = Dispatcher {
            pool: self.pool.clone(),
            router: self.routes.clone(),
            events_stored: self.events_stored.clone(),
            jobs_ready: jobs_ready.clone(),
            buffered: buffered.clone(),
            poll_interval: poll,
        };
        tasks.spawn(dispatcher.run(shutdown.clone()));
        let flusher = Flusher {
            pool: self.pool.clone(),
            router: self.routes.clone(),
            buffered,
            jobs_ready: jobs_ready.clone(),
            poll_interval: poll,
        };
        tasks.spawn(flusher.run(shutdown.clone()));
        let runner = Arc::new(Runner {
            pool: self.pool.clone(),
            router: self.routes.clone(),
            handlers: Arc::new(Handlers::new(self.kapso.clone())),
            config: self.config.jobs,
            jobs_ready,
            metrics: self.metrics.clone(),
        });
        runner.spawn(tasks, shutdown);
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
        let router = self.router();
        let mut tasks = JoinSet::new();
        self.spawn_pipeline(&mut tasks, &shutdown);
        let App {
            config,
            pool,
            inbox,
            writer,
            webhook_sync,
            sync_client,
            ..
        } = self;
        drop(inbox);
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, webhooks = config.webhooks.len(), routes = config.routes.len(), "switchboard listening");
        }

        let server = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        match sync_client {
            Some(kapso) => {
                let startup_sync = sync::run_startup_sync(
                    config.clone(),
                    kapso,
                    webhook_sync,
                    shutdown.child_token(),
                );
                tasks.spawn(startup_sync);
            }
            None => tracing::info!(
                "webhook sync at startup is off (needs server.public_url, kapso.api_key and [sync] on_startup; not --no-sync)"
            ),
        }
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result?,
            () = deadline => tracing::warn!(grace_ms = config.server.shutdown_grace_ms,
                "shutdown grace period elapsed with requests still in flight"),
        }

        // Every Inbox handle is gone with the router, so the writer commits what is queued and ends.
        let drained = async {
            let _ = writer.await;
            while tasks.join_next().await.is_some() {}
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!("background work did not finish within the grace period; running jobs resume after their lease");
        }
        pool.close().await;
        tracing::info!("switchboard stopped");
        Ok(())
    }
}

/// Builds and serves `config` on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    App::build(config).await?.serve(listener, shutdown).await
}
