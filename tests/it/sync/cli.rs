//! `switchboard webhooks sync|list|test` as a user runs them, against the simulated Kapso and a
//! running switchboard that receives the test delivery.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use switchboard::kapso_sim::SimulatedKapso;

use super::sim;
use crate::cli::switchboard;
use crate::payloads::PHONE_NUMBER_ID;
use crate::test_app::{TestApp, SECRET};

/// Runs the binary off the async runtime, so the simulated Kapso keeps answering it.
async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        switchboard(&args)
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config file registering the `support` webhook of `server_url` with `sim`.
fn write_config(
    dir: &tempfile::TempDir,
    sim: &SimulatedKapso,
    server_url: &str,
    api_key: &str,
) -> PathBuf {
    let path = dir.path().join("switchboard.toml");
    let text = format!(
        r#"
[server]
public_url = "{server_url}"

[kapso]
base_url = "{kapso}"
api_key = "{api_key}"
max_retries = 0

[[webhooks]]
name = "support"
phone_number_id = "{PHONE_NUMBER_ID}"
secrets = ["{SECRET}"]
events = ["whatsapp.message.received", "whatsapp.message.failed"]
"#,
        kapso = sim.base_url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn webhooks_sync_list_and_test_reach_the_running_server() {
    let sim = sim().await;
    let server = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &sim, &server.base_url, sim.api_key());
    let config = config.to_str().unwrap();

    let planned = cli(&["webhooks", "sync", "--dry-run", "--config", config]).await;
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(
        stdout(&planned).contains("would create `support`"),
        "{}",
        stdout(&planned)
    );
    assert!(sim.webhooks().is_empty());

    let synced = cli(&["webhooks", "sync", "--config", config]).await;
    assert!(synced.status.success(), "{}", stderr(&synced));
    let text = stdout(&synced);
    assert!(
        text.contains(&format!("created `support` (number {PHONE_NUMBER_ID})")),
        "{text}"
    );
    assert!(!text.contains(SECRET) && !stderr(&synced).contains(SECRET));

    let again = cli(&["webhooks", "sync", "--json", "--config", config]).await;
    let report: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(report["entries"][0]["action"], "unchanged");

    let listed = cli(&["webhooks", "list", "--json", "--config", config]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let hooks: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(hooks[0]["ownership"], "managed");
    assert_eq!(hooks[0]["name"], "support");
    assert!(hooks[0].get("secret_key").is_none());
    let table = stdout(&cli(&["webhooks", "list", "--config", config]).await);
    assert!(table.contains("managed: support"), "{table}");

    let tested = cli(&[
        "webhooks",
        "test",
        "support",
        "--event",
        "whatsapp.message.received",
        "--config",
        config,
    ])
    .await;
    assert!(tested.status.success(), "{}", stderr(&tested));
    let deliveries = sim.wait_for_deliveries(1, Duration::from_secs(10)).await;
    assert!(
        deliveries[0].succeeded(),
        "the server verified Kapso's signature: {deliveries:#?}"
    );
    assert_eq!(
        deliveries[0].url,
        format!("{}/webhooks/support", server.base_url)
    );
    assert_eq!(server.count("events").await, 1);
}

#[tokio::test]
async fn webhooks_commands_explain_what_is_wrong() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &sim, "http://127.0.0.1:9", "not-the-key");
    let config = config.to_str().unwrap();

    let rejected = cli(&["webhooks", "sync", "--config", config]).await;
    assert!(!rejected.status.success());
    let err = stderr(&rejected);
    assert!(
        err.contains("Kapso rejected the API key (kapso.api_key)"),
        "{err}"
    );
    assert_eq!(err.matches("Kapso rejected").count(), 1, "said once: {err}");

    let unknown = cli(&["webhooks", "test", "billing", "--config", config]).await;
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no [[webhooks]] entry is named `billing`"),
        "{}",
        stderr(&unknown)
    );

    let good = write_config(&dir, &sim, "http://127.0.0.1:9", sim.api_key());
    let missing = cli(&[
        "webhooks",
        "test",
        "support",
        "--config",
        good.to_str().unwrap(),
    ])
    .await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("run `switchboard webhooks sync` first"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn webhooks_test_refuses_when_a_route_would_answer_the_sample_for_real() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &sim, "http://127.0.0.1:9", sim.api_key());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        r#"
[[routes]]
name = "greet"
on = "whatsapp.message.*"
handler = { kind = "reply", text = "Hi!" }

[[routes]]
name = "audit"
on = "*"
handler = { kind = "log" }
"#,
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let synced = cli(&["webhooks", "sync", "--config", config]).await;
    assert!(synced.status.success(), "{}", stderr(&synced));
    let tests_asked = |sim: &SimulatedKapso| {
        sim.requests()
            .iter()
            .filter(|r| r.path.ends_with("/test"))
            .count()
    };

    let refused = cli(&["webhooks", "test", "support", "--config", config]).await;
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("routes `greet` (reply) would answer"), "{err}");
    assert!(!err.contains("audit"), "a log route sends nothing: {err}");
    assert!(err.contains("--allow-sends"), "{err}");
    assert_eq!(tests_asked(&sim), 0, "Kapso was not asked for a test");

    let allowed = cli(&[
        "webhooks",
        "test",
        "support",
        "--allow-sends",
        "--config",
        config,
    ])
    .await;
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(tests_asked(&sim), 1);
}
