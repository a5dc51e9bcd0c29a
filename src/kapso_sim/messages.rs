//! Validation of Meta proxy `POST /{phone_number_id}/messages` bodies, as the simulated Kapso
//! applies it: `WhatsappMessage` / `MarkReadRequest` of `openapi/whatsapp-messages.yaml` plus
//! the limits of CONTRACT §5. Pure; a violation is the message of a 400 Graph error (code 100).

use serde_json::{Map, Value};

/// What an accepted body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRequest {
    MarkRead { message_id: String },
    Message { kind: String, recipient: String },
}

const MESSAGE_TYPES: [&str; 11] = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
];

const INTERACTIVE_TYPES: [&str; 14] = [
    "button",
    "list",
    "flow",
    "cta_url",
    "carousel",
    "location_request_message",
    "request_contact_info",
    "address_message",
    "order_details",
    "order_status",
    "product",
    "product_list",
    "call_permission_request",
    "catalog_message",
];

type Check = Result<(), String>;

fn param(message: impl std::fmt::Display) -> String {
    format!("(#100) {message}")
}

fn string<'a>(object: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(param(format!("The parameter {path} is required.")))
        }
        Some(_) => Err(param(format!("Param {path} must be a string."))),
    }
}

fn object<'a>(
    value: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, String> {
    match value.get(key) {
        Some(Value::Object(o)) => Ok(o),
        None | Some(Value::Null) => Err(param(format!("The parameter {path} is required."))),
        Some(_) => Err(param(format!("Param {path} must be an object."))),
    }
}

fn max_len(object: &Map<String, Value>, key: &str, max: usize, path: &str) -> Check {
    match object.get(key) {
        Some(Value::String(s)) if s.chars().count() > max => Err(param(format!(
            "Param {path} is too long: {} characters, at most {max} allowed.",
            s.chars().count()
        ))),
        Some(Value::String(_)) | None => Ok(()),
        Some(_) => Err(param(format!("Param {path} must be a string."))),
    }
}

/// Validates one proxy body.
pub fn validate(body: &Value) -> Result<ProxyRequest, String> {
    let Value::Object(body) = body else {
        return Err(param("The request body must be a JSON object."));
    };
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(param(
            "The parameter messaging_product is required and must be \"whatsapp\".",
        ));
    }
    if body.contains_key("status") {
        return validate_mark_read(body);
    }
    let kind = string(body, "type", "type")?;
    if !MESSAGE_TYPES.contains(&kind) {
        return Err(param(format!(
            "Param type must be one of {MESSAGE_TYPES:?}, got \"{kind}\"."
        )));
    }
    let recipient = match (body.get("to"), body.get("recipient")) {
        (Some(Value::String(to)), _) if !to.is_empty() => to.clone(),
        (_, Some(Value::String(r))) if !r.is_empty() => r.clone(),
        _ => return Err(param("The parameter to (or recipient) is required.")),
    };
    if let Some(t) = body.get("recipient_type") {
        if !matches!(t.as_str(), Some("individual" | "group")) {
            return Err(param(
                "Param recipient_type must be \"individual\" or \"group\".",
            ));
        }
    }
    max_len(
        body,
        "biz_opaque_callback_data",
        512,
        "biz_opaque_callback_data",
    )?;
    if body.contains_key("context") {
        let context = object(body, "context", "context")?;
        string(context, "message_id", "context['message_id']")?;
    }
    match kind {
        "text" => {
            let text = object(body, "text", "text")?;
            string(text, "body", "text['body']")?;
            max_len(text, "body", 4096, "text['body']")?;
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let media = object(body, kind, kind)?;
            if !media.contains_key("id") && !media.contains_key("link") {
                return Err(param(format!(
                    "The parameter {kind}['id'] or {kind}['link'] is required."
                )));
            }
            max_len(media, "caption", 1024, &format!("{kind}['caption']"))?;
        }
        "location" => {
            let location = object(body, "location", "location")?;
            for key in ["latitude", "longitude"] {
                let ok = match location.get(key) {
                    Some(Value::Number(_)) => true,
                    Some(Value::String(s)) => s.trim().parse::<f64>().is_ok(),
                    _ => false,
                };
                if !ok {
                    return Err(param(format!(
                        "The parameter location['{key}'] is required."
                    )));
                }
            }
        }
        "contacts" => {
            let contacts = body.get("contacts").and_then(Value::as_array);
            let contacts = contacts
                .filter(|c| !c.is_empty())
                .ok_or_else(|| param("The parameter contacts is required."))?;
            for (i, contact) in contacts.iter().enumerate() {
                let name = contact.get("name").and_then(Value::as_object);
                let formatted = name
                    .and_then(|n| n.get("formatted_name"))
                    .and_then(Value::as_str);
                if formatted.unwrap_or_default().is_empty() {
                    return Err(param(format!(
                        "The parameter contacts[{i}]['name']['formatted_name'] is required."
                    )));
                }
            }
        }
        "reaction" => {
            let reaction = object(body, "reaction", "reaction")?;
            string(reaction, "message_id", "reaction['message_id']")?;
            if !reaction.get("emoji").is_some_and(Value::is_string) {
                return Err(param("The parameter reaction['emoji'] is required."));
            }
        }
        "template" => {
            let template = object(body, "template", "template")?;
            string(template, "name", "template['name']")?;
            let language = object(template, "language", "template['language']")?;
            string(language, "code", "template['language']['code']")?;
            match template.get("components") {
                None => {}
                Some(Value::Array(components)) => {
                    for (i, component) in components.iter().enumerate() {
                        validate_template_component(i, component)?;
                    }
                }
                Some(_) => return Err(param("Param template['components'] must be an array.")),
            }
        }
        _ => validate_interactive(object(body, "interactive", "interactive")?)?,
    }
    Ok(ProxyRequest::Message {
        kind: kind.to_owned(),
        recipient,
    })
}

