//! [`KapsoError`]: every way a call to Kapso can fail, decoded from the HTTP status and the
//! error body (a Graph envelope `{"error": {...}}` or Kapso's `{"error": "...", "code": ...}`),
//! and the retry hint of CONTRACT §6 for each.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

use super::retry::{classify, Failure, RetryHint};

/// A Graph API error (`error` object of the Meta proxy's error envelope).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphError {
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
    #[serde(default)]
    pub error_data: Option<GraphErrorData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

impl GraphError {
    /// `error_data.details`, Meta's longer explanation, when given.
    pub fn details(&self) -> Option<&str> {
        self.error_data.as_ref()?.details.as_deref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KapsoError {
    #[error("no Kapso API key is configured: set kapso.api_key (for example `api_key = \"${{KAPSO_API_KEY}}\"`)")]
    MissingApiKey,
    #[error("invalid Kapso client configuration: {message}")]
    Config { message: String },
    #[error("Kapso rejected the API key (kapso.api_key): HTTP 401")]
    Unauthorized { retry_after: Option<Duration> },
    #[error("Kapso: not found (HTTP 404): {message}")]
    NotFound {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "Kapso rejected the request as invalid (HTTP 422{}): {message}",
        code_suffix(code)
    )]
    Validation {
        message: String,
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("Kapso: payment required (HTTP 402{}): {message}", code_suffix(code))]
    PaymentRequired {
        message: String,
        code: Option<String>,
        billing_url: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("Kapso: another message is already in flight (HTTP 409): {message}")]
    Conflict {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("WhatsApp error {} (HTTP {status}): {}", error.code, error.message)]
    Graph {
        status: u16,
        error: Box<GraphError>,
        retry_after: Option<Duration>,
    },
    #[error("Kapso error (HTTP {status}{}): {message}", code_suffix(code))]
    Api {
        status: u16,
        message: String,
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("Kapso is rate limiting (HTTP 429): {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("Kapso server error (HTTP {status}): {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("could not reach Kapso: {message}")]
    Transport { message: String },
    /// The connection could not be made: the request never left this machine.
    #[error("could not connect to Kapso: {message}")]
    Unreachable { message: String },
    #[error("Kapso did not answer within the timeout (kapso.timeout_ms)")]
    Timeout,
    #[error("unexpected response from Kapso: {message}")]
    Decode { message: String },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref()
        .map(|c| format!(", code {c}"))
        .unwrap_or_default()
}

/// The shapes `error` takes: an object (Graph) or a string (Kapso), possibly with a `code`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorField,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    billing_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Graph(GraphError),
    Text(String),
    Other(Value),
}

impl KapsoError {
    /// Builds the error for a non-2xx response from its status, headers and body.
    pub fn from_response(status: u16, headers: &HeaderMap, body: &[u8]) -> KapsoError {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, SystemTime::now()));
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (graph, message, code, billing_url) = match parsed {
            Some(ErrorBody {
                error,
                code,
                billing_url,
            }) => {
                let code = code.map(|c| match c {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
                match error {
                    ErrorField::Graph(g) => {
                        let message = g.message.clone();
                        (Some(g), message, code, billing_url)
                    }
                    ErrorField::Text(text) => (None, text, code, billing_url),
                    ErrorField::Other(v) => (None, v.to_string(), code, billing_url),
                }
            }
            None => (None, fallback_message(status, body), None, None),
        };
        match (status, graph) {
            (401, _) => KapsoError::Unauthorized { retry_after },
            (402, _) => KapsoError::PaymentRequired {
                message,
                code,
                billing_url,
                retry_after,
            },
            (404, _) => KapsoError::NotFound {
                message,
                retry_after,
            },
            (409, _) => KapsoError::Conflict {
                message,
                retry_after,
            },
            (_, Some(error)) => KapsoError::Graph {
                status,
                error: Box::new(error),
                retry_after,
            },
            (422, None) => KapsoError::Validation {
                message,
                code,
                retry_after,
            },
            (429, None) => KapsoError::RateLimited {
                message,
                retry_after,
            },
            (500..=599, None) => KapsoError::Server {
                status,
                message,
                retry_after,
            },
            (_, None) => KapsoError::Api {
                status,
                message,
                code,
                retry_after,
            },
        }
    }

    /// The HTTP status Kapso answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        Some(match self {
            KapsoError::Unauthorized { .. } => 401,
            KapsoError::NotFound { .. } => 404,
            KapsoError::Validation { .. } => 422,
            KapsoError::PaymentRequired { .. } => 402,
            KapsoError::Conflict { .. } => 409,
            KapsoError::RateLimited { .. } => 429,
            KapsoError::Graph { status, .. }
            | KapsoError::Api { status, .. }
            | KapsoError::Server { status, .. } => *status,
            _ => return None,
        })
    }

    /// The Graph error code (`error.code`), for Meta proxy errors.
    pub fn graph_code(&self) -> Option<i64> {
        match self {
            KapsoError::Graph { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Kapso's string code, e.g. `insufficient_credits` or `marketing_preference_stopped`.
    pub fn kapso_code(&self) -> Option<&str> {
        match self {
            KapsoError::Validation { code, .. }
            | KapsoError::PaymentRequired { code, .. }
            | KapsoError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// True when the request may have reached Kapso and been acted on although no answer says
    /// so: a timeout, a connection cut after the request was written, a 5xx, or a success
    /// whose body cannot be read. A message sent this way may have gone out.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            KapsoError::Timeout
                | KapsoError::Transport { .. }
                | KapsoError::Server { .. }
                | KapsoError::Decode { .. }
        )
    }

    /// The delay Kapso asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KapsoError::Unauthorized { retry_after }
            | KapsoError::NotFound { retry_after, .. }
            | KapsoError::Validation { retry_after, .. }
            | KapsoError::PaymentRequired { retry_after, .. }
            | KapsoError::Conflict { retry_after, .. }
            | KapsoError::Graph { retry_after, .. }
            | KapsoError::Api { retry_after, .. }
            | KapsoError::RateLimited { retry_after, .. }
            | KapsoError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether and when the same request may be sent again (CONTRACT §6).
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            KapsoError::MissingApiKey | KapsoError::Config { .. } | KapsoError::Decode { .. } => {
                RetryHint::DoNotRetry
            }
            KapsoError::Transport { .. } | KapsoError::Unreachable { .. } | KapsoError::Timeout => {
                RetryHint::Retry
            }
            _ => classify(&Failure {
                http_status: self.http_status(),
                graph_code: self.graph_code(),
                kapso_code: self.kapso_code(),
                retry_after: self.retry_after(),
            }),
        }
    }
}

