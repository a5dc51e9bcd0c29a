//! The HTTP server loop (instead of `axum::serve`, which exposes none of hyper's timeouts):
//! accepts connections on each listener up to `server.max_connections`, serves each with
//! header, body and idle timeouts, and on shutdown stops accepting, lets requests in flight
//! finish, and closes whatever is still open at a hard deadline.

mod body;
mod connection;
mod open_files;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::metrics::{ListenerLabels, Metrics};
use connection::ConnectionMetrics;

pub use body::BodyTimeout;

/// After a failed `accept` (e.g. out of file descriptors), how long to wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection opening (or its previous response) until the headers are complete.
    pub header_timeout: Duration,
    /// From a request's headers until its body is complete.
    pub body_timeout: Duration,
    /// Longest a connection may go without a request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once, per listener.
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            body_timeout: Duration::from_millis(server.body_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            max_connections: server.max_connections,
        }
    }
}

/// A listener with what it serves.
pub struct Endpoint {
    /// `public` or `ops`: the `listener` label of the connection metrics.
    pub name: &'static str,
    pub listener: TcpListener,
    pub router: Router,
}

/// Serves every endpoint until `shutdown` is cancelled, then stops accepting, lets requests in
/// flight finish and closes idle connections; connections still open `stop_within` after the
/// cancellation are dropped. Returns once every connection is gone.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    stop_within: Duration,
) {
    let soft_limit = open_files::raise_to_hard_limit();
    if let Some(files) = soft_limit {
        let needed = limits.max_connections.saturating_mul(endpoints.len());
        if u64::try_from(needed).is_ok_and(|needed| needed > files) {
            tracing::warn!(open_files = files, max_connections = limits.max_connections,
                "the open file limit is below server.max_connections: past it, new connections wait; raise `ulimit -n`");
        }
    }
    let limits = Arc::new(limits);
    let mut listeners = JoinSet::new();
    for endpoint in endpoints {
        let labels = ListenerLabels {
            listener: endpoint.name.to_owned(),
        };
        let connection_metrics = ConnectionMetrics {
            open: metrics.http_connections.get_or_create(&labels).clone(),
            timeouts: metrics.http_timeouts.get_or_create(&labels).clone(),
        };
        listeners.spawn(accept_loop(
            endpoint,
            limits.clone(),
            connection_metrics,
            shutdown.clone(),
            stop_within,
        ));
    }
    while listeners.join_next().await.is_some() {}
}

/// Accepts and serves connections on one endpoint until `shutdown`, then drains them.
async fn accept_loop(
    endpoint: Endpoint,
    limits: Arc<Limits>,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
    stop_within: Duration,
) {
    let Endpoint {
        name,
        listener,
        router,
    } = endpoint;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = loop {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => break Some(stream),
                    Err(err) => {
                        tracing::warn!(listener = name, error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        };
        let Some(stream) = stream else { break };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection::serve(
            stream,
            router.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    drop(router);
    let deadline = Instant::now() + stop_within;
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout_at(deadline, drained).await.is_err() {
        tracing::warn!(
            listener = name,
            open = connections.len(),
            "closing the connections still open at the shutdown deadline"
        );
        connections.shutdown().await;
    }
}
