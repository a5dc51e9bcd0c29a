use serde_json::json;

use super::*;

const PREFIX: &str = "https://bot.example.com/webhooks/";
const NUMBER: &str = "106540352242922";

fn desired(name: &str) -> DesiredWebhook {
    DesiredWebhook {
        name: name.to_owned(),
        url: format!("{PREFIX}{name}"),
        phone_number_id: Some(NUMBER.to_owned()),
        kind: WebhookKind::Kapso,
        events: vec![
            "whatsapp.message.received".to_owned(),
            "whatsapp.message.failed".to_owned(),
        ],
        active: true,
        payload_version: Some("v2".to_owned()),
        buffer: None,
        headers: BTreeMap::new(),
        inactivity_minutes: None,
        secret: Secret::new("whsec_new"),
        sync: true,
    }
}

/// The remote webhook a create of `wanted` gives (as Kapso fills defaults).
fn remote_of(wanted: &DesiredWebhook, id: &str, created_at: &str) -> RemoteWebhook {
    RemoteWebhook {
        id: id.to_owned(),
        url: wanted.url.clone(),
        kind: Some(wanted.kind),
        events: wanted.events.clone(),
        active: wanted.active,
        created_at: created_at.to_owned(),
        updated_at: created_at.to_owned(),
        project_id: Some("p".to_owned()),
        phone_number_id: wanted.phone_number_id.clone(),
        whatsapp_config_id: None,
        secret_key: Some(wanted.secret.clone()),
        headers: Some(BTreeMap::new()),
        buffer_enabled: Some(false),
        buffer_window_seconds: None,
        max_buffer_size: None,
        buffer_events: Vec::new(),
        inactivity_minutes: Some(60),
        payload_version: Some("v2".to_owned()),
    }
}

fn foreign(id: &str) -> RemoteWebhook {
    let mut hook = remote_of(&desired("x"), id, "2026-01-01T00:00:00Z");
    hook.url = "https://crm.example.net/kapso".to_owned();
    hook
}

fn changes(plan: &Plan) -> Vec<(Option<&str>, &Change)> {
    plan.steps
        .iter()
        .map(|s| (s.webhook_id.as_deref(), &s.change))
        .collect()
}

#[test]
fn missing_webhook_is_created_with_our_secret_and_v2() {
    let plan = plan(&[desired("support")], &[foreign("f")], PREFIX, false);
    assert_eq!(plan.foreign, 1);
    let [Step {
        change: Change::Create(request),
        ..
    }] = plan.steps.as_slice()
    else {
        panic!("{plan:?}")
    };
    let body = serde_json::to_value(request).unwrap();
    assert_eq!(body["url"], "https://bot.example.com/webhooks/support");
    assert_eq!(body["secret_key"], "whsec_new");
    assert_eq!(body["payload_version"], "v2");
    assert_eq!(body["kind"], "kapso");
    assert!(body.get("buffer_enabled").is_none(), "{body}");
}

#[test]
fn matching_webhook_is_unchanged_whatever_the_event_order() {
    let wanted = desired("support");
    let mut hook = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    hook.events.reverse();
    hook.payload_version = None;
    let plan = plan(&[wanted], &[hook], PREFIX, false);
    assert_eq!(changes(&plan), [(Some("a"), &Change::Unchanged)]);
}

#[test]
fn drift_patches_only_the_fields_that_differ() {
    let mut wanted = desired("support");
    let hook = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    wanted.events.push("whatsapp.message.read".to_owned());
    wanted.inactivity_minutes = Some(30);
    wanted.headers.insert("X-Env".to_owned(), "prod".to_owned());
    let plan = plan(&[wanted], &[hook], PREFIX, false);
    let Change::Update { patch, fields, .. } = &plan.steps[0].change else {
        panic!("{plan:?}")
    };
    assert_eq!(fields, &["events", "inactivity_minutes", "headers"]);
    assert_eq!(
        serde_json::to_value(patch).unwrap(),
        json!({"events": ["whatsapp.message.received", "whatsapp.message.failed", "whatsapp.message.read"],
               "inactivity_minutes": 30, "headers": {"X-Env": "prod"}})
    );
}

#[test]
fn paused_webhook_is_reactivated() {
    let wanted = desired("support");
    let mut hook = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    hook.active = false;
    let plan = plan(&[wanted], &[hook], PREFIX, false);
    let Change::Update {
        patch,
        fields,
        reactivated,
    } = &plan.steps[0].change
    else {
        panic!("{plan:?}")
    };
    assert_eq!(fields, &["active"]);
    assert!(reactivated);
    assert_eq!(patch.active, Some(true));
}

