//! A Kapso event as switchboard keeps it: event type, the identifiers that route and deduplicate
//! it, and the payload normalised to the v2 shape. Pure: no I/O.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Message and conversation events (CONTRACT.md §3.1): delivered only to phone-number-scoped
/// webhooks, and what such a webhook subscribes to by default.
pub const NUMBER_EVENTS: [&str; 8] = [
    "whatsapp.message.received",
    "whatsapp.message.sent",
    "whatsapp.message.delivered",
    "whatsapp.message.read",
    "whatsapp.message.failed",
    "whatsapp.conversation.created",
    "whatsapp.conversation.ended",
    "whatsapp.conversation.inactive",
];

/// Number-scoped contact events (Kapso's event-types reference): subscribable, not in the
/// default subscription.
pub const CONTACT_EVENTS: [&str; 2] = [
    "whatsapp.contact.identity_changed",
    "whatsapp.contact.marketing_preference_changed",
];

/// What a project-scoped webhook subscribes to by default.
pub const PROJECT_EVENTS: [&str; 2] = [
    "whatsapp.phone_number.created",
    "whatsapp.phone_number.deleted",
];

/// Project-scoped events that may be subscribed to besides [`PROJECT_EVENTS`].
pub const OTHER_PROJECT_EVENTS: [&str; 4] = [
    "whatsapp.config.created",
    "workflow.execution.handoff",
    "workflow.execution.failed",
    "project.event",
];

/// Named by Kapso only in an example subscription (v1, unverified): recognised when it arrives,
/// never offered for subscription.
const SEEN_ONLY_EVENTS: [&str; 1] = ["whatsapp.config.deleted"];

/// An event type a Kapso webhook can subscribe to.
pub fn is_subscribable_event(event_type: &str) -> bool {
    NUMBER_EVENTS.contains(&event_type)
        || CONTACT_EVENTS.contains(&event_type)
        || PROJECT_EVENTS.contains(&event_type)
        || OTHER_PROJECT_EVENTS.contains(&event_type)
}

/// An event type Kapso documents. Anything else is kept and flagged.
pub fn is_known_event_type(event_type: &str) -> bool {
    is_subscribable_event(event_type) || SEEN_ONLY_EVENTS.contains(&event_type)
}

/// Every event type Kapso documents, subscribable ones first.
pub fn known_event_types() -> impl Iterator<Item = &'static str> {
    NUMBER_EVENTS
        .iter()
        .chain(CONTACT_EVENTS.iter())
        .chain(PROJECT_EVENTS.iter())
        .chain(OTHER_PROJECT_EVENTS.iter())
        .chain(SEEN_ONLY_EVENTS.iter())
        .copied()
}

/// Whether a route's `on` entry (`*`, `family.*` or an exact type) can match a type Kapso
/// documents. `whatsapp.message.*` covers every type that starts with `whatsapp.message.`.
pub fn pattern_matches_known_type(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => known_event_types().any(|t| t.starts_with(prefix)),
        None => is_known_event_type(pattern),
    }
}

/// The `family.*` patterns of the documented types (`whatsapp.message.*`, `workflow.execution.*`,
/// ...), for suggestions.
pub fn known_event_families() -> Vec<String> {
    let mut families: Vec<String> = Vec::new();
    for event_type in known_event_types() {
        if let Some((family, _)) = event_type.rsplit_once('.') {
            let pattern = format!("{family}.*");
            if !families.contains(&pattern) {
                families.push(pattern);
            }
        }
    }
    families
}

/// The candidate closest to `input` by edit distance, when it is close enough to be a typo of
/// it (at most 3 edits, and at most a third of the input's length).
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = 3.min(input.chars().count().div_ceil(3));
    candidates
        .into_iter()
        .map(|c| (edit_distance(input, c), c))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (insertions, deletions, substitutions) over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Flag: the event type is not one Kapso documents. The event is stored anyway.
