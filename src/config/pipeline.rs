//! Configuration of what happens after an event is stored: `[buffer]`, `[jobs]` and the ordered
//! `[[routes]]` with their handlers. Checked by [`validate_pipeline`] at startup.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::template_message::TemplateSpec;
use super::{Config, ConfigError};
use crate::event;
use crate::secret::Secret;
use crate::template::Template;

/// Debounce of `whatsapp.message.received` per conversation.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// false: every message is handled on its own, at once.
    pub enabled: bool,
    /// Quiet time after the last message before the batch is handled (each message restarts it).
    pub window_ms: u64,
    /// Longest a batch waits after its first message, however chatty the customer is.
    pub max_wait_ms: u64,
    /// A batch is handled as soon as it holds this many messages.
    pub max_messages: u32,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            enabled: true,
            window_ms: 2_000,
            max_wait_ms: 10_000,
            max_messages: 20,
        }
    }
}

/// A route's own buffer settings; unset keys fall back to `[buffer]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferOverride {
    pub enabled: Option<bool>,
    pub window_ms: Option<u64>,
    pub max_wait_ms: Option<u64>,
    pub max_messages: Option<u32>,
}

impl BufferOverride {
    pub fn apply(&self, base: BufferConfig) -> BufferConfig {
        BufferConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            window_ms: self.window_ms.unwrap_or(base.window_ms),
            max_wait_ms: self.max_wait_ms.unwrap_or(base.max_wait_ms),
            max_messages: self.max_messages.unwrap_or(base.max_messages),
        }
    }
}

/// The durable job queue.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at the same time (each waits mostly on Kapso or the user's service, so many
    /// are cheap).
    pub workers: usize,
    /// Attempts before a job is dead-lettered (a route may override).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// How long a job may be held by a process that shares the queue with others before it is
    /// taken as abandoned. The single-server SQLite queue does not need it: its jobs are its
    /// own, and those a previous process left running run again at once on restart. Kept for
    /// a queue shared by several servers; still bounds the `http` handler's timeout.
    pub lease_ms: u64,
    /// Fallback poll interval; workers are normally woken as soon as work arrives.
    pub poll_interval_ms: u64,
    /// Loop guard: a template this server sent that Kapso reports failed (within this long of
    /// sending it) triggers no template of another route for the same conversation, so a
    /// failing template cannot set off another, and so on. 0 turns the guard off.
    pub template_loop_guard_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 32,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            lease_ms: 60_000,
            poll_interval_ms: 1_000,
            template_loop_guard_ms: 86_400_000,
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique; shown in job listings and logs.
    pub name: String,
    /// Event types, exact (`whatsapp.message.received`) or by prefix (`whatsapp.message.*`, `*`).
    #[serde(deserialize_with = "one_or_many")]
    pub on: Vec<String>,
    #[serde(default)]
    pub when: WhenConfig,
    pub handler: HandlerConfig,
    /// false: routes after this one are not considered for an event it matched.
    #[serde(default = "yes", rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub buffer: BufferOverride,
    /// Overrides `jobs.max_attempts` for this route's jobs.
    pub max_attempts: Option<u32>,
}

/// Conditions on the event; all given ones must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    #[serde(default, deserialize_with = "one_or_many")]
    pub webhook: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub phone_number_id: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub message_type: Vec<String>,
    /// Regular expression matched against the message text (text body, button/list title,
    /// caption or Kapso's rendered content).
    pub text: Option<String>,
    pub new_conversation: Option<bool>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// The id of the button or list row the customer chose (`interactive.button_reply.id`,
    /// `interactive.list_reply.id`, or a template button's `button.payload`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub reply_id: Vec<String>,
    /// WhatsApp error codes of a failed message (`whatsapp.message.failed`): matches when any
    /// error of its statuses has one of them.
    #[serde(default, deserialize_with = "one_or_many_codes")]
    pub error_code: Vec<i64>,
    /// true: only events catch-up read back from Kapso's history after an outage; false: only
    /// events a webhook delivered.
    pub backfilled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HandlerConfig {
    /// A text message; `{{placeholders}}` are filled from the event.
    Reply {
        text: String,
        /// Quote the customer's message (`context.message_id`).
        #[serde(default = "yes")]
        quote: bool,
        #[serde(default)]
        preview_url: bool,
        /// Sent instead when the customer's 24-hour window is closed.
        outside_window: Option<TemplateSpec>,
    },
    /// An approved template with positional (`params = [...]`) or named (`params = {..}`) body
    /// parameters, an optional header (text parameters or a media file) and button parameters.
    Template(TemplateSpec),
    /// Any message body from a JSON file (placeholders allowed in its strings).
    Message {
        file: PathBuf,
        #[serde(skip)]
        body: Option<Value>,
        /// Sent instead when the customer's 24-hour window is closed.
        outside_window: Option<TemplateSpec>,
    },
    /// Read receipt for the inbound message, optionally with a typing indicator.
    MarkRead {
        #[serde(default)]
        typing_indicator: bool,
    },
    /// POST the event (or buffered batch) to your own service; a 2xx answer may carry messages.
    Http {
        url: String,
        #[serde(default = "default_http_timeout_ms")]
        timeout_ms: u64,
        /// Signs the body in `X-Switchboard-Signature` (hex HMAC-SHA256).
        secret: Option<Secret>,
        /// Values may be credentials (`Authorization`): never echoed in errors.
        #[serde(default, deserialize_with = "crate::secret::header_table")]
        headers: BTreeMap<String, String>,
        /// Sent instead of the service's free-form messages when the customer's 24-hour window
        /// is closed.
        outside_window: Option<TemplateSpec>,
    },
    /// Write the event to the log.
    Log {},
}

