//! Events, one event's path (its delivery, the jobs that handle it and what they sent) and
//! quarantined bodies.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_size, AdminApiState, ApiError};
use crate::inbox::store::{self as inbox_store, EventFilter};
use crate::jobs::replay::{ReplayError, Replayer};
use crate::jobs::store as job_store;
use crate::jobs::Reach;

/// `GET /admin/api/events` filters; every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// An event-type pattern as routes take it: exact, `prefix.*` or `*`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    webhook: Option<String>,
    conversation: Option<String>,
    /// Text the payload contains.
    text: Option<String>,
    /// Only flagged events.
    #[serde(default)]
    flagged: bool,
    /// Only events carrying this flag (`backfilled`, `unknown_event_type`, ...).
    flag: Option<String>,
    /// Received at or after: RFC 3339 (`2026-12-02T10:00:00Z`) or Unix milliseconds.
    since: Option<String>,
    /// Received before: RFC 3339 or Unix milliseconds.
    until: Option<String>,
    /// The `next` cursor of the previous page.
    before: Option<i64>,
    limit: Option<i64>,
}

/// Newest first: `{"events": [...], "next": cursor or null}`.
pub async fn list(
    State(state): State<AdminApiState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_size(query.limit)?;
    let filter = EventFilter {
        webhook: query.webhook,
        event_type: query.event_type,
        flagged_only: query.flagged,
        conversation_id: query.conversation,
        text: query.text.filter(|t| !t.is_empty()),
        flag: query.flag.filter(|f| !f.is_empty()),
        received_since_ms: time_param("since", query.since.as_deref())?,
        received_until_ms: time_param("until", query.until.as_deref())?,
        before_id: query.before,
        limit,
    };
    let events = inbox_store::list_events(&state.reads, &filter).await?;
    let next = next_cursor(events.len(), limit, events.last().map(|e| e.id));
    Ok(Json(json!({ "events": events, "next": next })))
}

/// A time parameter as Unix ms: RFC 3339 or Unix milliseconds; 400 naming `name` otherwise.
fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Some(ms));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|at| Some(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time (2026-12-02T10:00:00Z) or Unix milliseconds"
            ))
        })
}

/// The cursor of the page after one of `len` rows whose last id is `last`: none after a short
/// page.
pub(super) fn next_cursor(len: usize, limit: i64, last: Option<i64>) -> Option<i64> {
    (i64::try_from(len).unwrap_or(i64::MAX) >= limit)
        .then_some(last)
        .flatten()
}

/// `{"event", "delivery", "jobs": [{"job", "outbound": [...]}]}`.
pub async fn show(
    State(state): State<AdminApiState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let event = inbox_store::get_event(&state.reads, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event with id {id}")))?;
    let delivery = inbox_store::get_delivery(&state.reads, event.delivery_id).await?;
    let routes: Vec<String> = inbox_store::load_events(&state.reads, &[id])
        .await?
        .first()
        .map(|stored| {
            crate::jobs::replay::matching_routes(&state.router, stored)
                .into_iter()
                .map(|route| route.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut jobs = Vec::new();
    for job in job_store::handling_event(&state.reads, id).await? {
        let outbound = job_store::outbound_of(&state.reads, job.id).await?;
        jobs.push(json!({ "job": job, "outbound": outbound }));
    }
    Ok(Json(
        json!({ "event": event, "delivery": delivery, "routes": routes, "jobs": jobs }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    limit: Option<i64>,
}

/// Quarantined bodies, newest first: `{"quarantine": [...]}` (bodies are not included).
pub async fn quarantine(
    State(state): State<AdminApiState>,
    Query(query): Query<QuarantineQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_size(query.limit)?;
    let entries = inbox_store::list_quarantine(&state.reads, limit).await?;
    Ok(Json(json!({ "quarantine": entries })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// Also replay routes that already have a job for the event (may send again).
    #[serde(default)]
    force: bool,
}

/// Runs event `id` through the current routes again: `{"matched", "jobs": [[route, id]],
/// "skipped": [{"route", "job", "state"}]}`.
pub async fn replay(
    State(state): State<AdminApiState>,
    Path(id): Path<i64>,
    Query(query): Query<ReplayQuery>,
) -> Result<Json<Value>, ApiError> {
    let replayer = Replayer {
        writer: &state.writer,
        reads: &state.reads,
        router: &state.router,
        schedule: Reach::InProcess {
            queue: state.queue.as_ref(),
            priority: &state.priority,
        },
    };
    match replayer.replay(id, query.force, state.clock.now_ms()).await {
        Ok(replayed) => Ok(Json(json!(replayed))),
        Err(ReplayError::NoEvent(id)) => Err(ApiError::not_found(format!("no event with id {id}"))),
        Err(ReplayError::Database(err)) => Err(err.into()),
    }
}
