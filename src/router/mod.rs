//! Pure routing: which `[[routes]]` an event matches, in config order, honouring
//! `continue = false`. No I/O; the dispatcher feeds it and acts on the answer.

use regex::Regex;
use serde_json::Value;

use crate::config::{BufferConfig, Config, HandlerConfig, RouteConfig};
use crate::event::{message_text, str_at};

/// The fields of a stored event that routes look at.
#[derive(Debug, Clone, Default)]
pub struct RoutableEvent {
    pub event_type: String,
    pub webhook: String,
    pub phone_number_id: Option<String>,
    pub message_type: Option<String>,
    pub direction: Option<String>,
    pub text: Option<String>,
    pub new_conversation: Option<bool>,
    /// The id of the button or list row a reply chose.
    pub reply_id: Option<String>,
    /// Error codes of a failed message's statuses (and of the message itself).
    pub error_codes: Vec<i64>,
    /// Read back from Kapso's history by catch-up (flag `backfilled`), not delivered by a
    /// webhook.
    pub backfilled: bool,
}

impl RoutableEvent {
    /// Reads what routing needs from a stored event's columns and payload.
    pub fn from_stored(
        event_type: &str,
        webhook: &str,
        phone_number_id: Option<&str>,
        payload: &Value,
    ) -> RoutableEvent {
        let message = payload.get("message");
        let direction = str_at(payload, &["message", "kapso", "direction"]).or_else(|| {
            // Status events are always about messages we sent.
            let status = event_type.strip_prefix("whatsapp.message.")?;
            (status != "received").then(|| "outbound".to_owned())
        });
        RoutableEvent {
            event_type: event_type.to_owned(),
            webhook: webhook.to_owned(),
            phone_number_id: phone_number_id.map(str::to_owned),
            message_type: str_at(payload, &["message", "type"]),
            direction,
            text: message.and_then(message_text),
            new_conversation: payload.get("is_new_conversation").and_then(Value::as_bool),
            reply_id: message.and_then(reply_id),
            error_codes: message.map(error_codes).unwrap_or_default(),
            backfilled: false,
        }
    }
}

/// The id of the button or list row an interactive reply chose, or a template quick-reply
/// button's payload.
fn reply_id(message: &Value) -> Option<String> {
    str_at(message, &["interactive", "button_reply", "id"])
        .or_else(|| str_at(message, &["interactive", "list_reply", "id"]))
        .or_else(|| str_at(message, &["button", "payload"]))
}

/// Every error code of a message: on its statuses (Kapso's `kapso.statuses[].errors[]`, as in
/// `whatsapp.message.failed`) and on the message itself (`errors[]`, Meta's form).
fn error_codes(message: &Value) -> Vec<i64> {
    let statuses = message
        .pointer("/kapso/statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let lists = statuses
        .filter_map(|status| status.get("errors"))
        .chain(message.get("errors"));
    let mut codes: Vec<i64> = lists
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|error| match error.get("code")? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect();
    codes.dedup();
    codes
}

/// An event-type pattern as a route's `on` (and `switchboard events list --type`) takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    /// `*`: every type.
    Any,
    Exact(String),
    /// `whatsapp.message.*` matches `whatsapp.message.` followed by anything.
    Prefix(String),
}

impl EventPattern {
    /// `*` is any type, a trailing `*` a prefix, anything else one exact type.
    pub fn parse(pattern: &str) -> EventPattern {
        if pattern == "*" {
            EventPattern::Any
        } else if let Some(base) = pattern.strip_suffix('*') {
            EventPattern::Prefix(base.to_owned())
        } else {
            EventPattern::Exact(pattern.to_owned())
        }
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::Any => true,
            EventPattern::Exact(e) => e == event_type,
            EventPattern::Prefix(p) => event_type.starts_with(p.as_str()),
        }
    }
}

