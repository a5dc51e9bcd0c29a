//! One accepted connection: HTTP/1.1 with a header read timeout, a body read timeout per
//! request and an idle keep-alive timeout, closed gracefully when the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::body::TimedBody;
use super::Limits;

/// What a connection reports to the listener's metrics.
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// Open connections of the listener.
    pub open: Gauge,
    /// Connections or bodies cut short by the header or body timeout.
    pub timeouts: Counter,
}

/// Counts one open connection while it lives.
struct Open(Gauge);

impl Open {
    fn start(gauge: Gauge) -> Open {
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts one request in flight on a connection while it lives.
struct InFlight(watch::Sender<u32>);

impl InFlight {
    fn start(requests: &watch::Sender<u32>) -> InFlight {
        requests.send_modify(|n| *n += 1);
        InFlight(requests.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Serves `stream` until the client closes it, a timeout closes it, or `shutdown` is
/// cancelled and the request in flight (if any) is answered. Holds `permit` (a slot under
/// `server.max_connections`) until then.
pub async fn serve(
    stream: TcpStream,
    router: Router,
    limits: Arc<Limits>,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let _open = Open::start(metrics.open.clone());
    let (requests, in_flight) = watch::channel(0u32);
    let body_timeout = limits.body_timeout;
    let body_timeouts = metrics.timeouts.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = InFlight::start(&requests);
        let request = request.map(|body| TimedBody::new(body, body_timeout, body_timeouts.clone()));
        let router = router.clone();
        async move {
            let response: Result<_, Infallible> = router.oneshot(request).await;
            drop(guard);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let idle = idle_for(in_flight, limits.idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    if err.is_timeout() {
                        metrics.timeouts.inc();
                    }
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut idle, if !closing => {
                // Closing an idle keep-alive connection is routine: not counted as a timeout.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Finishes once no request has been in flight for `timeout` (counting from the start).
async fn idle_for(mut in_flight: watch::Receiver<u32>, timeout: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        match tokio::time::timeout(timeout, in_flight.changed()).await {
            Err(_) | Ok(Err(_)) => return,
            Ok(Ok(())) => {}
        }
    }
}