pub const FLAG_UNKNOWN_TYPE: &str = "unknown_event_type";
/// Flag: the identifier the event type should carry is missing; the fallback key was used.
pub const FLAG_MISSING_IDENTIFIER: &str = "missing_identifier";
/// Flag: a v1 payload whose phone number could not be found.
pub const FLAG_V1_PARTIAL: &str = "v1_partial";
/// Flag: an element of a batch whose `X-Batch-Size` header disagrees with the elements it holds
/// (something between Kapso and this server may have cut or changed the body). Stored anyway.
pub const FLAG_BATCH_SIZE_MISMATCH: &str = "batch_size_mismatch";
/// Flag: the event was not delivered by a webhook but read back from Kapso's message history
/// by catch-up after an outage (its payload is a reconstruction of the webhook's).
pub const FLAG_BACKFILLED: &str = "backfilled";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    V1,
    V2,
}

impl PayloadVersion {
    /// Reads `X-Webhook-Payload-Version`; anything but `v1` is treated as v2 (Kapso's default),
    /// and a v1 body without the header is recognised by its `whatsapp_config` object.
    pub fn detect(header: Option<&str>, payload: &Map<String, Value>) -> Self {
        match header.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("v1") => PayloadVersion::V1,
            Some(v) if v.eq_ignore_ascii_case("v2") => PayloadVersion::V2,
            _ if payload.get("whatsapp_config").is_some_and(Value::is_object) => PayloadVersion::V1,
            _ => PayloadVersion::V2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadVersion::V1 => "v1",
            PayloadVersion::V2 => "v2",
        }
    }
}

/// The key that makes two deliveries of the same event collide in the inbox. Together with the
/// event type it is unique (CONTRACT.md §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeKey(String);

impl DedupeKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an event came from inside its delivery; used when the event has no identifier (and to
/// tell apart phone-number events whose payload carries no time).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub idempotency_key: Option<&'a str>,
    /// Position in a batch (0 for a single event).
    pub index: usize,
}

/// One event, normalised. Built only by [`Event::from_payload`].
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: String,
    pub payload_version: PayloadVersion,
    pub phone_number_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    pub direction: Option<String>,
    /// The message's own timestamp (Unix seconds), when the payload has one.
    pub occurred_at: Option<i64>,
    pub dedupe_key: DedupeKey,
    pub flags: Vec<&'static str>,
    pub payload: Value,
    /// The payload exactly as Kapso sent it (numbers and escapes unchanged), when it was not
    /// normalised (v1 payloads are stored normalised, their fields kept alongside).
    pub payload_text: Option<String>,
    /// False when no route listens to this event type: it is stored as already routed, so the
    /// dispatcher never reads it. True until the ingest side knows the routes.
    pub awaits_routing: bool,
}

impl Event {
    /// Normalises one event payload (a JSON object) of the given type.
    pub fn from_payload(
        event_type: &str,
        version: PayloadVersion,
        mut payload: Map<String, Value>,
        origin: Origin<'_>,
    ) -> Event {
        let mut flags = Vec::new();
        if version == PayloadVersion::V1 && !normalise_v1(&mut payload) {
            flags.push(FLAG_V1_PARTIAL);
        }
        if !is_known_event_type(event_type) {
            flags.push(FLAG_UNKNOWN_TYPE);
        }
        let payload = Value::Object(payload);

        let message = payload.get("message");
        let conversation = payload.get("conversation");
        let phone_number_id = str_at(&payload, &["phone_number_id"])
            .or_else(|| conversation.and_then(|c| str_at(c, &["phone_number_id"])))
            .or_else(|| message.and_then(|m| str_at(m, &["kapso", "phone_number_id"])));
        let conversation_id = conversation.and_then(|c| str_at(c, &["id"]));
        let message_id = message.and_then(|m| str_at(m, &["id"]));
        let message_type = message.and_then(|m| str_at(m, &["type"]));
        let direction = message.and_then(|m| str_at(m, &["kapso", "direction"]));
        let occurred_at = message
            .and_then(|m| m.get("timestamp"))
            .and_then(as_unix_seconds);

        let dedupe_key = match natural_key(event_type, &payload, origin) {
            Some(key) => DedupeKey(key),
            None => {
                if is_known_event_type(event_type) {
                    flags.push(FLAG_MISSING_IDENTIFIER);
                }
                fallback_key(&payload, origin)
            }
        };

        Event {
            event_type: event_type.to_owned(),
            payload_version: version,
            phone_number_id,
            conversation_id,
            message_id,
            message_type,
            direction,
            occurred_at,
            dedupe_key,
            flags,
            payload,
            payload_text: None,
            awaits_routing: true,
        }
    }

