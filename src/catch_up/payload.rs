//! A message read back from Kapso's history, as the event its webhook would have carried (v2
//! shape, a reconstruction): an inbound message as `whatsapp.message.received`, an outbound one
//! as the status event of its current status (`whatsapp.message.delivered`, ...). `message` is
//! the history item with its `kapso` object, `phone_number_id` the business number, and
//! `conversation` what the item says of it. Pure: no I/O.

use serde_json::{json, Map, Value};

use crate::event::{Event, Origin, PayloadVersion, FLAG_BACKFILLED};

/// The event type catch-up stores for an inbound message.
pub const RECEIVED: &str = "whatsapp.message.received";

/// The statuses of an outbound message that have a webhook event (`whatsapp.message.{status}`);
/// Kapso's `pending` has none.
const STATUSES: [&str; 4] = ["sent", "delivered", "read", "failed"];
const MESSAGE_EVENT: &str = "whatsapp.message.";

/// The status event type of an outbound message's `status`, if it has one.
pub fn status_event_type(status: &str) -> Option<String> {
    STATUSES
        .contains(&status)
        .then(|| format!("{MESSAGE_EVENT}{status}"))
}

/// Whether `event_type` is the event of an outbound message's status.
pub fn is_status_event(event_type: &str) -> bool {
    event_type
        .strip_prefix(MESSAGE_EVENT)
        .is_some_and(|status| STATUSES.contains(&status))
}

/// The event a webhook would have delivered for `item` (one element of `listMessages`' `data`),
/// flagged [`FLAG_BACKFILLED`]; `None` when the item has no wamid or is not an inbound message.
/// Its dedupe key is the webhook's (`msg:{wamid}`), from [`Event::from_payload`].
pub fn backfilled_event(phone_number_id: &str, item: &Value, index: usize) -> Option<Event> {
    // The query asks for inbound only; an item that says otherwise is not a received message.
    if kapso_text(item, "direction").is_some_and(|d| d != "inbound") {
        return None;
    }
    reconstruct(RECEIVED, phone_number_id, item, index)
}

/// The status event a webhook would have delivered for an outbound `item` in its current
/// status (`kapso.status`: `sent`, `delivered`, `read` or `failed`), flagged
/// [`FLAG_BACKFILLED`], with the webhook's dedupe key (`msg:{wamid}:{status}`); `None` when the
/// item has no wamid, is not outbound, or its status has no event (`pending`, absent).
/// Kapso's list shows only the current status and no error details: the statuses a message
/// went through before it, and a failure's codes, cannot be recovered.
pub fn backfilled_status(phone_number_id: &str, item: &Value, index: usize) -> Option<Event> {
    if kapso_text(item, "direction").is_some_and(|d| d != "outbound") {
        return None;
    }
    let event_type = status_event_type(kapso_text(item, "status")?)?;
    reconstruct(&event_type, phone_number_id, item, index)
}

/// `item.kapso.{key}` as text.
fn kapso_text<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get("kapso")?.get(key)?.as_str()
}

