//! Webhook sync with the real `KapsoClient` against the simulated Kapso on loopback: what a
//! sync creates, patches, deletes and leaves alone, and that a second run changes nothing.
//! `cleanup` covers deletions (duplicates, pruning) and dry runs, `startup` the background
//! sync of `serve`, `cli` the `webhooks` commands.

mod cleanup;
mod cli;
mod periodic;
mod shapes;
mod startup;

use serde_json::{json, Value};
use switchboard::config::webhooks::NUMBER_EVENTS;
use switchboard::kapso::{KapsoClient, RemoteWebhook, WebhookRequest};
use switchboard::kapso_sim::{RecordedRequest, SimConfig, SimulatedKapso};
use switchboard::secret::Secret;
use switchboard::sync::{sync_webhooks, Action, SyncOptions, SyncReport};
use switchboard::Config;

use crate::payloads::PHONE_NUMBER_ID;

/// Loopback, so nothing could ever reach a real host; `/sb` checks that a path prefix works.
pub const PUBLIC_URL: &str = "http://127.0.0.1:9/sb";
pub const SUPPORT_URL: &str = "http://127.0.0.1:9/sb/webhooks/support";
pub const SUPPORT_SECRET: &str = "whsec_support_current";

/// A number-scoped entry (default events) and a project-scoped one.
pub const WEBHOOKS: &str = r#"
[[webhooks]]
name = "support"
phone_number_id = "106540352242922"
secrets = ["whsec_support_current", "whsec_support_previous"]

[[webhooks]]
name = "lifecycle"
secrets = ["whsec_lifecycle"]
"#;

pub async fn sim() -> SimulatedKapso {
    SimulatedKapso::start(SimConfig::default()).await.unwrap()
}

/// A config whose `[kapso]` points at `sim` with `api_key`.
pub fn config_with_key(sim: &SimulatedKapso, api_key: &str, webhooks: &str) -> Config {
    let text = format!(
        "[server]\npublic_url = \"{PUBLIC_URL}\"\n[kapso]\nbase_url = \"{}\"\napi_key = \"{api_key}\"\nmax_retries = 0\n{webhooks}",
        sim.base_url()
    );
    Config::parse("sync-test.toml", &text, |_| None).unwrap()
}

pub fn config(sim: &SimulatedKapso, webhooks: &str) -> Config {
    config_with_key(sim, sim.api_key(), webhooks)
}

fn client(config: &Config) -> KapsoClient {
    KapsoClient::new(&config.kapso).unwrap()
}

pub async fn run(config: &Config, dry_run: bool, prune: bool) -> SyncReport {
    sync_webhooks(config, &client(config), &SyncOptions { dry_run, prune })
        .await
        .unwrap()
}

/// Requests that change something on Kapso (anything but GET).
pub fn changing(sim: &SimulatedKapso) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect()
}

pub fn actions(report: &SyncReport) -> Vec<(Option<&str>, &Action)> {
    report
        .entries
        .iter()
        .map(|e| (e.name.as_deref(), &e.action))
        .collect()
}

/// Creates a webhook directly on the sim, as someone clicking in Kapso's dashboard would.
pub async fn create(
    sim: &SimulatedKapso,
    number: Option<&str>,
    url: &str,
    events: &[&str],
) -> RemoteWebhook {
    let request = WebhookRequest::kapso(
        url,
        Secret::new(SUPPORT_SECRET),
        events.iter().map(|e| (*e).to_owned()).collect(),
    );
    let client = KapsoClient::new(&sim.kapso_config()).unwrap();
    client.create_webhook(number, &request).await.unwrap()
}

pub fn hook_at<'a>(hooks: &'a [Value], url: &str) -> Vec<&'a Value> {
    hooks.iter().filter(|h| h["url"] == url).collect()
}

#[tokio::test]
async fn first_sync_creates_each_webhook_and_a_second_sync_changes_nothing() {
    let sim = sim().await;
    let config = config(&sim, WEBHOOKS);

    let first = run(&config, false, false).await;

    assert!(first.changed());
    assert_eq!(
        actions(&first),
        [
            (Some("support"), &Action::Created),
            (Some("lifecycle"), &Action::Created)
        ]
    );
    let posts = changing(&sim);
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert_eq!(
        posts[0].path,
        format!("/platform/v1/whatsapp/phone_numbers/{PHONE_NUMBER_ID}/webhooks")
    );
    let sent = &posts[0].body.as_ref().unwrap()["whatsapp_webhook"];
    assert_eq!(sent["url"], SUPPORT_URL);
    assert_eq!(sent["secret_key"], SUPPORT_SECRET, "the first secret");
    assert_eq!(sent["payload_version"], "v2");
    assert_eq!(sent["kind"], "kapso");
    assert_eq!(sent["events"], json!(NUMBER_EVENTS));
    assert_eq!(posts[1].path, "/platform/v1/whatsapp/webhooks");
    assert_eq!(
        posts[1].body.as_ref().unwrap()["whatsapp_webhook"]["events"],
        json!([
            "whatsapp.phone_number.created",
            "whatsapp.phone_number.deleted"
        ])
    );
    let hooks = sim.webhooks();
    assert_eq!(hook_at(&hooks, SUPPORT_URL)[0]["active"], true);

    let second = run(&config, false, false).await;

    assert!(!second.changed());
    assert!(second.entries.iter().all(|e| e.action == Action::Unchanged));
    assert_eq!(changing(&sim).len(), 2, "the second sync only read");
    let lines = second.summary_lines();
    assert!(
        lines.last().unwrap().contains("nothing to change"),
        "{lines:?}"
    );
    let printed = format!(
        "{lines:?}{:?}{}",
        first.summary_lines(),
        serde_json::to_string(&first).unwrap()
    );
    assert!(!printed.contains("whsec"), "a secret leaked: {printed}");
}