/// A route ready to match.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub handler: HandlerConfig,
    pub continue_matching: bool,
    pub buffer: BufferConfig,
    pub max_attempts: u32,
    /// The handler reads the conversation's 24-hour window (it has an `outside_window`
    /// template, or a text may name `window.*`).
    pub needs_window: bool,
    /// `jobs.template_loop_guard_ms`.
    pub template_loop_guard_ms: u64,
    on: Vec<EventPattern>,
    webhooks: Vec<String>,
    phone_number_ids: Vec<String>,
    message_types: Vec<String>,
    text: Option<Regex>,
    new_conversation: Option<bool>,
    direction: Option<String>,
    reply_ids: Vec<String>,
    error_codes: Vec<i64>,
    backfilled: Option<bool>,
}

impl Route {
    fn compile(config: &RouteConfig, defaults: &Config) -> Result<Route, regex::Error> {
        Ok(Route {
            name: config.name.clone(),
            handler: config.handler.clone(),
            continue_matching: config.continue_matching,
            buffer: config.buffer.apply(defaults.buffer),
            max_attempts: config.max_attempts.unwrap_or(defaults.jobs.max_attempts),
            // Conservative: any mention of `window.` in the handler's texts reads the window.
            needs_window: config.handler.outside_window().is_some()
                || format!("{:?}", config.handler).contains("window."),
            template_loop_guard_ms: defaults.jobs.template_loop_guard_ms,
            on: config.on.iter().map(|p| EventPattern::parse(p)).collect(),
            webhooks: config.when.webhook.clone(),
            phone_number_ids: config.when.phone_number_id.clone(),
            message_types: config.when.message_type.clone(),
            text: config.when.text.as_deref().map(Regex::new).transpose()?,
            new_conversation: config.when.new_conversation,
            direction: config.when.direction.clone(),
            reply_ids: config.when.reply_id.clone(),
            error_codes: config.when.error_code.clone(),
            backfilled: config.when.backfilled,
        })
    }

    pub fn matches(&self, event: &RoutableEvent) -> bool {
        let listed = |allowed: &[String], value: &Option<String>| {
            allowed.is_empty() || value.as_ref().is_some_and(|v| allowed.contains(v))
        };
        self.on.iter().any(|p| p.matches(&event.event_type))
            && (self.webhooks.is_empty() || self.webhooks.contains(&event.webhook))
            && listed(&self.phone_number_ids, &event.phone_number_id)
            && listed(&self.message_types, &event.message_type)
            && self
                .text
                .as_ref()
                .is_none_or(|re| event.text.as_deref().is_some_and(|t| re.is_match(t)))
            && self
                .new_conversation
                .is_none_or(|want| event.new_conversation == Some(want))
            && self
                .direction
                .as_ref()
                .is_none_or(|want| event.direction.as_ref() == Some(want))
            && listed(&self.reply_ids, &event.reply_id)
            && (self.error_codes.is_empty()
                || event
                    .error_codes
                    .iter()
                    .any(|c| self.error_codes.contains(c)))
            && self.backfilled.is_none_or(|want| event.backfilled == want)
    }

    /// Its event types (`on`), as configured.
    pub fn on(&self) -> Vec<String> {
        self.on
            .iter()
            .map(|pattern| match pattern {
                EventPattern::Any => "*".to_owned(),
                EventPattern::Exact(e) => e.clone(),
                EventPattern::Prefix(p) => format!("{p}*"),
            })
            .collect()
    }

    /// Only inbound messages are debounced; everything else is handled at once.
    pub fn buffers(&self, event_type: &str) -> bool {
        self.buffer.enabled && event_type == "whatsapp.message.received"
    }
}

