//! The operator commands run as the real binary: `simulate` against a running server, `send` and
//! `phone-numbers list` against a simulated Kapso, and `demo` end to end.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard::kapso_sim::{SimConfig, SimPhoneNumber, SimulatedKapso};

use crate::test_app::TestApp;

const API_KEY: &str = "kapso_cli_test_key";

/// Runs the binary off the async runtime, so servers on this runtime keep answering it.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config file whose `[kapso]` points at `sim`.
fn kapso_config(dir: &Path, sim: &SimulatedKapso) -> String {
    let path = dir.join("switchboard.toml");
    let text = format!(
        "[kapso]\nbase_url = \"{}\"\napi_key = \"{API_KEY}\"\nmax_retries = 0\n\n[storage]\nurl = \"sqlite://{}\"\n\n[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n",
        sim.base_url(),
        dir.join("unused.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn sim(numbers: usize) -> SimulatedKapso {
    let phone_numbers = (0..numbers)
        .map(|i| {
            SimPhoneNumber::new(
                &format!("1065403522429{i:02}"),
                &format!("+1 555-000-{i:04}"),
            )
        })
        .collect();
    SimulatedKapso::start(SimConfig {
        api_key: API_KEY.to_owned(),
        phone_numbers,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn simulated_deliveries_are_stored_then_reported_as_duplicates() {
    let app = TestApp::spawn().await;
    let config = app.config_path().display().to_string();
    let url = format!("{}/webhooks/support", app.base_url);
    let simulate = |json: bool| {
        let mut list = args(&[
            "simulate",
            "--config",
            &config,
            "--webhook",
            "support",
            "--url",
            &url,
            "--text",
            "where is my order?",
            "--count",
            "2",
            "--no-retries",
        ]);
        if json {
            list.push("--json".to_owned());
        }
        run(list)
    };

    let first = simulate(true).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let reports: Value = serde_json::from_str(&stdout(&first)).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for report in reports {
        assert_eq!(report["status"], 200, "{report}");
        assert_eq!(report["answer"]["stored"], 1, "{report}");
        assert_eq!(report["attempts"].as_array().unwrap().len(), 1);
    }
    assert_eq!(app.count("events").await, 2);

    let again = simulate(false).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    assert!(
        text.contains("stored 0 new event(s), 2 duplicate(s)"),
        "{text}"
    );
    assert_eq!(app.count("events").await, 2, "the repeat stored nothing");
    assert_eq!(
        app.count("deliveries").await,
        4,
        "but every delivery is kept"
    );
}

#[tokio::test]
async fn simulate_names_an_unknown_webhook_and_a_refused_delivery() {
    let app = TestApp::spawn().await;
    let config = app.config_path().display().to_string();
    let output = run(args(&[
        "simulate",
        "--config",
        &config,
        "--webhook",
        "nope",
    ]))
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("no webhook named `nope`"), "{err}");
    assert!(err.contains("support, sales"), "{err}");

    // Signed with `support`'s secret but posted to `sales`: the server answers 401.
    let url = format!("{}/webhooks/sales", app.base_url);
    let output = run(args(&[
        "simulate",
        "--config",
        &config,
        "--webhook",
        "support",
        "--url",
        &url,
        "--no-retries",
    ]))
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("HTTP 401"), "{}", stderr(&output));
    assert_eq!(app.count("events").await, 0);
}

#[tokio::test]
async fn send_posts_through_the_meta_proxy_with_the_api_key_and_prints_the_wamid() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kapso_config(dir.path(), &sim);
    let phone = "106540352242900";

    let output = run(args(&[
        "send",
        "--config",
        &config,
        "--phone-number-id",
        phone,
        "--to",
        "+1 555-010-0200",
        "--text",
        "Your order ships today",
    ]))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let sends = sim.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].api_key.as_deref(), Some(API_KEY));
    assert_eq!(sends[0].phone_number_id, phone);
    assert_eq!(sends[0].body["to"], "15550100200");
    assert_eq!(sends[0].body["text"]["body"], "Your order ships today");
    assert!(
        stdout(&output).contains(&sends[0].wamid),
        "{}",
        stdout(&output)
    );

    let output = run(args(&[
        "send",
        "--config",
        &config,
        "--phone-number-id",
        phone,
        "--to",
        "15550100200",
        "--template",
        "order_shipped",
        "--language",
        "en_US",
        "--param",
        "Dana",
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let sends = sim.sends();
    assert_eq!(answer["message_id"], sends[1].wamid.as_str());
    assert_eq!(sends[1].body["template"]["name"], "order_shipped");
    assert_eq!(
        sends[1].body["template"]["components"][0]["parameters"][0]["text"],
        "Dana"
    );
}

#[tokio::test]
async fn send_without_an_api_key_fails_before_calling_kapso() {
    let sim = sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nokey.toml");
    let text = format!(
        "[kapso]\nbase_url = \"{}\"\n[[webhooks]]\nname = \"a\"\nsecrets = [\"s\"]\n",
        sim.base_url()
    );
    std::fs::write(&path, text).unwrap();
    let output = run(args(&[
        "send",
        "--config",
        path.to_str().unwrap(),
        "--phone-number-id",
        "1",
        "--to",
        "2",
        "--text",
        "x",
    ]))
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("kapso.api_key"),
        "{}",
        stderr(&output)
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn phone_numbers_list_follows_every_page() {
    // 23 numbers: two pages at Kapso's default page size of 20.
    let sim = sim(23).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kapso_config(dir.path(), &sim);

    let output = run(args(&[
        "phone-numbers",
        "list",
        "--config",
        &config,
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone_number_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 23, "{listed}");
    assert!(ids.contains(&"106540352242900") && ids.contains(&"106540352242922"));
    assert_eq!(
        listed[0]["display_phone_number"]
            .as_str()
            .map(|d| d.starts_with("+1 555-000-")),
        Some(true)
    );

    let output = run(args(&["phone-numbers", "list", "--config", &config])).await;
    let table = stdout(&output);
    assert!(table.starts_with("PHONE NUMBER ID"), "{table}");
    assert_eq!(table.lines().count(), 24, "{table}");
}

#[test]
fn demo_runs_the_whole_scene_and_names_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["demo", "--db", db.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let Ok(text) = rx.recv_timeout(Duration::from_secs(60)) else {
        child.kill().unwrap();
        panic!("the demo did not finish within 60 s");
    };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "stdout:\n{text}\nstderr:\n{err}");
    for stage in [
        "webhooks synced",
        "delivered",
        "buffered",
        "routed",
        "replied",
        "deduplicated",
        "stopped",
        "gave up",
        "restarted",
        "caught up",
    ] {
        assert!(text.contains(stage), "no `{stage}` in:\n{text}");
    }
    assert!(text.contains(db.to_str().unwrap()), "{text}");
    assert!(
        text.contains("Hi Dana Ruiz! Thanks for writing to Acme. How can we help?"),
        "{text}"
    );
    assert!(text.contains("we got your 3 messages"), "{text}");
    // The outage: Kapso gave up after its retries, and catch-up recovered the messages, which
    // were answered together.
    assert!(
        text.contains("4 attempts over 140 s"),
        "Kapso's 10 s / 40 s / 90 s schedule: {text}"
    );
    assert!(
        text.contains(
            "switchboard was down for 5 minutes; Kapso gave up; catch-up recovered 3 messages"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "hello? is anyone there? / I still need help with order #4471 / please call me back"
        ),
        "{text}"
    );
    assert!(text.contains("stored 0, duplicates 1"), "{text}");
    assert!(text.contains("template `reengage_customer`"), "{text}");
    assert!(db.exists());

    // The story holds together: the message that failed is not one the customer received.
    let wamids = |line: &str| -> Vec<String> {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .filter(|word| word.starts_with("wamid."))
            .map(str::to_owned)
            .collect()
    };
    let failed_line = text
        .lines()
        .find(|l| l.contains("message.failed for"))
        .unwrap_or_else(|| panic!("no message.failed delivery in:\n{text}"));
    let failed = wamids(failed_line)
        .pop()
        .unwrap_or_else(|| panic!("no wamid in {failed_line}"));
    let summary = &text[text.find("the customer received").expect("a summary")..];
    let (received, undelivered) = summary
        .split_once("not delivered")
        .unwrap_or_else(|| panic!("no undelivered list in:\n{summary}"));
    assert!(
        received.contains("the customer received 4 messages"),
        "{summary}"
    );
    let received_ids: Vec<String> = received.lines().flat_map(wamids).collect();
    assert_eq!(received_ids.len(), 4, "{summary}");
    assert!(
        !received_ids.contains(&failed),
        "{failed} listed as received:\n{summary}"
    );
    assert!(undelivered.contains(&failed), "{summary}");
    assert!(undelivered.contains("131047"), "{summary}");

    // It tells a newcomer what its Kapso terms mean and where to look next.
    for term in ["webhook ", "Meta proxy ", "wamid "] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(term)),
            "{term}: {text}"
        );
    }
    assert!(text.contains("config/demo.toml"), "{text}");
    assert!(
        text.contains(&format!("switchboard events list --db {}", db.display())),
        "{text}"
    );
}