/// The v2 payload of `event_type` around the history `item`.
fn reconstruct(
    event_type: &str,
    phone_number_id: &str,
    item: &Value,
    index: usize,
) -> Option<Event> {
    let wamid = item.get("id").and_then(Value::as_str)?;
    if wamid.trim().is_empty() {
        return None;
    }
    let kapso = item.get("kapso");
    let text = |key: &str| kapso.and_then(|k| k.get(key)).filter(|v| !v.is_null());
    let mut conversation = Map::new();
    if let Some(id) = text("whatsapp_conversation_id") {
        conversation.insert("id".into(), id.clone());
    }
    if let Some(phone) = text("phone_number") {
        conversation.insert("phone_number".into(), phone.clone());
    }
    conversation.insert("phone_number_id".into(), json!(phone_number_id));
    if let Some(name) = text("contact_name") {
        conversation.insert("kapso".into(), json!({ "contact_name": name }));
    }
    let mut payload = Map::new();
    payload.insert("message".into(), item.clone());
    payload.insert("conversation".into(), Value::Object(conversation));
    payload.insert("phone_number_id".into(), json!(phone_number_id));
    let origin = Origin {
        idempotency_key: None,
        index,
    };
    let mut event = Event::from_payload(event_type, PayloadVersion::V2, payload, origin);
    event.flags.push(FLAG_BACKFILLED);
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbound_item_becomes_the_webhooks_event_with_its_dedupe_key() {
        let item = json!({
            "id": "wamid.A", "timestamp": "1705328096", "type": "text", "from": "15551234567",
            "text": {"body": "Hello"},
            "kapso": {"direction": "inbound", "status": "delivered", "phone_number": "+15551234567",
                      "whatsapp_conversation_id": "conv-1", "contact_name": "John Doe"}
        });
        let event = backfilled_event("111", &item, 0).unwrap();
        assert_eq!(event.event_type, RECEIVED);
        assert_eq!(event.dedupe_key.as_str(), "msg:wamid.A");
        assert_eq!(event.flags, vec![FLAG_BACKFILLED]);
        assert_eq!(event.phone_number_id.as_deref(), Some("111"));
        assert_eq!(event.conversation_id.as_deref(), Some("conv-1"));
        assert_eq!(event.occurred_at, Some(1_705_328_096));
        assert_eq!(
            event.payload["conversation"]["kapso"]["contact_name"],
            "John Doe"
        );
        assert_eq!(event.payload["message"], item);

        // The same message as its webhook carries it collides with the backfilled one.
        let webhook = Event::from_payload(
            RECEIVED,
            PayloadVersion::V2,
            json!({"message": {"id": "wamid.A"}, "phone_number_id": "111"})
                .as_object()
                .cloned()
                .unwrap(),
            Origin {
                idempotency_key: Some("other"),
                index: 3,
            },
        );
        assert_eq!(webhook.dedupe_key, event.dedupe_key);
    }

    #[test]
    fn items_without_a_wamid_or_sent_by_the_business_are_skipped() {
        assert!(backfilled_event("111", &json!({"type": "text"}), 0).is_none());
        let outbound = json!({"id": "wamid.B", "kapso": {"direction": "outbound"}});
        assert!(backfilled_event("111", &outbound, 0).is_none());
        // Without Kapso's fields (a bare `kapso()` omits them) the item is still stored.
        let bare = json!({"id": "wamid.C", "timestamp": "1", "type": "text"});
        let event = backfilled_event("111", &bare, 0).unwrap();
        assert_eq!(event.conversation_id, None);
    }

    #[test]
    fn an_outbound_item_becomes_the_event_of_its_current_status() {
        let item = json!({
            "id": "wamid.OUT", "timestamp": "1705328150", "type": "text", "to": "15551234567",
            "text": {"body": "Your order shipped"},
            "kapso": {"direction": "outbound", "status": "read", "phone_number": "+15551234567",
                      "whatsapp_conversation_id": "conv-1"}
        });
        let event = backfilled_status("111", &item, 0).unwrap();
        assert_eq!(event.event_type, "whatsapp.message.read");
        assert_eq!(event.dedupe_key.as_str(), "msg:wamid.OUT:read");
        assert_eq!(event.flags, vec![FLAG_BACKFILLED]);
        assert_eq!(event.conversation_id.as_deref(), Some("conv-1"));
        // Inbound items and statuses without an event are not status events.
        assert!(backfilled_event("111", &item, 0).is_none());
        let inbound =
            json!({"id": "wamid.IN", "kapso": {"direction": "inbound", "status": "delivered"}});
        assert!(backfilled_status("111", &inbound, 0).is_none());
        let pending =
            json!({"id": "wamid.P", "kapso": {"direction": "outbound", "status": "pending"}});
        assert!(backfilled_status("111", &pending, 0).is_none());
        assert!(backfilled_status("111", &json!({"id": "wamid.N"}), 0).is_none());
    }
}
