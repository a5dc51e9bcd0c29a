//! Request and response bodies of the Kapso Platform API and Meta proxy (CONTRACT §4, §5),
//! shaped after `openapi/platform-webhooks.yaml` and `openapi/whatsapp-messages.yaml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::secret::Secret;

/// `kind` of a webhook: Kapso's own payloads or raw Meta forwarding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// The OpenAPI's `default` for `kind`.
    #[default]
    Kapso,
    Meta,
    /// A kind this build does not know; only ever read, never sent.
    #[serde(other)]
    Unknown,
}

/// `WhatsappWebhook`: a webhook as Kapso stores it (always under `data`).
///
/// Decoded tolerantly, because Kapso's documented shapes differ (docs/ARCHITECTURE.md, "Webhook
/// shapes"): only `id`, `url` and `active` must be present; `kind` may be missing (the
/// OpenAPI's default `kapso` applies, see [`RemoteWebhook::kind`]); the number scope may come
/// as `whatsapp_config_id` (Kapso's configuration uuid, the phone number's `internal_id`)
/// instead of `phone_number_id`; unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemoteWebhook {
    pub id: String,
    pub url: String,
    /// `None` when Kapso did not say (the rendered examples omit it).
    #[serde(default)]
    pub kind: Option<WebhookKind>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<String>,
    pub active: bool,
    /// Empty when missing.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// Empty when missing.
    #[serde(default, deserialize_with = "null_as_default")]
    pub updated_at: String,
    #[serde(default)]
    pub project_id: Option<String>,
    /// Meta's phone number id; `None` for a project-scoped webhook, or when the scope came as
    /// `whatsapp_config_id` and is not resolved yet (sync resolves it, see `crate::sync`).
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Older rendering of the scope: Kapso's configuration id (uuid) of the phone number, which
    /// is that number's `internal_id` in the phone-number list.
    #[serde(default)]
    pub whatsapp_config_id: Option<String>,
    /// Returned in clear by Kapso; kept redacted in `Debug`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub buffer_enabled: Option<bool>,
    #[serde(default)]
    pub buffer_window_seconds: Option<u32>,
    #[serde(default)]
    pub max_buffer_size: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub buffer_events: Vec<String>,
    #[serde(default)]
    pub inactivity_minutes: Option<u32>,
    #[serde(default)]
    pub payload_version: Option<String>,
}

impl RemoteWebhook {
    /// The webhook's kind, `kapso` when Kapso did not state one (the OpenAPI's `default`).
    pub fn kind(&self) -> WebhookKind {
        self.kind.unwrap_or_default()
    }

    /// Whose events it receives, as far as the object itself tells.
    pub fn scope(&self) -> RemoteScope<'_> {
        match (&self.phone_number_id, &self.whatsapp_config_id) {
            (Some(number), _) => RemoteScope::Number(number),
            (None, Some(config)) => RemoteScope::Config(config),
            (None, None) => RemoteScope::Project,
        }
    }
}

/// The scope a [`RemoteWebhook`] states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteScope<'a> {
    /// One phone number (Meta's phone number id).
    Number(&'a str),
    /// One phone number, named by Kapso's configuration id; not yet mapped to a phone number id.
    Config(&'a str),
    /// The whole project (no number).
    Project,
}

/// A list element that is not a webhook this build can read. Sync reports it and never
/// creates a webhook it might be (see `crate::sync::plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndecodableWebhook {
    /// `id`, when the element has a string one.
    pub id: Option<String>,
    /// `url`, when the element has a string one.
    pub url: Option<String>,
    /// Why it could not be read.
    pub error: String,
}

impl UndecodableWebhook {
    pub(crate) fn of(element: &Value, error: &serde_json::Error) -> Self {
        let text = |key: &str| element.get(key).and_then(Value::as_str).map(str::to_owned);
        UndecodableWebhook {
            id: text("id"),
            url: text("url"),
            error: without_quoted_values(&error.to_string()),
        }
    }
}

