//! The simulated Platform API's webhook rules (CONTRACT §4.3, §7): validation of the
//! `whatsapp_webhook` envelope on create and update, server-filled defaults, merge-only
//! PATCH, filters and page-number paging. Pure functions over JSON; the HTTP side is in
//! `platform.rs`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::state::{parse_iso_millis, StoredWebhook};

/// A request the sim refuses: `(status, message)` for a `{"error": message}` body.
pub(crate) type Rejection = (u16, String);

pub(crate) fn invalid(message: impl Into<String>) -> Rejection {
    (422, message.into())
}

/// The keys a create/update may carry (others are ignored, as Rails strong params do).
const FIELDS: [&str; 13] = [
    "url",
    "secret_key",
    "kind",
    "events",
    "active",
    "payload_version",
    "buffer_enabled",
    "buffer_window_seconds",
    "max_buffer_size",
    "buffer_events",
    "inactivity_minutes",
    "headers",
    "phone_number_id",
];

/// The `whatsapp_webhook` object of a request body.
pub(crate) fn envelope(body: Option<&Value>) -> Result<&Map<String, Value>, Rejection> {
    body.and_then(|b| b.get("whatsapp_webhook"))
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("param is missing or the value is empty: whatsapp_webhook"))
}

fn int_in(
    fields: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<(), Rejection> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_i64() {
            Some(n) if range.contains(&n) => Ok(()),
            _ => Err(invalid(format!(
                "{key} must be an integer between {} and {}",
                range.start(),
                range.end()
            ))),
        },
    }
}

fn string_list(fields: &Map<String, Value>, key: &str) -> Result<(), Rejection> {
    match fields.get(key) {
        None => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(invalid(format!("{key} must be an array of strings"))),
    }
}

/// Type and range checks shared by create and update, for the keys present.
fn check_fields(fields: &Map<String, Value>) -> Result<(), Rejection> {
    if let Some(url) = fields.get("url") {
        let ok = url
            .as_str()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(invalid("Url is invalid"));
        }
    }
    if let Some(kind) = fields.get("kind") {
        if !matches!(kind.as_str(), Some("kapso" | "meta")) {
            return Err(invalid("Kind is not included in the list (kapso, meta)"));
        }
    }
    for key in ["active", "buffer_enabled"] {
        if fields.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(invalid(format!("{key} must be true or false")));
        }
    }
    for key in ["secret_key", "payload_version", "phone_number_id"] {
        if fields
            .get(key)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(invalid(format!("{key} must be a string")));
        }
    }
    if let Some(version) = fields.get("payload_version") {
        if !(version.is_null() || matches!(version.as_str(), Some("v1" | "v2"))) {
            return Err(invalid(
                "Payload version is not included in the list (v1, v2)",
            ));
        }
    }
    if fields
        .get("headers")
        .is_some_and(|v| !v.is_object() && !v.is_null())
    {
        return Err(invalid("headers must be an object"));
    }
    string_list(fields, "events")?;
    string_list(fields, "buffer_events")?;
    int_in(fields, "buffer_window_seconds", 1..=60)?;
    int_in(fields, "max_buffer_size", 1..=100)?;
    int_in(fields, "inactivity_minutes", 1..=1440)
}

fn is_true(fields: &Map<String, Value>, key: &str) -> bool {
    fields.get(key).and_then(Value::as_bool) == Some(true)
}

fn events_empty(fields: &Map<String, Value>) -> bool {
    fields
        .get("events")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or_default()
        == 0
}

