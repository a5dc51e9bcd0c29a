//! Wiring: builds the parts from a [`Config`], merges their routers, runs the server and shuts
//! everything down in order (stop accepting, finish requests, drain the inbox writer, close
//! the database).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::db;
use crate::inbox::{GroupCommit, Inbox};
use crate::ingest::{self, IngestState};
use crate::metrics::Metrics;

/// A configured server whose database is open and migrated, ready to [`App::serve`].
pub struct App {
    config: Config,
    pool: SqlitePool,
    inbox: Inbox,
    writer: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl App {
    /// Opens the database, applies migrations and starts the inbox writer.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let pool = db::open_for_server(&config.storage).await?;
        let group_commit = GroupCommit {
            max_batch: config.storage.group_commit_max,
            ..GroupCommit::default()
        };
        let (inbox, writer) = Inbox::start(pool.clone(), group_commit);
        Ok(App {
            config,
            pool,
            inbox,
            writer,
            metrics: Arc::new(Metrics::new()),
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
            self.config.server.body_limit_bytes,
        ));
        let admin = admin::router(AdminState {
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
        });
        ingest
            .merge(admin)
            .route_layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                admin::track_latency,
            ))
    }

    /// Serves on `listener` until `shutdown` is cancelled, then finishes in-flight requests
    /// (up to `server.shutdown_grace_ms`), commits what the inbox holds and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let router = self.router();
        let App {
            config,
            pool,
            inbox,
            writer,
            ..
        } = self;
        drop(inbox);
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, webhooks = config.webhooks.len(), "switchboard listening");
        }

        let server = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
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
        if tokio::time::timeout(grace, writer).await.is_err() {
            tracing::warn!("inbox writer did not finish within the grace period");
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
