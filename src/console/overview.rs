//! The overview page and its JSON (`/admin/overview.json`, polled by `console.js` with the
//! session cookie): the figures of [`Overview`], the latest events below them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::html::page;
use super::live::Overview;
use super::pages::{event_rows, signed_in, Refusal, EVENT_HEADERS};
use super::{html as respond, ConsoleState};
use crate::inbox::store::{self as inbox_store, EventFilter};

/// Latest events the overview lists.
const LATEST: i64 = 20;

pub async fn page_html(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, true)?;
    let reads = &state.api.reads;
    let overview = Overview::read(&state.live, &state.throughput, reads).await?;
    let filter = EventFilter {
        limit: LATEST,
        ..EventFilter::default()
    };
    let events = inbox_store::list_events(reads, &filter).await?;
    let body = format!(
        "{}<h2>Latest events</h2>{}\
         <script src=\"/admin/assets/console.js\" defer></script>",
        overview.html(),
        super::html::table(&EVENT_HEADERS, &event_rows(&events))
    );
    Ok(respond(
        StatusCode::OK,
        page("Overview", Some(&csrf), &body),
    ))
}

/// The overview's figures as JSON; `401` without a session (never a redirect: the caller is a
/// script).
pub async fn json(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if state
        .sessions
        .find(&headers, crate::clock::now_ms())
        .is_none()
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(json!({ "error": "not signed in: sign in at /admin" })),
        )
            .into_response();
    }
    match Overview::read(&state.live, &state.throughput, &state.api.reads).await {
        Ok(overview) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(overview),
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "console: database error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the database could not answer" })),
            )
                .into_response()
        }
    }
}