    /// The payload as stored: Kapso's own text when kept, else the (normalised) JSON.
    pub fn stored_payload(&self) -> String {
        match &self.payload_text {
            Some(text) => text.clone(),
            None => self.payload.to_string(),
        }
    }

    /// Flags as stored: `None` when the event was fully understood.
    pub fn flags_text(&self) -> Option<String> {
        (!self.flags.is_empty()).then(|| self.flags.join(","))
    }
}

/// The identifier of each event type, with what tells two occurrences of it apart where the
/// payload allows, or `None` when the type has none or the payload lacks it.
fn natural_key(event_type: &str, payload: &Value, origin: Origin<'_>) -> Option<String> {
    let message_id = || str_at(payload, &["message", "id"]);
    let conversation_id = || str_at(payload, &["conversation", "id"]);
    if let Some(status) = event_type.strip_prefix("whatsapp.message.") {
        let id = message_id()?;
        return Some(if status == "received" {
            format!("msg:{id}")
        } else {
            format!("msg:{id}:{status}")
        });
    }
    if event_type == "whatsapp.conversation.inactive" {
        let conv = conversation_id()?;
        let since = str_at(payload, &["since_message", "id"])
            .or_else(|| str_at(payload, &["since_message", "whatsapp_message_id"]))?;
        let minutes = payload.get("inactivity").and_then(|i| i.get("minutes"))?;
        return Some(format!("conv:{conv}:since:{since}:after:{minutes}"));
    }
    if event_type == "whatsapp.conversation.ended" {
        // A conversation that is reopened can end again: the time it was last changed tells the
        // two endings apart (a retry of one carries the same time).
        let conv = conversation_id()?;
        let at = str_at(payload, &["conversation", "updated_at"])
            .or_else(|| str_at(payload, &["conversation", "last_active_at"]));
        return Some(match at {
            Some(at) => format!("conv:{conv}:at:{at}"),
            None => format!("conv:{conv}"),
        });
    }
    if event_type.starts_with("whatsapp.conversation.") {
        return conversation_id().map(|c| format!("conv:{c}"));
    }
    if event_type.starts_with("whatsapp.phone_number.") {
        // A number can be connected, removed and connected again: the customer it belongs to
        // and a time, when the payload has one, else the delivery's idempotency key (repeated on
        // Kapso's retries of that delivery), tell the occurrences apart.
        let phone = str_at(payload, &["phone_number_id"])?;
        let customer = str_at(payload, &["customer", "id"]).unwrap_or_default();
        let at = ["created_at", "updated_at", "deleted_at", "timestamp"]
            .iter()
            .find_map(|field| str_at(payload, &[field]));
        return Some(match (at, origin.idempotency_key) {
            (Some(at), _) => format!("phone:{phone}:{customer}:at:{at}"),
            (None, Some(key)) if !key.is_empty() => format!("phone:{phone}:{customer}:idem:{key}"),
            (None, _) => format!("phone:{phone}:{customer}"),
        });
    }
    if event_type == "whatsapp.contact.marketing_preference_changed" {
        // Kapso: at-least-once and unordered; `sequence` increases with every change.
        let contact = str_at(payload, &["contact", "id"])
            .or_else(|| str_at(payload, &["contact", "wa_id"]))?;
        let sequence = str_at(payload, &["marketing_preference", "sequence"])
            .or_else(|| str_at(payload, &["marketing_preference", "occurred_at"]))?;
        return Some(format!("contact:{contact}:marketing:{sequence}"));
    }
    if event_type == "whatsapp.contact.identity_changed" {
        let contact = str_at(payload, &["contact", "id"])
            .or_else(|| str_at(payload, &["contact", "wa_id"]))?;
        let identity = str_at(payload, &["contact", "business_scoped_user_id"])
            .or_else(|| str_at(payload, &["contact", "updated_at"]))?;
        return Some(format!("contact:{contact}:identity:{identity}"));
    }
    if event_type.starts_with("whatsapp.config.") {
        return str_at(payload, &["whatsapp_config", "id"]).map(|c| format!("config:{c}"));
    }
    if event_type.starts_with("workflow.execution.") {
        return str_at(payload, &["workflow_execution_id"]).map(|w| format!("workflow:{w}"));
    }
    None
}

