//! The README's newcomer path, run as written: the minimal config checks with exactly the
//! variables the README exports, `phone-numbers list` needs only the API key, and `backup`
//! copies a running server's database.

use std::process::{Command, Output};

use switchboard::kapso_sim::{SimConfig, SimulatedKapso};

use crate::payloads::message_received;
use crate::test_app::TestApp;

/// The variables of every `export NAME=... NAME=...` line in README.md.
fn readme_exports() -> Vec<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let mut names: Vec<String> = readme
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|word| word.split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The binary with a clean environment: only PATH and `vars`.
fn switchboard(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_minimal_config_checks_with_the_variables_the_readme_exports() {
    let names = readme_exports();
    for expected in [
        "KAPSO_API_KEY",
        "KAPSO_PHONE_NUMBER_ID",
        "SUPPORT_WEBHOOK_SECRET",
        "SWITCHBOARD_PUBLIC_URL",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let values: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "KAPSO_PHONE_NUMBER_ID" => "106540352242922",
                "SWITCHBOARD_PUBLIC_URL" => "https://bot.example.com",
                _ => "readme-test-value",
            };
            (name.clone(), value.to_owned())
        })
        .collect();
    let vars: Vec<(&str, &str)> = values
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let output = switchboard(&["check", "--config", "config/minimal.toml"], &vars);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("ok (1 webhook, 1 route"),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_numbers_list_needs_only_the_api_key() {
    let sim = SimulatedKapso::start(SimConfig {
        api_key: "readme-key".to_owned(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let base = sim.base_url().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        switchboard(
            &["phone-numbers", "list"],
            &[("KAPSO_API_KEY", "readme-key"), ("KAPSO_BASE_URL", &base)],
        )
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("PHONE NUMBER ID"), "{stdout}");
    assert!(stdout.contains("106540352242922"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_running_servers_database_and_never_overwrites() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        let body = message_received(&format!("wamid.BACKUP{i}"), "conv-b", "hello");
        assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup.db");
    let db = app.db_path.to_str().unwrap().to_owned();
    let out_arg = out.to_str().unwrap().to_owned();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let args = ["backup", "--db", db.as_str(), out_arg.as_str()];
        (switchboard(&args, &[]), switchboard(&args, &[]))
    })
    .await
    .unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("backup written to"));
    assert!(
        !second.status.success(),
        "a second backup must not overwrite"
    );
    assert!(
        text(&second.stderr).contains("already exists"),
        "{}",
        text(&second.stderr)
    );

    let copy = sqlx::SqlitePool::connect(&format!("sqlite://{}", out.display()))
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&copy)
        .await
        .unwrap();
    assert_eq!(events, 3);
}