/// A short description of a body that is not a known error shape (never the whole body).
fn fallback_message(status: u16, body: &[u8]) -> String {
    if body.is_empty() {
        return format!("HTTP {status} with an empty body");
    }
    match std::str::from_utf8(body) {
        Ok(text) if text.len() <= 200 && !text.contains('\n') => text.to_owned(),
        _ => format!("HTTP {status} with a {} byte non-JSON body", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn decode(status: u16, body: &str) -> KapsoError {
        KapsoError::from_response(status, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn graph_envelope_keeps_code_subcode_details_and_trace() {
        let err = decode(
            422,
            r#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_subcode":2494010,"error_data":{"messaging_product":"whatsapp","details":"More than 24 hours"},"fbtrace_id":"AZq"}}"#,
        );
        let KapsoError::Graph { status, error, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*status, 422);
        assert_eq!(error.code, 131047);
        assert_eq!(error.error_subcode, Some(2494010));
        assert_eq!(error.details(), Some("More than 24 hours"));
        assert_eq!(error.fbtrace_id.as_deref(), Some("AZq"));
        assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    }

    #[test]
    fn string_errors_with_kapso_codes() {
        let err = decode(
            422,
            r#"{"error":"Contact stopped marketing messages","code":"marketing_preference_stopped"}"#,
        );
        assert_eq!(err.kapso_code(), Some("marketing_preference_stopped"));
        assert!(matches!(err, KapsoError::Validation { .. }));
        assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);

        let err = decode(
            402,
            r#"{"error":"Your Kapso balance doesn't cover Meta's fee","code":"insufficient_credits","billing_url":"https://app.kapso.ai/b"}"#,
        );
        let KapsoError::PaymentRequired { billing_url, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(billing_url.as_deref(), Some("https://app.kapso.ai/b"));
        assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
        assert!(err.to_string().contains("insufficient_credits"));
    }

    #[test]
    fn conflict_with_string_error_is_retried() {
        let err = decode(409, r#"{"error":"Another message is already in-flight"}"#);
        assert!(matches!(err, KapsoError::Conflict { .. }));
        assert_eq!(err.retry_hint(), RetryHint::Retry);
    }

    #[test]
    fn unauthorized_names_the_config_key_and_is_final() {
        let err = decode(401, r#"{"error":"Invalid API key"}"#);
        assert!(err.to_string().contains("kapso.api_key"));
        assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
        assert_eq!(
            KapsoError::MissingApiKey.retry_hint(),
            RetryHint::DoNotRetry
        );
        assert!(KapsoError::MissingApiKey
            .to_string()
            .contains("set kapso.api_key"));
    }

    #[test]
    fn non_json_bodies_still_classify_by_status() {
        let err = decode(502, "<html>bad gateway</html>");
        assert!(matches!(err, KapsoError::Server { status: 502, .. }));
        assert_eq!(err.retry_hint(), RetryHint::Retry);
        let err = decode(429, "");
        assert!(matches!(err, KapsoError::RateLimited { .. }));
        assert_eq!(err.retry_hint(), RetryHint::Retry);
    }

    #[test]
    fn retry_after_header_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let body = r#"{"error":{"message":"throttled","type":"OAuthException","code":130429}}"#;
        let err = KapsoError::from_response(400, &headers, body.as_bytes());
        assert_eq!(
            err.retry_hint(),
            RetryHint::RetryAfter(Duration::from_secs(2))
        );
    }
}
