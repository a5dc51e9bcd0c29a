//! The webhook sender of the simulated Kapso (Kapso → switchboard): builds the exact bytes,
//! signs them, sets the CONTRACT §2.2 headers, and retries the identical request after the
//! configured delays until a 2xx arrives in time (optionally not when the server cannot be
//! reached at all).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::ingest::signature::sign;
use crate::secret::Secret;

/// How much of an answer's body a [`DeliveryAttempt`] keeps.
const RESPONSE_KEPT: usize = 4096;

/// Where a webhook goes: its `url`, `secret_key` and custom `headers`.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    pub url: String,
    /// `None` sends no `X-Webhook-Signature` (a webhook created without a secret).
    pub secret: Option<Secret>,
    pub headers: Vec<(String, String)>,
}

impl DeliveryTarget {
    pub fn new(url: impl Into<String>, secret: &str) -> Self {
        DeliveryTarget {
            url: url.into(),
            secret: Some(Secret::new(secret)),
            headers: Vec::new(),
        }
    }
}

/// How to deliver; the defaults are Kapso's (v2, retries after 10 s, 40 s and 90 s).
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Send `{"type", "batch": true, "data": [...]}` with `X-Webhook-Batch`/`X-Batch-Size`.
    pub batch: bool,
    /// `X-Webhook-Payload-Version`.
    pub payload_version: String,
    /// `X-Idempotency-Key`; default: SHA-256 hex of the body (stable across retries).
    pub idempotency_key: Option<String>,
    /// Delay before each retry; one attempt plus one per entry.
    pub retry_delays: Vec<Duration>,
    /// Send a wrong signature (one hex digit changed), to exercise the 401 path.
    pub tamper_signature: bool,
    /// A response later than this counts as a failure (Kapso: 10 s).
    pub response_timeout: Duration,
    /// Retry also after an attempt that could not connect (refused, DNS failure, connect
    /// timeout), as Kapso does. `false` ends the delivery after such an attempt.
    pub retry_unreachable: bool,
    /// Told about each retry before its wait begins.
    pub on_retry: Option<RetryHook>,
    /// What the retry waits are measured on. A manual clock lets a test play Kapso's whole
    /// 10 s / 40 s / 90 s schedule without waiting: advance it from the `on_retry` hook.
    pub clock: Clock,
}

/// Called before each retry's wait with the attempt number that failed (1-based), that
/// attempt, and the wait.
#[derive(Clone)]
pub struct RetryHook(pub Arc<RetryFn>);

/// The callback of a [`RetryHook`].
pub type RetryFn = dyn Fn(usize, &DeliveryAttempt, Duration) + Send + Sync;

impl fmt::Debug for RetryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryHook")
    }
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            batch: false,
            payload_version: "v2".to_owned(),
            idempotency_key: None,
            retry_delays: [10, 40, 90].map(Duration::from_secs).to_vec(),
            tamper_signature: false,
            response_timeout: Duration::from_secs(10),
            retry_unreachable: true,
            on_retry: None,
            clock: Clock::System,
        }
    }
}

impl DeliveryOptions {
    /// Default options with the retry delays scaled down (for tests).
    pub fn with_retry_delays(delays: &[Duration]) -> Self {
        DeliveryOptions {
            retry_delays: delays.to_vec(),
            ..DeliveryOptions::default()
        }
    }
}

/// One POST of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub status: Option<u16>,
    /// Transport failure or timeout, when there was no status.
    pub error: Option<String>,
    /// The answer's body (first 4 KiB, lossy UTF-8), when there was one.
    pub response: Option<String>,
    /// No connection could be made (refused, DNS failure, connect timeout): the request never
    /// reached a server.
    pub unreachable: bool,
    pub elapsed: Duration,
}

/// What happened to one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub url: String,
    pub event_type: String,
    pub attempts: Vec<DeliveryAttempt>,
    /// Status of the last attempt that got an answer.
    pub final_status: Option<u16>,
    pub idempotency_key: String,
    /// The exact bytes sent (every attempt sends these).
    pub body: Bytes,
    pub signature: Option<String>,
}

impl DeliveryReport {
    pub fn succeeded(&self) -> bool {
        self.attempts
            .last()
            .and_then(|a| a.status)
            .is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("a delivery needs at least one payload")]
    NoPayload,
    #[error("{0} payloads given without `batch`; a single delivery carries exactly one")]
    SeveralPayloadsWithoutBatch(usize),
    #[error("header `{0}` is not a valid HTTP header")]
    BadHeader(String),
    #[error("cannot encode the payload: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The body bytes of a delivery: the payload itself, or the batch envelope.
pub fn delivery_body(
    event_type: &str,
    payloads: Vec<Value>,
    batch: bool,
) -> Result<Vec<u8>, DeliveryError> {
    if payloads.is_empty() {
        return Err(DeliveryError::NoPayload);
    }
    if batch {
        return Ok(serde_json::to_vec(
            &json!({ "type": event_type, "batch": true, "data": payloads }),
        )?);
    }
    if payloads.len() > 1 {
        return Err(DeliveryError::SeveralPayloadsWithoutBatch(payloads.len()));
    }
    Ok(serde_json::to_vec(&payloads[0])?)
}

fn tamper(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == '0' { '1' } else { '0' };
    }
    chars.into_iter().collect()
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), DeliveryError> {
    let bad = || DeliveryError::BadHeader(name.to_owned());
    Ok((
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?,
        HeaderValue::from_str(value).map_err(|_| bad())?,
    ))
}

