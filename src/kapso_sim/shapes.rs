//! The documented shapes of a `WhatsappWebhook` object, which the simulated Platform API can be
//! told to answer in ([`super::SimConfig::webhook_shape`]), so that sync is tested against each
//! of them. The sim stores the full object; a shape only changes what a response shows.
//! Sources of each shape: `tests/fixtures/kapso-webhook-shapes/README.md`.

use serde_json::{Map, Value};

/// How webhook objects look in the sim's responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookShape {
    /// Every field of the OpenAPI `WhatsappWebhook` schema (what the sim always stored).
    #[default]
    Full,
    /// Only the schema's required keys: `id`, `url`, `kind`, `events`, `active`,
    /// `created_at`, `updated_at`, `project_id` (no `phone_number_id`, no secret).
    Minimal,
    /// As the rendered examples of docs.kapso.ai/api/platform/v1/webhooks/create-webhook and
    /// the OpenAPI's own 201/200 examples: no `kind`, no `payload_version`.
    RenderedExample,
    /// As the older rendering of the API reference (docs.kapso.ai/api-reference/webhooks/*):
    /// no `kind`, and `whatsapp_config_id` (the phone number's `internal_id`, `null` for the
    /// project) in place of `phone_number_id`.
    WhatsappConfigId,
    /// The full object without `kind`.
    NoKind,
}

impl WebhookShape {
    /// Every shape, for parameterised tests.
    pub const ALL: [WebhookShape; 5] = [
        WebhookShape::Full,
        WebhookShape::Minimal,
        WebhookShape::RenderedExample,
        WebhookShape::WhatsappConfigId,
        WebhookShape::NoKind,
    ];

    /// `stored` as this shape shows it. `phone_numbers` are the sim's `WhatsappPhoneNumber`
    /// objects (for `whatsapp_config_id`).
    pub(crate) fn render(self, stored: &Map<String, Value>, phone_numbers: &[Value]) -> Value {
        let mut hook = stored.clone();
        match self {
            WebhookShape::Full => {}
            WebhookShape::Minimal => {
                const REQUIRED: [&str; 8] = [
                    "id",
                    "url",
                    "kind",
                    "events",
                    "active",
                    "created_at",
                    "updated_at",
                    "project_id",
                ];
                hook.retain(|key, _| REQUIRED.contains(&key.as_str()));
            }
            WebhookShape::RenderedExample => {
                hook.remove("kind");
                hook.remove("payload_version");
            }
            WebhookShape::WhatsappConfigId => {
                hook.remove("kind");
                let number = hook.remove("phone_number_id");
                let config = number
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(|number| internal_id(phone_numbers, number));
                hook.insert(
                    "whatsapp_config_id".to_owned(),
                    config.map_or(Value::Null, Value::from),
                );
            }
            WebhookShape::NoKind => {
                hook.remove("kind");
            }
        }
        Value::Object(hook)
    }
}

fn internal_id<'a>(phone_numbers: &'a [Value], phone_number_id: &str) -> Option<&'a str> {
    phone_numbers
        .iter()
        .find(|p| p.get("phone_number_id").and_then(Value::as_str) == Some(phone_number_id))
        .and_then(|p| p.get("internal_id"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> Map<String, Value> {
        json!({"id": "w", "url": "https://x.example/h", "kind": "kapso", "events": ["e"],
               "active": true, "created_at": "t", "updated_at": "t", "project_id": "p",
               "phone_number_id": "1", "secret_key": "s", "payload_version": "v2"})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn config_id_shape_names_the_number_by_its_internal_id() {
        let numbers = [json!({"phone_number_id": "1", "internal_id": "4a5b-uuid"})];
        let shown = WebhookShape::WhatsappConfigId.render(&stored(), &numbers);
        assert_eq!(shown["whatsapp_config_id"], "4a5b-uuid");
        assert!(shown.get("phone_number_id").is_none());
        assert!(shown.get("kind").is_none());
        let mut project = stored();
        project.insert("phone_number_id".into(), Value::Null);
        let shown = WebhookShape::WhatsappConfigId.render(&project, &numbers);
        assert_eq!(shown["whatsapp_config_id"], Value::Null);
    }

    #[test]
    fn minimal_keeps_only_the_required_keys() {
        let shown = WebhookShape::Minimal.render(&stored(), &[]);
        let keys: Vec<&String> = shown.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        assert!(shown.get("secret_key").is_none());
    }
}
