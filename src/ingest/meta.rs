//! `kind = "meta"` webhooks: Kapso forwards Meta's own body (`{"object":
//! "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}`), signed with
//! `X-Webhook-Signature` like every Kapso delivery. Its messages and statuses become the same
//! events, with the same dedupe keys, as a Kapso-kind webhook's twins
//! (`whatsapp.message.received`, `whatsapp.message.sent/delivered/read/failed`), so routes,
//! replies and error-code conditions work on them unchanged; any other change (template status,
//! account updates) is stored as `meta.{field}`, and each call as `meta.calls`, flagged as an
//! unknown event type.
//!
//! Meta names no Kapso conversation: the conversation of such an event is
//! `wa:{phone_number_id}:{customer}` (one per customer and business number), so per-conversation
//! order and buffering hold. The mapping follows Kapso's own `normalizeWebhook` (SDK
//! `whatsapp-cloud-api-js`, `src/webhooks/normalize.ts`): a message whose `from` is the business
//! (or that came as an echo) is outbound, every other one inbound.

use serde_json::{json, Map, Value};

use crate::event::{digits, str_at};

/// True for Meta's webhook body.
pub fn is_meta_body(root: &Map<String, Value>) -> bool {
    root.get("object").and_then(Value::as_str) == Some("whatsapp_business_account")
        && root.get("entry").is_some_and(Value::is_array)
}

/// The events a Meta body carries, as (event type, payload), in the body's order.
pub fn events(root: &Map<String, Value>) -> Vec<(String, Map<String, Value>)> {
    let mut out = Vec::new();
    let entries = root.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten() {
            let field = change
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let Some(value) = change.get("value").and_then(Value::as_object) else {
                continue;
            };
            match field {
                "messages" | "smb_message_echoes" => message_events(value, &mut out),
                _ => {
                    let mut payload = value.clone();
                    if let Some(id) = phone_number_id(value) {
                        payload.insert("phone_number_id".into(), json!(id));
                    }
                    out.push((format!("meta.{field}"), payload));
                }
            }
        }
    }
    out
}

fn phone_number_id(value: &Map<String, Value>) -> Option<String> {
    value
        .get("metadata")
        .and_then(|m| str_at(m, &["phone_number_id"]))
}

/// Messages (inbound, echoes) and statuses of one `messages` change.
fn message_events(value: &Map<String, Value>, out: &mut Vec<(String, Map<String, Value>)>) {
    let phone_number_id = phone_number_id(value);
    let display = value
        .get("metadata")
        .and_then(|m| str_at(m, &["display_phone_number"]));
    let business: Vec<String> = [phone_number_id.as_deref(), display.as_deref()]
        .into_iter()
        .flatten()
        .map(digits)
        .filter(|d| !d.is_empty())
        .collect();
    let contacts = value.get("contacts").and_then(Value::as_array);
    let contact_name = |wa_id: &str| {
        contacts.into_iter().flatten().find_map(|contact| {
            (str_at(contact, &["wa_id"]).as_deref() == Some(wa_id))
                .then(|| str_at(contact, &["profile", "name"]))
                .flatten()
        })
    };

    let received = value.get("messages").and_then(Value::as_array);
    let echoes = value.get("message_echoes").and_then(Value::as_array);
    let messages = received
        .into_iter()
        .flatten()
        .map(|m| (m, false))
        .chain(echoes.into_iter().flatten().map(|m| (m, true)));
    for (message, echo) in messages {
        let Some(object) = message.as_object() else {
            continue;
        };
        let from = str_at(message, &["from"]);
        let outbound = echo
            || from
                .as_deref()
                .is_some_and(|f| business.contains(&digits(f)));
        let customer = if outbound {
            str_at(message, &["to"])
        } else {
            from.clone()
        };
        let mut message = object.clone();
        let kapso = message.entry("kapso").or_insert_with(|| json!({}));
        if let Some(kapso) = kapso.as_object_mut() {
            kapso.insert(
                "direction".into(),
                json!(if outbound { "outbound" } else { "inbound" }),
            );
        }
        let name = customer.as_deref().and_then(contact_name);
        let event_type = if outbound {
            // A message the business sent (from another app on the number): Meta reports it
            // once; Kapso names such a message `sent`.
            "whatsapp.message.sent"
        } else {
            "whatsapp.message.received"
        };
        out.push((
            event_type.to_owned(),
            payload(
                message,
                phone_number_id.as_deref(),
                customer.as_deref(),
                name,
            ),
        ));
    }

    // Calls are not messages: kept as they are, so nothing Meta sent is dropped.
    let calls = value.get("calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        if let Some(call) = call.as_object() {
            let mut payload = call.clone();
            if let Some(id) = &phone_number_id {
                payload.insert("phone_number_id".into(), json!(id));
            }
            out.push(("meta.calls".to_owned(), payload));
        }
    }

    let statuses = value.get("statuses").and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        let (Some(id), Some(state)) = (str_at(status, &["id"]), str_at(status, &["status"])) else {
            continue;
        };
        let recipient = str_at(status, &["recipient_id"]);
        let mut message = Map::new();
        message.insert("id".into(), json!(id));
        if let Some(recipient) = &recipient {
            message.insert("to".into(), json!(recipient));
        }
        if let Some(timestamp) = status.get("timestamp") {
            message.insert("timestamp".into(), timestamp.clone());
        }
        message.insert(
            "kapso".into(),
            json!({ "direction": "outbound", "status": state, "statuses": [status] }),
        );
        out.push((
            format!("whatsapp.message.{state}"),
            payload(
                message,
                phone_number_id.as_deref(),
                recipient.as_deref(),
                None,
            ),
        ));
    }
}

