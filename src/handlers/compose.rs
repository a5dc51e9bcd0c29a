//! Builds Meta-proxy message bodies (CONTRACT.md §5) for the handlers: addressing, replies,
//! templates, message files and read receipts. Pure.

use serde_json::{json, Map, Value};

use super::Failure;
use crate::config::pipeline::TemplateParams;
use crate::config::template_message::{HeaderKind, TemplateSpec};
use crate::event::str_at;
use crate::template::{contact_phone, contact_user_id, render_json, RenderContext, Template};

/// Who a message body is addressed to (`to`, else `recipient`): the pair-rate-limit key.
pub fn recipient(body: &Value) -> Option<&str> {
    body.get("to")
        .or_else(|| body.get("recipient"))
        .and_then(Value::as_str)
}

/// Fills `messaging_product`, `recipient_type` and `to` (or `recipient`, for contacts known only
/// by a business-scoped user id) unless the body already has them.
pub fn address(mut body: Map<String, Value>, customer: &Value) -> Result<Value, Failure> {
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.entry("recipient_type").or_insert(json!("individual"));
    if !body.contains_key("to") && !body.contains_key("recipient") {
        if let Some(phone) = contact_phone(customer) {
            body.insert("to".into(), Value::String(phone));
        } else if let Some(user) = contact_user_id(customer) {
            body.insert("recipient".into(), Value::String(user));
        } else {
            return Err(Failure::Fatal(
                "the event has no customer phone number or user id to reply to".into(),
            ));
        }
    }
    Ok(Value::Object(body))
}

/// The inbound message a reply refers to: the last one of the job.
fn inbound_message_id(payload: &Value) -> Option<String> {
    let direction = str_at(payload, &["message", "kapso", "direction"]);
    if direction.as_deref() == Some("outbound") {
        return None;
    }
    str_at(payload, &["message", "id"])
}

fn template_error(e: crate::template::TemplateError) -> Failure {
    Failure::Fatal(format!("template: {e}"))
}

pub fn reply(
    text: &str,
    quote: bool,
    preview_url: bool,
    ctx: &RenderContext<'_>,
    last: &Value,
) -> Result<Value, Failure> {
    let body = Template::parse(text).map_err(template_error)?.render(ctx);
    let mut message = Map::new();
    message.insert("type".into(), json!("text"));
    message.insert(
        "text".into(),
        json!({ "body": body, "preview_url": preview_url }),
    );
    if quote {
        if let Some(id) = inbound_message_id(last) {
            message.insert("context".into(), json!({ "message_id": id }));
        }
    }
    address(message, last)
}

/// An approved template: a `template` handler's, or a send handler's `outside_window`.
pub fn template(
    spec: &TemplateSpec,
    ctx: &RenderContext<'_>,
    last: &Value,
) -> Result<Value, Failure> {
    let render = |p: &str| {
        Template::parse(p)
            .map(|t| t.render(ctx))
            .map_err(template_error)
    };
    let text_parameters = |params: &TemplateParams| -> Result<Vec<Value>, Failure> {
        match params {
            TemplateParams::Positional(list) => list
                .iter()
                .map(|p| Ok(json!({ "type": "text", "text": render(p)? })))
                .collect(),
            TemplateParams::Named(map) => map
                .iter()
                .map(|(k, p)| {
                    Ok(json!({ "type": "text", "parameter_name": k, "text": render(p)? }))
                })
                .collect(),
        }
    };
    let mut components = Vec::new();
    if let Some(header) = &spec.header {
        let parameters = match header.kind().map_err(Failure::Fatal)? {
            HeaderKind::Text(params) => text_parameters(params)?,
            HeaderKind::Media(kind, value) => {
                let value = render(value)?;
                let mut media = if value.starts_with("http://") || value.starts_with("https://") {
                    json!({ "link": value })
                } else {
                    json!({ "id": value })
                };
                if let Some(filename) = &header.filename {
                    media["filename"] = json!(render(filename)?);
                }
                vec![json!({ "type": kind, kind: media })]
            }
        };
        components.push(json!({ "type": "header", "parameters": parameters }));
    }
    let body = text_parameters(&spec.params)?;
    if !body.is_empty() {
        components.push(json!({ "type": "body", "parameters": body }));
    }
    for button in &spec.buttons {
        let (sub_type, kind, value) = button.parameter().map_err(Failure::Fatal)?;
        components.push(json!({
            "type": "button",
            "sub_type": sub_type,
            "index": button.index.to_string(),
            "parameters": [{ "type": kind, kind: render(value)? }],
        }));
    }
    let mut template = json!({ "name": spec.name, "language": { "code": spec.language } });
    if !components.is_empty() {
        template["components"] = json!(components);
    }
    let mut message = Map::new();
    message.insert("type".into(), json!("template"));
    message.insert("template".into(), template);
    address(message, last)
}

pub fn message_file(body: &Value, ctx: &RenderContext<'_>, last: &Value) -> Result<Value, Failure> {
    match render_json(body, ctx).map_err(template_error)? {
        Value::Object(map) => address(map, last),
        _ => Err(Failure::Fatal(
            "the message file is not a JSON object".into(),
        )),
    }
}

/// A message returned by the user's `http` handler: a full message body (with `type`) or the
/// shorthand `{"text": "..."}`.
pub fn returned_message(index: usize, message: &Value, last: &Value) -> Result<Value, Failure> {
    let Value::Object(map) = message else {
        return Err(Failure::Fatal(format!(
            "returned message #{index} is not a JSON object"
        )));
    };
    if map.get("type").is_some_and(Value::is_string) {
        return address(map.clone(), last);
    }
    match map.get("text") {
        Some(Value::String(text)) => {
            let mut body = Map::new();
            body.insert("type".into(), json!("text"));
            body.insert("text".into(), json!({ "body": text }));
            address(body, last)
        }
        _ => Err(Failure::Fatal(format!(
            "returned message #{index} has neither a `type` nor a `text` string"
        ))),
    }
}

