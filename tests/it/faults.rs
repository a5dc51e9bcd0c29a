//! Faults the server must answer correctly, each asserting what docs/FAULTS.md promises: a
//! database another process holds locked, a full database (`storage.max_size_mb`), and (in
//! `signals`) SIGTERM with a half-sent request and SIGKILL under load, on the real binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::SqlitePool;

use crate::payloads::message_received;
use crate::server_process::ServerProcess;
use crate::test_app::{kapso_headers, metric, TestApp, SECRET};

mod signals;

const RECEIVED: &str = "whatsapp.message.received";

/// Polls `{base_url}/readyz` until its status is `want` (a condition with a deadline, not a
/// sleep).
async fn readyz_until(base_url: &str, want: u16) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .get(format!("{base_url}/readyz"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {want}: {body}"
        );
        // A polling interval, not synchronisation: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a config for the real binary into `dir`: one webhook (`support`, signed with
/// [`SECRET`]), a database in `dir`, and the given extra `[server]` and `[storage]` keys and
/// tables.
fn binary_config(dir: &Path, server: &str, storage: &str, extra: &str) -> PathBuf {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n[storage]\nurl = \"sqlite://{db}\"\n{storage}\n\n[[webhooks]]\nname = \"support\"\nsecrets = [\"{SECRET}\"]\n{extra}\n",
            db = database(dir).display()
        ),
    )
    .unwrap();
    config
}

/// The database file of a [`binary_config`] in `dir`.
fn database(dir: &Path) -> PathBuf {
    dir.join("switchboard.db")
}

/// Starts the binary without blocking the test's runtime.
async fn start_binary(config: &Path) -> ServerProcess {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || ServerProcess::start(&config))
        .await
        .unwrap()
}

/// Posts `body` to the `support` webhook at `base_url`, signed as Kapso signs it.
async fn deliver_to(
    client: &reqwest::Client,
    base_url: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    let bytes = serde_json::to_vec(body).unwrap();
    client
        .post(format!("{base_url}/webhooks/support"))
        .headers(kapso_headers(SECRET, RECEIVED, &bytes, None))
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
}

/// A connection to the database file as an operator would open one (no size cap).
async fn operator_db(path: &Path) -> SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    SqlitePool::connect_with(options).await.unwrap()
}

/// The `message.id` of every stored event.
async fn stored_wamids(db: &SqlitePool) -> HashSet<String> {
    sqlx::query_scalar("SELECT message_id FROM events WHERE message_id IS NOT NULL")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_locked_database_gets_503_within_the_deadline_and_readyz_says_why_until_writes_succeed() {
    let app = TestApp::spawn_with_server("request_deadline_ms = 300", "").await;
    // Another process takes the write lock and keeps it.
    let other = app.db().await;
    let mut lock = other.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let body = message_received("wamid.locked", "conv-locked", "hello");
    let started = Instant::now();
    assert_eq!(
        app.deliver(RECEIVED, &body).await,
        503,
        "not committed: never 200"
    );
    // The deadline is 300 ms; the writer would wait 5 s (busy timeout) for the lock.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}, not at the deadline",
        started.elapsed()
    );

    // Readiness is read on a read connection: it answers while the writer waits.
    let started = Instant::now();
    let response = app.get("/readyz").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/readyz took {:?}: it waited for the writer",
        started.elapsed()
    );
    drop(response);

    // Once the inbox's commit has failed (busy timeout), /readyz says why.
    let not_ready = readyz_until(&app.base_url, 503).await;
    let reason = not_ready["database"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.starts_with("writes fail"), "{not_ready}");

    // The lock goes away; Kapso retries the same delivery until it gets 200 (on a loaded
    // machine a retry can itself miss the short deadline), and it is stored once.
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    other.close().await;
    let retries_until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.deliver(RECEIVED, &body).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only the deadline may refuse it");
        assert!(
            Instant::now() < retries_until,
            "never stored after the lock went away"
        );
    }
    assert_eq!(app.count("events").await, 1);
    let ready = readyz_until(&app.base_url, 200).await;
    assert_eq!(ready["database"], "ok");
}

/// A message of about 4 KiB, so that a 1 MiB database fills up in about a hundred deliveries.
fn big_message(m: usize) -> Value {
    message_received(
        &format!("wamid.F{m}"),
        &format!("conv-full-{m}"),
        &format!("{m} {}", "x".repeat(4096)),
    )
}

