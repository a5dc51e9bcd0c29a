//! Realistic v2 event payloads shaped exactly like CONTRACT §3.3 (plus one v1 payload for the
//! legacy path), as pure functions of a [`SampleContext`]. Used by the simulated Kapso, by
//! `demo` and by tests.

use serde_json::{json, Map, Value};

/// CONTRACT §2.3 worked example: `(secret_key, body, X-Webhook-Signature)`.
pub const SIGNATURE_VECTOR: (&str, &str, &str) = (
    "whsec_test_switchboard",
    r#"{"message":{"id":"wamid.TEST1","type":"text","text":{"body":"hi"}},"phone_number_id":"106540352242922"}"#,
    "d9b6316daadcbf428fe4f8958ad3107cd2f9823d08bc28eba891fdc8f5f12dcf",
);

pub const MESSAGE_RECEIVED: &str = "whatsapp.message.received";
pub const MESSAGE_SENT: &str = "whatsapp.message.sent";
pub const MESSAGE_DELIVERED: &str = "whatsapp.message.delivered";
pub const MESSAGE_READ: &str = "whatsapp.message.read";
pub const MESSAGE_FAILED: &str = "whatsapp.message.failed";
pub const CONVERSATION_CREATED: &str = "whatsapp.conversation.created";
pub const CONVERSATION_ENDED: &str = "whatsapp.conversation.ended";
pub const CONVERSATION_INACTIVE: &str = "whatsapp.conversation.inactive";
pub const PHONE_NUMBER_CREATED: &str = "whatsapp.phone_number.created";

/// Who and when a sample is about. The default matches the contract's examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleContext {
    pub phone_number_id: String,
    pub conversation_id: String,
    /// The customer's number, digits only (`message.from` of inbound messages).
    pub customer_phone: String,
    /// The business number, digits only (`context.from` of replies).
    pub business_phone: String,
    pub contact_name: String,
    /// Unix seconds of the event.
    pub timestamp: i64,
}

impl Default for SampleContext {
    fn default() -> Self {
        SampleContext {
            phone_number_id: "106540352242922".to_owned(),
            conversation_id: "7b1e0f52-3c9d-4a61-9e0b-2f4d8c6a1b35".to_owned(),
            customer_phone: "15550100200".to_owned(),
            business_phone: "15550009999".to_owned(),
            contact_name: "Dana Ruiz".to_owned(),
            timestamp: 1_764_093_600,
        }
    }
}

/// Outbound message states that have a status webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }

    /// The `X-Webhook-Event` of this status.
    pub fn event_type(self) -> &'static str {
        match self {
            MessageStatus::Sent => MESSAGE_SENT,
            MessageStatus::Delivered => MESSAGE_DELIVERED,
            MessageStatus::Read => MESSAGE_READ,
            MessageStatus::Failed => MESSAGE_FAILED,
        }
    }
}

/// `2026-11-25T18:00:00Z` for a Unix time in seconds.
pub fn iso_utc(unix_seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".to_owned(),
    }
}

/// The `conversation` object; `last_message` is `(wamid, type, text)` of the newest message.
pub fn conversation(
    ctx: &SampleContext,
    status: &str,
    last_message: Option<(&str, &str, &str)>,
) -> Value {
    let at = iso_utc(ctx.timestamp);
    let (id, kind, text, count) = match last_message {
        Some((id, kind, text)) => (json!(id), json!(kind), json!(text), 1),
        None => (Value::Null, Value::Null, Value::Null, 0),
    };
    let inbound_at = if count > 0 { json!(at) } else { Value::Null };
    json!({
        "id": ctx.conversation_id,
        "phone_number": format!("+{}", ctx.customer_phone),
        "status": status,
        "last_active_at": at,
        "created_at": at,
        "updated_at": at,
        "metadata": {},
        "phone_number_id": ctx.phone_number_id,
        "kapso": {
            "contact_name": ctx.contact_name,
            "messages_count": count,
            "last_message_id": id,
            "last_message_type": kind,
            "last_message_timestamp": if count > 0 { json!(at) } else { Value::Null },
            "last_message_text": text,
            "last_inbound_at": inbound_at,
            "last_outbound_at": null
        }
    })
}

