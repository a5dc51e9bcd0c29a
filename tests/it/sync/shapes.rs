//! Sync against the simulated Kapso answering in each documented webhook shape
//! ([`WebhookShape::ALL`]: full, required-fields-only, the docs' rendered example without
//! `kind`, the older `whatsapp_config_id` rendering, no `kind`): the plan is right, syncing again
//! (and again after a restart) creates no second webhook, and a paused webhook is re-activated.

use switchboard::kapso_sim::{SimConfig, SimulatedKapso, WebhookShape};
use switchboard::sync::{Action, SkipReason};

use super::{actions, changing, config, create, hook_at, run, PUBLIC_URL, SUPPORT_URL, WEBHOOKS};
use crate::payloads::PHONE_NUMBER_ID;

const LIFECYCLE_URL: &str = "http://127.0.0.1:9/sb/webhooks/lifecycle";
const RAW_URL: &str = "http://127.0.0.1:9/sb/webhooks/raw";

/// [`WEBHOOKS`] plus a `meta` entry: shapes without `kind` must not make it look like a
/// `kapso` webhook to replace.
fn webhooks() -> String {
    format!("{WEBHOOKS}\n[[webhooks]]\nname = \"raw\"\nkind = \"meta\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\nsecrets = [\"whsec_raw\"]\n")
}

async fn sim_in(shape: WebhookShape) -> SimulatedKapso {
    SimulatedKapso::start(SimConfig {
        webhook_shape: shape,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn every_shape_plans_right_never_duplicates_and_reactivates() {
    for shape in WebhookShape::ALL {
        let sim = sim_in(shape).await;

        let webhooks = webhooks();
        let planned = run(&config(&sim, &webhooks), true, false).await;

        assert_eq!(
            actions(&planned),
            [
                (Some("support"), &Action::Created),
                (Some("lifecycle"), &Action::Created),
                (Some("raw"), &Action::Created)
            ],
            "{shape:?}"
        );
        assert!(
            changing(&sim).is_empty(),
            "{shape:?}: the dry run sent nothing"
        );

        let first = run(&config(&sim, &webhooks), false, false).await;
        let again = run(&config(&sim, &webhooks), false, false).await;
        // A restart: a new config and client, as `serve` builds them on every start; pruning
        // on, which would replace a webhook whose kind differs.
        let restarted = run(&config(&sim, &webhooks), false, true).await;

        assert_eq!(actions(&first), actions(&planned), "{shape:?}");
        for report in [&again, &restarted] {
            assert!(
                report.entries.iter().all(|e| e.action == Action::Unchanged),
                "{shape:?}: {report:#?}"
            );
            assert!(report.undecodable.is_empty(), "{shape:?}");
        }
        let posts = changing(&sim);
        assert_eq!(
            posts.len(),
            3,
            "{shape:?}: only the first sync created: {posts:#?}"
        );
        let hooks = sim.webhooks();
        for url in [SUPPORT_URL, LIFECYCLE_URL, RAW_URL] {
            assert_eq!(hook_at(&hooks, url).len(), 1, "{shape:?} {url}");
        }

        for (index, url) in [(0, SUPPORT_URL), (1, LIFECYCLE_URL), (2, RAW_URL)] {
            let id = first.entries[index].webhook_id.clone().unwrap();
            assert!(sim.set_webhook_active(&id, false), "{shape:?}");

            let resumed = run(&config(&sim, &webhooks), false, false).await;

            assert_eq!(
                resumed.entries[index].action,
                Action::Updated {
                    fields: vec!["active".to_owned()],
                    reactivated: true
                },
                "{shape:?} {url}"
            );
            assert_eq!(
                hook_at(&sim.webhooks(), url)[0]["active"],
                true,
                "{shape:?}"
            );
        }
        let settled = run(&config(&sim, &webhooks), false, true).await;
        assert!(!settled.changed(), "{shape:?}: {settled:#?}");
        assert_eq!(sim.webhooks().len(), 3, "{shape:?}");
        assert!(
            changing(&sim).iter().all(|r| r.method != "DELETE"),
            "{shape:?}"
        );
    }
}

/// A webhook on a phone number at the project entry's URL is not the project entry's: sync
/// learns its number whether Kapso says `phone_number_id` or only `whatsapp_config_id` (mapped
/// through the phone-number list, as no entry makes sync read that number's own list), creates
/// the project-scoped one, and leaves the other as unmanaged. Every shape that states a scope;
/// a required-fields-only object does not, and is read as project-scoped.
#[tokio::test]
async fn a_number_webhook_at_a_project_entry_url_is_told_apart_in_every_shape_with_a_scope() {
    let lifecycle_only = "\n[[webhooks]]\nname = \"lifecycle\"\nsecrets = [\"whsec_lifecycle\"]\n";
    for shape in WebhookShape::ALL {
        if shape == WebhookShape::Minimal {
            continue;
        }
        let sim = sim_in(shape).await;
        let stray = create(
            &sim,
            Some(PHONE_NUMBER_ID),
            &format!("{PUBLIC_URL}/webhooks/lifecycle"),
            &["whatsapp.message.received"],
        )
        .await;

        let report = run(&config(&sim, lifecycle_only), false, false).await;

        assert_eq!(
            actions(&report),
            [
                (Some("lifecycle"), &Action::Created),
                (
                    None,
                    &Action::Skipped {
                        reason: SkipReason::Unmanaged
                    }
                )
            ],
            "{shape:?}: {report:#?}"
        );
        assert_eq!(
            report.entries[1].phone_number_id.as_deref(),
            Some(PHONE_NUMBER_ID),
            "{shape:?}"
        );
        assert_eq!(
            report.entries[1].webhook_id.as_deref(),
            Some(stray.id.as_str())
        );
        let again = run(&config(&sim, lifecycle_only), false, false).await;
        assert!(!again.changed(), "{shape:?}: {again:#?}");
        assert_eq!(sim.webhooks().len(), 2, "{shape:?}");
    }
}
