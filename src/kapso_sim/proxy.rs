//! The simulated Meta proxy under `/meta/whatsapp/{graph_version}` (CONTRACT §5, §7):
//! `POST /{phone_number_id}/messages` with auth, scripted failures, body validation, Graph
//! error envelopes, recorded sends and (opt-in) `sent`/`delivered` status webhooks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::messages::{validate, ProxyRequest};
use super::outgoing::send_status_webhooks;
use super::state::{new_wamid, SimState};
use super::RecordedSend;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(
            "/{version}/{phone_number_id}/messages",
            post(send).get(super::history::list),
        )
        .fallback(|| async { graph_error(404, 100, "Unknown path components") })
        .with_state(state)
}

/// A Graph error envelope (`{"error": {message, type, code, fbtrace_id}}`).
pub(crate) fn graph_error(status: u16, code: i64, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "error": { "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "SimKapsoTrace" }
    });
    (status, Json(body)).into_response()
}

/// Meta's answer over a number's throughput (130429), as its error-code reference shows it.
fn rate_limit_hit() -> Response {
    let body = json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException",
        "code": 130429, "error_data": {"messaging_product": "whatsapp",
            "details": "Message failed to send because there were too many messages sent from this phone number in a short period of time"},
        "fbtrace_id": "SimKapsoTrace"}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn scripted(response: ScriptedResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Some(value) = response
        .retry_after
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert("retry-after", value);
    }
    (status, headers, Json(response.body)).into_response()
}

/// The answer to a proxy request with a bad key, an unknown Graph version or an unknown
/// number; `None` when it may proceed.
pub(crate) fn refuse(
    state: &SimState,
    headers: &HeaderMap,
    version: &str,
    phone: &str,
) -> Option<Response> {
    let api_key = header(headers, "x-api-key");
    let authorization = header(headers, "authorization");
    let key = &state.config.api_key;
    let bearer = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "));
    if api_key.as_deref() != Some(key.as_str()) && bearer != Some(key.as_str()) {
        return Some(graph_error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        ));
    }
    if version != state.config.graph_version {
        return Some(graph_error(
            400,
            2500,
            &format!("Unknown path components: /{version}"),
        ));
    }
    if state.phone_number(phone).is_none() {
        let message = format!(
            "(#100) Unsupported post request. Object with ID '{phone}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
        );
        return Some(graph_error(404, 100, &message));
    }
    None
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn send(
    State(state): State<Arc<SimState>>,
    Path((version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api_key = header(&headers, "x-api-key");
    let authorization = header(&headers, "authorization");
    if let Some(refused) = refuse(&state, &headers, &version, &phone) {
        return refused;
    }
    let mut accepted_then = None;
    if let Some(response) = state.write(|r| r.script.pop_front()) {
        if !response.accepted {
            return scripted(response);
        }
        accepted_then = Some(response);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(400, 100, "(#100) The request body is not valid JSON.");
    };
    let request = match validate(&body) {
        Ok(request) => request,
        Err(message) => return graph_error(400, 100, &message),
    };
    if let (ProxyRequest::Message { .. }, Some(limit)) = (&request, state.config.send_limit) {
        let now = std::time::Instant::now();
        let admitted = state.write(|r| {
            let admitted = r.buckets.take(limit, &phone, now);
            if !admitted {
                r.throttled.push(phone.clone());
            }
            admitted
        });
        if !admitted {
            return rate_limit_hit();
        }
    }
    let (wamid, message) = match request {
        ProxyRequest::MarkRead { message_id } => (message_id, None),
        ProxyRequest::Message { kind, recipient } => (new_wamid(), Some((kind, recipient))),
    };
    let recorded = RecordedSend {
        phone_number_id: phone.clone(),
        body: body.clone(),
        wamid: wamid.clone(),
        api_key,
        authorization,
        content_type: header(&headers, "content-type"),
        accepted_at: std::time::Instant::now(),
    };
    state.write(|r| {
        if message.is_some() {
            let now = r.now_ms();
            r.history.push(super::history::outbound_entry(
                &phone, &wamid, &body, None, now,
            ));
        }
        r.sends.push(recorded)
    });
    let Some((kind, recipient)) = message else {
        return Json(json!({ "success": true })).into_response();
    };
    if state.config.status_webhooks {
        send_status_webhooks(&state, &phone, &wamid, &recipient, &kind, &body);
    }
    if let Some(response) = accepted_then {
        return scripted(response);
    }
    let contact = if body.get("to").is_some() {
        json!({ "input": recipient, "wa_id": recipient })
    } else {
        json!({ "input": recipient, "user_id": recipient })
    };
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{ "id": wamid }],
    }))
    .into_response()
}