/// A full database (here `storage.max_size_mb = 1`; a full disk fails the same way, with
/// SQLITE_FULL): every delivery answered 200 is stored, the others get 503 and are not, /readyz
/// says why, the failure is logged once per interval rather than once per delivery, and once
/// an operator deletes rows the same process stores deliveries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_answers_503_stores_every_200_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(dir.path(), "", "max_size_mb = 1", "");
    let server = start_binary(&config).await;
    let base = server.url("");
    let client = reqwest::Client::new();

    // Deliver until ten deliveries in a row are refused.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut first_refusal = None;
    let mut refused_in_a_row = 0;
    for m in 0.. {
        assert!(m < 5_000, "1 MiB never filled up");
        let response = deliver_to(&client, &base, &big_message(m)).await.unwrap();
        match response.status().as_u16() {
            200 => {
                accepted.push(m);
                refused_in_a_row = 0;
            }
            503 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], "storage is full; retry later");
                if first_refusal.is_none() {
                    first_refusal = Some(Instant::now());
                }
                refused.push(m);
                refused_in_a_row += 1;
                if refused_in_a_row == 10 {
                    break;
                }
            }
            other => panic!("delivery {m} got {other}: a full database must answer 503"),
        }
    }
    assert!(
        accepted.len() >= 20,
        "only {} deliveries fitted in 1 MiB",
        accepted.len()
    );

    // Every 200 is stored; no 503 is.
    let db = operator_db(&database(dir.path())).await;
    let stored = stored_wamids(&db).await;
    for m in &accepted {
        assert!(
            stored.contains(&format!("wamid.F{m}")),
            "{m} got 200 but is not stored"
        );
    }
    for m in &refused {
        assert!(
            !stored.contains(&format!("wamid.F{m}")),
            "{m} got 503 but is stored"
        );
    }

    let not_ready = readyz_until(&base, 503).await;
    let reason = not_ready["database"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("writes fail") && reason.contains("full"),
        "{not_ready}"
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &metrics,
            "switchboard_deliveries_total",
            &["result=\"storage_full\""]
        ),
        refused.len() as f64
    );

    // Logged when it started, then at most once per 10 s: not once per refused delivery.
    server.wait_for_log("database writes fail", Duration::from_secs(10));
    let failing_for = first_refusal.map_or(Duration::ZERO, |at| at.elapsed());
    let log = server.log_lines();
    let error_lines = log
        .iter()
        .filter(|line| line.contains("database writes fail"))
        .count() as u64;
    assert!(
        error_lines <= failing_for.as_secs() / 10 + 1,
        "{error_lines} error lines in {failing_for:?} for {} refused deliveries:\n{}",
        refused.len(),
        log.join("\n")
    );
    assert!(
        !log.iter().any(|line| line.contains("delivery not stored")),
        "a line per refused delivery:\n{}",
        log.join("\n")
    );

    // The operator deletes the older half of the rows from another connection; the server
    // keeps running.
    let half = i64::try_from(accepted.len() / 2).unwrap();
    for table in ["events", "deliveries"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?)"
        ))
        .bind(half)
        .execute(&db)
        .await
        .unwrap();
    }

    // The next delivery is stored, /readyz is ready again, and a refused delivery that Kapso
    // retries is stored once.
    let next = refused.last().unwrap() + 1;
    let response = deliver_to(&client, &base, &big_message(next))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ready = readyz_until(&base, 200).await;
    assert_eq!(ready["database"], "ok");
    let retried = refused[0];
    for _ in 0..2 {
        let response = deliver_to(&client, &base, &big_message(retried))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let copies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE message_id = ?")
        .bind(format!("wamid.F{retried}"))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(copies, 1);
    server.wait_for_log("database writes succeed again", Duration::from_secs(10));
    db.close().await;
}

/// A webhook name comes from the network: logged escaped, so a `%0A` in the path cannot start
/// a forged log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_name_with_a_line_break_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(dir.path(), "", "", "");
    let server = start_binary(&config).await;
    let response = reqwest::Client::new()
        .post(server.url("/webhooks/x%0AERROR%20forged%20entry"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.wait_for_log("delivery refused", Duration::from_secs(10));
    let log = server.log_lines();
    assert!(
        !log.iter().any(|line| line.starts_with("ERROR forged")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|line| line.contains(r"x\nERROR forged entry")),
        "the name is shown escaped:\n{}",
        log.join("\n")
    );
}