fn inbound_kapso(content: &str, has_media: bool) -> Map<String, Value> {
    let mut kapso = Map::new();
    kapso.insert("direction".into(), json!("inbound"));
    kapso.insert("status".into(), json!("received"));
    kapso.insert("processing_status".into(), json!("pending"));
    kapso.insert("origin".into(), json!("cloud_api"));
    kapso.insert("has_media".into(), json!(has_media));
    kapso.insert("content".into(), json!(content));
    kapso
}

fn message_event(
    ctx: &SampleContext,
    message: Value,
    is_new: bool,
    last: (&str, &str, &str),
) -> Value {
    json!({
        "message": message,
        "conversation": conversation(ctx, "active", Some(last)),
        "is_new_conversation": is_new,
        "phone_number_id": ctx.phone_number_id,
    })
}

/// `whatsapp.message.received`, a text message.
pub fn text_received(ctx: &SampleContext, wamid: &str, body: &str) -> Value {
    let message = json!({
        "id": wamid,
        "timestamp": ctx.timestamp.to_string(),
        "type": "text",
        "from": ctx.customer_phone,
        "text": { "body": body },
        "kapso": inbound_kapso(body, false),
    });
    message_event(ctx, message, true, (wamid, "text", body))
}

/// `whatsapp.message.received`: the customer tapped reply button `id` of our message `replied_to`.
pub fn button_reply_received(
    ctx: &SampleContext,
    wamid: &str,
    replied_to: &str,
    id: &str,
    title: &str,
) -> Value {
    let message = json!({
        "id": wamid,
        "timestamp": ctx.timestamp.to_string(),
        "type": "interactive",
        "from": ctx.customer_phone,
        "context": { "from": ctx.business_phone, "id": replied_to },
        "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } },
        "kapso": inbound_kapso(title, false),
    });
    message_event(ctx, message, false, (wamid, "interactive", title))
}

/// `whatsapp.message.received`: the customer picked row `id` of our list message `replied_to`.
pub fn list_reply_received(
    ctx: &SampleContext,
    wamid: &str,
    replied_to: &str,
    (id, title, description): (&str, &str, &str),
) -> Value {
    let message = json!({
        "id": wamid,
        "timestamp": ctx.timestamp.to_string(),
        "type": "interactive",
        "from": ctx.customer_phone,
        "context": { "from": ctx.business_phone, "id": replied_to },
        "interactive": {
            "type": "list_reply",
            "list_reply": { "id": id, "title": title, "description": description }
        },
        "kapso": inbound_kapso(title, false),
    });
    message_event(ctx, message, false, (wamid, "interactive", title))
}

/// `whatsapp.message.received`, an image re-hosted by Kapso.
pub fn image_received(ctx: &SampleContext, wamid: &str, media_id: &str, caption: &str) -> Value {
    let url = format!("https://api.kapso.ai/media/{media_id}");
    let mut kapso = inbound_kapso(
        &format!(
            "{caption} Image attached (photo.jpg) [Size: 312 KB | Type: image/jpeg] URL: {url}"
        ),
        true,
    );
    kapso.insert("media_url".into(), json!(url));
    kapso.insert(
        "media_data".into(),
        json!({"url": url, "filename": "photo.jpg", "content_type": "image/jpeg", "byte_size": 319_488}),
    );
    kapso.insert("message_type_data".into(), json!({ "caption": caption }));
    let message = json!({
        "id": wamid,
        "timestamp": ctx.timestamp.to_string(),
        "type": "image",
        "from": ctx.customer_phone,
        "image": { "id": media_id, "caption": caption },
        "kapso": kapso,
    });
    message_event(ctx, message, false, (wamid, "image", caption))
}

/// A Meta error object of a failed status: `{code, title, message, error_data: {details}}`.
pub fn meta_error(code: i64, title: &str, details: &str) -> Value {
    json!({ "code": code, "title": title, "message": title, "error_data": { "details": details } })
}

