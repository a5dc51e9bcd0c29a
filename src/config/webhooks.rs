//! The `[[webhooks]]` entries: what switchboard serves and what it registers with Kapso, with
//! the checks that keep a sync from ever asking Kapso for something it would refuse
//! (CONTRACT §2.1, §4.3).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{sync, Config, ConfigError};
use crate::secret::Secret;

use crate::event::{did_you_mean, is_subscribable_event, OTHER_PROJECT_EVENTS};
pub use crate::event::{NUMBER_EVENTS, PROJECT_EVENTS};

/// One `[[webhooks]]` entry: served at `POST /webhooks/{name}`, and (with `server.public_url`)
/// registered with Kapso at `{public_url}/webhooks/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Served at `POST /webhooks/{name}`.
    pub name: String,
    /// Signing secrets; a delivery signed with any of them is accepted (rotation). The first
    /// is the one registered with Kapso. A single string is taken as a list of one.
    #[serde(deserialize_with = "crate::secret::one_or_many")]
    pub secrets: Vec<Secret>,
    /// Meta's phone number id; omitted for a project-scoped webhook.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Event types; unset means [`NUMBER_EVENTS`] or [`PROJECT_EVENTS`] by scope.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub kind: WebhookKindConfig,
    /// `v1` or `v2`; unset means `v2` (not applicable to `meta`).
    #[serde(default)]
    pub payload_version: Option<PayloadVersion>,
    /// Kapso-side batching of events before delivery; unset means off.
    #[serde(default)]
    pub kapso_buffer: Option<KapsoBufferConfig>,
    /// Extra headers Kapso adds to each delivery (values may be credentials: never echoed).
    #[serde(default, deserialize_with = "crate::secret::header_table")]
    pub headers: BTreeMap<String, String>,
    /// false registers the webhook paused.
    #[serde(default = "yes")]
    pub active: bool,
    /// Silence after which Kapso sends `whatsapp.conversation.inactive`; unset leaves Kapso's
    /// value (60 on new webhooks).
    #[serde(default)]
    pub inactivity_minutes: Option<u32>,
    /// false: switchboard never creates, updates or deletes this webhook on Kapso.
    #[serde(default = "yes")]
    pub sync: bool,
}

/// `kind` of a configured webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKindConfig {
    /// Kapso's own payloads (what switchboard parses).
    #[default]
    Kapso,
    /// The raw Meta Cloud API body, forwarded unchanged.
    Meta,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadVersion {
    V1,
    #[default]
    V2,
}

impl PayloadVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadVersion::V1 => "v1",
            PayloadVersion::V2 => "v2",
        }
    }
}

/// Kapso-side buffering (CONTRACT §2.5), separate from switchboard's own `[buffer]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KapsoBufferConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Debounce window per conversation, 1-60 seconds.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u32,
    /// A batch goes out once it holds this many events, 1-100.
    #[serde(default = "default_max_size")]
    pub max_size: u32,
    /// Events to buffer; each must also be in `events`.
    #[serde(default = "default_buffer_events")]
    pub events: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_window_seconds() -> u32 {
    5
}

fn default_max_size() -> u32 {
    50
}

fn default_buffer_events() -> Vec<String> {
    vec!["whatsapp.message.received".to_owned()]
}

impl WebhookConfig {
    /// The events to subscribe to: the configured list, or the default of the scope.
    pub fn effective_events(&self) -> Vec<String> {
        if self.kind == WebhookKindConfig::Meta {
            return Vec::new();
        }
        match &self.events {
            Some(events) => events.clone(),
            None if self.phone_number_id.is_some() => {
                NUMBER_EVENTS.iter().map(|e| (*e).to_owned()).collect()
            }
            None => PROJECT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    /// The secret registered with Kapso (the first one).
    pub fn registered_secret(&self) -> Option<&Secret> {
        self.secrets.first()
    }
}

/// Whether Kapso delivers `event` only to phone-number-scoped webhooks.
fn is_number_event(event: &str) -> bool {
    event.starts_with("whatsapp.message.")
        || event.starts_with("whatsapp.conversation.")
        || event.starts_with("whatsapp.contact.")
}

/// Checks every `[[webhooks]]` entry, then `server.public_url` and `[sync]`.
pub(super) fn validate_webhooks(config: &Config, file: &str) -> Result<(), ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: file.to_owned(),
        key,
        message,
    };
    if config.webhooks.is_empty() {
        return Err(invalid(
            "webhooks".to_owned(),
            "no webhook is configured; add a [[webhooks]] table with `name` and `secrets`"
                .to_owned(),
        ));
    }
    let mut names = HashSet::new();
    let mut meta_numbers = HashSet::new();
    for (i, webhook) in config.webhooks.iter().enumerate() {
        let key = |field: &str| format!("webhooks[{i}].{field}");
        let valid_name = !webhook.name.is_empty()
            && webhook.name.len() <= 64
            && webhook
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(invalid(
                key("name"),
                format!(
                    "`{}` is not a valid name: use 1-64 letters, digits, `-` or `_` (it becomes the URL path /webhooks/NAME)",
                    webhook.name
                ),
            ));
        }
        if !names.insert(webhook.name.as_str()) {
            return Err(invalid(
                key("name"),
                format!(
                    "`{}` is used by another webhook; names must be unique",
                    webhook.name
                ),
            ));
        }
        if webhook.secrets.is_empty() {
            return Err(invalid(
                key("secrets"),
                "at least one non-empty secret is needed to verify X-Webhook-Signature; for example `secrets = [\"${MY_WEBHOOK_SECRET}\"]`".to_owned(),
            ));
        }
        check_remote_settings(webhook, &key).map_err(|(k, m)| invalid(k, m))?;
        if webhook.kind == WebhookKindConfig::Meta {
            if let Some(number) = &webhook.phone_number_id {
                if !meta_numbers.insert(number.as_str()) {
                    return Err(invalid(
                        key("kind"),
                        format!("Kapso allows one `meta` webhook per phone number, and {number} already has one; remove one of them"),
                    ));
                }
            }
        }
    }
    sync::validate_sync(config).map_err(|(k, m)| invalid(k, m))
}