/// Validates a create and returns the stored object without the server fields (`id`,
/// `project_id`, timestamps). `route_phone` is the path's phone number (number-scoped route).
pub(crate) fn new_webhook(
    input: &Map<String, Value>,
    route_phone: Option<&str>,
) -> Result<Map<String, Value>, Rejection> {
    check_fields(input)?;
    if input.get("url").is_none() {
        return Err(invalid("Url can't be blank"));
    }
    let number_route = route_phone.is_some();
    let secret = input.get("secret_key").and_then(Value::as_str);
    if number_route && secret.unwrap_or_default().is_empty() {
        return Err(invalid("Secret key can't be blank"));
    }
    let kind = input.get("kind").and_then(Value::as_str).unwrap_or("kapso");
    let phone = match route_phone {
        Some(phone) => Some(phone.to_owned()),
        None => input
            .get("phone_number_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let meta = kind == "meta";
    if meta && phone.is_none() {
        return Err(invalid("Phone number is required for meta webhooks"));
    }
    if meta && is_true(input, "buffer_enabled") {
        return Err(invalid("Buffering is not supported for meta webhooks"));
    }
    if !meta && events_empty(input) {
        return Err(invalid("Events can't be blank"));
    }
    let buffering = is_true(input, "buffer_enabled");
    let given = |key: &str, default: Value| input.get(key).cloned().unwrap_or(default);
    let mut record = Map::new();
    record.insert("url".into(), given("url", Value::Null));
    record.insert("kind".into(), json!(kind));
    record.insert(
        "events".into(),
        if meta {
            json!([])
        } else {
            given("events", json!([]))
        },
    );
    record.insert("active".into(), given("active", json!(true)));
    record.insert("phone_number_id".into(), json!(phone));
    record.insert("secret_key".into(), given("secret_key", Value::Null));
    record.insert("headers".into(), given("headers", json!({})));
    record.insert("buffer_enabled".into(), json!(buffering));
    let default_if_buffering = |n: u32| if buffering { json!(n) } else { Value::Null };
    record.insert(
        "buffer_window_seconds".into(),
        given("buffer_window_seconds", default_if_buffering(5)),
    );
    record.insert(
        "max_buffer_size".into(),
        given("max_buffer_size", default_if_buffering(50)),
    );
    record.insert("buffer_events".into(), given("buffer_events", json!([])));
    record.insert(
        "inactivity_minutes".into(),
        given("inactivity_minutes", json!(60)),
    );
    let version = if meta {
        Value::Null
    } else {
        given("payload_version", json!("v2"))
    };
    record.insert(
        "payload_version".into(),
        if version.is_null() && !meta {
            json!("v2")
        } else {
            version
        },
    );
    Ok(record)
}

/// Applies an update to `existing`: only the keys sent change; `kind` cannot.
pub(crate) fn patched(
    existing: &Map<String, Value>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, Rejection> {
    check_fields(input)?;
    let kind = existing
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("kapso");
    if let Some(new_kind) = input.get("kind").and_then(Value::as_str) {
        if new_kind != kind {
            return Err(invalid("Kind cannot be changed after creation"));
        }
    }
    let mut merged = existing.clone();
    for key in FIELDS {
        if matches!(key, "kind" | "phone_number_id") {
            continue;
        }
        if let Some(value) = input.get(key) {
            merged.insert(key.to_owned(), value.clone());
        }
    }
    if kind == "meta" {
        if is_true(input, "buffer_enabled") {
            return Err(invalid("Buffering is not supported for meta webhooks"));
        }
        merged.insert("events".into(), json!([]));
    } else if input.contains_key("events") && events_empty(input) {
        return Err(invalid("Events can't be blank"));
    }
    if merged.get("url").unwrap_or(&Value::Null).is_null() {
        return Err(invalid("Url can't be blank"));
    }
    Ok(merged)
}

/// Applies the list filters of CONTRACT §4.1 that a webhook list accepts.
pub(crate) fn matches_filters(
    hook: &StoredWebhook,
    query: &HashMap<String, String>,
) -> Result<bool, Rejection> {
    if let Some(kind) = query.get("kind") {
        if !matches!(kind.as_str(), "kapso" | "meta") {
            return Err(invalid("kind must be kapso or meta"));
        }
        if hook.str("kind") != Some(kind) {
            return Ok(false);
        }
    }
    if let Some(part) = query.get("url_contains") {
        if !hook.str("url").unwrap_or_default().contains(part.as_str()) {
            return Ok(false);
        }
    }
    if let Some(active) = query.get("active") {
        let wanted = match active.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(invalid("active must be true or false")),
        };
        if hook.json.get("active").and_then(Value::as_bool) != Some(wanted) {
            return Ok(false);
        }
    }
    let created = hook.str("created_at").and_then(parse_iso_millis);
    for (key, after) in [("created_after", true), ("created_before", false)] {
        if let Some(bound) = query.get(key) {
            let bound = parse_iso_millis(bound)
                .ok_or_else(|| invalid(format!("{key} must be an ISO-8601 date-time")))?;
            let inside = created.is_some_and(|c| if after { c > bound } else { c < bound });
            if !inside {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn number_scoped_create_needs_secret_and_events_and_fills_defaults() {
        let ok = input(
            json!({"url": "https://x.example/h", "secret_key": "s", "events": ["whatsapp.message.received"]}),
        );
        let record = new_webhook(&ok, Some("1")).unwrap();
        assert_eq!(record["kind"], "kapso");
        assert_eq!(record["payload_version"], "v2");
        assert_eq!(record["active"], true);
        assert_eq!(record["inactivity_minutes"], 60);
        assert_eq!(record["buffer_events"], json!([]));
        assert_eq!(record["phone_number_id"], "1");

        let no_secret = input(json!({"url": "https://x.example/h", "events": ["e"]}));
        assert_eq!(
            new_webhook(&no_secret, Some("1")).unwrap_err().1,
            "Secret key can't be blank"
        );
        assert!(
            new_webhook(&no_secret, None).is_ok(),
            "secret is optional on the project route"
        );
        let no_events =
            input(json!({"url": "https://x.example/h", "secret_key": "s", "events": []}));
        assert_eq!(
            new_webhook(&no_events, Some("1")).unwrap_err().1,
            "Events can't be blank"
        );
    }

    #[test]
    fn limits_and_enums_are_enforced() {
        let base = json!({"url": "https://x.example/h", "secret_key": "s", "events": ["e"]});
        for (key, value) in [
            ("buffer_window_seconds", json!(61)),
            ("max_buffer_size", json!(0)),
            ("kind", json!("slack")),
            ("payload_version", json!("v3")),
            ("url", json!("not a url")),
            ("inactivity_minutes", json!(1441)),
        ] {
            let mut body = base.clone();
            body[key] = value;
            assert_eq!(
                new_webhook(&input(body), Some("1")).unwrap_err().0,
                422,
                "{key}"
            );
        }
    }

    #[test]
    fn meta_needs_a_number_forces_no_events_and_refuses_buffering() {
        let meta = input(
            json!({"url": "https://x.example/m", "secret_key": "s", "kind": "meta", "events": ["e"]}),
        );
        assert!(new_webhook(&meta, None).is_err());
        let record = new_webhook(&meta, Some("1")).unwrap();
        assert_eq!(record["events"], json!([]));
        let mut buffered = meta.clone();
        buffered.insert("buffer_enabled".into(), json!(true));
        assert!(new_webhook(&buffered, Some("1")).is_err());
    }

    #[test]
    fn patch_merges_sent_keys_and_keeps_kind() {
        let existing = new_webhook(
            &input(json!({"url": "https://x.example/h", "secret_key": "s", "events": ["e"]})),
            Some("1"),
        )
        .unwrap();
        let merged = patched(&existing, &input(json!({"active": false}))).unwrap();
        assert_eq!(merged["active"], false);
        assert_eq!(merged["url"], "https://x.example/h");
        assert!(patched(&existing, &input(json!({"kind": "meta"}))).is_err());
        assert!(patched(&existing, &input(json!({"kind": "kapso"}))).is_ok());
    }
}