/// serde's message with every double-quoted value replaced by `"…"`: a misplaced secret must
/// not reach a log line. Field names (in backticks) stay.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…");
                quoted = true;
            }
            ('"', true) => {
                out.push('"');
                quoted = false;
            }
            ('\\', true) => {
                chars.next();
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// A webhook list read to the end: what could be decoded, and what could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookList {
    pub webhooks: Vec<RemoteWebhook>,
    pub undecodable: Vec<UndecodableWebhook>,
}

/// Body of a webhook create (`WhatsappWebhookRequest` / `WhatsappProjectWebhookRequest`); the
/// client wraps it in `{"whatsapp_webhook": ...}`. `None` fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WebhookRequest {
    pub url: String,
    /// Required by the number-scoped route (minLength 1); Kapso never generates one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_optional_secret"
    )]
    pub secret_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<WebhookKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_window_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffer_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactivity_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

impl WebhookRequest {
    /// An active `kapso`-kind, `v2` webhook: what switchboard registers per phone number.
    pub fn kapso(url: impl Into<String>, secret_key: Secret, events: Vec<String>) -> Self {
        WebhookRequest {
            url: url.into(),
            secret_key: Some(secret_key),
            kind: Some(WebhookKind::Kapso),
            events: Some(events),
            active: Some(true),
            payload_version: Some("v2".to_owned()),
            ..WebhookRequest::default()
        }
    }
}

/// Body of a webhook update (`WhatsappWebhookUpdateRequest`): only the fields set are sent.
/// For the nullable fields, `Some(None)` sends an explicit `null` (clears the value).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WebhookPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_patch_secret"
    )]
    pub secret_key: Option<Option<Secret>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_version: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_window_seconds: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffer_size: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactivity_minutes: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Option<BTreeMap<String, String>>>,
}

impl WebhookPatch {
    pub fn is_empty(&self) -> bool {
        self == &WebhookPatch::default()
    }
}

/// `whatsapp_business_manager_messaging_limit`: Kapso sends an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum MessagingLimit {
    Number(i64),
    Text(String),
}

/// `WhatsappPhoneNumber`, the subset switchboard uses (CONTRACT §4.4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PhoneNumber {
    /// Meta's phone number id (same as `phone_number_id`).
    pub id: String,
    /// Kapso's configuration id (uuid).
    pub internal_id: String,
    pub phone_number_id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub display_phone_number_normalized: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub quality_rating: Option<String>,
    #[serde(default)]
    pub business_account_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub inbound_processing_enabled: Option<bool>,
    #[serde(default)]
    pub throughput_tier: Option<String>,
    /// Shared with the WhatsApp Business app: Meta fixes its throughput at 20 messages/s.
    #[serde(default)]
    pub is_coexistence: Option<bool>,
    #[serde(default)]
    pub whatsapp_business_manager_messaging_limit: Option<MessagingLimit>,
}

/// `PaginationMeta` of page-number lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PageMeta {
    pub page: u32,
    pub per_page: u32,
    pub total_pages: u32,
    pub total_count: u64,
}

/// `{"data": [...], "meta": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct ListEnvelope<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub data: Vec<T>,
    #[serde(default)]
    pub meta: Option<PageMeta>,
}

/// `{"data": {...}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct DataEnvelope<T> {
    pub data: T,
}

/// The Meta proxy's answer to an accepted send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendResponse {
    /// `messages[0].id`: the wamid that later status webhooks refer to.
    pub message_id: String,
    /// The whole `SendMessageResponse` (contacts, message_status, ...).
    pub raw: Value,
}

/// Filters of `GET /whatsapp/phone_numbers/{id}/webhooks` (CONTRACT §4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    pub url_contains: Option<String>,
    pub kind: Option<WebhookKind>,
    pub active: Option<bool>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn expose_optional_secret<S: Serializer>(
    secret: &Option<Secret>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_str(secret.expose()),
        None => serializer.serialize_none(),
    }
}

