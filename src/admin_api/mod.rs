//! The admin API: JSON under `/admin/api`, every request authenticated with `admin.token`
//! (`Authorization: Bearer ...`, compared in constant time). Served on the ops listener when
//! `server.ops_listen` is set, else on the public one; not served at all without a token.
//!
//! It reads through the pipeline's read connections and writes (retries) through the writer, with
//! the same store functions as `switchboard events` and `switchboard jobs`: one implementation,
//! two surfaces.

mod auth;
mod conversations;
mod error;
mod events;
mod jobs;
mod routes;

use axum::routing::{get, post};
use axum::Router;
use sqlx::SqlitePool;

use crate::secret::Secret;

pub use auth::{same_bytes, Token};
pub use conversations::ConversationView;
pub use error::ApiError;

/// Most rows one page of a list returns.
pub const MAX_PAGE: i64 = 200;
/// Rows per page when the request does not say.
pub const DEFAULT_PAGE: i64 = 50;

#[derive(Clone)]
pub struct AdminApiState {
    /// Read-only connections: listing never waits for the writer.
    pub reads: SqlitePool,
    /// The writer connection, for retries, replays and pauses.
    pub writer: SqlitePool,
    pub token: Secret,
    /// The pipeline's clock: a retried job is due now on it.
    pub clock: crate::clock::Clock,
    /// The routes in force, for replays.
    pub router: std::sync::Arc<crate::router::Router>,
    /// The job schedule replayed jobs join, and pauses apply to.
    pub queue: std::sync::Arc<dyn crate::jobs::queue::JobQueue>,
    /// Replays write after the inbox, like the pipeline.
    pub priority: crate::write_priority::WritePriority,
}

/// `/admin/api/...`, behind the token check (unknown paths under it too: without the token
/// nothing tells which routes exist).
pub fn router(state: AdminApiState) -> Router {
    let token = auth::Token::new(&state.token);
    let api = Router::new()
        .route("/events", get(events::list))
        .route("/events/{id}", get(events::show))
        .route("/events/{id}/replay", post(events::replay))
        .route("/quarantine", get(events::quarantine))
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::show))
        .route("/jobs", get(jobs::list))
        .route("/jobs/retry", post(jobs::retry_matching))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/retry", post(jobs::retry_one))
        .route("/routes", get(routes::list))
        .route("/routes/{name}/pause", post(routes::pause))
        .route("/routes/{name}/resume", post(routes::resume))
        .fallback(error::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    Router::new().nest("/admin/api", api)
}

/// A page size from a query: the default when absent, at most [`MAX_PAGE`].
fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit {n} is out of range: use 1 to {MAX_PAGE}"
        ))),
    }
}
