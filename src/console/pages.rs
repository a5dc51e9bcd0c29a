//! The console's pages. Every value read from the database is escaped ([`escape`]).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{escape, page, table, time};
use super::{html as respond, ConsoleState, ListQuery};
use crate::inbox::store::{self as inbox_store, EventFilter};
use crate::jobs::store::{self as job_store, JobFilter};

/// Rows a list page shows.
const ROWS: i64 = 100;

pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        None,
        &format!(
            "{error}<form method=\"post\" action=\"/admin/login\" class=\"login\">\
             <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"hint\">The token is <code>admin.token</code> of the server's config.</p>"
        ),
    )
}

/// Why a page is not shown: the visitor is not signed in (the answer to give), or the database
/// failed. Pages return it with `?`.
pub enum Refusal {
    Answer(Box<Response>),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Refusal {
    fn from(err: sqlx::Error) -> Self {
        Refusal::Database(err)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Answer(response) => *response,
            Refusal::Database(err) => database_error(&err),
        }
    }
}

pub fn database_error(err: &sqlx::Error) -> Response {
    tracing::warn!(error = %err, "console: database error");
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Unavailable",
            None,
            "<p>The database could not answer; retry in a moment.</p>",
        ),
    )
}

/// The signed-in session's form token, or the answer for a visitor who is not signed in: the
/// sign-in page at `/admin`, a redirect to it elsewhere.
pub(super) fn signed_in(
    state: &ConsoleState,
    headers: &HeaderMap,
    at_root: bool,
) -> Result<String, Refusal> {
    match state.sessions.find(headers, crate::clock::now_ms()) {
        Some((_, session)) => Ok(session.csrf),
        None if at_root => Err(Refusal::Answer(Box::new(respond(
            StatusCode::OK,
            login_page(None),
        )))),
        None => Err(Refusal::Answer(Box::new(
            Redirect::to("/admin").into_response(),
        ))),
    }
}

pub(super) fn event_rows(events: &[inbox_store::EventSummary]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            vec![
                format!("<a href=\"/admin/events/{}\">{}</a>", e.id, e.id),
                escape(&time(e.received_at)),
                format!(
                    "{}{}",
                    escape(&e.event_type),
                    flag_badges(e.flags.as_deref())
                ),
                escape(&e.webhook),
                e.conversation_id
                    .as_deref()
                    .map(super::conversations::link)
                    .unwrap_or_default(),
                escape(e.text.as_deref().unwrap_or("")),
            ]
        })
        .collect()
}

/// An event's flags as badges after its type (`backfilled`: recovered by catch-up).
fn flag_badges(flags: Option<&str>) -> String {
    flags
        .unwrap_or("")
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| format!(" <span class=\"flag\">{}</span>", escape(f)))
        .collect()
}

pub(super) const EVENT_HEADERS: [&str; 6] = [
    "ID",
    "Received",
    "Type",
    "Webhook",
    "Conversation",
    "Message",
];

pub async fn events(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let text = query.text.filter(|t| !t.is_empty());
    let event_type = query.event_type.filter(|t| !t.is_empty());
    let flag = query.flag.filter(|t| !t.is_empty());
    let filter = EventFilter {
        text: text.clone(),
        event_type: event_type.clone(),
        flag: flag.clone(),
        limit: ROWS,
        ..EventFilter::default()
    };
    let events = inbox_store::list_events(&state.api.reads, &filter).await?;
    let body = format!(
        "<form method=\"get\" action=\"/admin/events\" class=\"filters\">\
         <label>Text <input name=\"text\" value=\"{}\"></label>\
         <label>Type <input name=\"type\" value=\"{}\" placeholder=\"whatsapp.message.*\"></label>\
         <label>Flag <input name=\"flag\" value=\"{}\" placeholder=\"backfilled\"></label>\
         <button type=\"submit\">Find</button></form>{}",
        escape(text.as_deref().unwrap_or("")),
        escape(event_type.as_deref().unwrap_or("")),
        escape(flag.as_deref().unwrap_or("")),
        table(&EVENT_HEADERS, &event_rows(&events))
    );
    Ok(respond(StatusCode::OK, page("Events", Some(&csrf), &body)))
}