/// The ordered routes of a config.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Compiles the routes of an already validated config.
    pub fn new(config: &Config) -> Result<Router, regex::Error> {
        let routes = config
            .routes
            .iter()
            .map(|r| Route::compile(r, config))
            .collect::<Result<_, _>>()?;
        Ok(Router { routes })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route, in config order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Whether any route listens to this event type (its other conditions aside).
    pub fn may_match(&self, event_type: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.on.iter().any(|p| p.matches(event_type)))
    }

    /// Every route the event matches, in order, stopping after a match with `continue = false`.
    pub fn matching(&self, event: &RoutableEvent) -> Vec<&Route> {
        let mut matched = Vec::new();
        for route in &self.routes {
            if route.matches(event) {
                matched.push(route);
                if !route.continue_matching {
                    break;
                }
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn router(routes: &str) -> Router {
        let text = format!(
            "[kapso]\napi_key = \"k\"\n[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n[[webhooks]]\nname = \"sales\"\nsecrets = [\"t\"]\n{routes}"
        );
        let config = Config::parse("test.toml", &text, |_| None).unwrap();
        Router::new(&config).unwrap()
    }

    fn received(text: &str, new_conversation: bool) -> RoutableEvent {
        let payload = json!({
            "message": {"id": "w", "type": "text", "text": {"body": text}, "kapso": {"direction": "inbound"}},
            "is_new_conversation": new_conversation,
        });
        RoutableEvent::from_stored(
            "whatsapp.message.received",
            "support",
            Some("111"),
            &payload,
        )
    }

    fn names(routes: Vec<&Route>) -> Vec<&str> {
        routes.into_iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn routes_match_the_chosen_reply_id_not_only_its_title() {
        let r = router(
            r#"
[[routes]]
name = "yes"
on = "whatsapp.message.received"
when = { reply_id = ["confirm_yes", "list_yes"] }
handler = { kind = "log" }
"#,
        );
        let reply = |message: Value| {
            RoutableEvent::from_stored(
                "whatsapp.message.received",
                "support",
                None,
                &json!({ "message": message }),
            )
        };
        let button = reply(
            json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "confirm_yes", "title": "Yes!"}}}),
        );
        let row = reply(
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "list_yes", "title": "Sure"}}}),
        );
        let template_button =
            reply(json!({"type": "button", "button": {"payload": "confirm_yes", "text": "Yes"}}));
        let other = reply(
            json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "confirm_no", "title": "Yes!"}}}),
        );
        let text = reply(json!({"type": "text", "text": {"body": "confirm_yes"}}));
        assert_eq!(names(r.matching(&button)), vec!["yes"]);
        assert_eq!(names(r.matching(&row)), vec!["yes"]);
        assert_eq!(names(r.matching(&template_button)), vec!["yes"]);
        assert!(r.matching(&other).is_empty());
        assert!(
            r.matching(&text).is_empty(),
            "a typed text is not a reply id"
        );
    }

    #[test]
    fn routes_match_failure_error_codes() {
        let r = router(
            r#"
[[routes]]
name = "window"
on = "whatsapp.message.failed"
when = { error_code = 131047 }
handler = { kind = "log" }

[[routes]]
name = "undeliverable"
on = "whatsapp.message.failed"
when = { error_code = [131026, 131049] }
handler = { kind = "log" }
"#,
        );
        let failed = |code: Value| {
            RoutableEvent::from_stored(
                "whatsapp.message.failed",
                "support",
                None,
                &json!({"message": {"id": "w", "kapso": {"direction": "outbound", "statuses": [
                    {"status": "failed", "errors": [{"code": code, "title": "t"}]}]}}}),
            )
        };
        assert_eq!(names(r.matching(&failed(json!(131047)))), vec!["window"]);
        assert_eq!(
            names(r.matching(&failed(json!("131026")))),
            vec!["undeliverable"]
        );
        assert!(r.matching(&failed(json!(131000))).is_empty());
        let meta_form = RoutableEvent::from_stored(
            "whatsapp.message.failed",
            "support",
            None,
            &json!({"message": {"id": "w", "errors": [{"code": 131049}]}}),
        );
        assert_eq!(names(r.matching(&meta_form)), vec!["undeliverable"]);
    }

    #[test]
    fn error_code_conditions_need_a_failure_event() {
        let text = "[kapso]\napi_key = \"k\"\n[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n[[routes]]\nname = \"r\"\non = \"whatsapp.message.received\"\nwhen = { error_code = 131047 }\nhandler = { kind = \"log\" }\n";
        let err = Config::parse("test.toml", text, |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("when.error_code"), "{err}");
        assert!(err.contains("whatsapp.message.failed"), "{err}");
    }

    const GREET_AND_LOG: &str = r#"