/// The message a read receipt is for: the last inbound message of the job.
pub fn read_receipt_target(last: &Value) -> Result<String, Failure> {
    inbound_message_id(last).ok_or_else(|| {
        Failure::Fatal(
            "mark_read needs an inbound message (route it on whatsapp.message.received)".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> Value {
        json!({
            "message": {"id": "wamid.IN", "from": "15550100200", "type": "text", "text": {"body": "hi"},
                        "kapso": {"direction": "inbound"}},
            "conversation": {"id": "c", "kapso": {"contact_name": "Dana"}},
            "phone_number_id": "106540352242922"
        })
    }

    fn ctx(payloads: &[Value]) -> RenderContext<'_> {
        RenderContext {
            event_type: "whatsapp.message.received",
            webhook: "w",
            route: "r",
            payloads,
            window: crate::window::Window::from_payloads(payloads),
            now_ms: 1_764_093_600_000,
        }
    }

    #[test]
    fn reply_quotes_the_inbound_message_and_fills_placeholders() {
        let payloads = [inbound()];
        let body = reply(
            "Hi {{contact.name}}",
            true,
            false,
            &ctx(&payloads),
            &payloads[0],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550100200",
                   "type": "text", "text": {"body": "Hi Dana", "preview_url": false},
                   "context": {"message_id": "wamid.IN"}})
        );
    }

    /// A template as a handler's config gives it.
    fn spec(toml_text: &str) -> TemplateSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn template_with_named_parameters() {
        let payloads = [inbound()];
        let body = template(
            &spec("name = \"order_shipped\"\nlanguage = \"en_US\"\nparams = { customer = \"{{contact.name}}\" }"),
            &ctx(&payloads),
            &payloads[0],
        )
        .unwrap();
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(
            body["template"]["components"][0]["parameters"][0],
            json!({"type": "text", "parameter_name": "customer", "text": "Dana"})
        );
    }

    /// Header and body as separate components, then one `button` component per dynamic button,
    /// in the send-time shape of Kapso's template rules.
    #[test]
    fn template_with_header_body_and_buttons() {
        let payloads = [inbound()];
        let invoice = spec(
            r#"
name = "invoice_ready"
language = "en"
params = ["{{contact.name}}"]
header = { document = "https://example.com/{{message.id}}.pdf", filename = "invoice.pdf" }
buttons = [
  { index = 0, url = "{{message.id}}" },
  { index = 1, payload = "confirm_yes" },
  { index = 2, code = "SAVE10" },
]
"#,
        );
        let body = template(&invoice, &ctx(&payloads), &payloads[0]).unwrap();
        assert_eq!(
            body["template"]["components"],
            json!([
                {"type": "header", "parameters": [{"type": "document", "document": {
                    "link": "https://example.com/wamid.IN.pdf", "filename": "invoice.pdf"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Dana"}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": "wamid.IN"}]},
                {"type": "button", "sub_type": "quick_reply", "index": "1",
                 "parameters": [{"type": "payload", "payload": "confirm_yes"}]},
                {"type": "button", "sub_type": "copy_code", "index": "2",
                 "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]},
            ])
        );

        // A media id (from Kapso's media upload) and named header text.
        let image = template(
            &spec("name = \"promo\"\nlanguage = \"en\"\nheader = { image = \"4490709327384033\" }"),
            &ctx(&payloads),
            &payloads[0],
        )
        .unwrap();
        assert_eq!(
            image["template"]["components"],
            json!([{"type": "header", "parameters": [{"type": "image", "image": {"id": "4490709327384033"}}]}])
        );
        let named = template(
            &spec("name = \"promo\"\nlanguage = \"en\"\nheader = { text = { sale = \"{{contact.name}}\" } }"),
            &ctx(&payloads),
            &payloads[0],
        )
        .unwrap();
        assert_eq!(
            named["template"]["components"][0]["parameters"][0],
            json!({"type": "text", "parameter_name": "sale", "text": "Dana"})
        );
    }

    #[test]
    fn bsuid_only_contacts_are_addressed_by_recipient() {
        let customer = json!({"message": {"id": "w", "from_user_id": "US.123"}});
        let body = address(Map::new(), &customer).unwrap();
        assert_eq!(body["recipient"], "US.123");
        assert!(body.get("to").is_none());
        assert!(matches!(
            address(Map::new(), &json!({})),
            Err(Failure::Fatal(_))
        ));
    }

    #[test]
    fn returned_messages_accept_text_shorthand_and_full_bodies() {
        let last = inbound();
        let text = returned_message(0, &json!({"text": "ok"}), &last).unwrap();
        assert_eq!(text["text"]["body"], "ok");
        let image = returned_message(
            1,
            &json!({"type": "image", "image": {"link": "https://x/y.png"}}),
            &last,
        )
        .unwrap();
        assert_eq!(image["to"], "15550100200");
        assert!(returned_message(2, &json!({"nope": 1}), &last).is_err());
    }

    #[test]
    fn read_receipts_need_an_inbound_message() {
        assert_eq!(read_receipt_target(&inbound()).unwrap(), "wamid.IN");
        let outbound = json!({"message": {"id": "wamid.OUT", "kapso": {"direction": "outbound"}}});
        assert!(read_receipt_target(&outbound).is_err());
    }
}