impl HandlerConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerConfig::Reply { .. } => "reply",
            HandlerConfig::Template(_) => "template",
            HandlerConfig::Message { .. } => "message",
            HandlerConfig::MarkRead { .. } => "mark_read",
            HandlerConfig::Http { .. } => "http",
            HandlerConfig::Log {} => "log",
        }
    }

    /// The template a send handler falls back to when the customer's window is closed.
    pub fn outside_window(&self) -> Option<&TemplateSpec> {
        match self {
            HandlerConfig::Reply { outside_window, .. }
            | HandlerConfig::Message { outside_window, .. }
            | HandlerConfig::Http { outside_window, .. } => outside_window.as_ref(),
            _ => None,
        }
    }

    /// Handlers that call Kapso need `kapso.api_key`.
    pub fn calls_kapso(&self) -> bool {
        !matches!(self, HandlerConfig::Log {})
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TemplateParams {
    Positional(Vec<String>),
    Named(BTreeMap<String, String>),
}

impl TemplateParams {
    /// Each value with its key suffix (`[0]` for a positional one, `.name` for a named one).
    pub fn entries(&self) -> Box<dyn Iterator<Item = (String, &str)> + '_> {
        match self {
            TemplateParams::Positional(list) => Box::new(
                list.iter()
                    .enumerate()
                    .map(|(j, p)| (format!("[{j}]"), p.as_str())),
            ),
            TemplateParams::Named(map) => {
                Box::new(map.iter().map(|(k, p)| (format!(".{k}"), p.as_str())))
            }
        }
    }
}

impl Default for TemplateParams {
    fn default() -> Self {
        TemplateParams::Positional(Vec::new())
    }
}

fn yes() -> bool {
    true
}

fn default_http_timeout_ms() -> u64 {
    10_000
}

/// Accepts `key = "one"` as well as `key = ["one", "two"]`.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// The event type that carries error codes.
const FAILED: &str = "whatsapp.message.failed";

/// A number or a list of numbers.
fn one_or_many_codes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an error code (a whole number, e.g. 131047) or a list of them")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(vec![v])
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(|v| vec![v])
                .map_err(|_| E::custom("error code out of range"))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<i64>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// Reads the JSON files of `message` handlers (relative paths from the working directory).
pub(super) fn load_message_files(config: &mut Config, file: &str) -> Result<(), ConfigError> {
    for (i, route) in config.routes.iter_mut().enumerate() {
        if let HandlerConfig::Message {
            file: path, body, ..
        } = &mut route.handler
        {
            let key = format!("routes[{i}].handler.file");
            let invalid = |message: String| ConfigError::Invalid {
                file: file.to_owned(),
                key: key.clone(),
                message,
            };
            let text = std::fs::read_to_string(&*path).map_err(|e| {
                invalid(format!(
                    "cannot read message file {}: {e} (paths are relative to the working directory)",
                    path.display()
                ))
            })?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("{} is not valid JSON: {e}", path.display())))?;
            if !value.get("type").is_some_and(Value::is_string) {
                return Err(invalid(format!(
                    "{} must be a JSON object with a message `type` (text, interactive, image, ...)",
                    path.display()
                )));
            }
            *body = Some(value);
        }
    }
    Ok(())
}

