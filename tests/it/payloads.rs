//! Sample Kapso payloads, shaped as in CONTRACT.md §3.3.

use serde_json::{json, Value};

pub const PHONE_NUMBER_ID: &str = "106540352242922";

pub fn message_received(wamid: &str, conversation: &str, text: &str) -> Value {
    json!({
        "message": {
            "id": wamid,
            "timestamp": "1764093600",
            "type": "text",
            "from": "15550100200",
            "text": { "body": text },
            "kapso": { "direction": "inbound", "status": "received", "processing_status": "pending",
                       "origin": "cloud_api", "has_media": false, "content": text }
        },
        "conversation": { "id": conversation, "phone_number": "+15550100200", "status": "active",
                          "phone_number_id": PHONE_NUMBER_ID },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    })
}

pub fn batch(items: Vec<Value>) -> Value {
    json!({ "type": "whatsapp.message.received", "batch": true, "data": items })
}

pub fn message_status(wamid: &str, status: &str) -> Value {
    json!({
        "message": { "id": wamid, "timestamp": "1764093660", "type": "text",
                     "kapso": { "direction": "outbound", "status": status } },
        "conversation": { "id": "conv-status", "phone_number_id": PHONE_NUMBER_ID },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    })
}

/// An inbound text at a given Unix time, from Dana Ruiz, in `conversation`.
pub fn text_at(
    wamid: &str,
    conversation: &str,
    text: &str,
    unix_seconds: i64,
    new_conversation: bool,
) -> Value {
    let mut payload = message_received(wamid, conversation, text);
    payload["message"]["timestamp"] = json!(unix_seconds.to_string());
    payload["conversation"]["kapso"] = json!({ "contact_name": "Dana Ruiz" });
    payload["is_new_conversation"] = json!(new_conversation);
    payload
}