pub async fn event(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let reads = &state.api.reads;
    let Some(event) = inbox_store::get_event(reads, id).await? else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            page(
                "No such event",
                Some(&csrf),
                &format!("<p>No event has id {id}.</p>"),
            ),
        ));
    };
    let delivery = inbox_store::get_delivery(reads, event.delivery_id).await?;
    let jobs = job_store::handling_event(reads, id).await?;
    let mut body = format!(
        "<dl><dt>Type</dt><dd>{}</dd><dt>Message</dt><dd class=\"message\">{}</dd>\
         <dt>Conversation</dt><dd class=\"conversation\">{}</dd><dt>Received</dt><dd>{}</dd></dl>",
        escape(&event.event_type),
        escape(event.text.as_deref().unwrap_or("")),
        event
            .conversation_id
            .as_deref()
            .map(super::conversations::link)
            .unwrap_or_default(),
        escape(&time(event.received_at)),
    );
    if let Some(d) = delivery {
        body.push_str(&format!(
            "<h2>Delivery</h2><p>#{} to webhook <b>{}</b> at {}: {}</p>",
            d.id,
            escape(&d.webhook),
            escape(&time(d.received_at)),
            escape(&d.result)
        ));
    }
    body.push_str("<h2>Jobs</h2>");
    let mut rows = Vec::new();
    for job in &jobs {
        let sent = job_store::outbound_of(reads, job.id)
            .await?
            .iter()
            .map(|o| format!("{} {}", o.state, o.wamid.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(job_row(job, &csrf, &sent));
    }
    body.push_str(&table(&JOB_HEADERS, &rows));
    let payload = serde_json::from_str::<serde_json::Value>(&event.payload)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|_| event.payload.clone());
    body.push_str(&format!("<h2>Payload</h2><pre>{}</pre>", escape(&payload)));
    Ok(respond(
        StatusCode::OK,
        page(&format!("Event {id}"), Some(&csrf), &body),
    ))
}

const JOB_HEADERS: [&str; 7] = ["ID", "Route", "State", "Attempts", "Last error", "Sent", ""];

fn job_row(job: &job_store::JobRow, csrf: &str, sent: &str) -> Vec<String> {
    let action = if job.state == "dead" {
        format!(
            "<form method=\"post\" action=\"/admin/jobs/{}/retry\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Retry</button></form>",
            job.id,
            escape(csrf)
        )
    } else {
        String::new()
    };
    vec![
        job.id.to_string(),
        escape(&job.route),
        format!("<span class=\"state {0}\">{0}</span>", escape(&job.state)),
        format!("{}/{}", job.attempts, job.max_attempts),
        escape(job.last_error.as_deref().unwrap_or("")),
        escape(sent),
        action,
    ]
}

pub async fn jobs(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let wanted = query
        .state
        .filter(|s| job_store::STATES.contains(&s.as_str()));
    let filter = JobFilter {
        state: wanted.clone(),
        limit: ROWS,
        ..JobFilter::default()
    };
    let jobs = job_store::list(&state.api.reads, &filter).await?;
    let notice = query
        .retried
        .map(|id| format!("<p class=\"notice\">Job {id} is queued to run again.</p>"))
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = jobs.iter().map(|j| job_row(j, &csrf, "")).collect();
    let title = match &wanted {
        Some(state) => format!("Jobs: {state}"),
        None => "Jobs".to_owned(),
    };
    let body = format!("{notice}{}", table(&JOB_HEADERS, &rows));
    Ok(respond(StatusCode::OK, page(&title, Some(&csrf), &body)))
}