/// One send-time template component: `header`, `body` or `button` (with `sub_type` and
/// `index`), each with typed `parameters` (Meta's rules, as Kapso's template reference gives them).
fn validate_template_component(i: usize, component: &Value) -> Result<(), String> {
    let at = |key: &str| format!("template['components'][{i}]{key}");
    let Some(component) = component.as_object() else {
        return Err(param(format!("Param {} must be an object.", at(""))));
    };
    let kind = string(component, "type", &at("['type']"))?;
    let allowed: &[&str] = match kind {
        "header" => &["text", "image", "video", "document", "location"],
        "body" => &["text", "currency", "date_time"],
        "button" => {
            let sub_type = string(component, "sub_type", &at("['sub_type']"))?;
            let index = component.get("index");
            let index_ok = match index {
                Some(Value::String(s)) => s.parse::<u8>().is_ok_and(|n| n < 10),
                Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n < 10),
                _ => false,
            };
            if !index_ok {
                return Err(param(format!("Param {} must be 0 to 9.", at("['index']"))));
            }
            match sub_type {
                "url" => &["text"],
                "quick_reply" => &["payload", "text"],
                "copy_code" => &["coupon_code"],
                "flow" => &["action"],
                "catalog" | "mpm" => &["action"],
                other => {
                    return Err(param(format!(
                        "Param {} has an unknown value: {other}.",
                        at("['sub_type']")
                    )))
                }
            }
        }
        other => {
            return Err(param(format!(
                "Param {} has an unknown value: {other}.",
                at("['type']")
            )))
        }
    };
    let Some(Value::Array(parameters)) = component.get("parameters") else {
        return Err(param(format!(
            "Param {} must be an array.",
            at("['parameters']")
        )));
    };
    for (j, parameter) in parameters.iter().enumerate() {
        let key = at(&format!("['parameters'][{j}]"));
        let Some(parameter) = parameter.as_object() else {
            return Err(param(format!("Param {key} must be an object.")));
        };
        let kind = string(parameter, "type", &format!("{key}['type']"))?;
        if !allowed.contains(&kind) {
            return Err(param(format!(
                "Param {key}['type'] has an unknown value: {kind}."
            )));
        }
        match parameter.get(kind) {
            Some(Value::String(_)) if matches!(kind, "text" | "payload" | "coupon_code") => {}
            Some(Value::Object(media)) if matches!(kind, "image" | "video" | "document") => {
                if media.contains_key("id") == media.contains_key("link") {
                    return Err(param(format!(
                        "Param {key}['{kind}'] needs exactly one of id or link."
                    )));
                }
            }
            Some(_)
                if !matches!(
                    kind,
                    "text" | "payload" | "coupon_code" | "image" | "video" | "document"
                ) => {}
            _ => return Err(param(format!("Param {key}['{kind}'] is required."))),
        }
    }
    Ok(())
}

fn validate_mark_read(body: &Map<String, Value>) -> Result<ProxyRequest, String> {
    if body.get("status").and_then(Value::as_str) != Some("read") {
        return Err(param("Param status must be \"read\"."));
    }
    let message_id = string(body, "message_id", "message_id")?.to_owned();
    if let Some(indicator) = body.get("typing_indicator") {
        if indicator.get("type").and_then(Value::as_str) != Some("text") {
            return Err(param("Param typing_indicator['type'] must be \"text\"."));
        }
    }
    Ok(ProxyRequest::MarkRead { message_id })
}

