//! The Routes page: every route with its pause state and waiting jobs, and a Pause or Resume
//! button (a CSRF-checked form) through the same [`Pauser`](crate::jobs::pause::Pauser) as the
//! admin API and `switchboard routes`.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{escape, page, table, time};
use super::pages::{database_error, signed_in, Refusal};
use super::{checked, html as respond, ConsoleState};
use crate::jobs::pause::{PauseError, RouteStatus, Surface};

#[derive(Debug, Default, Deserialize)]
pub struct RoutesQuery {
    paused: Option<String>,
    resumed: Option<String>,
}

const HEADERS: [&str; 8] = [
    "Route", "On", "Handler", "State", "Queued", "Running", "Dead", "",
];

fn row(route: &RouteStatus, csrf: &str) -> Vec<String> {
    let (state, action, label) = match (route.paused, route.paused_at) {
        (true, at) => (
            format!(
                "<span class=\"state paused\">paused</span> {} by {}",
                escape(&at.map(time).unwrap_or_default()),
                escape(route.paused_by.as_deref().unwrap_or("")),
            ),
            "resume",
            "Resume",
        ),
        (false, _) => (
            "<span class=\"state active\">active</span>".to_owned(),
            "pause",
            "Pause",
        ),
    };
    let name = if route.configured {
        escape(&route.name)
    } else {
        format!("{} <em>(not in the config)</em>", escape(&route.name))
    };
    vec![
        name,
        escape(&route.on.join(", ")),
        escape(route.handler.as_deref().unwrap_or("")),
        state,
        route.jobs.queued.to_string(),
        route.jobs.running.to_string(),
        route.jobs.dead.to_string(),
        format!(
            "<form method=\"post\" action=\"/admin/routes/{action}\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"route\" value=\"{}\">\
             <button type=\"submit\">{label}</button></form>",
            escape(csrf),
            escape(&route.name)
        ),
    ]
}

pub async fn list(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<RoutesQuery>,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let routes = state.api.pauser().list().await?;
    let notice = match (&query.paused, &query.resumed) {
        (Some(route), _) => format!(
            "<p class=\"notice\">Route {} is paused: its new jobs wait until it is resumed.</p>",
            escape(route)
        ),
        (None, Some(route)) => format!(
            "<p class=\"notice\">Route {} is resumed: its waiting jobs run in their order.</p>",
            escape(route)
        ),
        (None, None) => String::new(),
    };
    let rows: Vec<Vec<String>> = routes.iter().map(|r| row(r, &csrf)).collect();
    let body = format!(
        "{notice}{}<p class=\"hint\">A paused route's events still create its jobs; they wait \
         (Queued) until it is resumed. Jobs already running finish.</p>",
        table(&HEADERS, &rows)
    );
    Ok(respond(StatusCode::OK, page("Routes", Some(&csrf), &body)))
}

#[derive(Deserialize)]
pub struct RouteForm {
    csrf: String,
    route: String,
}

pub async fn pause(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<RouteForm>,
) -> Response {
    change(&state, &headers, &form, true).await
}

pub async fn resume(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<RouteForm>,
) -> Response {
    change(&state, &headers, &form, false).await
}

async fn change(
    state: &ConsoleState,
    headers: &HeaderMap,
    form: &RouteForm,
    pause: bool,
) -> Response {
    if let Err(response) = checked(state, headers, &form.csrf) {
        return *response;
    }
    let now = state.api.clock.now_ms();
    let pauser = state.api.pauser();
    let result = if pause {
        pauser.pause(&form.route, Surface::Console, now).await
    } else {
        pauser.resume(&form.route, Surface::Console, now).await
    };
    match result {
        Ok(_) => {
            let done = if pause { "paused" } else { "resumed" };
            let target = format!(
                "/admin/routes?{}",
                query_pair(done, &form.route)
            );
            Redirect::to(&target).into_response()
        }
        Err(PauseError::UnknownRoute(_)) => respond(
            StatusCode::NOT_FOUND,
            page(
                "No such route",
                None,
                &format!(
                    "<p>No route named {} in the config; nothing was changed. <a href=\"/admin/routes\">Routes</a></p>",
                    escape(&form.route)
                ),
            ),
        ),
        Err(PauseError::Database(err)) => database_error(&err),
    }
}

/// `key=value` with the value percent-encoded for a query string.
fn query_pair(key: &str, value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{key}={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_name_goes_into_the_notice_query_percent_encoded() {
        assert_eq!(
            query_pair("paused", "a b&c=<d>/é"),
            "paused=a%20b%26c%3D%3Cd%3E%2F%C3%A9"
        );
    }
}
