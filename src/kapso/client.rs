//! [`KapsoClient`]: the one HTTP client for Kapso's Platform API (`/platform/v1`) and Meta proxy
//! (`/meta/whatsapp/{graph_version}`). This file owns construction, the Meta proxy calls and
//! the call core: `X-API-Key` on every call, the per-call timeout, and retries of transient
//! failures (CONTRACT §6) before handing back a [`KapsoError`]. Every call but sends and
//! mark-as-read first waits for the API key's request budget ([`ApiLimiter`]). Platform API
//! calls are in `platform.rs`.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::dto::SendResponse;
use super::error::KapsoError;
use super::limiter::ApiLimiter;
use super::retry::{RetryHint, RetryPolicy};
use crate::clock::Clock;
use crate::config::KapsoConfig;
use crate::pacing::Throttle;

/// What a call does with a throttling answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnThrottle {
    /// Retry it like any transient failure (Platform API calls).
    Retry,
    /// Hand it back to the caller, who paces sends; an answer that leaves unknown whether the
    /// message went out is handed back too (never resent blindly).
    GiveBack,
}

/// Whose request budget a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// The API key's ([`ApiLimiter`]): Platform API calls and Meta-proxy reads.
    ApiKey,
    /// The business number's: sends and mark-as-read, paced by [`crate::pacing`].
    Number,
}

/// Page size used when listing (Kapso's documented default).
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// A list that has not ended after this many pages is treated as a broken response.
pub const MAX_PAGES: u32 = 500;

/// Cheap to clone: everything sits behind one `Arc`. `Debug` shows the base URLs, never the key.
#[derive(Clone)]
pub struct KapsoClient {
    pub(super) inner: Arc<Inner>,
}

#[derive(Clone)]
pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) platform_base: Url,
    pub(super) meta_base: Url,
    pub(super) api_key: Option<HeaderValue>,
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
    pub(super) policy: RetryPolicy,
    pub(super) page_size: u32,
    pub(super) requests_per_minute: u32,
    pub(super) limiter: Arc<ApiLimiter>,
}