#[test]
fn secret_is_compared_only_when_kapso_returns_it() {
    let wanted = desired("support");
    let mut hook = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    hook.secret_key = Some(Secret::new("whsec_old"));
    let rotated = plan(
        std::slice::from_ref(&wanted),
        std::slice::from_ref(&hook),
        PREFIX,
        false,
    );
    let Change::Update { patch, fields, .. } = &rotated.steps[0].change else {
        panic!("{rotated:?}")
    };
    assert_eq!(fields, &["secret_key"]);
    assert_eq!(
        serde_json::to_value(patch).unwrap(),
        json!({"secret_key": "whsec_new"})
    );
    assert!(!format!("{rotated:?}").contains("whsec_new"));
    hook.secret_key = None;
    let hidden = plan(&[wanted], &[hook], PREFIX, false);
    assert_eq!(hidden.steps[0].change, Change::Unchanged);
}

#[test]
fn buffer_settings_are_compared_and_turned_off() {
    let mut wanted = desired("support");
    wanted.buffer = Some(BufferSettings {
        window_seconds: 10,
        max_size: 50,
        events: vec!["whatsapp.message.received".to_owned()],
    });
    let hook = remote_of(&desired("support"), "a", "2026-01-01T00:00:00Z");
    let on = plan(
        std::slice::from_ref(&wanted),
        std::slice::from_ref(&hook),
        PREFIX,
        false,
    );
    let Change::Update { fields, .. } = &on.steps[0].change else {
        panic!("{on:?}")
    };
    assert_eq!(
        fields,
        &[
            "buffer_enabled",
            "buffer_window_seconds",
            "max_buffer_size",
            "buffer_events"
        ]
    );
    let mut buffered = hook;
    buffered.buffer_enabled = Some(true);
    buffered.buffer_window_seconds = Some(10);
    buffered.max_buffer_size = Some(50);
    buffered.buffer_events = vec!["whatsapp.message.received".to_owned()];
    let same = plan(&[wanted], &[buffered.clone()], PREFIX, false);
    assert_eq!(same.steps[0].change, Change::Unchanged);
    let off = plan(&[desired("support")], &[buffered], PREFIX, false);
    let Change::Update { patch, .. } = &off.steps[0].change else {
        panic!("{off:?}")
    };
    assert_eq!(
        serde_json::to_value(patch).unwrap(),
        json!({"buffer_enabled": false})
    );
}

#[test]
fn duplicates_keep_the_newest_and_delete_the_rest() {
    let wanted = desired("support");
    let old = remote_of(&wanted, "old", "2026-01-01T00:00:00Z");
    let newest = remote_of(&wanted, "new", "2026-01-02T00:00:00.5Z");
    let middle = remote_of(&wanted, "mid", "2026-01-02T00:00:00Z");
    let plan = plan(&[wanted], &[old, newest, middle], PREFIX, false);
    assert_eq!(
        changes(&plan),
        [
            (Some("old"), &Change::Delete(DeleteReason::Duplicate)),
            (Some("mid"), &Change::Delete(DeleteReason::Duplicate)),
            (Some("new"), &Change::Unchanged),
        ]
    );
}

#[test]
fn unmanaged_is_left_alone_unless_pruning_and_foreign_never_touched() {
    let wanted = desired("support");
    let mut gone = remote_of(&desired("old-name"), "gone", "2026-01-01T00:00:00Z");
    gone.phone_number_id = Some("999".to_owned());
    let mut moved = remote_of(&wanted, "moved", "2026-01-01T00:00:00Z");
    moved.phone_number_id = None;
    let remote = [
        remote_of(&wanted, "ours", "2026-01-01T00:00:00Z"),
        gone,
        moved,
        foreign("f"),
    ];
    let kept = plan(std::slice::from_ref(&wanted), &remote, PREFIX, false);
    assert_eq!(
        changes(&kept),
        [
            (Some("ours"), &Change::Unchanged),
            (Some("gone"), &Change::Skip(SkipReason::Unmanaged)),
            (Some("moved"), &Change::Skip(SkipReason::Unmanaged)),
        ]
    );
    assert_eq!(kept.foreign, 1);
    let pruned = plan(&[wanted], &remote, PREFIX, true);
    assert_eq!(
        changes(&pruned),
        [
            (Some("ours"), &Change::Unchanged),
            (Some("gone"), &Change::Delete(DeleteReason::Unmanaged)),
            (Some("moved"), &Change::Delete(DeleteReason::Unmanaged)),
        ]
    );
    assert_eq!(pruned.foreign, 1);
}

#[test]
fn kind_conflict_is_reported_or_replaced_when_pruning() {
    let wanted = desired("support");
    let mut meta = remote_of(&wanted, "m", "2026-01-01T00:00:00Z");
    meta.kind = Some(WebhookKind::Meta);
    let kept = plan(
        std::slice::from_ref(&wanted),
        std::slice::from_ref(&meta),
        PREFIX,
        false,
    );
    assert_eq!(
        changes(&kept),
        [(
            Some("m"),
            &Change::KindConflict {
                remote: WebhookKind::Meta,
                configured: WebhookKind::Kapso
            }
        )]
    );
    let replaced = plan(&[wanted], &[meta], PREFIX, true);
    assert!(matches!(
        changes(&replaced).as_slice(),
        [
            (Some("m"), Change::Delete(DeleteReason::KindChanged)),
            (None, Change::Create(_))
        ]
    ));
}

