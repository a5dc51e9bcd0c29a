//! The web console at `/admin`: server-rendered pages over the admin API's operations (the same
//! store queries and `retry_now`), signed in with `admin.token` (posted once, then a session
//! cookie), CSRF-checked on every state-changing form (retries, route pauses), every stored value escaped. Served with
//! the admin API, so off without a token. Its stylesheet is embedded from `assets/`.

mod html;
mod pages;
mod routes;
mod session;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::admin_api::{AdminApiState, Token};
use session::Sessions;

/// The console's stylesheet.
const CSS: &str = include_str!("../../assets/console.css");

#[derive(Clone)]
pub struct ConsoleState {
    api: AdminApiState,
    /// `api.token`, kept as its digest.
    token: Token,
    sessions: Sessions,
    /// Mark the cookie `Secure` (the server is reached over HTTPS: `server.public_url`).
    secure_cookie: bool,
}

impl ConsoleState {
    /// The console over the admin API's state, with no one signed in.
    pub fn new(api: AdminApiState, secure_cookie: bool) -> Self {
        ConsoleState {
            token: Token::new(&api.token),
            api,
            sessions: Sessions::default(),
            secure_cookie,
        }
    }
}

pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/events", get(pages::events))
        .route("/admin/events/{id}", get(pages::event))
        .route("/admin/jobs", get(pages::jobs))
        .route("/admin/jobs/{id}/retry", post(retry))
        .route("/admin/routes", get(routes::list))
        .route("/admin/routes/pause", post(routes::pause))
        .route("/admin/routes/resume", post(routes::resume))
        .route("/admin/assets/console.css", get(css))
        .with_state(state)
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
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
    state: Option<String>,
    retried: Option<i64>,
}
