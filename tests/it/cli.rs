//! The `switchboard` binary: check, events list/show.

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::payloads::message_received;
use crate::test_app::{TestApp, SECRET};

pub fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_accepts_the_example_config_when_its_variables_are_set() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config", "config/example.toml"])
        .env("SUPPORT_WEBHOOK_SECRET", "a")
        .env("SALES_WEBHOOK_SECRET", "b")
        .env("KAPSO_API_KEY", "k")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("ok (2 webhooks"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_names_the_file_key_and_missing_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config", "config/example.toml"])
        .env("KAPSO_API_KEY", "k")
        .env_remove("SUPPORT_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("config/example.toml"), "{err}");
    assert!(
        err.contains("webhooks[0] (name = \"support\").secrets[0]"),
        "{err}"
    );
    assert!(err.contains("SUPPORT_WEBHOOK_SECRET"), "{err}");
}

#[test]
fn check_rejects_unknown_keys_with_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[webhooks]]\nname = \"a\"\nsecret = \"x\"\n").unwrap();
    let output = switchboard(&["check", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("webhooks[0] (name = \"a\")"), "{err}");
    assert!(err.contains("unknown field `secret`"), "{err}");
}

#[test]
fn check_reports_a_missing_file() {
    let output = switchboard(&["check", "--config", "/nonexistent/switchboard.toml"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/nonexistent/switchboard.toml"));
}

#[tokio::test]
async fn events_list_and_show_read_the_inbox() {
    let app = TestApp::spawn().await;
    let body = message_received("wamid.CLI", "conv-cli", "hello from the cli test");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let flagged = json!({"phone_number_id": "1"});
    assert_eq!(app.deliver("whatsapp.mystery", &flagged).await, 200);
    let config = app.config_path();
    let config = config.to_str().unwrap();

    let output = switchboard(&["events", "list", "--config", config]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("wamid.CLI"), "{text}");
    assert!(text.contains("whatsapp.mystery"), "{text}");
    assert!(text.contains("unknown_event_type"), "{text}");

    let output = switchboard(&["events", "list", "--config", config, "--flagged", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["event_type"], "whatsapp.mystery");

    let output = switchboard(&[
        "events",
        "list",
        "--config",
        config,
        "--type",
        "whatsapp.message.received",
        "--json",
    ]);
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let id = listed[0]["id"].as_i64().unwrap();

    let output = switchboard(&[
        "events",
        "show",
        &id.to_string(),
        "--config",
        config,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown["message_id"], "wamid.CLI");
    assert_eq!(
        shown["payload"]["message"]["text"]["body"],
        "hello from the cli test"
    );

    let output = switchboard(&["events", "show", "999999", "--config", config]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no event with id 999999"));
}

#[tokio::test]
async fn quarantined_deliveries_are_listed_and_shown() {
    let app = TestApp::spawn().await;
    let response = app
        .deliver_signed(
            "support",
            SECRET,
            "whatsapp.message.received",
            b"<xml>not json</xml>",
        )
        .await;
    assert_eq!(response.status(), 200);
    let config = app.config_path();
    let config = config.to_str().unwrap();

    let output = switchboard(&["events", "list", "--quarantined", "--config", config]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("not valid JSON"), "{text}");

    let output = switchboard(&[
        "events",
        "list",
        "--quarantined",
        "--config",
        config,
        "--json",
    ]);
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let id = listed[0]["id"].as_i64().unwrap();
    let output = switchboard(&[
        "events",
        "show",
        &id.to_string(),
        "--quarantined",
        "--config",
        config,
    ]);
    assert!(
        stdout(&output).contains("<xml>not json</xml>"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn events_list_without_a_database_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let db = dir.path().join("missing.db");
    std::fs::write(
        &path,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n[[webhooks]]\nname = \"a\"\nsecrets = [\"x\"]\n",
            db.display()
        ),
    )
    .unwrap();
    let output = switchboard(&["events", "list", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no database at"),
        "{}",
        stderr(&output)
    );
}