#[test]
fn sync_false_entries_are_never_touched() {
    let mut wanted = desired("support");
    wanted.sync = false;
    let mut hook = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    hook.active = false;
    let second = remote_of(&wanted, "b", "2026-01-02T00:00:00Z");
    let plan = plan(&[wanted], &[hook, second], PREFIX, true);
    assert!(plan.steps.iter().all(|s| !s.change.changes_remote()));
    assert_eq!(plan.steps.len(), 2);
}

#[test]
fn project_scoped_and_number_scoped_entries_match_their_own_scope() {
    let mut project = desired("lifecycle");
    project.phone_number_id = None;
    project.events = vec!["whatsapp.phone_number.created".to_owned()];
    let hook = remote_of(&project, "p", "2026-01-01T00:00:00Z");
    let plan = plan(&[project, desired("support")], &[hook], PREFIX, false);
    assert_eq!(plan.steps[0].change, Change::Unchanged);
    assert!(matches!(plan.steps[1].change, Change::Create(_)));
}

fn unreadable(url: Option<&str>) -> UndecodableWebhook {
    UndecodableWebhook {
        id: Some("u".to_owned()),
        url: url.map(str::to_owned),
        error: "invalid type: string \"…\", expected a boolean".to_owned(),
    }
}

#[test]
fn an_unreadable_element_that_may_be_the_entry_blocks_only_its_create() {
    let wanted = desired("support");
    let other = format!("{PREFIX}other");
    for (element, blocked) in [
        (unreadable(Some(&wanted.url)), true),
        (unreadable(Some(&format!("{}/", wanted.url))), true),
        (unreadable(None), true),
        (unreadable(Some(&other)), false),
    ] {
        let plan = plan_with(
            std::slice::from_ref(&wanted),
            &[],
            std::slice::from_ref(&element),
            PREFIX,
            true,
        );
        let change = &plan.steps[0].change;
        if blocked {
            assert_eq!(
                change,
                &Change::Skip(SkipReason::ListIncomplete),
                "{element:?}"
            );
        } else {
            assert!(
                matches!(change, Change::Create(_)),
                "{element:?}: {change:?}"
            );
        }
    }
    let existing = remote_of(&wanted, "a", "2026-01-01T00:00:00Z");
    let plan = plan_with(
        std::slice::from_ref(&wanted),
        &[existing],
        &[unreadable(None)],
        PREFIX,
        false,
    );
    assert_eq!(changes(&plan), [(Some("a"), &Change::Unchanged)]);
}

#[test]
fn a_webhook_of_unresolved_scope_at_the_url_is_never_doubled_nor_touched() {
    let wanted = desired("support");
    let mut hook = remote_of(&wanted, "c", "2026-01-01T00:00:00Z");
    hook.phone_number_id = None;
    hook.whatsapp_config_id = Some("3c90c3cc-0d44-4b50-8888-8dd25736052a".to_owned());
    let plan = plan(std::slice::from_ref(&wanted), &[hook], PREFIX, true);
    assert_eq!(
        changes(&plan),
        [
            (Some("c"), &Change::Skip(SkipReason::ScopeUnknown)),
            (None, &Change::Skip(SkipReason::ScopeUnknown)),
        ]
    );
}

#[test]
fn a_config_id_scope_resolved_to_the_number_matches_the_entry() {
    let wanted = desired("support");
    let mut hook = remote_of(&wanted, "c", "2026-01-01T00:00:00Z");
    hook.whatsapp_config_id = Some("4a5b6c7d-8e9f-0a1b-2c3d-4e5f6a7b8c9d".to_owned());
    let plan = plan(&[wanted], &[hook], PREFIX, false);
    assert_eq!(changes(&plan), [(Some("c"), &Change::Unchanged)]);
}

#[test]
fn a_webhook_without_kind_is_kapso_and_never_a_kind_conflict() {
    let kapso = desired("support");
    let mut unstated = remote_of(&kapso, "k", "2026-01-01T00:00:00Z");
    unstated.kind = None;
    assert_eq!(unstated.kind(), WebhookKind::Kapso);
    let planned = plan(
        std::slice::from_ref(&kapso),
        std::slice::from_ref(&unstated),
        PREFIX,
        true,
    );
    assert_eq!(changes(&planned), [(Some("k"), &Change::Unchanged)]);

    let mut meta = desired("raw");
    meta.kind = WebhookKind::Meta;
    meta.events = Vec::new();
    meta.payload_version = None;
    let mut unstated = remote_of(&meta, "m", "2026-01-01T00:00:00Z");
    unstated.kind = None;
    let plan = plan(&[meta], &[unstated], PREFIX, true);
    assert_eq!(changes(&plan), [(Some("m"), &Change::Unchanged)]);
}