/// A Kapso-shaped payload: the message, the conversation with the customer, the number.
fn payload(
    message: Map<String, Value>,
    phone_number_id: Option<&str>,
    customer: Option<&str>,
    contact_name: Option<String>,
) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("message".into(), Value::Object(message));
    if let Some(customer) = customer {
        let mut conversation = json!({
            "id": format!("wa:{}:{}", phone_number_id.unwrap_or_default(), digits(customer)),
            "phone_number": format!("+{}", digits(customer)),
        });
        if let Some(id) = phone_number_id {
            conversation["phone_number_id"] = json!(id);
        }
        if let Some(name) = contact_name {
            conversation["kapso"] = json!({ "contact_name": name });
        }
        payload.insert("conversation".into(), conversation);
    }
    if let Some(id) = phone_number_id {
        payload.insert("phone_number_id".into(), json!(id));
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            panic!("an object")
        };
        map
    }

    #[test]
    fn messages_statuses_and_echoes_become_kapso_shaped_events() {
        let root = body(json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "+1 555-000-9999", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Dana Ruiz"}, "wa_id": "15550100200"}],
                "messages": [
                    {"from": "15550100200", "id": "wamid.IN", "timestamp": "1764093600", "type": "text", "text": {"body": "hi"}},
                    {"from": "15550009999", "to": "15550100200", "id": "wamid.BIZ", "timestamp": "1764093601", "type": "text", "text": {"body": "from the app"}}
                ],
                "statuses": [{"id": "wamid.OUT", "status": "failed", "timestamp": "1764093700", "recipient_id": "15550100200",
                              "errors": [{"code": 131047, "title": "Re-engagement message"}]}]
            }}]}]
        }));
        assert!(is_meta_body(&root));
        let events = events(&root);
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            vec![
                "whatsapp.message.received",
                "whatsapp.message.sent",
                "whatsapp.message.failed"
            ]
        );
        let received = Value::Object(events[0].1.clone());
        assert_eq!(received["message"]["kapso"]["direction"], "inbound");
        assert_eq!(received["message"]["text"]["body"], "hi");
        assert_eq!(received["phone_number_id"], "106540352242922");
        assert_eq!(received["conversation"]["phone_number"], "+15550100200");
        assert_eq!(
            received["conversation"]["id"],
            "wa:106540352242922:15550100200"
        );
        assert_eq!(
            received["conversation"]["kapso"]["contact_name"],
            "Dana Ruiz"
        );
        let sent = Value::Object(events[1].1.clone());
        assert_eq!(sent["message"]["kapso"]["direction"], "outbound");
        assert_eq!(sent["conversation"]["phone_number"], "+15550100200");
        let failed = Value::Object(events[2].1.clone());
        assert_eq!(failed["message"]["id"], "wamid.OUT");
        assert_eq!(failed["message"]["to"], "15550100200");
        assert_eq!(
            failed["message"]["kapso"]["statuses"][0]["errors"][0]["code"],
            131047
        );
    }

    #[test]
    fn other_changes_are_kept_as_meta_events_and_kapso_bodies_are_not_meta() {
        let root = body(json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [
                {"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_id": 2}},
                {"field": "messages", "value": "not an object"}
            ]}]
        }));
        let events = events(&root);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "meta.message_template_status_update");
        assert!(!is_meta_body(&body(json!({"message": {"id": "w"}}))));
        assert!(!is_meta_body(&body(json!({"object": "page", "entry": []}))));
    }
}