/// A canned proxy answer for the next send, instead of accepting it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedResponse {
    pub status: u16,
    pub body: Value,
    /// `Retry-After` header value (seconds or an HTTP date).
    pub retry_after: Option<String>,
    /// Kapso accepts and keeps the message (it is recorded, listed in the history and
    /// delivered) before answering this anyway: a send whose outcome the client cannot know.
    pub accepted: bool,
}

impl ScriptedResponse {
    /// A Graph error envelope with `code`.
    pub fn graph_error(status: u16, code: i64, message: &str) -> Self {
        let body = json!({"error": {"message": message, "type": "OAuthException", "code": code,
                                    "fbtrace_id": "SimKapsoTrace"}});
        ScriptedResponse {
            status,
            body,
            retry_after: None,
            accepted: false,
        }
    }

    /// `status` with a plain Kapso string error body.
    pub fn status(status: u16) -> Self {
        let body = json!({"error": format!("Simulated HTTP {status}")});
        ScriptedResponse {
            status,
            body,
            retry_after: None,
            accepted: false,
        }
    }

    /// 500 with a Kapso string error.
    pub fn server_error() -> Self {
        ScriptedResponse {
            status: 500,
            body: json!({"error": "Internal server error"}),
            retry_after: None,
            accepted: false,
        }
    }

    /// 422, code 131047: outside the 24 h customer-service window.
    pub fn reengagement_window() -> Self {
        let mut response = Self::graph_error(422, 131047, "(#131047) Re-engagement message");
        response.body["error"]["error_data"] = json!({"messaging_product": "whatsapp",
            "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."});
        response
    }

    /// Meta throttling (`code` 130429 or 131056) with HTTP `status` 429 or 400.
    pub fn throttled(status: u16, code: i64) -> Self {
        Self::graph_error(status, code, &format!("(#{code}) Rate limit hit"))
    }

    /// Kapso accepts the message, then answers 500 (as when its answer is lost after the
    /// message went out): the sender cannot tell it was sent.
    pub fn accepted_then_server_error() -> Self {
        ScriptedResponse {
            accepted: true,
            ..Self::server_error()
        }
    }

    /// 409: another message to this recipient is in flight.
    pub fn in_flight() -> Self {
        let body = json!({"error": "Another message is already in-flight for this conversation. Please retry shortly."});
        ScriptedResponse {
            status: 409,
            body,
            retry_after: None,
            accepted: false,
        }
    }

    /// 402 `insufficient_credits`.
    pub fn insufficient_credits() -> Self {
        let body = json!({"error": "Your Kapso balance doesn't cover Meta's fee for this message.",
            "code": "insufficient_credits",
            "billing_url": "https://app.kapso.ai/projects/00000000-0000-0000-0000-000000000000/billing"});
        ScriptedResponse {
            status: 402,
            body,
            retry_after: None,
            accepted: false,
        }
    }

    /// 422 `marketing_preference_stopped`.
    pub fn marketing_preference_stopped() -> Self {
        let body = json!({"error": "Contact stopped marketing messages on this WhatsApp number",
                          "code": "marketing_preference_stopped"});
        ScriptedResponse {
            status: 422,
            body,
            retry_after: None,
            accepted: false,
        }
    }

    pub fn with_retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }
}
