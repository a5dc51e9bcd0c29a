//! Jobs: list and filter, one job with what it sent, and retries of dead jobs (one, or every
//! one a filter matches) through the same `retry_now` as `switchboard jobs retry`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::events::next_cursor;
use super::{page_size, AdminApiState, ApiError};
use crate::jobs::store::{self as job_store, JobFilter};

/// Most dead jobs one bulk retry puts back.
pub const MAX_BULK_RETRY: i64 = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// `queued`, `running`, `done` or `dead`.
    state: Option<String>,
    route: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

fn checked_state(state: Option<String>) -> Result<Option<String>, ApiError> {
    match state {
        Some(s) if !job_store::STATES.contains(&s.as_str()) => Err(ApiError::bad_request(format!(
            "state `{}` is unknown: use {}",
            crate::log_text::Untrusted(&s),
            job_store::STATES.join(", ")
        ))),
        other => Ok(other),
    }
}

/// Newest first: `{"jobs": [...], "next": cursor or null}`.
pub async fn list(
    State(state): State<AdminApiState>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_size(query.limit)?;
    let filter = JobFilter {
        state: checked_state(query.state)?,
        route: query.route,
        before_id: query.before,
        limit,
    };
    let jobs = job_store::list(&state.reads, &filter).await?;
    let next = next_cursor(jobs.len(), limit, jobs.last().map(|j| j.id));
    Ok(Json(json!({ "jobs": jobs, "next": next })))
}

/// `{"job", "outbound": [...]}`.
pub async fn show(
    State(state): State<AdminApiState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let job = job_store::get(&state.reads, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job with id {id}")))?;
    let outbound = job_store::outbound_of(&state.reads, id).await?;
    Ok(Json(json!({ "job": job, "outbound": outbound })))
}

/// Queues dead (or waiting) job `id` to run now with a fresh attempt budget.
pub async fn retry_one(
    State(state): State<AdminApiState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let job = job_store::get(&state.writer, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job with id {id}")))?;
    if !job_store::retry_now(&state.writer, id, state.clock.now_ms()).await? {
        return Err(ApiError::conflict(format!(
            "job {id} is {}; only dead or queued jobs can be retried",
            job.state
        )));
    }
    Ok(Json(
        json!({ "job": id, "route": job.route, "state": "queued" }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryQuery {
    /// Only this route's dead jobs.
    route: Option<String>,
}

/// Queues every dead job (of `route`, when given) to run again, at most [`MAX_BULK_RETRY`]
/// per call: `{"retried": [ids]}`.
pub async fn retry_matching(
    State(state): State<AdminApiState>,
    Query(query): Query<RetryQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = JobFilter {
        state: Some("dead".to_owned()),
        route: query.route,
        before_id: None,
        limit: MAX_BULK_RETRY,
    };
    let dead = job_store::list(&state.writer, &filter).await?;
    let now = state.clock.now_ms();
    let mut retried = Vec::new();
    for job in dead {
        if job_store::retry_now(&state.writer, job.id, now).await? {
            retried.push(job.id);
        }
    }
    Ok(Json(json!({ "retried": retried })))
}