fn expose_patch_secret<S: Serializer>(
    secret: &Option<Option<Secret>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    expose_optional_secret(&secret.clone().flatten(), serializer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_request_skips_unset_fields_and_sends_the_secret() {
        let request = WebhookRequest::kapso(
            "https://sb.example.com/webhooks/support",
            Secret::new("whsec_x"),
            vec!["whatsapp.message.received".to_owned()],
        );
        let body = serde_json::to_value(&request).unwrap();
        assert_eq!(
            body,
            json!({"url": "https://sb.example.com/webhooks/support", "secret_key": "whsec_x",
                   "kind": "kapso", "events": ["whatsapp.message.received"], "active": true,
                   "payload_version": "v2"})
        );
        assert!(!format!("{request:?}").contains("whsec_x"));
    }

    #[test]
    fn patch_sends_only_given_keys_and_explicit_nulls() {
        let patch = WebhookPatch {
            active: Some(true),
            buffer_window_seconds: Some(None),
            ..WebhookPatch::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"active": true, "buffer_window_seconds": null})
        );
        assert!(WebhookPatch::default().is_empty());
    }

    #[test]
    fn remote_webhook_tolerates_nulls_and_hides_the_secret() {
        let hook: RemoteWebhook = serde_json::from_value(json!({
            "id": "9e8d7c6b-5a4f-3e2d-1c0b-9a8f7e6d5c4b", "url": "https://x", "kind": "kapso",
            "events": ["whatsapp.message.received"], "active": true,
            "created_at": "2025-07-14T15:00:00Z", "updated_at": "2025-07-14T15:00:00Z",
            "project_id": "1d6ca0a3-91c2-4f13-8a94-28ddb0d5f2f3", "secret_key": "wh_sec_3k",
            "buffer_window_seconds": null, "buffer_events": null, "headers": {"X-A": "b"}
        }))
        .unwrap();
        assert!(hook.buffer_events.is_empty());
        assert_eq!(
            hook.secret_key.as_ref().map(Secret::expose),
            Some("wh_sec_3k")
        );
        assert!(!format!("{hook:?}").contains("wh_sec_3k"));
    }

    #[test]
    fn a_webhook_read_without_kind_or_number_id_takes_the_documented_defaults() {
        let hook: RemoteWebhook = serde_json::from_value(json!({
            "id": "9e8d7c6b-5a4f-3e2d-1c0b-9a8f7e6d5c4b", "url": "https://x", "active": true,
            "events": ["whatsapp.message.received"], "kind": null,
            "whatsapp_config_id": "4a5b6c7d-8e9f-0a1b-2c3d-4e5f6a7b8c9d",
            "some_future_key": {"nested": 1}
        }))
        .unwrap();
        assert_eq!(hook.kind, None);
        assert_eq!(hook.kind(), WebhookKind::Kapso);
        assert_eq!(
            hook.scope(),
            RemoteScope::Config("4a5b6c7d-8e9f-0a1b-2c3d-4e5f6a7b8c9d")
        );
        assert_eq!(hook.created_at, "");
        assert_eq!(hook.project_id, None);
    }

    #[test]
    fn an_unreadable_element_keeps_its_id_and_url_but_no_value() {
        let element = json!({"id": "w1", "url": "https://x", "active": "whsec_oops"});
        let error = serde_json::from_value::<RemoteWebhook>(element.clone()).unwrap_err();
        let odd = UndecodableWebhook::of(&element, &error);
        assert_eq!(odd.id.as_deref(), Some("w1"));
        assert_eq!(odd.url.as_deref(), Some("https://x"));
        assert!(!odd.error.contains("whsec_oops"), "{}", odd.error);
        assert!(odd.error.contains("expected a boolean"), "{}", odd.error);
        assert_eq!(
            without_quoted_values(r#"invalid type: string "a \"q\" b", expected `x`"#),
            r#"invalid type: string "…", expected `x`"#
        );
    }

    #[test]
    fn messaging_limit_is_int_or_string() {
        let limit = |v: Value| serde_json::from_value::<MessagingLimit>(v).unwrap();
        assert_eq!(limit(json!(1000)), MessagingLimit::Number(1000));
        assert_eq!(
            limit(json!("10000")),
            MessagingLimit::Text("10000".to_owned())
        );
    }
}
