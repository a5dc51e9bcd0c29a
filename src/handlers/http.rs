//! The `http` handler: POSTs the job's event(s) to the user's own service, signed with our
//! HMAC, and reads back the messages to send. Non-2xx, timeouts and transport errors are
//! retryable job failures.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::Failure;
use super::JobInput;
use crate::ingest::signature::sign;
use crate::secret::Secret;

/// Header carrying `hex(HMAC-SHA256(secret, body))` of our request, when a secret is set.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// Most of a response body kept in an error message.
const ERROR_BODY_CHARS: usize = 200;

pub struct HttpTarget<'a> {
    pub url: &'a str,
    pub timeout_ms: u64,
    pub secret: Option<&'a Secret>,
    pub headers: &'a BTreeMap<String, String>,
}

/// The JSON we POST: the route, the job and every event of it (a buffered batch has several).
pub fn request_body(input: &JobInput<'_>, payloads: &[Value]) -> Value {
    let events: Vec<Value> = input
        .events
        .iter()
        .zip(payloads)
        .map(|(e, payload)| {
            json!({
                "id": e.id,
                "type": e.event_type,
                "webhook": e.webhook,
                "received_at": e.received_at,
                "payload": payload,
            })
        })
        .collect();
    let first = input.events.first();
    json!({
        "route": input.route.name,
        "job": { "id": input.job.id, "attempt": input.job.attempt },
        "event_type": input.job.event_type,
        "webhook": input.job.webhook,
        "phone_number_id": first.and_then(|e| e.phone_number_id.clone()),
        "conversation_id": first.and_then(|e| e.conversation_id.clone()),
        "events": events,
    })
}

/// Calls the user's endpoint; returns the `messages` of its answer (possibly none).
pub async fn call(
    client: &reqwest::Client,
    target: &HttpTarget<'_>,
    body: &Value,
    input: &JobInput<'_>,
) -> Result<Vec<Value>, Failure> {
    let bytes = serde_json::to_vec(body).map_err(|e| Failure::Fatal(e.to_string()))?;
    let mut request = client
        .post(target.url)
        .timeout(Duration::from_millis(target.timeout_ms))
        .header("content-type", "application/json")
        .header("x-switchboard-route", input.route.name.as_str())
        .header("x-switchboard-job", input.job.id.to_string())
        .header("x-switchboard-attempt", input.job.attempt.to_string());
    if let Some(secret) = target.secret {
        request = request.header(SIGNATURE_HEADER, sign(secret.expose().as_bytes(), &bytes));
    }
    for (name, value) in target.headers {
        request = request.header(name, value);
    }
    let response = request.body(bytes).send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        Failure::Retry(format!("http handler: POST {} {what}: {e}", target.url))
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Failure::Retry(format!("http handler: reading the response failed: {e}")))?;
    if !status.is_success() {
        let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
        return Err(Failure::Retry(format!(
            "http handler: {} answered {status}: {excerpt}",
            target.url
        )));
    }
    parse_messages(&text)
}

/// `""`, `{}` and `{"messages": []}` mean nothing to send.
fn parse_messages(text: &str) -> Result<Vec<Value>, Failure> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Failure::Fatal(format!("http handler: the 2xx response is not JSON ({e}); answer {{\"messages\": [...]}} or nothing"))
    })?;
    match value.get("messages") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(Failure::Fatal(
            "http handler: `messages` in the response must be an array".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_message_responses_parse() {
        assert!(parse_messages("").unwrap().is_empty());
        assert!(parse_messages("{}").unwrap().is_empty());
        let messages = parse_messages(r#"{"messages": [{"text": "hi"}]}"#).unwrap();
        assert_eq!(messages.len(), 1);
        assert!(matches!(parse_messages("<html>"), Err(Failure::Fatal(_))));
        assert!(matches!(
            parse_messages(r#"{"messages": "hi"}"#),
            Err(Failure::Fatal(_))
        ));
    }
}