/// Cross-checks `[buffer]`, `[jobs]` and `[[routes]]`.
pub(super) fn validate_pipeline(config: &Config, file: &str) -> Result<(), ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: file.to_owned(),
        key,
        message,
    };
    check_buffer(&config.buffer, "buffer").map_err(|(k, m)| invalid(k, m))?;
    let jobs = &config.jobs;
    if !(1..=256).contains(&jobs.workers) {
        return Err(invalid(
            "jobs.workers".into(),
            "use 1 to 256 (default 4)".into(),
        ));
    }
    if !(1..=100).contains(&jobs.max_attempts) {
        return Err(invalid(
            "jobs.max_attempts".into(),
            "use 1 to 100 (default 8)".into(),
        ));
    }
    if jobs.backoff_base_ms == 0 || jobs.backoff_max_ms < jobs.backoff_base_ms {
        return Err(invalid(
            "jobs.backoff_max_ms".into(),
            "backoff_base_ms must be > 0 and backoff_max_ms >= backoff_base_ms".into(),
        ));
    }
    if jobs.lease_ms < 1_000 || jobs.poll_interval_ms == 0 {
        return Err(invalid(
            "jobs.lease_ms".into(),
            "lease_ms must be at least 1000 and poll_interval_ms above 0".into(),
        ));
    }

    if jobs.template_loop_guard_ms > 30 * 86_400_000 {
        return Err(invalid(
            "jobs.template_loop_guard_ms".into(),
            "use 0 (off) to 2592000000 (30 days; default 86400000, a day)".into(),
        ));
    }

    let webhooks: HashSet<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
    let mut names = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        if route.name.trim().is_empty() || !names.insert(route.name.as_str()) {
            return Err(invalid(
                key("name"),
                format!("`{}`: route names must be non-empty and unique", route.name),
            ));
        }
        if route.on.is_empty() {
            return Err(invalid(
                key("on"),
                "list the event types this route handles, e.g. on = [\"whatsapp.message.received\"] or [\"*\"]".into(),
            ));
        }
        if let Some(bad) = route.on.iter().find(|p| !valid_event_pattern(p)) {
            return Err(invalid(
                key("on"),
                format!("`{bad}` is not an event type or pattern: use `whatsapp.message.received`, `whatsapp.message.*` or `*`"),
            ));
        }
        if let Some(unknown) = route
            .on
            .iter()
            .find(|p| !event::pattern_matches_known_type(p))
        {
            return Err(invalid(key("on"), unknown_event_pattern(unknown)));
        }
        if let Some(unknown) = route
            .when
            .webhook
            .iter()
            .find(|w| !webhooks.contains(w.as_str()))
        {
            return Err(invalid(
                key("when.webhook"),
                format!("no [[webhooks]] entry is named `{unknown}`"),
            ));
        }
        if let Some(pattern) = &route.when.text {
            if let Err(err) = regex::Regex::new(pattern) {
                return Err(invalid(
                    key("when.text"),
                    format!("invalid regular expression: {err}"),
                ));
            }
        }
        if let Some(direction) = &route.when.direction {
            const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];
            if !DIRECTIONS.contains(&direction.as_str()) {
                let hint = match event::did_you_mean(direction, DIRECTIONS) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                return Err(invalid(
                    key("when.direction"),
                    format!("`{direction}` is not a direction: {hint}use `inbound` or `outbound`"),
                ));
            }
        }
        if !route.when.error_code.is_empty()
            && !route
                .on
                .iter()
                .any(|p| crate::router::EventPattern::parse(p).matches(FAILED))
        {
            return Err(invalid(
                key("when.error_code"),
                format!("error codes are only carried by `{FAILED}` events: add it to `on`"),
            ));
        }
        if route.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return Err(invalid(key("max_attempts"), "use 1 to 100".into()));
        }
        check_buffer(&route.buffer.apply(config.buffer), &key("buffer"))
            .map_err(|(k, m)| invalid(k, m))?;
        check_handler(&route.handler, jobs)
            .map_err(|(k, m)| invalid(key(&format!("handler{k}")), m))?;
        if route.handler.calls_kapso() && config.kapso.api_key.is_none() {
            return Err(invalid(
                "kapso.api_key".into(),
                format!(
                    "route `{}` uses a `{}` handler, which calls Kapso: set api_key = \"${{KAPSO_API_KEY}}\" in [kapso]",
                    route.name,
                    route.handler.kind()
                ),
            ));
        }
    }
    Ok(())
}

