//! The simulated Platform API under `/platform/v1` (CONTRACT §4.1, §7): `X-API-Key` auth,
//! webhook CRUD on both routes, the test endpoint, and phone numbers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::outgoing::spawn_deliveries;
use super::paging::page_of;
use super::samples::{self, SampleContext};
use super::state::{SimState, StoredWebhook};
use super::webhooks::{envelope, matches_filters, new_webhook, patched, Rejection};

type Sim = State<Arc<SimState>>;
type Params = Query<HashMap<String, String>>;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/whatsapp/webhooks", get(list_project).post(create_project))
        .route(
            "/whatsapp/webhooks/{id}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/whatsapp/webhooks/{id}/test", post(test_webhook))
        .route("/whatsapp/phone_numbers", get(list_phone_numbers))
        .route("/whatsapp/phone_numbers/{phone}", get(get_phone_number))
        .route(
            "/whatsapp/phone_numbers/{phone}/webhooks",
            get(list_number).post(create_number),
        )
        .route(
            "/whatsapp/phone_numbers/{phone}/webhooks/{id}",
            get(get_number).patch(update_number).delete(delete_number),
        )
        .fallback(|| async { error(404, "Not found") })
        .layer(from_fn_with_state(state.clone(), require_api_key))
        .with_state(state)
}

pub(crate) fn error(status: u16, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(crate) fn reject((status, message): Rejection) -> Response {
    error(status, message)
}

async fn require_api_key(State(state): Sim, request: Request, next: Next) -> Response {
    match request
        .headers()
        .get("x-api-key")
        .map(HeaderValue::as_bytes)
    {
        None => error(401, "Missing API key: send it in the X-API-Key header"),
        Some(key) if key != state.config.api_key.as_bytes() => error(401, "Invalid API key"),
        Some(_) => next.run(request).await,
    }
}

fn parse_body(body: &Bytes) -> Result<Option<Value>, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| (400, "The request body is not valid JSON".to_owned()))
}

fn newest_first(
    state: &SimState,
    keep: impl Fn(&StoredWebhook) -> Result<bool, Rejection>,
) -> Result<Vec<Value>, Rejection> {
    let mut hooks = state.read(|r| r.webhooks.clone());
    hooks.sort_by_key(|h| std::cmp::Reverse(h.seq));
    let mut out = Vec::new();
    for hook in hooks {
        if keep(&hook)? {
            out.push(state.show_webhook(&hook.json));
        }
    }
    Ok(out)
}

async fn list_project(State(state): Sim, Query(query): Params) -> Response {
    let kind_only: HashMap<String, String> = query
        .iter()
        .filter(|(k, _)| k.as_str() == "kind")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match newest_first(&state, |hook| matches_filters(hook, &kind_only)) {
        Ok(items) => page_of(&state, "/whatsapp/webhooks", &query, items),
        Err(rejection) => reject(rejection),
    }
}

async fn list_number(
    State(state): Sim,
    Path(phone): Path<String>,
    Query(query): Params,
) -> Response {
    if state.phone_number(&phone).is_none() {
        return error(404, "Phone number not found");
    }
    let items = newest_first(&state, |hook| {
        Ok(hook.str("phone_number_id") == Some(phone.as_str()) && matches_filters(hook, &query)?)
    });
    match items {
        Ok(items) => page_of(
            &state,
            &format!("/whatsapp/phone_numbers/{phone}/webhooks"),
            &query,
            items,
        ),
        Err(rejection) => reject(rejection),
    }
}

async fn create_project(State(state): Sim, body: Bytes) -> Response {
    create(&state, None, &body)
}

async fn create_number(State(state): Sim, Path(phone): Path<String>, body: Bytes) -> Response {
    create(&state, Some(&phone), &body)
}

fn needs_plan(state: &SimState, hook: &serde_json::Map<String, Value>) -> bool {
    let subscribes = hook
        .get("events")
        .and_then(Value::as_array)
        .is_some_and(|events| events.iter().any(|e| e == "project.event"));
    subscribes && !state.config.project_events_enabled
}

fn create(state: &SimState, route_phone: Option<&str>, body: &Bytes) -> Response {
    if route_phone.is_some_and(|p| state.phone_number(p).is_none()) {
        return error(404, "Phone number not found");
    }
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(rejection) => return reject(rejection),
    };
    let mut record = match envelope(body.as_ref()).and_then(|input| new_webhook(input, route_phone))
    {
        Ok(record) => record,
        Err(rejection) => return reject(rejection),
    };
    let phone = record
        .get("phone_number_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if phone
        .as_deref()
        .is_some_and(|p| state.phone_number(p).is_none())
    {
        return error(404, "Phone number not found");
    }
    if needs_plan(state, &record) {
        return error(402, "Project events are not available on your plan");
    }
    let is_meta = record.get("kind").and_then(Value::as_str) == Some("meta");
    state.write(|r| {
        let duplicate_meta = is_meta
            && r.webhooks.iter().any(|h| {
                h.str("kind") == Some("meta") && h.str("phone_number_id") == phone.as_deref()
            });
        if duplicate_meta {
            return error(422, "A meta webhook already exists for this phone number");
        }
        let now = r.now_iso();
        record.insert("id".into(), json!(super::state::uuid_v4()));
        record.insert("project_id".into(), json!(state.config.project_id));
        record.insert("created_at".into(), json!(now));
        record.insert("updated_at".into(), json!(now));
        let seq = r.next_seq();
        r.webhooks.push(StoredWebhook {
            seq,
            json: record.clone(),
        });
        let shown = state.show_webhook(&record);
        (StatusCode::CREATED, Json(json!({ "data": shown }))).into_response()
    })
}