fn validate_interactive(interactive: &Map<String, Value>) -> Check {
    let kind = string(interactive, "type", "interactive['type']")?;
    if !INTERACTIVE_TYPES.contains(&kind) {
        return Err(param(format!(
            "Param interactive['type'] \"{kind}\" is not supported."
        )));
    }
    let action = object(interactive, "action", "interactive['action']")?;
    if kind != "location_request_message" || interactive.contains_key("body") {
        let body = object(interactive, "body", "interactive['body']")?;
        string(body, "text", "interactive['body']['text']")?;
        max_len(body, "text", 1024, "interactive['body']['text']")?;
    }
    if let Some(Value::Object(header)) = interactive.get("header") {
        max_len(header, "text", 60, "interactive['header']['text']")?;
    }
    if let Some(Value::Object(footer)) = interactive.get("footer") {
        max_len(footer, "text", 60, "interactive['footer']['text']")?;
    }
    match kind {
        "button" => validate_buttons(action),
        "list" => validate_list(action),
        "cta_url" => {
            if action.get("name").and_then(Value::as_str) != Some("cta_url") {
                return Err(param(
                    "Param interactive['action']['name'] must be \"cta_url\".",
                ));
            }
            let parameters = object(action, "parameters", "interactive['action']['parameters']")?;
            string(
                parameters,
                "display_text",
                "interactive['action']['parameters']['display_text']",
            )?;
            max_len(
                parameters,
                "display_text",
                20,
                "interactive['action']['parameters']['display_text']",
            )?;
            string(
                parameters,
                "url",
                "interactive['action']['parameters']['url']",
            )
            .map(drop)
        }
        _ => Ok(()),
    }
}

fn validate_buttons(action: &Map<String, Value>) -> Check {
    let buttons = action
        .get("buttons")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !(1..=3).contains(&buttons.len()) {
        return Err(param(format!(
            "Param interactive['action']['buttons'] must have 1 to 3 buttons, got {}.",
            buttons.len()
        )));
    }
    let mut ids = Vec::new();
    for (i, button) in buttons.iter().enumerate() {
        let path = format!("interactive['action']['buttons'][{i}]");
        let button = button
            .as_object()
            .ok_or_else(|| param(format!("Param {path} must be an object.")))?;
        if button.get("type").and_then(Value::as_str) != Some("reply") {
            return Err(param(format!("Param {path}['type'] must be \"reply\".")));
        }
        let reply = object(button, "reply", &format!("{path}['reply']"))?;
        let id = string(reply, "id", &format!("{path}['reply']['id']"))?;
        max_len(reply, "id", 256, &format!("{path}['reply']['id']"))?;
        string(reply, "title", &format!("{path}['reply']['title']"))?;
        max_len(reply, "title", 20, &format!("{path}['reply']['title']"))?;
        if ids.contains(&id) {
            return Err(param(format!(
                "Param {path}['reply']['id'] \"{id}\" is used by another button."
            )));
        }
        ids.push(id);
    }
    Ok(())
}

