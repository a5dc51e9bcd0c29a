use super::*;

/// Shared with the `[sync]` tests.
pub(in crate::config) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse("test.toml", text, |var| match var {
        "SECRET" => Some("s3cret".to_owned()),
        _ => None,
    })
}

/// Shared with the `[sync]` tests.
pub(in crate::config) fn hook(keys: &str) -> String {
    format!("[kapso]\napi_key = \"k\"\n[[webhooks]]\nname = \"support\"\nsecrets = [\"new\", \"old\"]\n{keys}\n")
}

/// Shared with the `[sync]` tests.
pub(in crate::config) fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn number_scoped_webhook_gets_message_and_conversation_events() {
    let config = parse(&hook("phone_number_id = \"106540352242922\"")).unwrap();
    let webhook = &config.webhooks[0];
    assert_eq!(webhook.effective_events(), NUMBER_EVENTS);
    assert_eq!(webhook.kind, WebhookKindConfig::Kapso);
    assert_eq!(webhook.payload_version, None);
    assert!(webhook.active && webhook.sync);
    assert_eq!(webhook.registered_secret().map(Secret::expose), Some("new"));
    assert!(config.sync.on_startup);
    assert!(!config.sync.prune);
}

#[test]
fn project_scoped_webhook_gets_phone_number_lifecycle_events() {
    let config = parse(&hook("")).unwrap();
    assert_eq!(config.webhooks[0].effective_events(), PROJECT_EVENTS);
}

#[test]
fn message_events_on_a_project_webhook_name_the_key_and_the_fix() {
    let err = error(&hook("events = [\"whatsapp.message.received\"]"));
    assert!(
        err.contains("webhooks[0] (name = \"support\").events[0]"),
        "{err}"
    );
    assert!(err.contains("set `phone_number_id`"), "{err}");
}

#[test]
fn project_events_on_a_number_webhook_are_rejected() {
    let err = error(&hook(
        "phone_number_id = \"1\"\nevents = [\"whatsapp.phone_number.created\"]",
    ));
    assert!(
        err.contains("webhooks[0] (name = \"support\").events[0]"),
        "{err}"
    );
    assert!(err.contains("without `phone_number_id`"), "{err}");
}

#[test]
fn unknown_and_repeated_events_are_rejected() {
    let err = error(&hook(
        "phone_number_id = \"1\"\nevents = [\"whatsapp.message.recieved\"]",
    ));
    assert!(err.contains("not a Kapso event type"), "{err}");
    assert!(
        err.contains("did you mean `whatsapp.message.received`?"),
        "{err}"
    );
    let err = error(&hook(
        "phone_number_id = \"1\"\nevents = [\"whatsapp.message.read\", \"whatsapp.message.read\"]",
    ));
    assert!(
        err.contains("webhooks[0] (name = \"support\").events[1]"),
        "{err}"
    );
    let err = error(&hook("phone_number_id = \"1\"\nevents = []"));
    assert!(
        err.contains("webhooks[0] (name = \"support\").events"),
        "{err}"
    );
}

#[test]
fn meta_kind_needs_a_number_and_refuses_kapso_only_keys() {
    let err = error(&hook("kind = \"meta\""));
    assert!(
        err.contains("webhooks[0] (name = \"support\").phone_number_id"),
        "{err}"
    );
    let err = error(&hook(
        "kind = \"meta\"\nphone_number_id = \"1\"\nkapso_buffer = {}",
    ));
    assert!(
        err.contains("webhooks[0] (name = \"support\").kapso_buffer"),
        "{err}"
    );
    let config = parse(&hook("kind = \"meta\"\nphone_number_id = \"1\"")).unwrap();
    assert!(config.webhooks[0].effective_events().is_empty());
    let err = error(&hook("kind = \"slack\""));
    assert!(
        err.contains("webhooks[0] (name = \"support\").kind"),
        "{err}"
    );
    assert!(err.contains("`meta`"), "{err}");
}

#[test]
fn one_meta_webhook_per_number() {
    let two = format!(
        "{}[[webhooks]]\nname = \"raw\"\nsecrets = [\"x\"]\nkind = \"meta\"\nphone_number_id = \"1\"\n",
        hook("kind = \"meta\"\nphone_number_id = \"1\"")
    );
    let err = error(&two);
    assert!(err.contains("webhooks[1] (name = \"raw\").kind"), "{err}");
}

#[test]
fn payload_version_is_v1_or_v2() {
    let config = parse(&hook("payload_version = \"v1\"")).unwrap();
    assert_eq!(config.webhooks[0].payload_version, Some(PayloadVersion::V1));
    let err = error(&hook("payload_version = \"v3\""));
    assert!(
        err.contains("webhooks[0] (name = \"support\").payload_version"),
        "{err}"
    );
}

#[test]
fn kapso_buffer_gets_defaults_and_limits() {
    let config = parse(&hook("phone_number_id = \"1\"\nkapso_buffer = {}")).unwrap();
    let buffer = config.webhooks[0].kapso_buffer.clone().unwrap();
    assert!(buffer.enabled);
    assert_eq!((buffer.window_seconds, buffer.max_size), (5, 50));
    assert_eq!(buffer.events, ["whatsapp.message.received"]);
    for (keys, key) in [
        ("window_seconds = 61", "kapso_buffer.window_seconds"),
        ("max_size = 0", "kapso_buffer.max_size"),
        (
            "events = [\"whatsapp.message.read\"]",
            "kapso_buffer.events[0]",
        ),
    ] {
        let err = error(&hook(&format!(
            "phone_number_id = \"1\"\nevents = [\"whatsapp.message.received\"]\nkapso_buffer = {{ {keys} }}"
        )));
        assert!(
            err.contains(&format!("webhooks[0] (name = \"support\").{key}")),
            "{err}"
        );
    }
    let err = error(&hook(
        "phone_number_id = \"1\"\nkapso_buffer = { size = 3 }",
    ));
    assert!(err.contains("unknown field `size`"), "{err}");
}

#[test]
fn inactivity_minutes_headers_and_phone_number_id_are_checked() {
    let err = error(&hook("phone_number_id = \"1\"\ninactivity_minutes = 0"));
    assert!(
        err.contains("webhooks[0] (name = \"support\").inactivity_minutes"),
        "{err}"
    );
    let err = error(&hook("headers = { \"Bad Header\" = \"x\" }"));
    assert!(
        err.contains("webhooks[0] (name = \"support\").headers"),
        "{err}"
    );
    let err = error(&hook("phone_number_id = \"+1 555\""));
    assert!(
        err.contains("webhooks[0] (name = \"support\").phone_number_id"),
        "{err}"
    );
    let config = parse(&hook(
        "phone_number_id = \"1\"\ninactivity_minutes = 30\nheaders = { X-Env = \"prod\" }\nactive = false\nsync = false",
    ))
    .unwrap();
    let webhook = &config.webhooks[0];
    assert_eq!(webhook.inactivity_minutes, Some(30));
    assert_eq!(webhook.headers["X-Env"], "prod");
    assert!(!webhook.active && !webhook.sync);
}
