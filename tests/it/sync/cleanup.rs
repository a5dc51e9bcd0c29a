//! What sync deletes and what it leaves: duplicates, unmanaged webhooks (only when pruning),
//! never foreign ones; and a dry run that changes nothing at all.

use switchboard::config::webhooks::NUMBER_EVENTS;
use switchboard::sync::{Action, DeleteReason, SkipReason};

use super::{
    actions, changing, config, create, hook_at, run, sim, PUBLIC_URL, SUPPORT_URL, WEBHOOKS,
};
use crate::payloads::PHONE_NUMBER_ID;

#[tokio::test]
async fn prune_deletes_only_unmanaged_webhooks_never_foreign_ones() {
    let sim = sim().await;
    let received = ["whatsapp.message.received"];
    let lifecycle = ["whatsapp.phone_number.created"];
    let old_bot = create(
        &sim,
        Some(PHONE_NUMBER_ID),
        &format!("{PUBLIC_URL}/webhooks/old-bot"),
        &received,
    )
    .await;
    let retired = create(
        &sim,
        None,
        &format!("{PUBLIC_URL}/webhooks/retired"),
        &lifecycle,
    )
    .await;
    let crm = create(
        &sim,
        Some(PHONE_NUMBER_ID),
        "https://crm.example.net/kapso",
        &received,
    )
    .await;
    let same_host = create(&sim, None, "http://127.0.0.1:9/sb/other-hook", &lifecycle).await;
    let config = config(&sim, WEBHOOKS);

    let kept = run(&config, false, false).await;

    assert_eq!(kept.foreign, 2);
    let left: Vec<&str> = kept
        .entries
        .iter()
        .filter(|e| {
            e.action
                == Action::Skipped {
                    reason: SkipReason::Unmanaged,
                }
        })
        .filter_map(|e| e.webhook_id.as_deref())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(changing(&sim).iter().all(|r| r.method != "DELETE"));

    let pruned = run(&config, false, true).await;

    let mut deleted: Vec<&str> = pruned
        .entries
        .iter()
        .filter(|e| {
            e.action
                == Action::Deleted {
                    reason: DeleteReason::Unmanaged,
                }
        })
        .filter_map(|e| e.webhook_id.as_deref())
        .collect();
    deleted.sort_unstable();
    let mut expected = [old_bot.id.as_str(), retired.id.as_str()];
    expected.sort_unstable();
    assert_eq!(deleted, expected);
    let remaining: Vec<String> = sim
        .webhooks()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(remaining.len(), 4, "ours (2) and the foreign ones (2)");
    assert!(remaining.contains(&crm.id) && remaining.contains(&same_host.id));
}

#[tokio::test]
async fn dry_run_reports_the_plan_and_sends_no_changing_request() {
    let sim = sim().await;
    let stray = create(
        &sim,
        None,
        &format!("{PUBLIC_URL}/webhooks/stray"),
        &["whatsapp.phone_number.created"],
    )
    .await;
    let before = sim.webhooks();
    let requests_before = changing(&sim).len();

    let report = run(&config(&sim, WEBHOOKS), true, true).await;

    assert!(report.dry_run && report.changed());
    assert_eq!(
        actions(&report),
        [
            (Some("support"), &Action::Created),
            (Some("lifecycle"), &Action::Created),
            (
                None,
                &Action::Deleted {
                    reason: DeleteReason::Unmanaged
                }
            )
        ]
    );
    assert_eq!(
        report.entries[2].webhook_id.as_deref(),
        Some(stray.id.as_str())
    );
    let lines = report.summary_lines();
    assert!(lines[0].starts_with("would create `support`"), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "dry run: nothing was changed");
    assert_eq!(changing(&sim).len(), requests_before, "only GETs were sent");
    assert_eq!(sim.webhooks(), before);
}

#[tokio::test]
async fn duplicates_are_reduced_to_the_newest() {
    let sim = sim().await;
    let config = config(&sim, WEBHOOKS);
    run(&config, false, false).await;
    let events: Vec<&str> = NUMBER_EVENTS.to_vec();
    let second = create(&sim, Some(PHONE_NUMBER_ID), SUPPORT_URL, &events).await;
    let newest = create(&sim, Some(PHONE_NUMBER_ID), SUPPORT_URL, &events).await;
    assert_eq!(hook_at(&sim.webhooks(), SUPPORT_URL).len(), 3);

    let report = run(&config, false, false).await;

    let support: Vec<&Action> = report
        .entries
        .iter()
        .filter(|e| e.name.as_deref() == Some("support"))
        .map(|e| &e.action)
        .collect();
    let duplicate = Action::Deleted {
        reason: DeleteReason::Duplicate,
    };
    assert_eq!(support, [&duplicate, &duplicate, &Action::Unchanged]);
    let hooks = sim.webhooks();
    let left = hook_at(&hooks, SUPPORT_URL);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], newest.id.as_str());
    assert!(hooks.iter().all(|h| h["id"] != second.id.as_str()));
    assert!(!run(&config, false, false).await.changed());
}