#[tokio::test]
async fn changed_event_list_patches_only_that_field_of_that_webhook() {
    let sim = sim().await;
    run(&config(&sim, WEBHOOKS), false, false).await;
    let before = changing(&sim).len();
    let narrower = WEBHOOKS.replace(
        "secrets = [\"whsec_support_current\", \"whsec_support_previous\"]",
        "secrets = [\"whsec_support_current\"]\nevents = [\"whatsapp.message.received\", \"whatsapp.message.failed\"]",
    );

    let report = run(&config(&sim, &narrower), false, false).await;

    assert_eq!(
        actions(&report),
        [
            (
                Some("support"),
                &Action::Updated {
                    fields: vec!["events".to_owned()],
                    reactivated: false
                }
            ),
            (Some("lifecycle"), &Action::Unchanged)
        ]
    );
    let patches = &changing(&sim)[before..];
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let id = report.entries[0].webhook_id.as_deref().unwrap();
    assert_eq!(patches[0].method, "PATCH");
    assert_eq!(
        patches[0].path,
        format!("/platform/v1/whatsapp/phone_numbers/{PHONE_NUMBER_ID}/webhooks/{id}")
    );
    assert_eq!(
        patches[0].body,
        Some(
            json!({"whatsapp_webhook": {"events": ["whatsapp.message.received", "whatsapp.message.failed"]}})
        )
    );
}

#[tokio::test]
async fn lists_are_read_to_the_last_page() {
    let sim = sim().await;
    let config = config(&sim, WEBHOOKS);
    run(&config, false, false).await;
    for i in 0..5 {
        let url = format!("https://crm.example.net/hook-{i}");
        create(
            &sim,
            Some(PHONE_NUMBER_ID),
            &url,
            &["whatsapp.message.received"],
        )
        .await;
    }
    let before = sim.requests().len();

    let paged = client(&config).with_page_size(2);
    let report = sync_webhooks(&config, &paged, &SyncOptions::default())
        .await
        .unwrap();

    assert!(
        !report.changed(),
        "support, oldest on page 3, was found: {report:#?}"
    );
    assert_eq!(report.foreign, 5);
    let pages: Vec<String> = sim.requests()[before..]
        .iter()
        .filter(|r| {
            r.path
                .ends_with(&format!("/phone_numbers/{PHONE_NUMBER_ID}/webhooks"))
        })
        .map(|r| r.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        pages,
        [
            "page=1&per_page=2",
            "page=2&per_page=2",
            "page=3&per_page=2"
        ]
    );
}

#[tokio::test]
async fn a_webhook_kapso_paused_is_reactivated() {
    let sim = sim().await;
    let config = config(&sim, WEBHOOKS);
    let created = run(&config, false, false).await;
    let id = created.entries[0].webhook_id.clone().unwrap();
    assert!(sim.set_webhook_active(&id, false));

    let report = run(&config, false, false).await;

    assert_eq!(
        report.entries[0].action,
        Action::Updated {
            fields: vec!["active".to_owned()],
            reactivated: true
        }
    );
    assert!(
        report.summary_lines()[0].contains("re-activated"),
        "{:?}",
        report.summary_lines()
    );
    let patch = changing(&sim).pop().unwrap();
    assert_eq!(
        patch.body,
        Some(json!({"whatsapp_webhook": {"active": true}}))
    );
    assert_eq!(hook_at(&sim.webhooks(), SUPPORT_URL)[0]["active"], true);
}

#[tokio::test]
async fn a_rotated_secret_is_registered_without_being_printed() {
    let sim = sim().await;
    run(&config(&sim, WEBHOOKS), false, false).await;
    let rotated = WEBHOOKS.replace(
        "[\"whsec_support_current\", \"whsec_support_previous\"]",
        "[\"whsec_support_next\", \"whsec_support_current\"]",
    );

    let report = run(&config(&sim, &rotated), false, false).await;

    assert_eq!(
        report.entries[0].action,
        Action::Updated {
            fields: vec!["secret_key".to_owned()],
            reactivated: false
        }
    );
    assert_eq!(
        hook_at(&sim.webhooks(), SUPPORT_URL)[0]["secret_key"],
        "whsec_support_next"
    );
    let printed = format!(
        "{:?}{}",
        report.summary_lines(),
        serde_json::to_string(&report).unwrap()
    );
    assert!(!printed.contains("whsec"), "{printed}");
}

#[tokio::test]
async fn a_bad_api_key_is_a_clear_error() {
    let sim = sim().await;
    let config = config_with_key(&sim, "not-the-key", WEBHOOKS);

    let err = sync_webhooks(&config, &client(&config), &SyncOptions::default())
        .await
        .unwrap_err();

    assert!(
        err.to_string()
            .contains("Kapso rejected the API key (kapso.api_key)"),
        "{err}"
    );
    assert!(sim.webhooks().is_empty());
}

#[tokio::test]
async fn a_phone_number_outside_the_project_names_the_config_key() {
    let sim = sim().await;
    let config = config(&sim, &WEBHOOKS.replace(PHONE_NUMBER_ID, "111222333"));

    let err = sync_webhooks(&config, &client(&config), &SyncOptions::default())
        .await
        .unwrap_err()
        .to_string();

    assert!(err.contains("webhooks[0].phone_number_id"), "{err}");
    assert!(err.contains("111222333"), "{err}");
}
