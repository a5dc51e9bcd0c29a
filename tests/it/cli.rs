//! The `switchboard` binary: check, events list/show, jobs list/retry.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::payloads::{message_received, message_status};
use crate::test_app::{TestApp, SECRET};

pub fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap()
}

/// Runs the binary with an empty environment (only `PATH`) in `dir`: no secret, no API key, no
/// `SWITCHBOARD_CONFIG`.
fn switchboard_bare(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir)
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
    assert!(text.contains("hello from the cli test"), "{text}");
    assert!(
        !text.contains("wamid.CLI"),
        "the table shows the text: {text}"
    );
    assert!(text.contains("whatsapp.mystery"), "{text}");
    assert!(text.contains("unknown_event_type"), "{text}");

    let output = switchboard(&["events", "list", "--config", config, "--flagged", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["event_type"], "whatsapp.mystery");
    assert_eq!(listed[0]["flags"], json!(["unknown_event_type"]));

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
    assert_eq!(listed[0]["message_id"], "wamid.CLI");
    assert_eq!(listed[0]["text"], "hello from the cli test");
    assert_eq!(listed[0]["flags"], json!([]));

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
    assert_eq!(shown["text"], "hello from the cli test");
    assert_eq!(
        shown["payload"]["message"]["text"]["body"],
        "hello from the cli test"
    );

    let output = switchboard(&["events", "show", &id.to_string(), "--config", config]);
    let text = stdout(&output);
    assert!(text.contains("wamid.CLI"), "show keeps the id: {text}");

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
    assert_eq!(listed[0]["body_bytes"], 19);
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

#[tokio::test]
async fn a_quarantined_json_body_is_shown_as_embedded_json() {
    let app = TestApp::spawn().await;
    let response = app
        .deliver_signed("support", SECRET, "whatsapp.message.received", b"[1, 2]")
        .await;
    assert_eq!(response.status(), 200);
    let config = app.config_path();
    let config = config.to_str().unwrap();
    let output = switchboard(&[
        "events",
        "list",
        "--quarantined",
        "--json",
        "--config",
        config,
    ]);
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let id = listed[0]["id"].as_i64().unwrap();
    let output = switchboard(&[
        "events",
        "show",
        &id.to_string(),
        "--quarantined",
        "--json",
        "--config",
        config,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown["body"], "[1, 2]", "the exact bytes");
    assert_eq!(shown["body_json"], json!([1, 2]));
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
    let err = stderr(&output);
    assert!(err.contains("no database at"), "{err}");
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(err.contains("c.toml") && err.contains("--db"), "{err}");

    let output = switchboard_bare(dir.path(), &["jobs", "list", "--db", db.to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(err.contains("--config"), "{err}");

    // Neither --db nor --config: the embedded config's data/switchboard.db, relative to the
    // working directory, and both ways to point elsewhere.
    let output = switchboard_bare(dir.path(), &["events", "list"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("data/switchboard.db"), "{err}");
    assert!(err.contains(dir.path().to_str().unwrap()), "{err}");
    assert!(err.contains("--db") && err.contains("--config"), "{err}");
}

/// A config as deployed: every secret comes from the environment.
const DEPLOYED_CONFIG: &str = r#"
[kapso]
api_key = "${KAPSO_API_KEY}"

[storage]
url = "sqlite://${SWITCHBOARD_DB}"

[[webhooks]]
name = "support"
secrets = ["${SUPPORT_WEBHOOK_SECRET}"]
"#;

#[tokio::test]
async fn database_commands_need_only_the_storage_settings() {
    let app = TestApp::spawn_with(
        "[[routes]]\nname = \"audit\"\non = \"whatsapp.message.*\"\nhandler = { kind = \"log\" }\n",
    )
    .await;
    let body = message_received("wamid.DBFLAG", "conv-db", "is my order on its way?");
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    // Poll (bounded) until the dispatcher has routed the event into a job.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.count("jobs").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no job was created");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = app.db_path.to_str().unwrap();

    let output = switchboard_bare(dir.path(), &["events", "list", "--db", db, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(events[0]["message_id"], "wamid.DBFLAG");
    let event_id = events[0]["id"].as_i64().unwrap();
    let output = switchboard_bare(
        dir.path(),
        &["events", "show", &event_id.to_string(), "--db", db],
    );
    assert!(
        stdout(&output).contains("is my order on its way?"),
        "{}",
        stderr(&output)
    );

    let output = switchboard_bare(dir.path(), &["jobs", "list", "--db", db, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let jobs: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(jobs[0]["route"], "audit");
    assert_eq!(
        jobs[0]["event_ids"],
        json!([event_id]),
        "an array of numbers"
    );
    let job_id = jobs[0]["id"].as_i64().unwrap().to_string();
    let output = switchboard_bare(dir.path(), &["jobs", "retry", &job_id, "--db", db]);
    let answer = format!("{}{}", stdout(&output), stderr(&output));
    assert!(answer.contains(&format!("job {job_id}")), "{answer}");

    // A deployed config whose secrets are not exported: only its [storage] is read.
    let config = dir.path().join("deployed.toml");
    std::fs::write(&config, DEPLOYED_CONFIG).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["events", "list", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHBOARD_DB", db);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("is my order on its way?"));

    // A variable of [storage] itself is still required, and named.
    let output = switchboard_bare(
        dir.path(),
        &["jobs", "list", "--config", config.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("storage.url") && err.contains("SWITCHBOARD_DB"),
        "{err}"
    );
    assert!(!err.contains("KAPSO_API_KEY"), "{err}");
}

#[tokio::test]
async fn the_message_column_shows_one_line_of_text() {
    let app = TestApp::spawn().await;
    let long = "first line\nsecond line that goes on and on well past the width of the column";
    let body = message_received("wamid.LONG", "conv-long", long);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let output = switchboard(&["events", "list", "--db", app.db_path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let row = text.lines().find(|l| l.contains("first line")).unwrap();
    assert!(
        row.contains("first line second line that goes on and…"),
        "{text}"
    );
    assert!(!text.contains("the column"), "{text}");
}

#[tokio::test]
async fn type_filter_takes_route_patterns_with_the_route_semantics() {
    use switchboard::router::EventPattern;

    let app = TestApp::spawn().await;
    let received = message_received("wamid.T1", "conv-t", "hello");
    assert_eq!(
        app.deliver("whatsapp.message.received", &received).await,
        200
    );
    let sent = message_status("wamid.T2", "sent");
    assert_eq!(app.deliver("whatsapp.message.sent", &sent).await, 200);
    for (i, event_type) in [
        "whatsapp.conversation.created",
        "whatsapp.messages.odd",
        "whatsapp_message.odd",
        "Whatsapp.Message.received",
        "whatsapp%message.x",
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"phone_number_id": "1", "n": i});
        assert_eq!(app.deliver(event_type, &body).await, 200, "{event_type}");
    }
    let db = app.db_path.to_str().unwrap();
    let all = list_ids(db, &[]);
    assert_eq!(all.len(), 7);

    for pattern in [
        "*",
        "whatsapp.message.*",
        "whatsapp.message.received",
        "whatsapp.*",
        "whatsapp_message.*",
        "whatsapp%*",
        "WHATSAPP.MESSAGE.*",
        "whatsapp.message.",
        "whatsapp.message*",
    ] {
        let matcher = EventPattern::parse(pattern);
        let expected: Vec<i64> = all
            .iter()
            .filter(|(_, t)| matcher.matches(t))
            .map(|(id, _)| *id)
            .collect();
        let found: Vec<i64> = list_ids(db, &["--type", pattern])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found, expected, "pattern {pattern}");
    }
    let messages = list_ids(db, &["--type", "whatsapp.message.*"]);
    let types: Vec<&str> = messages.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        ["whatsapp.message.sent", "whatsapp.message.received"]
    );
    let limited = list_ids(db, &["--type", "whatsapp.message.*", "--limit", "1"]);
    assert_eq!(limited.len(), 1, "the limit counts matching events only");
}

/// (id, event type) of `events list --json`, newest first.
fn list_ids(db: &str, extra: &[&str]) -> Vec<(i64, String)> {
    let mut args = vec!["events", "list", "--json", "--db", db];
    args.extend_from_slice(extra);
    let output = switchboard(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