fn validate_list(action: &Map<String, Value>) -> Check {
    string(action, "button", "interactive['action']['button']")?;
    max_len(action, "button", 20, "interactive['action']['button']")?;
    let sections = action
        .get("sections")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !(1..=10).contains(&sections.len()) {
        return Err(param(
            "Param interactive['action']['sections'] must have 1 to 10 sections.",
        ));
    }
    let mut rows_total = 0;
    for (i, section) in sections.iter().enumerate() {
        let path = format!("interactive['action']['sections'][{i}]");
        let section = section
            .as_object()
            .ok_or_else(|| param(format!("Param {path} must be an object.")))?;
        max_len(section, "title", 24, &format!("{path}['title']"))?;
        let rows = section
            .get("rows")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if rows.is_empty() {
            return Err(param(format!("The parameter {path}['rows'] is required.")));
        }
        for (j, row) in rows.iter().enumerate() {
            let path = format!("{path}['rows'][{j}]");
            let row = row
                .as_object()
                .ok_or_else(|| param(format!("Param {path} must be an object.")))?;
            string(row, "id", &format!("{path}['id']"))?;
            max_len(row, "id", 200, &format!("{path}['id']"))?;
            string(row, "title", &format!("{path}['title']"))?;
            max_len(row, "title", 24, &format!("{path}['title']"))?;
            max_len(row, "description", 72, &format!("{path}['description']"))?;
        }
        rows_total += rows.len();
    }
    if rows_total > 10 {
        return Err(param(format!(
            "Param interactive['action']['sections'] has {rows_total} rows; at most 10 are allowed."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(body: &str) -> Value {
        json!({"messaging_product": "whatsapp", "to": "15550100200", "type": "text", "text": {"body": body}})
    }

    fn buttons(n: usize, title: &str) -> Value {
        let buttons: Vec<Value> = (0..n)
            .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": title}}))
            .collect();
        json!({"messaging_product": "whatsapp", "to": "1", "type": "interactive",
               "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": buttons}}})
    }

    #[test]
    fn text_needs_product_type_recipient_and_body() {
        assert!(validate(&text("hi")).is_ok());
        let mut no_body = text("hi");
        no_body["text"] = json!({});
        assert!(validate(&no_body).unwrap_err().contains("text['body']"));
        let mut bad_product = text("hi");
        bad_product["messaging_product"] = json!("sms");
        assert!(validate(&bad_product)
            .unwrap_err()
            .contains("messaging_product"));
        let mut no_to = text("hi");
        no_to.as_object_mut().unwrap().remove("to");
        assert!(validate(&no_to).unwrap_err().contains("to"));
        no_to["recipient"] = json!("US.13491208655302741918");
        assert!(validate(&no_to).is_ok());
    }

    #[test]
    fn buttons_are_one_to_three_with_short_titles() {
        assert!(validate(&buttons(3, "ok")).is_ok());
        assert!(validate(&buttons(0, "ok")).unwrap_err().contains("1 to 3"));
        assert!(validate(&buttons(4, "ok")).unwrap_err().contains("1 to 3"));
        let long = validate(&buttons(1, "a title longer than twenty")).unwrap_err();
        assert!(long.contains("at most 20"), "{long}");
    }

    #[test]
    fn list_limits_rows_and_lengths() {
        let rows: Vec<Value> = (0..11)
            .map(|i| json!({"id": format!("r{i}"), "title": "t"}))
            .collect();
        let list = json!({"messaging_product": "whatsapp", "to": "1", "type": "interactive",
            "interactive": {"type": "list", "body": {"text": "b"},
                "action": {"button": "Choose", "sections": [{"title": "s", "rows": rows}]}}});
        assert!(validate(&list).unwrap_err().contains("11 rows"));
    }

    #[test]
    fn template_needs_name_and_language_code() {
        let ok = json!({"messaging_product": "whatsapp", "to": "1", "type": "template",
            "template": {"name": "order_shipped", "language": {"code": "en_US"}}});
        assert!(validate(&ok).is_ok());
        let mut bad = ok.clone();
        bad["template"]["language"] = json!({});
        assert!(validate(&bad).unwrap_err().contains("language']['code']"));
    }

    /// The send-time component examples of Kapso's template reference (skill
    /// `integrate-whatsapp`, `references/templates-reference.md`) pass; malformed ones do not.
    #[test]
    fn template_components_follow_the_send_time_rules() {
        let with = |components: Value| {
            validate(
                &json!({"messaging_product": "whatsapp", "to": "1", "type": "template",
                "template": {"name": "t", "language": {"code": "en"}, "components": components}}),
            )
        };
        assert!(with(json!([
            {"type": "header", "parameters": [{"type": "text", "parameter_name": "sale_name", "text": "Black Friday Sale"}]},
            {"type": "body", "parameters": [{"type": "text", "parameter_name": "discount_code", "text": "BF2026"}]},
        ]))
        .is_ok());
        assert!(with(json!([
            {"type": "body", "parameters": [{"type": "text", "text": "123456"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "123456"}]},
        ]))
        .is_ok());
        assert!(with(json!([{"type": "header", "parameters": [{"type": "image", "image": {"id": "4490709327384033"}}]}])).is_ok());
        assert!(with(json!([{"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/header.jpg"}}]}])).is_ok());
        assert!(with(json!([{"type": "button", "sub_type": "quick_reply", "index": 1, "parameters": [{"type": "payload", "payload": "yes"}]}])).is_ok());

        let err = |components: Value| with(components).unwrap_err();
        assert!(err(json!([{"type": "header", "parameters": [{"type": "image", "image": {"id": "1", "link": "https://x"}}]}])).contains("exactly one of id or link"));
        assert!(
            err(json!([{"type": "button", "sub_type": "url", "parameters": []}]))
                .contains("['index']")
        );
        assert!(err(
            json!([{"type": "button", "sub_type": "swipe", "index": "0", "parameters": []}])
        )
        .contains("sub_type"));
        assert!(err(json!([{"type": "footer", "parameters": []}])).contains("['type']"));
        assert!(
            err(json!([{"type": "body", "parameters": [{"type": "text"}]}]))
                .contains("['text'] is required")
        );
        assert!(err(json!([{"type": "body"}])).contains("['parameters']"));
    }

    #[test]
    fn mark_read_needs_status_read_and_message_id() {
        let ok = json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X",
                        "typing_indicator": {"type": "text"}});
        assert_eq!(
            validate(&ok).unwrap(),
            ProxyRequest::MarkRead {
                message_id: "wamid.X".into()
            }
        );
        let bad = json!({"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.X"});
        assert!(validate(&bad).is_err());
    }
}
