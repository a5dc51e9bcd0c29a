//! `switchboard simulate` when the server is down or refuses: it fails fast on a connection
//! failure, and says so before every retry it waits for.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::test_app::TestApp;

/// Runs the binary on its own thread; `None` when it has not finished within `limit`.
fn run_within(args: Vec<String>, limit: Duration) -> Option<(Output, Duration)> {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(&args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => Some((output.unwrap(), started.elapsed())),
        Err(_) => {
            // Only the child this test started, by its id.
            let _ = Command::new("kill").arg(id.to_string()).status();
            None
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A URL on loopback where nothing listens.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/webhooks/support")
}

fn config_file(dir: &std::path::Path) -> String {
    let path = dir.join("sim.toml");
    std::fs::write(
        &path,
        "[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n",
    )
    .unwrap();
    path.display().to_string()
}

fn simulate(config: &str, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "simulate",
        "--config",
        config,
        "--webhook",
        "support",
        "--url",
        url,
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(str::to_owned).collect()
}

#[test]
fn an_unreachable_server_fails_at_once_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let url = closed_url();
    // Kapso's default schedule (10 s, 40 s, 90 s) is in force: only failing fast ends in time.
    let (output, took) = run_within(simulate(&config, &url, &[]), Duration::from_secs(10))
        .expect("simulate kept retrying an unreachable server");
    assert!(!output.status.success());
    let err = text(&output.stderr);
    assert!(err.contains(&format!("cannot reach {url}")), "{err}");
    assert!(err.contains("switchboard serve"), "{err}");
    assert!(err.contains("--retry-unreachable"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn retry_unreachable_follows_the_schedule_and_announces_each_retry() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let url = closed_url();
    let args = simulate(
        &config,
        &url,
        &["--retry-unreachable", "--retry-delays", "0,0", "--json"],
    );
    let (output, _) = run_within(args, Duration::from_secs(10)).expect("finished");
    assert!(!output.status.success());
    let err = text(&output.stderr);
    assert_eq!(err.matches("retrying in 0 s").count(), 2, "{err}");
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["attempts"].as_array().unwrap().len(), 3);
    assert!(err.contains("not accepted"), "{err}");
}

#[tokio::test]
async fn a_refusing_server_is_retried_with_a_line_before_each_wait() {
    let app = TestApp::spawn().await;
    let config = app.config_path().display().to_string();
    // Signed with `support`'s secret but posted to `sales`: the server answers 401.
    let url = format!("{}/webhooks/sales", app.base_url);
    let args = simulate(&config, &url, &["--retry-delays", "0,0"]);
    let (output, _) =
        tokio::task::spawn_blocking(move || run_within(args, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("finished");
    assert!(!output.status.success());
    let err = text(&output.stderr);
    assert!(
        err.contains("attempt 1 failed (HTTP 401); retrying in 0 s"),
        "{err}"
    );
    assert!(
        err.contains("attempt 2 failed (HTTP 401); retrying in 0 s"),
        "{err}"
    );
    assert!(err.contains("HTTP 401"), "{err}");
}