/// Delivers `payloads` as one webhook request to `target`, retrying after `opts.retry_delays`
/// until a 2xx arrives within `opts.response_timeout`. Stops early when `cancel` fires.
pub async fn deliver(
    http: &reqwest::Client,
    target: &DeliveryTarget,
    event_type: &str,
    payloads: Vec<Value>,
    opts: &DeliveryOptions,
    cancel: &CancellationToken,
) -> Result<DeliveryReport, DeliveryError> {
    let batch_size = payloads.len();
    let body = Bytes::from(delivery_body(event_type, payloads, opts.batch)?);
    let idempotency_key = opts
        .idempotency_key
        .clone()
        .unwrap_or_else(|| hex::encode(Sha256::digest(&body)));
    let signature = target.secret.as_ref().map(|secret| {
        let signature = sign(secret.expose().as_bytes(), &body);
        if opts.tamper_signature {
            tamper(&signature)
        } else {
            signature
        }
    });

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut fixed = vec![
        ("X-Webhook-Event", event_type.to_owned()),
        ("X-Webhook-Payload-Version", opts.payload_version.clone()),
        ("X-Idempotency-Key", idempotency_key.clone()),
    ];
    if let Some(signature) = &signature {
        fixed.push(("X-Webhook-Signature", signature.clone()));
    }
    if opts.batch {
        fixed.push(("X-Webhook-Batch", "true".to_owned()));
        fixed.push(("X-Batch-Size", batch_size.to_string()));
    }
    for (name, value) in &target.headers {
        let (name, value) = header(name, value)?;
        headers.insert(name, value);
    }
    for (name, value) in fixed {
        let (name, value) = header(name, &value)?;
        headers.insert(name, value);
    }

    let mut report = DeliveryReport {
        url: target.url.clone(),
        event_type: event_type.to_owned(),
        attempts: Vec::new(),
        final_status: None,
        idempotency_key,
        body: body.clone(),
        signature,
    };
    let waits = std::iter::once(Duration::ZERO).chain(opts.retry_delays.iter().copied());
    for (retry, wait) in waits.enumerate() {
        // Due before the hook runs, so a hook that advances a manual clock by `wait` ends it.
        let due = opts
            .clock
            .now_ms()
            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        if let (true, Some(hook), Some(failed)) =
            (retry > 0, &opts.on_retry, report.attempts.last())
        {
            (hook.0)(retry, failed, wait);
        }
        if !wait.is_zero() {
            tokio::select! {
                () = opts.clock.sleep_until(due) => {}
                () = cancel.cancelled() => break,
            }
        }
        let started = Instant::now();
        let request = http
            .post(&target.url)
            .headers(headers.clone())
            .body(body.clone())
            .timeout(opts.response_timeout)
            .send();
        let result = tokio::select! {
            result = request => result,
            () = cancel.cancelled() => break,
        };
        let attempt = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let answer = response.bytes().await.ok().map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(RESPONSE_KEPT)]).into_owned()
                });
                DeliveryAttempt {
                    status: Some(status),
                    error: None,
                    response: answer,
                    unreachable: false,
                    elapsed: started.elapsed(),
                }
            }
            Err(err) => DeliveryAttempt {
                status: None,
                error: Some(if err.is_connect() {
                    format!("cannot connect: {}", root_cause(&err))
                } else if err.is_timeout() {
                    format!("no answer within {:?}", opts.response_timeout)
                } else {
                    with_causes(&err)
                }),
                response: None,
                unreachable: err.is_connect(),
                elapsed: started.elapsed(),
            },
        };
        if attempt.status.is_some() {
            report.final_status = attempt.status;
        }
        let give_up = attempt.unreachable && !opts.retry_unreachable;
        report.attempts.push(attempt);
        if report.succeeded() || give_up {
            break;
        }
    }
    Ok(report)
}

/// The innermost source of `err` ("Connection refused (os error 111)"), which says more than
/// reqwest's own "error sending request".
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// `err` and its sources, so "connection refused" is not hidden behind "error sending request".
fn with_causes(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_wraps_payloads_with_type() {
        let body = delivery_body(
            "whatsapp.message.received",
            vec![json!({"a": 1}), json!({"b": 2})],
            true,
        )
        .unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["batch"], true);
        assert_eq!(value["type"], "whatsapp.message.received");
        assert_eq!(value["data"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn single_delivery_is_the_payload_itself() {
        let body = delivery_body("e", vec![json!({"a": 1})], false).unwrap();
        assert_eq!(body, br#"{"a":1}"#);
        assert!(matches!(
            delivery_body("e", vec![json!(1), json!(2)], false),
            Err(DeliveryError::SeveralPayloadsWithoutBatch(2))
        ));
        assert!(matches!(
            delivery_body("e", vec![], true),
            Err(DeliveryError::NoPayload)
        ));
    }

    #[test]
    fn tampering_changes_exactly_one_digit() {
        let (_, _, signature) = super::super::samples::SIGNATURE_VECTOR;
        let bad = tamper(signature);
        assert_ne!(bad, signature);
        assert_eq!(bad.len(), signature.len());
        assert_eq!(bad[1..], signature[1..]);
    }
}
