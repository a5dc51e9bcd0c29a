//! The web console at `/admin`: server-rendered pages over the admin API's operations (the same
//! store queries and `retry_now`), signed in with `admin.token` (posted once, then a session
//! cookie), CSRF-checked on every state-changing form (retries, route pauses), every stored
//! value escaped. Served with the admin API, so off without a token. Its stylesheet and its one
//! script (refreshing the overview) are embedded from `assets/`; every answer carries
//! [`security_headers`].

mod conversations;
mod html;
mod live;
mod overview;
mod pages;
mod quarantine;
mod routes;
mod session;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::admin_api::{AdminApiState, Token};
pub use live::LiveSources;
use live::Throughput;
use session::Sessions;

/// The console's stylesheet.
const CSS: &str = include_str!("../../assets/console.css");
/// The overview's refresh script.
const JS: &str = include_str!("../../assets/console.js");

/// Only this server's own files, no inline script or style, never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
pub struct ConsoleState {
    api: AdminApiState,
    /// `api.token`, kept as its digest.
    token: Token,
    sessions: Sessions,
    /// Mark the cookie `Secure` (the server is reached over HTTPS: `server.public_url`).
    secure_cookie: bool,
    /// What the overview shows, and its throughput samples.
    live: LiveSources,
    throughput: Throughput,
}

impl ConsoleState {
    /// The console over the admin API's state, with no one signed in.
    pub fn new(api: AdminApiState, live: LiveSources, secure_cookie: bool) -> Self {
        ConsoleState {
            token: Token::new(&api.token),
            api,
            sessions: Sessions::default(),
            secure_cookie,
            live,
            throughput: Throughput::default(),
        }
    }
}

/// The console's routes. Starts sampling the throughput counters (until the router is dropped).
pub fn router(state: ConsoleState) -> Router {
    state.throughput.spawn_sampler(state.live.metrics.clone());
    Router::new()
        .route("/admin", get(overview::page_html))
        .route("/admin/overview.json", get(overview::json))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/events", get(pages::events))
        .route("/admin/events/{id}", get(pages::event))
        .route("/admin/conversations", get(conversations::list))
        .route("/admin/conversations/{id}", get(conversations::show))
        .route("/admin/quarantine", get(quarantine::list))
        .route("/admin/jobs", get(pages::jobs))
        .route("/admin/jobs/{id}/retry", post(retry))
        .route("/admin/routes", get(routes::list))
        .route("/admin/routes/pause", post(routes::pause))
        .route("/admin/routes/resume", post(routes::resume))
        .route("/admin/assets/console.css", get(css))
        .route("/admin/assets/console.js", get(js))
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// Adds the console's security headers to every answer: [`CONTENT_SECURITY_POLICY`], no MIME
/// sniffing, no framing, no referrer (URLs carry event ids and search text).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An HTML answer with `status`.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<ConsoleState>, Form(form): Form<LoginForm>) -> Response {
    if !state.token.accepts(form.token.as_bytes()) {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login_page(Some("That is not the admin token (admin.token).")),
        );
    }
    let (id, _) = state.sessions.create(crate::clock::now_ms());
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&id, state.secure_cookie),
        )],
        Redirect::to("/admin"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The session of a state-changing request whose form carries its CSRF token; else the answer.
fn checked(state: &ConsoleState, headers: &HeaderMap, csrf: &str) -> Result<String, Box<Response>> {
    let Some((id, session)) = state.sessions.find(headers, crate::clock::now_ms()) else {
        return Err(Box::new(html(
            StatusCode::UNAUTHORIZED,
            pages::login_page(Some("Your session has ended; sign in again.")),
        )));
    };
    if !session::csrf_matches(&session, csrf) {
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            html::page("Refused", None, "<p>The form did not come from this console (its form token is missing or wrong). Reload the page and try again.</p>"),
        )));
    }
    Ok(id)
}

async fn logout(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    match checked(&state, &headers, &form.csrf) {
        Ok(id) => {
            state.sessions.end(&id);
            (
                [(header::SET_COOKIE, session::clear_cookie())],
                Redirect::to("/admin"),
            )
                .into_response()
        }
        Err(response) => *response,
    }
}

async fn retry(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = checked(&state, &headers, &form.csrf) {
        return *response;
    }
    match crate::jobs::store::retry_now(&state.api.writer, id, state.api.clock.now_ms()).await {
        Ok(true) => Redirect::to(&format!("/admin/jobs?state=dead&retried={id}")).into_response(),
        Ok(false) => html(
            StatusCode::CONFLICT,
            html::page("Not retried", None, &format!("<p>Job {id} is not dead or queued (or does not exist); nothing was changed. <a href=\"/admin/jobs\">Jobs</a></p>")),
        ),
        Err(err) => pages::database_error(&err),
    }
}

/// Query of the list pages.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    text: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    flag: Option<String>,
    state: Option<String>,
    retried: Option<i64>,
}