/// For events without an identifier: the delivery's idempotency key plus the position in the
/// batch (stable across Kapso's retries of that delivery), else a hash of the payload itself.
fn fallback_key(payload: &Value, origin: Origin<'_>) -> DedupeKey {
    match origin.idempotency_key {
        Some(key) if !key.is_empty() => DedupeKey(format!("idem:{key}#{}", origin.index)),
        _ => {
            // serde_json's map is ordered by key, so equal payloads serialise to equal bytes.
            let digest = Sha256::digest(payload.to_string().as_bytes());
            DedupeKey(format!("sha256:{}", hex::encode(digest)))
        }
    }
}

/// Rewrites a v1 payload into the v2 shape in place, keeping the v1 fields beside the v2 ones.
/// Returns false when the phone number could not be found.
fn normalise_v1(payload: &mut Map<String, Value>) -> bool {
    let phone_number_id = payload
        .get("whatsapp_config")
        .and_then(|c| str_at(c, &["phone_number_id"]));
    if let Some(id) = &phone_number_id {
        payload
            .entry("phone_number_id")
            .or_insert_with(|| Value::String(id.clone()));
        if let Some(Value::Object(conversation)) = payload.get_mut("conversation") {
            conversation
                .entry("phone_number_id")
                .or_insert_with(|| Value::String(id.clone()));
        }
    }
    if let Some(Value::Object(message)) = payload.get_mut("message") {
        if let Some(kind) = message.get("message_type").cloned() {
            message.entry("type").or_insert(kind.clone());
            if kind == "text" {
                if let Some(content) = message.get("content").cloned() {
                    message
                        .entry("text")
                        .or_insert_with(|| serde_json::json!({ "body": content }));
                }
            }
        }
        let mut kapso = Map::new();
        for field in ["direction", "origin", "status", "content"] {
            if let Some(value) = message.get(field) {
                kapso.insert(field.to_owned(), value.clone());
            }
        }
        if !kapso.is_empty() {
            if let Value::Object(existing) = message
                .entry("kapso")
                .or_insert_with(|| Value::Object(Map::new()))
            {
                for (k, v) in kapso {
                    existing.entry(k).or_insert(v);
                }
            }
        }
    }
    phone_number_id.is_some()
}