impl std::fmt::Debug for KapsoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KapsoClient")
            .field("platform_base", &self.inner.platform_base.as_str())
            .field("meta_base", &self.inner.meta_base.as_str())
            .field(
                "api_key",
                &self.inner.api_key.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl KapsoClient {
    /// Builds the client. A missing `api_key` is allowed: every call then fails with
    /// [`KapsoError::MissingApiKey`], so commands that never call Kapso still work.
    pub fn new(config: &KapsoConfig) -> Result<KapsoClient, KapsoError> {
        let host = config.base_url.trim().trim_end_matches('/');
        let version = config.graph_version.trim().trim_matches('/');
        if version.is_empty() || version.contains('/') {
            return Err(KapsoError::Config {
                message: format!(
                    "kapso.graph_version `{}` is not a version such as v24.0",
                    config.graph_version
                ),
            });
        }
        let platform_base = parse_base(&format!("{host}/platform/v1"))?;
        let meta_base = parse_base(&format!("{host}/meta/whatsapp/{version}"))?;
        let api_key = match &config.api_key {
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(key.expose().trim()).map_err(|_| KapsoError::Config {
                        message: "kapso.api_key contains characters not allowed in an HTTP header"
                            .to_owned(),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KapsoError::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(KapsoClient {
            inner: Arc::new(Inner {
                http,
                platform_base,
                meta_base,
                api_key,
                timeout: Duration::from_millis(config.timeout_ms.max(1)),
                max_retries: config.max_retries,
                policy: RetryPolicy::default(),
                page_size: DEFAULT_PAGE_SIZE,
                requests_per_minute: config.api_requests_per_minute,
                limiter: Arc::new(ApiLimiter::new(
                    config.api_requests_per_minute,
                    Clock::System,
                )),
            }),
        })
    }

    /// Replaces the backoff and `Retry-After` cap (tests use short delays).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> KapsoClient {
        Arc::make_mut(&mut self.inner).policy = policy;
        self
    }

    /// Sets the extra attempts of one call; the request budget stays shared with `self`.
    pub fn with_max_retries(mut self, max_retries: u32) -> KapsoClient {
        Arc::make_mut(&mut self.inner).max_retries = max_retries;
        self
    }

    /// Sets `per_page` for list calls (at least 1).
    pub fn with_page_size(mut self, per_page: u32) -> KapsoClient {
        Arc::make_mut(&mut self.inner).page_size = per_page.max(1);
        self
    }

    /// Runs the API key's request limiter on `clock` (tests drive a manual one), with a fresh
    /// budget.
    pub fn with_clock(mut self, clock: Clock) -> KapsoClient {
        let inner = Arc::make_mut(&mut self.inner);
        inner.limiter = Arc::new(ApiLimiter::new(inner.requests_per_minute, clock));
        self
    }

    /// The API key's request limiter, shared by every clone of this client.
    pub fn limiter(&self) -> &ApiLimiter {
        &self.inner.limiter
    }

    pub fn platform_base_url(&self) -> &str {
        self.inner.platform_base.as_str()
    }

    pub fn meta_base_url(&self) -> &str {
        self.inner.meta_base.as_str()
    }

    /// `POST /{phone_number_id}/messages` with a `WhatsappMessage` body. Retried on transient
    /// failures (throttling included, honouring `Retry-After`), so a 5xx after Kapso had in
    /// fact accepted the message can send it twice.
    pub async fn send_message(
        &self,
        phone_number_id: &str,
        body: &Value,
    ) -> Result<SendResponse, KapsoError> {
        self.send(phone_number_id, body, OnThrottle::Retry).await
    }

    /// Like [`KapsoClient::send_message`], but a throttling answer (130429, 131056, 429, ...)
    /// is returned at once, not retried: the caller's pacer ([`crate::pacing`]) decides when
    /// that number or recipient may send again.
    pub async fn send_message_paced(
        &self,
        phone_number_id: &str,
        body: &Value,
    ) -> Result<SendResponse, KapsoError> {
        self.send(phone_number_id, body, OnThrottle::GiveBack).await
    }

    async fn send(
        &self,
        phone_number_id: &str,
        body: &Value,
        on_throttle: OnThrottle,
    ) -> Result<SendResponse, KapsoError> {
        let url = join(&self.inner.meta_base, &[phone_number_id, "messages"])?;
        let raw: Value = self
            .call_json_with(
                "send_message",
                Method::POST,
                url,
                Some(body),
                on_throttle,
                Budget::Number,
            )
            .await?;
        let message_id = raw
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .ok_or_else(|| KapsoError::Decode {
                message: "send_message: the response has no messages[0].id".to_owned(),
            })?
            .to_owned();
        Ok(SendResponse { message_id, raw })
    }

    /// Marks an inbound message read, optionally showing the typing indicator.
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        message_id: &str,
        typing_indicator: bool,
    ) -> Result<(), KapsoError> {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        if typing_indicator {
            body["typing_indicator"] = json!({"type": "text"});
        }
        let url = join(&self.inner.meta_base, &[phone_number_id, "messages"])?;
        let raw: Value = self
            .call_json_with(
                "mark_read",
                Method::POST,
                url,
                Some(&body),
                OnThrottle::Retry,
                Budget::Number,
            )
            .await?;
        // Graph answers `{"success": true}`; the OpenAPI documents a SendMessageResponse.
        let ok = raw.get("success").and_then(Value::as_bool) == Some(true)
            || raw.pointer("/messages/0/id").is_some();
        if ok {
            Ok(())
        } else {
            Err(KapsoError::Decode {
                message:
                    "mark_read: the response is neither {\"success\": true} nor a send response"
                        .to_owned(),
            })
        }
    }

    pub(super) async fn call_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<T, KapsoError> {
        self.call_json_with(op, method, url, body, OnThrottle::Retry, Budget::ApiKey)
            .await
    }

    async fn call_json_with<T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
        on_throttle: OnThrottle,
        budget: Budget,
    ) -> Result<T, KapsoError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(encode_error)?;
        let bytes = self
            .execute_with(op, method, url, body, on_throttle, budget)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| KapsoError::Decode {
            message: format!("{op}: {e}"),
        })
    }

    /// One logical call: up to `max_retries` extra attempts on a retryable failure, sending
    /// the identical body each time.
    pub(super) async fn execute(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<Bytes>,
    ) -> Result<Bytes, KapsoError> {
        self.execute_with(op, method, url, body, OnThrottle::Retry, Budget::ApiKey)
            .await
    }

    async fn execute_with(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        on_throttle: OnThrottle,
        budget: Budget,
    ) -> Result<Bytes, KapsoError> {
        let inner = &self.inner;
        let key = inner.api_key.as_ref().ok_or(KapsoError::MissingApiKey)?;
        let mut retry = 0;
        loop {
            if budget == Budget::ApiKey {
                inner.limiter.acquire(op).await;
            }
            let started = Instant::now();
            let result = self.attempt(key, &method, &url, body.clone()).await;
            let err = match result {
                Ok(bytes) => {
                    tracing::debug!(
                        kapso.op = op,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "Kapso call succeeded"
                    );
                    return Ok(bytes);
                }
                Err(err) => err,
            };
            // Kapso's per-key limit counts every request of the key, sends included.
            if let KapsoError::RateLimited { retry_after, .. } = &err {
                inner.limiter.pause(*retry_after);
            }
            // A paced send hands throttling back to its pacer, and never resends a message
            // Kapso may have accepted: the caller checks Kapso's history first.
            let give_back = on_throttle == OnThrottle::GiveBack
                && (Throttle::of(&err).is_some() || err.outcome_unknown());
            if retry >= inner.max_retries || give_back {
                return Err(err);
            }
            let delay = match err.retry_hint() {
                RetryHint::DoNotRetry => return Err(err),
                RetryHint::RetryAfter(delay) => delay.min(inner.policy.retry_after_cap),
                RetryHint::Retry => {
                    let backoff = inner.policy.backoff(retry, rand::thread_rng().gen::<f64>());
                    if matches!(err, KapsoError::Conflict { .. }) {
                        backoff.max(inner.policy.conflict_delay)
                    } else {
                        backoff
                    }
                }
            };
            let code = err
                .graph_code()
                .map(|c| c.to_string())
                .or_else(|| err.kapso_code().map(str::to_owned));
            tracing::warn!(
                kapso.op = op,
                http.status = err.http_status(),
                kapso.code = code.as_deref(),
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                "Kapso call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn attempt(
        &self,
        key: &HeaderValue,
        method: &Method,
        url: &Url,
        body: Option<Bytes>,
    ) -> Result<Bytes, KapsoError> {
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(self.inner.timeout)
            .header("X-API-Key", key.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(KapsoError::from_response(status.as_u16(), &headers, &bytes))
        }
    }
}

fn parse_base(text: &str) -> Result<Url, KapsoError> {
    let url = Url::parse(text).map_err(|e| KapsoError::Config {
        message: format!("kapso.base_url gives `{text}`, which is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(KapsoError::Config {
            message: format!("kapso.base_url must be an http(s) URL with a host, got `{text}`"),
        });
    }
    Ok(url)
}

/// Appends path segments, percent-encoding each (ids cannot inject `/` or `?`).
pub(super) fn join(base: &Url, segments: &[&str]) -> Result<Url, KapsoError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| KapsoError::Config {
            message: format!("`{base}` cannot take a path"),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn transport_error(err: reqwest::Error) -> KapsoError {
    if err.is_timeout() {
        return KapsoError::Timeout;
    }
    let connect = err.is_connect();
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect {
        KapsoError::Unreachable { message }
    } else {
        KapsoError::Transport { message }
    }
}

pub(super) fn encode_error(err: serde_json::Error) -> KapsoError {
    KapsoError::Decode {
        message: format!("cannot encode the request body: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn config(base_url: &str, key: Option<&str>) -> KapsoConfig {
        KapsoConfig {
            base_url: base_url.to_owned(),
            api_key: key.map(Secret::new),
            ..KapsoConfig::default()
        }
    }

    #[test]
    fn base_urls_are_built_from_the_host() {
        let client = KapsoClient::new(&config("https://api.kapso.ai/", Some("k"))).unwrap();
        assert_eq!(
            client.platform_base_url(),
            "https://api.kapso.ai/platform/v1"
        );
        assert_eq!(
            client.meta_base_url(),
            "https://api.kapso.ai/meta/whatsapp/v24.0"
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        let base = Url::parse("http://127.0.0.1:1/platform/v1").unwrap();
        let url = join(&base, &["whatsapp", "webhooks", "../x?y"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/platform/v1/whatsapp/webhooks/..%2Fx%3Fy"
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let client = KapsoClient::new(&config("http://127.0.0.1:1", Some("sk_live_abc"))).unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("sk_live_abc"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        let err = KapsoClient::new(&config("ftp://x", Some("k"))).unwrap_err();
        assert!(err.to_string().contains("kapso.base_url"), "{err}");
    }

    #[tokio::test]
    async fn calls_without_a_key_fail_before_any_traffic() {
        let client = KapsoClient::new(&config("http://127.0.0.1:9", None)).unwrap();
        let err = client.list_phone_numbers().await.unwrap_err();
        assert!(matches!(err, KapsoError::MissingApiKey), "{err:?}");
        assert!(err.to_string().contains("set kapso.api_key"));
    }
}
