//! Operations endpoints: `/healthz` (alive), `/readyz` (database reachable and migrated, plus
//! the startup webhook sync's state), `/metrics` (Prometheus text), plus the middleware that
//! times every routed request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::SqlitePool;
use tokio::sync::watch;

use crate::db;
use crate::metrics::Metrics;
use crate::sync::SyncState;
use crate::write_health::WriteHealth;

#[derive(Clone)]
pub struct AdminState {
    /// A read connection: readiness never waits for the writer.
    pub reads: SqlitePool,
    /// Whether the last commit succeeded.
    pub health: WriteHealth,
    pub metrics: Arc<Metrics>,
    /// State of the background webhook sync (at startup, then every `sync.interval`).
    pub webhook_sync: watch::Receiver<SyncState>,
    /// The last catch-up run (shown, never a reason to be unready).
    pub catch_up: watch::Receiver<crate::catch_up::serve::CatchUpStatus>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router(state: AdminState) -> Router {
    ops_router(state)
}

/// `/healthz` alone: what the public listener serves when `server.ops_listen` is set.
pub fn health_router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

/// `/healthz`, `/readyz` and `/metrics`: the ops listener's routes.
pub fn ops_router(state: AdminState) -> Router {
    health_router().merge(
        Router::new()
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(state),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Longest `/readyz` waits for the database before answering that it is not ready.
const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// Ready means the database is usable: readable and migrated (checked on a read connection,
/// within [`READY_CHECK_TIMEOUT`], so the answer comes within a second whatever the writer is
/// doing), and the last commit succeeded. The webhook sync's state is shown but never makes the
/// server unready: the webhooks may well exist on Kapso already, and a server out of rotation
/// would lose deliveries that it could have stored.
async fn readyz(State(state): State<AdminState>) -> Response {
    let (webhook_sync, webhook_sync_last) = {
        let sync = state.webhook_sync.borrow();
        (sync.status.to_string(), sync.last_json())
    };
    let catch_up = json!(*state.catch_up.borrow());
    let not_ready = |database: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "database": database, "webhook_sync": webhook_sync, "webhook_sync_last": webhook_sync_last, "catch_up": catch_up })),
        )
            .into_response()
    };
    let checked =
        tokio::time::timeout(READY_CHECK_TIMEOUT, db::migrations_applied(&state.reads)).await;
    match checked {
        Ok(Ok(true)) => match state.health.failure() {
            None => {
                Json(json!({ "status": "ready", "database": "ok", "webhook_sync": webhook_sync, "webhook_sync_last": webhook_sync_last, "catch_up": catch_up }))
                    .into_response()
            }
            Some(error) => not_ready(format!("writes fail: {error}")),
        },
        Ok(Ok(false)) => not_ready("migrations pending".to_owned()),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readyz: database check failed");
            not_ready("unreachable".to_owned())
        }
        Err(_) => not_ready(format!(
            "no answer within {} ms",
            READY_CHECK_TIMEOUT.as_millis()
        )),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Records `switchboard_http_request_duration_seconds` for routed requests, labelled by the
/// route pattern (never the raw path, so webhook names typed by strangers add no labels).
pub async fn track_latency(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Any token is a valid method: a client must not be able to grow the label set.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    metrics.observe_request(
        &method,
        &path,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