/// A string (or number, rendered) at a path of object keys.
pub fn str_at(value: &Value, path: &[&str]) -> Option<String> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    match current {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The digits of a phone number, however it is written (`+1 555-010-0200` → `15550100200`).
pub fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// The human-readable text of a message object: text body, button or list reply title,
/// media caption, or Kapso's rendered `content`.
pub fn message_text(message: &Value) -> Option<String> {
    str_at(message, &["text", "body"])
        .or_else(|| str_at(message, &["interactive", "button_reply", "title"]))
        .or_else(|| str_at(message, &["interactive", "list_reply", "title"]))
        .or_else(|| str_at(message, &["button", "text"]))
        .or_else(|| {
            let kind = str_at(message, &["type"])?;
            str_at(message, &[kind.as_str(), "caption"])
        })
        .or_else(|| str_at(message, &["kapso", "content"]))
}

/// Kapso sends Unix seconds as a string; accept a number too.
pub(crate) fn as_unix_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, payload: Value) -> Event {
        let Value::Object(map) = payload else {
            panic!("test payload must be an object")
        };
        Event::from_payload(
            event_type,
            PayloadVersion::V2,
            map,
            Origin {
                idempotency_key: Some("idem-1"),
                index: 0,
            },
        )
    }

    #[test]
    fn typos_of_known_types_get_a_suggestion_and_strangers_none() {
        let known = || known_event_types();
        assert_eq!(
            did_you_mean("whatsapp.mesage.received", known()),
            Some("whatsapp.message.received")
        );
        assert_eq!(
            did_you_mean("whatsapp.message.recieved", known()),
            Some("whatsapp.message.received")
        );
        assert_eq!(did_you_mean("whatsapp.message.received", known()), None);
        assert_eq!(did_you_mean("order.shipped", known()), None);
        assert_eq!(
            did_you_mean("inbund", ["inbound", "outbound"]),
            Some("inbound")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn patterns_must_cover_a_known_type() {
        assert!(pattern_matches_known_type("*"));
        assert!(pattern_matches_known_type("whatsapp.message.*"));
        assert!(pattern_matches_known_type("workflow.*"));
        assert!(pattern_matches_known_type("whatsapp.config.deleted"));
        assert!(!pattern_matches_known_type("whatsapp.mesage.*"));
        assert!(!pattern_matches_known_type("whatsapp.message.recieved"));
        assert!(known_event_families().contains(&"whatsapp.message.*".to_owned()));
    }

    #[test]
    fn received_message_is_keyed_by_wamid_and_carries_routing_fields() {
        let e = event(
            "whatsapp.message.received",
            json!({"message": {"id": "wamid.A", "type": "text", "timestamp": "1764093600",
                    "kapso": {"direction": "inbound"}},
                   "conversation": {"id": "conv-1", "phone_number_id": "111"},
                   "phone_number_id": "222"}),
        );
        assert_eq!(e.dedupe_key.as_str(), "msg:wamid.A");
        assert_eq!(e.phone_number_id.as_deref(), Some("222"));
        assert_eq!(e.conversation_id.as_deref(), Some("conv-1"));
        assert_eq!(e.message_type.as_deref(), Some("text"));
        assert_eq!(e.direction.as_deref(), Some("inbound"));
        assert_eq!(e.occurred_at, Some(1_764_093_600));
        assert!(e.flags.is_empty());
    }

    #[test]
    fn status_events_of_one_message_get_distinct_keys() {
        let p = json!({"message": {"id": "wamid.OUT"}});
        let delivered = event("whatsapp.message.delivered", p.clone());
        let read = event("whatsapp.message.read", p);
        assert_ne!(delivered.dedupe_key, read.dedupe_key);
    }

    #[test]
    fn inactive_events_differ_by_anchor_and_minutes() {
        let base = |since: &str, minutes: u32| {
            event(
                "whatsapp.conversation.inactive",
                json!({"conversation": {"id": "c"}, "since_message": {"id": since},
                       "inactivity": {"minutes": minutes}}),
            )
            .dedupe_key
        };
        assert_eq!(base("m1", 30), base("m1", 30));
        assert_ne!(base("m1", 30), base("m2", 30));
        assert_ne!(base("m1", 30), base("m1", 60));
    }

    #[test]
    fn a_reopened_conversations_second_ending_is_its_own_event() {
        let ended = |updated_at: &str| {
            event(
                "whatsapp.conversation.ended",
                json!({"conversation": {"id": "c", "status": "ended", "updated_at": updated_at}}),
            )
            .dedupe_key
        };
        assert_eq!(
            ended("2026-11-25T18:00:00Z"),
            ended("2026-11-25T18:00:00Z"),
            "a retry"
        );
        assert_ne!(ended("2026-11-25T18:00:00Z"), ended("2026-11-26T09:30:00Z"));
    }

    #[test]
    fn a_reconnected_number_is_its_own_event_and_a_retry_is_not() {
        let created = |payload: Value, key: &str| {
            let Value::Object(map) = payload else {
                panic!()
            };
            Event::from_payload(
                "whatsapp.phone_number.created",
                PayloadVersion::V2,
                map,
                Origin {
                    idempotency_key: Some(key),
                    index: 0,
                },
            )
            .dedupe_key
        };
        let plain = json!({"phone_number_id": "106540352242922", "customer": {"id": "cust-1"}});
        // Kapso's retries of one delivery repeat its idempotency key.
        assert_eq!(created(plain.clone(), "d-1"), created(plain.clone(), "d-1"));
        // Connected again later: a new delivery.
        assert_ne!(created(plain.clone(), "d-1"), created(plain.clone(), "d-2"));
        // To another customer.
        let other = json!({"phone_number_id": "106540352242922", "customer": {"id": "cust-2"}});
        assert_ne!(created(plain, "d-1"), created(other, "d-1"));
        // With a time in the payload, the time decides, whatever the delivery.
        let at =
            |t: &str| json!({"phone_number_id": "1", "customer": {"id": "c"}, "created_at": t});
        assert_eq!(created(at("t1"), "d-1"), created(at("t1"), "d-2"));
        assert_ne!(created(at("t1"), "d-1"), created(at("t2"), "d-1"));
    }

    #[test]
    fn unknown_type_is_flagged_and_keyed_by_idempotency_key_and_position() {
        let e = event("whatsapp.something.new", json!({"x": 1}));
        assert_eq!(e.flags, vec![FLAG_UNKNOWN_TYPE]);
        assert_eq!(e.dedupe_key.as_str(), "idem:idem-1#0");
    }

    #[test]
    fn known_type_without_identifier_is_flagged() {
        let e = event("whatsapp.message.received", json!({"message": {}}));
        assert_eq!(e.flags, vec![FLAG_MISSING_IDENTIFIER]);
    }

    #[test]
    fn without_idempotency_key_equal_payloads_hash_equal() {
        let make = |v: Value| {
            let Value::Object(map) = v else { panic!() };
            Event::from_payload(
                "custom",
                PayloadVersion::V2,
                map,
                Origin {
                    idempotency_key: None,
                    index: 0,
                },
            )
            .dedupe_key
        };
        assert_eq!(make(json!({"a": 1, "b": 2})), make(json!({"b": 2, "a": 1})));
        assert_ne!(make(json!({"a": 1})), make(json!({"a": 2})));
    }

    #[test]
    fn v1_payload_is_normalised_to_v2_fields() {
        let Value::Object(map) = json!({
            "message": {"id": "wamid.V1", "message_type": "text", "content": "hello",
                        "direction": "inbound", "origin": "cloud_api"},
            "conversation": {"id": "c1", "whatsapp_config_id": "cfg"},
            "whatsapp_config": {"id": "cfg", "phone_number_id": "106540352242922"},
            "is_new_conversation": true
        }) else {
            panic!()
        };
        let origin = Origin {
            idempotency_key: None,
            index: 0,
        };
        let e = Event::from_payload("whatsapp.message.received", PayloadVersion::V1, map, origin);
        assert!(e.flags.is_empty(), "{:?}", e.flags);
        assert_eq!(e.phone_number_id.as_deref(), Some("106540352242922"));
        assert_eq!(e.message_type.as_deref(), Some("text"));
        assert_eq!(e.direction.as_deref(), Some("inbound"));
        assert_eq!(e.payload["message"]["text"]["body"], "hello");
        assert_eq!(
            e.payload["conversation"]["phone_number_id"],
            "106540352242922"
        );
    }

    #[test]
    fn v1_without_config_is_flagged_partial() {
        let Value::Object(map) = json!({"message": {"id": "wamid.V1"}}) else {
            panic!()
        };
        let origin = Origin {
            idempotency_key: None,
            index: 0,
        };
        let e = Event::from_payload("whatsapp.message.received", PayloadVersion::V1, map, origin);
        assert_eq!(e.flags, vec![FLAG_V1_PARTIAL]);
    }

    #[test]
    fn version_is_detected_from_header_then_body() {
        let Value::Object(v1_body) = json!({"whatsapp_config": {"id": "x"}}) else {
            panic!()
        };
        let empty = Map::new();
        assert_eq!(
            PayloadVersion::detect(Some("v1"), &empty),
            PayloadVersion::V1
        );
        assert_eq!(PayloadVersion::detect(None, &v1_body), PayloadVersion::V1);
        assert_eq!(
            PayloadVersion::detect(Some("v2"), &v1_body),
            PayloadVersion::V2
        );
        assert_eq!(PayloadVersion::detect(None, &empty), PayloadVersion::V2);
    }
}
