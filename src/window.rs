//! The customer service window: WhatsApp lets a business send free-form messages to a customer
//! only within 24 hours of the customer's last message; outside it, only approved templates (a
//! free-form send is refused with error 131047). Known from the events switchboard stored: the
//! time of the customer's messages, and `conversation.kapso.last_inbound_at` where Kapso gives it.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::{as_unix_seconds, str_at};

/// How long after the customer's last message free-form messages are allowed.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// What switchboard knows of one conversation's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// When the customer last wrote (Unix ms), if known.
    pub last_inbound_ms: Option<i64>,
}

impl Window {
    /// The latest inbound message among `payloads` (the customer's own messages, and Kapso's
    /// `conversation.kapso.last_inbound_at`).
    pub fn from_payloads(payloads: &[Value]) -> Window {
        let latest = payloads.iter().filter_map(last_inbound_ms).max();
        Window {
            last_inbound_ms: latest,
        }
    }

    /// The later of what this window knows and `other` (e.g. the conversation's last stored
    /// message).
    pub fn merge(self, other: Option<i64>) -> Window {
        Window {
            last_inbound_ms: self.last_inbound_ms.max(other),
        }
    }

    /// When the window closes (Unix ms), if the customer's last message is known.
    pub fn closes_at_ms(&self) -> Option<i64> {
        self.last_inbound_ms.map(|at| at.saturating_add(WINDOW_MS))
    }

    /// Whether free-form messages may be sent at `now_ms`; `None` when nothing is known (the
    /// send is tried, and Kapso's refusal decides).
    pub fn is_open(&self, now_ms: i64) -> Option<bool> {
        self.closes_at_ms().map(|closes| now_ms < closes)
    }
}

/// The time of the customer's last message that one payload tells.
fn last_inbound_ms(payload: &Value) -> Option<i64> {
    let own = payload.get("message").and_then(|message| {
        let inbound = match str_at(message, &["kapso", "direction"]).as_deref() {
            Some(direction) => direction == "inbound",
            None => message.get("from").is_some() && message.get("to").is_none(),
        };
        if !inbound {
            return None;
        }
        let seconds = as_unix_seconds(message.get("timestamp")?)?;
        Some(seconds.saturating_mul(1000))
    });
    let kapso = str_at(payload, &["conversation", "kapso", "last_inbound_at"])
        .and_then(|at| parse_rfc3339_ms(&at));
    own.max(kapso)
}

/// Unix ms of an RFC 3339 time such as `2025-10-28T14:25:01Z`.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `ms` as RFC 3339 UTC, to the second.
pub fn format_rfc3339(ms: i64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    at.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOUR: i64 = 60 * 60 * 1000;

    #[test]
    fn the_window_runs_24_hours_from_the_customers_last_message() {
        let payloads = [
            json!({"message": {"id": "a", "timestamp": "1764093600", "kapso": {"direction": "inbound"}}}),
            json!({"message": {"id": "b", "timestamp": "1764097200", "kapso": {"direction": "inbound"}}}),
            // Our own message does not open the window.
            json!({"message": {"id": "c", "timestamp": "1764100800", "kapso": {"direction": "outbound"}}}),
        ];
        let window = Window::from_payloads(&payloads);
        assert_eq!(window.last_inbound_ms, Some(1_764_097_200_000));
        assert_eq!(window.is_open(1_764_097_200_000 + 23 * HOUR), Some(true));
        assert_eq!(window.is_open(1_764_097_200_000 + 24 * HOUR), Some(false));
        assert_eq!(Window::default().is_open(0), None, "unknown");
    }

    #[test]
    fn kapsos_last_inbound_at_and_stored_messages_count_too() {
        let failed = json!({
            "message": {"id": "wamid.OUT", "kapso": {"direction": "outbound"}},
            "conversation": {"kapso": {"last_inbound_at": "2025-10-28T14:25:01Z"}}
        });
        let window = Window::from_payloads(&[failed]);
        assert_eq!(
            window.last_inbound_ms,
            parse_rfc3339_ms("2025-10-28T14:25:01Z")
        );
        let later = window.merge(Some(window.last_inbound_ms.unwrap() + HOUR));
        assert_eq!(
            later.last_inbound_ms,
            Some(window.last_inbound_ms.unwrap() + HOUR)
        );
        assert_eq!(window.merge(None), window);
        assert_eq!(
            format_rfc3339(parse_rfc3339_ms("2025-10-28T14:25:01Z").unwrap()).as_deref(),
            Some("2025-10-28T14:25:01Z")
        );
    }
}