/// The webhook `id`, seen through a route: the project route sees all, a number route only
/// the number's own.
fn find(state: &SimState, phone: Option<&str>, id: &str) -> Result<StoredWebhook, Rejection> {
    if phone.is_some_and(|p| state.phone_number(p).is_none()) {
        return Err((404, "Phone number not found".to_owned()));
    }
    state
        .read(|r| r.webhooks.iter().find(|h| h.str("id") == Some(id)).cloned())
        .filter(|hook| phone.is_none() || hook.str("phone_number_id") == phone)
        .ok_or_else(|| (404, "Webhook not found".to_owned()))
}

async fn get_project(State(state): Sim, Path(id): Path<String>) -> Response {
    show(&state, None, &id)
}

async fn get_number(State(state): Sim, Path((phone, id)): Path<(String, String)>) -> Response {
    show(&state, Some(&phone), &id)
}

fn show(state: &SimState, phone: Option<&str>, id: &str) -> Response {
    match find(state, phone, id) {
        Ok(hook) => Json(json!({ "data": state.show_webhook(&hook.json) })).into_response(),
        Err(rejection) => reject(rejection),
    }
}

async fn update_project(State(state): Sim, Path(id): Path<String>, body: Bytes) -> Response {
    update(&state, None, &id, &body)
}

async fn update_number(
    State(state): Sim,
    Path((phone, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    update(&state, Some(&phone), &id, &body)
}

fn update(state: &SimState, phone: Option<&str>, id: &str, body: &Bytes) -> Response {
    let hook = match find(state, phone, id) {
        Ok(hook) => hook,
        Err(rejection) => return reject(rejection),
    };
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(rejection) => return reject(rejection),
    };
    let mut merged = match envelope(body.as_ref()).and_then(|input| patched(&hook.json, input)) {
        Ok(merged) => merged,
        Err(rejection) => return reject(rejection),
    };
    if needs_plan(state, &merged) {
        return error(402, "Project events are not available on your plan");
    }
    state.write(|r| {
        merged.insert("updated_at".into(), json!(r.now_iso()));
        match r.webhooks.iter_mut().find(|h| h.str("id") == Some(id)) {
            Some(stored) => {
                stored.json = merged.clone();
                Json(json!({ "data": state.show_webhook(&merged) })).into_response()
            }
            None => error(404, "Webhook not found"),
        }
    })
}

async fn delete_project(State(state): Sim, Path(id): Path<String>) -> Response {
    delete(&state, None, &id)
}

async fn delete_number(State(state): Sim, Path((phone, id)): Path<(String, String)>) -> Response {
    delete(&state, Some(&phone), &id)
}

fn delete(state: &SimState, phone: Option<&str>, id: &str) -> Response {
    if let Err(rejection) = find(state, phone, id) {
        return reject(rejection);
    }
    state.write(|r| r.webhooks.retain(|h| h.str("id") != Some(id)));
    StatusCode::NO_CONTENT.into_response()
}

async fn test_webhook(
    State(state): Sim,
    Path(id): Path<String>,
    Query(query): Params,
    body: Bytes,
) -> Response {
    let hook = match find(&state, None, &id) {
        Ok(hook) => hook,
        Err(rejection) => return reject(rejection),
    };
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(rejection) => return reject(rejection),
    };
    let events: Vec<String> = hook
        .json
        .get("events")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let requested = body
        .as_ref()
        .and_then(|b| b.get("event_type"))
        .and_then(Value::as_str)
        .or(query.get("event_type").map(String::as_str));
    let event_type = match requested.or(events.first().map(String::as_str)) {
        Some(event) => event.to_owned(),
        None => return error(422, "The webhook subscribes to no event to test"),
    };
    if !events.contains(&event_type) {
        return error(
            422,
            format!("Event type {event_type} is not configured for this webhook"),
        );
    }
    let ctx = SampleContext {
        phone_number_id: hook
            .str("phone_number_id")
            .unwrap_or("106540352242922")
            .to_owned(),
        ..SampleContext::default()
    };
    let payload = samples::for_event(&event_type, &ctx, &state.config.project_id);
    spawn_deliveries(&state, &hook, vec![(event_type, payload)]);
    Json(json!({ "data": { "success": true } })).into_response()
}

async fn list_phone_numbers(State(state): Sim, Query(query): Params) -> Response {
    let field = |p: &Value, key: &str| {
        p.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let wanted = |p: &Value| {
        let exact = ["phone_number_id", "business_account_id", "customer_id"]
            .iter()
            .all(|key| match query.get(*key) {
                Some(wanted) => *wanted == field(p, key),
                None => true,
            });
        let name = match query.get("name_contains") {
            Some(part) => field(p, "name").contains(part.as_str()),
            None => true,
        };
        exact && name
    };
    let items: Vec<Value> = state
        .phone_numbers
        .iter()
        .rev()
        .filter(|p| wanted(p))
        .cloned()
        .collect();
    page_of(&state, "/whatsapp/phone_numbers", &query, items)
}

async fn get_phone_number(State(state): Sim, Path(phone): Path<String>) -> Response {
    match state.phone_number(&phone) {
        Some(number) => Json(json!({ "data": number })).into_response(),
        None => error(404, "Phone number not found"),
    }
}