/// `whatsapp.message.{sent,delivered,read,failed}` for our outbound message `wamid`.
/// `sent_body` is what we POSTed to the proxy (its `type` and per-type object are echoed);
/// `errors` go on the `failed` status entry.
pub fn status_update(
    ctx: &SampleContext,
    wamid: &str,
    status: MessageStatus,
    sent_body: &Value,
    errors: &[Value],
) -> Value {
    let kind = sent_body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("text");
    let status_entry = |name: &str, offset: i64| {
        let mut entry = json!({
            "id": wamid, "status": name, "timestamp": (ctx.timestamp + offset).to_string(),
            "recipient_id": ctx.customer_phone,
        });
        if name == "sent" {
            entry["pricing"] =
                json!({"billable": false, "pricing_model": "PMP", "category": "service"});
        }
        if name == "failed" {
            entry["errors"] = json!(errors);
        }
        entry
    };
    let statuses: Vec<Value> = match status {
        MessageStatus::Sent => vec![status_entry("sent", 0)],
        MessageStatus::Delivered => vec![status_entry("sent", 0), status_entry("delivered", 10)],
        MessageStatus::Read => vec![
            status_entry("sent", 0),
            status_entry("delivered", 10),
            status_entry("read", 20),
        ],
        MessageStatus::Failed => vec![status_entry("failed", 0)],
    };
    let content = sent_body
        .pointer("/text/body")
        .and_then(Value::as_str)
        .unwrap_or(kind)
        .to_owned();
    let mut message = json!({
        "id": wamid,
        "timestamp": ctx.timestamp.to_string(),
        "type": kind,
        // Kapso may name the business's own number as the sender of an outbound message.
        "from": ctx.business_phone,
        "to": ctx.customer_phone,
        "kapso": {
            "direction": "outbound",
            "status": status.as_str(),
            "processing_status": "completed",
            "origin": "cloud_api",
            "has_media": matches!(kind, "image" | "video" | "audio" | "document" | "sticker"),
            "content": content,
            "statuses": statuses,
        }
    });
    if let Some(object) = sent_body.get(kind) {
        message[kind] = object.clone();
    }
    let mut conversation = conversation(ctx, "active", None);
    conversation["kapso"]["last_outbound_at"] = json!(iso_utc(ctx.timestamp));
    json!({
        "message": message,
        "conversation": conversation,
        "is_new_conversation": false,
        "phone_number_id": ctx.phone_number_id,
    })
}

/// Convenience: a status update for an outbound text message.
pub fn text_status_update(
    ctx: &SampleContext,
    wamid: &str,
    status: MessageStatus,
    text: &str,
) -> Value {
    let sent = json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": text}});
    let errors = if status == MessageStatus::Failed {
        vec![meta_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        )]
    } else {
        Vec::new()
    };
    status_update(ctx, wamid, status, &sent, &errors)
}

/// `whatsapp.conversation.created`.
pub fn conversation_created(ctx: &SampleContext) -> Value {
    json!({ "conversation": conversation(ctx, "active", None), "phone_number_id": ctx.phone_number_id })
}

/// `whatsapp.conversation.ended`; `last_message` as in [`conversation`].
pub fn conversation_ended(ctx: &SampleContext, last_message: (&str, &str, &str)) -> Value {
    json!({ "conversation": conversation(ctx, "ended", Some(last_message)), "phone_number_id": ctx.phone_number_id })
}

/// `whatsapp.conversation.inactive`: no message for `minutes` since `since_wamid`.
pub fn conversation_inactive(ctx: &SampleContext, since_wamid: &str, minutes: u32) -> Value {
    let mut conversation = conversation(ctx, "active", None);
    if let Some(object) = conversation.as_object_mut() {
        object.remove("kapso");
    }
    json!({
        "conversation": conversation,
        "since_message": {
            "id": "c2a9e7d4-5b18-4f0e-8a3c-61d2b7f90e11",
            "whatsapp_message_id": since_wamid,
            "direction": "inbound",
            "created_at": iso_utc(ctx.timestamp),
        },
        "inactivity": { "minutes": minutes },
        "phone_number_id": ctx.phone_number_id,
    })
}

/// `whatsapp.phone_number.created` (project webhooks).
pub fn phone_number_created(phone_number_id: &str, project_id: &str, customer_id: &str) -> Value {
    json!({ "phone_number_id": phone_number_id, "project": { "id": project_id }, "customer": { "id": customer_id } })
}

