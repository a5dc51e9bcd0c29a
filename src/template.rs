//! `{{placeholders}}` in reply texts, template parameters and message files, filled from the
//! event(s) a job carries. Parsed once at startup so an unknown placeholder is a config error.
//!
//! Placeholders: `contact.name`, `contact.phone`, `message.text`, `message.id`, `message.type`,
//! `messages.text` (all texts of a buffered batch, one per line), `messages.count`,
//! `conversation.id`, `phone_number_id`, `webhook`, `route`, `event.type`, and
//! `event.PATH` (any field of the last event's payload, e.g. `event.message.from`),
//! `window.open` (`true`/`false`: may free-form messages be sent; empty when unknown) and
//! `window.closes_at` (RFC 3339).
//! `{{name|fallback}}` uses `fallback` when the value is empty.

use serde_json::Value;

use crate::event::{digits, message_text, str_at};
use crate::window::{format_rfc3339, Window};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` without a closing `}}}}`")]
    Unclosed,
    #[error("unknown placeholder `{{{{{0}}}}}`; known: contact.name, contact.phone, message.text, message.id, message.type, messages.text, messages.count, conversation.id, phone_number_id, webhook, route, event.type, event.PATH, window.open, window.closes_at")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    ContactName,
    ContactPhone,
    MessageText,
    MessageId,
    MessageType,
    MessagesText,
    MessagesCount,
    ConversationId,
    PhoneNumberId,
    Webhook,
    Route,
    EventType,
    WindowOpen,
    WindowClosesAt,
    Path(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field { field: Field, fallback: String },
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template is filled from: the job's events (oldest first) and where they came from.
pub struct RenderContext<'a> {
    pub event_type: &'a str,
    pub webhook: &'a str,
    pub route: &'a str,
    pub payloads: &'a [Value],
    /// The conversation's 24-hour window, and the time it is judged at (Unix ms).
    pub window: Window,
    pub now_ms: i64,
}

impl Template {
    pub fn parse(input: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = input;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let inner = after[..end].trim();
            let (name, fallback) = match inner.split_once('|') {
                Some((name, fallback)) => (name.trim(), fallback.to_owned()),
                None => (inner, String::new()),
            };
            parts.push(Part::Field {
                field: parse_field(name)?,
                fallback,
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, ctx: &RenderContext<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field { field, fallback } => {
                    let value = resolve(field, ctx).unwrap_or_default();
                    out.push_str(if value.is_empty() { fallback } else { &value });
                }
            }
        }
        out
    }
}

/// Renders every string inside a JSON value (a message file) as a template.
pub fn render_json(value: &Value, ctx: &RenderContext<'_>) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => Value::String(Template::parse(s)?.render(ctx)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, ctx)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

fn parse_field(name: &str) -> Result<Field, TemplateError> {
    Ok(match name {
        "contact.name" => Field::ContactName,
        "contact.phone" => Field::ContactPhone,
        "message.text" => Field::MessageText,
        "message.id" => Field::MessageId,
        "message.type" => Field::MessageType,
        "messages.text" => Field::MessagesText,
        "messages.count" => Field::MessagesCount,
        "conversation.id" => Field::ConversationId,
        "phone_number_id" => Field::PhoneNumberId,
        "webhook" => Field::Webhook,
        "route" => Field::Route,
        "event.type" => Field::EventType,
        "window.open" => Field::WindowOpen,
        "window.closes_at" => Field::WindowClosesAt,
        other => match other.strip_prefix("event.") {
            Some(path) if !path.is_empty() && path.split('.').all(|p| !p.is_empty()) => {
                Field::Path(path.split('.').map(str::to_owned).collect())
            }
            _ => return Err(TemplateError::Unknown(other.to_owned())),
        },
    })
}

fn resolve(field: &Field, ctx: &RenderContext<'_>) -> Option<String> {
    let last = ctx.payloads.last()?;
    match field {
        // Items of Kapso-side batches may lack the name: any event of the job that has it.
        Field::ContactName => ctx.payloads.iter().rev().find_map(|payload| {
            str_at(payload, &["conversation", "kapso", "contact_name"])
                .or_else(|| str_at(payload, &["message", "kapso", "contact_name"]))
        }),
        Field::ContactPhone => contact_phone(last),
        Field::MessageText => last.get("message").and_then(message_text),
        Field::MessageId => str_at(last, &["message", "id"]),
        Field::MessageType => str_at(last, &["message", "type"]),
        Field::MessagesText => {
            let texts: Vec<String> = ctx
                .payloads
                .iter()
                .filter_map(|p| p.get("message").and_then(message_text))
                .collect();
            Some(texts.join("\n"))
        }
        Field::MessagesCount => Some(ctx.payloads.len().to_string()),
        Field::ConversationId => str_at(last, &["conversation", "id"]),
        Field::PhoneNumberId => str_at(last, &["phone_number_id"])
            .or_else(|| str_at(last, &["conversation", "phone_number_id"])),
        Field::Webhook => Some(ctx.webhook.to_owned()),
        Field::Route => Some(ctx.route.to_owned()),
        Field::EventType => Some(ctx.event_type.to_owned()),
        Field::WindowOpen => ctx.window.is_open(ctx.now_ms).map(|open| open.to_string()),
        Field::WindowClosesAt => ctx.window.closes_at_ms().and_then(format_rfc3339),
        Field::Path(path) => {
            let mut current = last;
            for key in path {
                current = match current {
                    Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                    other => other.get(key)?,
                };
            }
            match current {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        }
    }
}

/// The customer's number, digits only. For a message the customer sent, `message.from`; for one
/// the business sent (`whatsapp.message.sent`, `delivered`, `read`, `failed`), `message.to`, else
/// the recipient of its statuses: `from` is then the business's own number, which a reply must
/// never go to. Either way, else the conversation's phone number.
pub fn contact_phone(payload: &Value) -> Option<String> {
    let own = if is_outbound(payload) {
        str_at(payload, &["message", "to"]).or_else(|| status_recipient(payload))
    } else {
        str_at(payload, &["message", "from"])
    };
    let raw = own.or_else(|| str_at(payload, &["conversation", "phone_number"]))?;
    let digits = digits(&raw);
    (!digits.is_empty()).then_some(digits)
}

/// The customer's business-scoped user id (for contacts known without a phone number):
/// `message.from_user_id` on what the customer sent, else the conversation's.
pub fn contact_user_id(payload: &Value) -> Option<String> {
    let own = if is_outbound(payload) {
        None
    } else {
        str_at(payload, &["message", "from_user_id"])
    };
    own.or_else(|| str_at(payload, &["conversation", "business_scoped_user_id"]))
}

/// True for a message the business sent: Kapso marks it `kapso.direction = "outbound"`; without
/// that mark, a `to` or delivery statuses (only outbound messages have them) tell.
fn is_outbound(payload: &Value) -> bool {
    let Some(message) = payload.get("message") else {
        return false;
    };
    match str_at(message, &["kapso", "direction"]).as_deref() {
        Some("outbound") => true,
        Some(_) => false,
        None => {
            message.get("to").is_some()
                || message
                    .pointer("/kapso/statuses")
                    .and_then(Value::as_array)
                    .is_some_and(|statuses| !statuses.is_empty())
        }
    }
}

/// The `recipient_id` of an outbound message's latest status that has one.
fn status_recipient(payload: &Value) -> Option<String> {
    payload
        .pointer("/message/kapso/statuses")?
        .as_array()?
        .iter()
        .rev()
        .find_map(|status| str_at(status, &["recipient_id"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(payloads: &[Value]) -> RenderContext<'_> {
        RenderContext {
            event_type: "whatsapp.message.received",
            webhook: "support",
            route: "greet",
            payloads,
            window: crate::window::Window::from_payloads(payloads),
            now_ms: 1_764_093_600_000,
        }
    }

    fn sample(text: &str) -> Value {
        json!({
            "message": {"id": "wamid.1", "type": "text", "from": "15550100200", "text": {"body": text}},
            "conversation": {"id": "conv-1", "phone_number": "+15550100200", "kapso": {"contact_name": "Dana Ruiz"}},
            "phone_number_id": "106540352242922"
        })
    }

    #[test]
    fn fills_contact_and_message_fields() {
        let t = Template::parse(
            "Hi {{contact.name}}, you said: {{ message.text }} ({{messages.count}})",
        )
        .unwrap();
        let payloads = [sample("where is my order")];
        assert_eq!(
            t.render(&ctx(&payloads)),
            "Hi Dana Ruiz, you said: where is my order (1)"
        );
    }

    #[test]
    fn batch_fields_join_all_messages() {
        let t = Template::parse("{{messages.text}}").unwrap();
        let payloads = [sample("a"), sample("b"), sample("c")];
        assert_eq!(t.render(&ctx(&payloads)), "a\nb\nc");
    }

    #[test]
    fn window_placeholders_tell_whether_free_form_messages_may_go() {
        let t = Template::parse("{{window.open|unknown}} until {{window.closes_at|?}}").unwrap();
        let recent = [
            json!({"message": {"id": "w", "timestamp": "1764090000", "kapso": {"direction": "inbound"}}}),
        ];
        assert_eq!(t.render(&ctx(&recent)), "true until 2025-11-26T17:00:00Z");
        let old = [
            json!({"message": {"id": "w", "timestamp": "1763000000", "kapso": {"direction": "inbound"}}}),
        ];
        assert_eq!(t.render(&ctx(&old)), "false until 2025-11-14T02:13:20Z");
        let unknown = [json!({"message": {"id": "w", "kapso": {"direction": "outbound"}}})];
        assert_eq!(t.render(&ctx(&unknown)), "unknown until ?");
    }

    #[test]
    fn the_contact_name_comes_from_any_event_of_a_batch() {
        let t = Template::parse("{{contact.name|there}}").unwrap();
        let named = sample("first");
        let mut bare = sample("second");
        bare["conversation"]
            .as_object_mut()
            .unwrap()
            .remove("kapso");
        assert_eq!(t.render(&ctx(&[named, bare.clone()])), "Dana Ruiz");
        assert_eq!(t.render(&ctx(&[bare])), "there");
    }

    #[test]
    fn fallback_applies_to_empty_values() {
        let t = Template::parse("Hi {{contact.name|there}}").unwrap();
        let payloads = [json!({"message": {"id": "x"}})];
        assert_eq!(t.render(&ctx(&payloads)), "Hi there");
    }

    #[test]
    fn event_paths_reach_any_field() {
        let t = Template::parse("{{event.message.from}} {{event.phone_number_id}}").unwrap();
        let payloads = [sample("x")];
        assert_eq!(t.render(&ctx(&payloads)), "15550100200 106540352242922");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_errors() {
        assert_eq!(
            Template::parse("{{contact.nmae}}"),
            Err(TemplateError::Unknown("contact.nmae".into()))
        );
        assert_eq!(
            Template::parse("Hi {{contact.name"),
            Err(TemplateError::Unclosed)
        );
    }

    #[test]
    fn replies_to_outbound_status_events_go_to_the_customer_never_the_business() {
        // Kapso may put the business's own number in `from` of a message the business sent.
        let sent = json!({
            "message": {"id": "wamid.OUT", "from": "15550009999", "to": "15550100200",
                        "kapso": {"direction": "outbound", "statuses": []}},
            "conversation": {"phone_number": "+15550100200"}
        });
        assert_eq!(contact_phone(&sent).as_deref(), Some("15550100200"));
        // No `to`: the statuses' recipient, then the conversation's number.
        let failed = json!({
            "message": {"id": "wamid.OUT", "from": "15550009999",
                        "kapso": {"direction": "outbound", "statuses": [
                            {"status": "sent", "recipient_id": "15550100201"},
                            {"status": "failed"}]}},
            "conversation": {"phone_number": "+15550100200"}
        });
        assert_eq!(contact_phone(&failed).as_deref(), Some("15550100201"));
        let bare = json!({
            "message": {"id": "wamid.OUT", "from": "15550009999", "kapso": {"direction": "outbound"}},
            "conversation": {"phone_number": "+1 555 010 0200"}
        });
        assert_eq!(contact_phone(&bare).as_deref(), Some("15550100200"));
        // Without a direction mark, statuses alone make it outbound.
        let unmarked = json!({
            "message": {"id": "wamid.OUT", "from": "15550009999",
                        "kapso": {"statuses": [{"status": "delivered", "recipient_id": "15550100200"}]}}
        });
        assert_eq!(contact_phone(&unmarked).as_deref(), Some("15550100200"));
        // An inbound message answers its sender.
        let inbound = json!({
            "message": {"id": "wamid.IN", "from": "15550100200", "to": "15550009999",
                        "kapso": {"direction": "inbound"}},
        });
        assert_eq!(contact_phone(&inbound).as_deref(), Some("15550100200"));
        // Business-scoped ids: never the outbound message's own.
        let outbound_user = json!({
            "message": {"id": "wamid.OUT", "from_user_id": "BIZ.1", "kapso": {"direction": "outbound"}},
            "conversation": {"business_scoped_user_id": "US.123"}
        });
        assert_eq!(contact_user_id(&outbound_user).as_deref(), Some("US.123"));
    }

    #[test]
    fn contact_phone_is_digits_only() {
        let payload = json!({"conversation": {"phone_number": "+1 555-010-0200"}});
        assert_eq!(contact_phone(&payload).as_deref(), Some("15550100200"));
    }

    #[test]
    fn json_bodies_are_rendered_recursively() {
        let body = json!({"type": "interactive", "interactive": {"body": {"text": "Hi {{contact.name}}"}, "n": 3}});
        let payloads = [sample("x")];
        let rendered = render_json(&body, &ctx(&payloads)).unwrap();
        assert_eq!(rendered["interactive"]["body"]["text"], "Hi Dana Ruiz");
        assert_eq!(rendered["interactive"]["n"], 3);
    }
}