/// A config problem: (key, message).
pub(super) type Problem = (String, String);

/// The keys that describe the webhook on Kapso's side.
fn check_remote_settings(
    webhook: &WebhookConfig,
    key: &impl Fn(&str) -> String,
) -> Result<(), Problem> {
    if let Some(number) = &webhook.phone_number_id {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                key("phone_number_id"),
                format!("`{number}` is not a phone number id: use Meta's numeric id, e.g. \"106540352242922\" (`switchboard phone-numbers list` shows them); omit the key for a project-scoped webhook"),
            ));
        }
    }
    if webhook.kind == WebhookKindConfig::Meta {
        if webhook.phone_number_id.is_none() {
            return Err((
                key("phone_number_id"),
                "a `meta` webhook needs a phone number: set `phone_number_id`, or use kind = \"kapso\"".to_owned(),
            ));
        }
        let not_for_meta = [
            ("events", webhook.events.is_some()),
            ("payload_version", webhook.payload_version.is_some()),
            ("kapso_buffer", webhook.kapso_buffer.is_some()),
            ("inactivity_minutes", webhook.inactivity_minutes.is_some()),
        ];
        if let Some((field, _)) = not_for_meta.iter().find(|(_, set)| *set) {
            return Err((
                key(field),
                format!("`{field}` does not apply to kind = \"meta\" (Kapso forwards Meta's raw body, unfiltered and unbuffered); remove it, or use kind = \"kapso\""),
            ));
        }
        return Ok(());
    }
    let events = webhook.effective_events();
    if events.is_empty() {
        return Err((
            key("events"),
            "Kapso needs at least one event for a `kapso` webhook; remove the key to get the defaults".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    for (j, event) in events.iter().enumerate() {
        let event_key = key(&format!("events[{j}]"));
        if !is_subscribable_event(event) {
            let mut known: Vec<&str> = NUMBER_EVENTS.to_vec();
            known.extend(crate::event::CONTACT_EVENTS);
            known.extend(PROJECT_EVENTS);
            known.extend(OTHER_PROJECT_EVENTS);
            let fix = match did_you_mean(event, known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("use one of: {}", known.join(", ")),
            };
            return Err((
                event_key,
                format!("`{event}` is not a Kapso event type a webhook can subscribe to; {fix}"),
            ));
        }
        if !seen.insert(event.as_str()) {
            return Err((event_key, format!("`{event}` is listed twice")));
        }
        let number_scoped = webhook.phone_number_id.is_some();
        if is_number_event(event) && !number_scoped {
            return Err((
                event_key,
                format!("Kapso delivers `{event}` only to phone-number-scoped webhooks, never to project-scoped ones: set `phone_number_id` on this webhook (one webhook per phone number)"),
            ));
        }
        if !is_number_event(event) && number_scoped {
            return Err((
                event_key,
                format!("`{event}` is a project event, never delivered to a phone-number-scoped webhook: move it to a webhook without `phone_number_id`"),
            ));
        }
    }
    if let Some(buffer) = &webhook.kapso_buffer {
        if !(1..=60).contains(&buffer.window_seconds) {
            return Err((
                key("kapso_buffer.window_seconds"),
                format!(
                    "{} is out of range: use 1 to 60 (default 5)",
                    buffer.window_seconds
                ),
            ));
        }
        if !(1..=100).contains(&buffer.max_size) {
            return Err((
                key("kapso_buffer.max_size"),
                format!(
                    "{} is out of range: use 1 to 100 (default 50)",
                    buffer.max_size
                ),
            ));
        }
        if buffer.enabled && buffer.events.is_empty() {
            return Err((
                key("kapso_buffer.events"),
                "list the events to buffer, e.g. [\"whatsapp.message.received\"] (the default)"
                    .to_owned(),
            ));
        }
        for (j, event) in buffer.events.iter().enumerate() {
            if !events.contains(event) {
                return Err((
                    key(&format!("kapso_buffer.events[{j}]")),
                    format!("`{event}` is not in this webhook's `events`; add it there or remove it here"),
                ));
            }
        }
    }
    if let Some(minutes) = webhook.inactivity_minutes {
        if !(1..=1440).contains(&minutes) {
            return Err((
                key("inactivity_minutes"),
                format!("{minutes} is out of range: use 1 to 1440 (Kapso's default is 60)"),
            ));
        }
    }
    for (name, value) in &webhook.headers {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err((
                key("headers"),
                format!("`{name}` is not a valid HTTP header name: use letters, digits and `-`"),
            ));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err((
                key(&format!("headers.{name}")),
                "header values cannot contain control characters such as newlines".to_owned(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