/// A legacy v1 `whatsapp.message.received` (CONTRACT §3.4; field names partly unverified).
pub fn v1_text_received(
    ctx: &SampleContext,
    wamid: &str,
    body: &str,
    whatsapp_config_id: &str,
) -> Value {
    json!({
        "message": { "id": wamid, "message_type": "text", "content": body, "direction": "inbound", "origin": "cloud_api" },
        "conversation": {
            "id": ctx.conversation_id, "phone_number": format!("+{}", ctx.customer_phone),
            "status": "active", "whatsapp_config_id": whatsapp_config_id
        },
        "whatsapp_config": { "id": whatsapp_config_id, "phone_number_id": ctx.phone_number_id },
        "is_new_conversation": true
    })
}

/// A representative payload for `event_type` (what Kapso's webhook test endpoint sends).
pub fn for_event(event_type: &str, ctx: &SampleContext, project_id: &str) -> Value {
    let wamid = "wamid.TEST_EVENT_0001";
    match event_type {
        MESSAGE_RECEIVED => text_received(ctx, wamid, "This is a test message from Kapso"),
        MESSAGE_SENT => text_status_update(ctx, wamid, MessageStatus::Sent, "Test"),
        MESSAGE_DELIVERED => text_status_update(ctx, wamid, MessageStatus::Delivered, "Test"),
        MESSAGE_READ => text_status_update(ctx, wamid, MessageStatus::Read, "Test"),
        MESSAGE_FAILED => text_status_update(ctx, wamid, MessageStatus::Failed, "Test"),
        CONVERSATION_CREATED => conversation_created(ctx),
        CONVERSATION_ENDED => conversation_ended(ctx, (wamid, "text", "Test")),
        CONVERSATION_INACTIVE => conversation_inactive(ctx, wamid, 60),
        PHONE_NUMBER_CREATED => phone_number_created(
            &ctx.phone_number_id,
            project_id,
            "5e8b1c4d-2a73-4f09-b6e1-9d0c3a7f2e48",
        ),
        _ => json!({ "phone_number_id": ctx.phone_number_id, "test": true }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_received_matches_the_contract_example() {
        let ctx = SampleContext::default();
        let event = text_received(
            &ctx,
            "wamid.IN_TEXT_0001",
            "Hi, is my order #4471 on its way?",
        );
        assert_eq!(event["message"]["timestamp"], "1764093600");
        assert_eq!(event["message"]["kapso"]["direction"], "inbound");
        assert_eq!(
            event["conversation"]["last_active_at"],
            "2025-11-25T18:00:00Z"
        );
        assert_eq!(event["conversation"]["phone_number_id"], "106540352242922");
        assert_eq!(event["phone_number_id"], "106540352242922");
        assert_eq!(event["is_new_conversation"], true);
    }

    #[test]
    fn statuses_accumulate_in_time_order() {
        let ctx = SampleContext::default();
        let read = text_status_update(&ctx, "wamid.OUT_1", MessageStatus::Read, "hi");
        let names: Vec<&str> = read["message"]["kapso"]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sent", "delivered", "read"]);
        let failed = text_status_update(&ctx, "wamid.OUT_2", MessageStatus::Failed, "hi");
        assert_eq!(
            failed["message"]["kapso"]["statuses"][0]["errors"][0]["code"],
            131047
        );
    }

    #[test]
    fn inactive_carries_since_message_and_minutes() {
        let event = conversation_inactive(&SampleContext::default(), "wamid.IN_IMG_0003", 30);
        assert_eq!(
            event["since_message"]["whatsapp_message_id"],
            "wamid.IN_IMG_0003"
        );
        assert_eq!(event["inactivity"]["minutes"], 30);
        assert_eq!(event["conversation"]["status"], "active");
    }

    #[test]
    fn signature_vector_is_the_contract_one() {
        let (secret, body, signature) = SIGNATURE_VECTOR;
        assert_eq!(
            crate::ingest::signature::sign(secret.as_bytes(), body.as_bytes()),
            signature
        );
    }
}