[[routes]]
name = "greet"
on = ["whatsapp.message.received"]
when = { text = "(?i)^(hi|hello)\\b", new_conversation = true }
handler = { kind = "reply", text = "Hi!" }

[[routes]]
name = "audit"
on = ["whatsapp.message.*"]
handler = { kind = "log" }
"#;

    #[test]
    fn every_matching_route_fans_out_in_order() {
        let r = router(GREET_AND_LOG);
        assert_eq!(
            names(r.matching(&received("Hello there", true))),
            ["greet", "audit"]
        );
    }

    #[test]
    fn conditions_must_all_hold() {
        let r = router(GREET_AND_LOG);
        assert_eq!(
            names(r.matching(&received("Hello there", false))),
            ["audit"]
        );
        assert_eq!(
            names(r.matching(&received("where is my order", true))),
            ["audit"]
        );
    }

    #[test]
    fn continue_false_stops_matching() {
        let r = router(&GREET_AND_LOG.replace(
            "kind = \"reply\", text = \"Hi!\" }",
            "kind = \"reply\", text = \"Hi!\" }\ncontinue = false",
        ));
        assert_eq!(names(r.matching(&received("hi", true))), ["greet"]);
    }

    #[test]
    fn prefix_patterns_and_webhook_filters() {
        let r = router(
            r#"
[[routes]]
name = "sales-status"
on = "whatsapp.message.*"
when = { webhook = "sales", direction = "outbound" }
handler = { kind = "log" }
"#,
        );
        let payload = json!({"message": {"id": "w"}});
        let status =
            RoutableEvent::from_stored("whatsapp.message.delivered", "sales", None, &payload);
        assert_eq!(names(r.matching(&status)), ["sales-status"]);
        let other =
            RoutableEvent::from_stored("whatsapp.message.delivered", "support", None, &payload);
        assert!(r.matching(&other).is_empty());
        let conversation =
            RoutableEvent::from_stored("whatsapp.conversation.created", "sales", None, &payload);
        assert!(r.matching(&conversation).is_empty());
    }

    #[test]
    fn message_type_and_phone_number_filters() {
        let r = router(
            r#"
[[routes]]
name = "images"
on = "*"
when = { message_type = ["image", "video"], phone_number_id = "111" }
handler = { kind = "log" }
"#,
        );
        let image = json!({"message": {"id": "w", "type": "image", "image": {"caption": "box"}}});
        let event =
            RoutableEvent::from_stored("whatsapp.message.received", "support", Some("111"), &image);
        assert_eq!(event.text.as_deref(), Some("box"));
        assert_eq!(names(r.matching(&event)), ["images"]);
        let elsewhere =
            RoutableEvent::from_stored("whatsapp.message.received", "support", Some("222"), &image);
        assert!(r.matching(&elsewhere).is_empty());
        assert!(r.matching(&received("text", false)).is_empty());
    }

    #[test]
    fn text_condition_never_matches_events_without_text() {
        let r = router(GREET_AND_LOG);
        let payload = json!({"conversation": {"id": "c"}, "is_new_conversation": true});
        let event =
            RoutableEvent::from_stored("whatsapp.message.received", "support", None, &payload);
        assert_eq!(names(r.matching(&event)), ["audit"]);
    }

    #[test]
    fn may_match_looks_at_event_types_only() {
        let r = router(GREET_AND_LOG);
        assert!(r.may_match("whatsapp.message.read"));
        assert!(!r.may_match("whatsapp.conversation.created"));
        assert!(!Router::default().may_match("whatsapp.message.received"));
    }

    #[test]
    fn only_received_messages_are_buffered() {
        let r = router(GREET_AND_LOG);
        let audit = r.get("audit").unwrap();
        assert!(audit.buffers("whatsapp.message.received"));
        assert!(!audit.buffers("whatsapp.message.read"));
    }
}