/// Why an `on` entry that is well formed still can never match, with the nearest known type or
/// family when it looks like a typo.
fn unknown_event_pattern(pattern: &str) -> String {
    let families = event::known_event_families();
    let suggestion = if pattern.ends_with(".*") {
        event::did_you_mean(pattern, families.iter().map(String::as_str))
    } else {
        event::did_you_mean(pattern, event::known_event_types())
    };
    let what = if pattern.ends_with(".*") {
        "matches no Kapso event type"
    } else {
        "is not a Kapso event type"
    };
    let fix = match suggestion {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!(
            "use one of {}, or a family such as {}",
            event::known_event_types()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            families
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "`{pattern}` {what}, so this route would never run; {fix} (a type Kapso added after this release is matched by its family pattern, e.g. `whatsapp.*`, or by `*`)"
    )
}

fn valid_event_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let base = pattern.strip_suffix(".*").unwrap_or(pattern);
    !base.is_empty()
        && base.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn check_buffer(buffer: &BufferConfig, prefix: &str) -> Result<(), (String, String)> {
    if buffer.window_ms > buffer.max_wait_ms {
        return Err((
            format!("{prefix}.window_ms"),
            format!(
                "{} is longer than max_wait_ms ({}); the window must fit inside the maximum wait",
                buffer.window_ms, buffer.max_wait_ms
            ),
        ));
    }
    if !(1..=1000).contains(&buffer.max_messages) {
        return Err((
            format!("{prefix}.max_messages"),
            "use 1 to 1000 (default 20)".into(),
        ));
    }
    Ok(())
}

/// `text` parses as a template with placeholders; else (`.{key}`, why).
fn check_placeholders(key: &str, text: &str) -> Result<(), (String, String)> {
    Template::parse(text)
        .map(|_| ())
        .map_err(|e| (format!(".{key}"), e.to_string()))
}

/// A template's name, language, body parameters, header and buttons. Returns (key suffix, message).
fn check_template(spec: &TemplateSpec) -> Result<(), (String, String)> {
    if spec.name.trim().is_empty() || spec.language.trim().is_empty() {
        return Err((
            ".name".into(),
            "a template needs its approved `name` and `language` (e.g. \"en_US\")".into(),
        ));
    }
    for (key, p) in spec.params.entries() {
        check_placeholders(&format!("params{key}"), p)?;
    }
    if let Some(header) = &spec.header {
        header.kind().map_err(|m| (".header".to_owned(), m))?;
        for (key, p) in header.strings() {
            check_placeholders(&format!("header.{key}"), p)?;
        }
    }
    let mut seen = HashSet::new();
    for (j, button) in spec.buttons.iter().enumerate() {
        let (_, _, value) = button
            .parameter()
            .map_err(|m| (format!(".buttons[{j}]"), m))?;
        if !seen.insert(button.index) {
            return Err((
                format!(".buttons[{j}].index"),
                format!("button {} is given twice", button.index),
            ));
        }
        check_placeholders(&format!("buttons[{j}]"), value)?;
    }
    Ok(())
}

/// Returns (key suffix under `handler`, message).
fn check_handler(handler: &HandlerConfig, jobs: &JobsConfig) -> Result<(), (String, String)> {
    let template = check_placeholders;
    if let Some(spec) = handler.outside_window() {
        check_template(spec)
            .map_err(|(key, message)| (format!(".outside_window{key}"), message))?;
    }
    match handler {
        HandlerConfig::Reply { text, .. } => {
            if text.trim().is_empty() {
                return Err((".text".into(), "the reply text is empty".into()));
            }
            template("text", text)
        }
        HandlerConfig::Template(spec) => check_template(spec),
        HandlerConfig::Message { body, .. } => {
            let mut result = Ok(());
            if let Some(body) = body {
                visit_strings(body, &mut |s| {
                    if result.is_ok() {
                        result = template("file", s);
                    }
                });
            }
            result
        }
        HandlerConfig::MarkRead { .. } | HandlerConfig::Log {} => Ok(()),
        HandlerConfig::Http {
            url, timeout_ms, ..
        } => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| (".url".to_owned(), format!("`{url}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err((".url".into(), "use an http:// or https:// URL".into()));
            }
            if *timeout_ms == 0 || *timeout_ms >= jobs.lease_ms {
                return Err((
                    ".timeout_ms".into(),
                    format!(
                        "must be above 0 and below jobs.lease_ms ({})",
                        jobs.lease_ms
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// Calls `f` on every string inside a JSON value.
pub fn visit_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(map) => map.values().for_each(|v| visit_strings(v, f)),
        _ => {}
    }
}
