//! No blind resends: before a message whose earlier send may have reached Kapso is sent again
//! (its call timed out, was cut off, got a 5xx, or the process that sent it stopped), Kapso's
//! message history is read for it. A message to the same recipient, of the same type and
//! content, stored by Kapso since the row was planned, and not already recorded as another
//! row's send, is taken as this row's: it is marked sent instead of going out twice.

use serde_json::Value;

use crate::event::digits;
use crate::kapso::MessageQuery;

/// How far before a row was planned Kapso's clock may run (listed times are Kapso's).
pub const CLOCK_SKEW_MS: i64 = 60_000;
/// Pages of history read at most for one row (100 messages each).
pub const MAX_PAGES: usize = 10;

/// The history query for a row planned at `created_at_ms`.
pub fn query(created_at_ms: i64, after: Option<String>) -> MessageQuery {
    MessageQuery {
        direction: Some("outbound".to_owned()),
        since: crate::window::format_rfc3339(created_at_ms.saturating_sub(CLOCK_SKEW_MS)),
        limit: crate::kapso::history::MAX_PAGE,
        after,
        ..MessageQuery::default()
    }
}

/// Whether `listed` (a history item) is the message `body` would send.
pub fn same_message(body: &Value, listed: &Value) -> bool {
    let recipient = body
        .get("to")
        .and_then(Value::as_str)
        .map(digits)
        .filter(|d| !d.is_empty());
    let listed_to = listed
        .get("to")
        .and_then(Value::as_str)
        .or_else(|| {
            listed
                .pointer("/kapso/phone_number")
                .and_then(Value::as_str)
        })
        .map(digits);
    let kind = body.get("type").and_then(Value::as_str);
    if recipient.is_none()
        || recipient != listed_to
        || kind.is_none()
        || kind != listed.get("type").and_then(Value::as_str)
    {
        return false;
    }
    match kind {
        Some("text") => {
            body.pointer("/text/body").is_some()
                && body.pointer("/text/body") == listed.pointer("/text/body")
        }
        Some("template") => {
            body.pointer("/template/name").is_some()
                && body.pointer("/template/name") == listed.pointer("/template/name")
        }
        Some(other) => body.get(other) == listed.get(other) || listed.get(other).is_none(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_message_is_ours_when_recipient_type_and_content_agree() {
        let ours = json!({"to": "15550100200", "type": "text", "text": {"body": "On my way"}});
        let listed = json!({"id": "wamid.A", "to": "15550100200", "type": "text",
                            "text": {"body": "On my way"}, "kapso": {"direction": "outbound"}});
        assert!(same_message(&ours, &listed));
        let other_text = json!({"to": "15550100200", "type": "text", "text": {"body": "Later"}});
        assert!(!same_message(&other_text, &listed));
        let other_customer =
            json!({"to": "15550100201", "type": "text", "text": {"body": "On my way"}});
        assert!(!same_message(&other_customer, &listed));
        let by_kapso_number = json!({"id": "wamid.B", "type": "text", "text": {"body": "On my way"},
                                     "kapso": {"phone_number": "+1 555 010 0200"}});
        assert!(same_message(&ours, &by_kapso_number));

        let template = json!({"to": "15550100200", "type": "template", "template": {"name": "follow_up", "language": {"code": "en"}}});
        let listed_template =
            json!({"to": "15550100200", "type": "template", "template": {"name": "follow_up"}});
        assert!(same_message(&template, &listed_template));
        assert!(!same_message(&template, &listed));
    }
}
