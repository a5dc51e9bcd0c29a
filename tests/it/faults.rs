//! Faults the server must answer correctly: a database another process holds locked.

use std::time::{Duration, Instant};

use crate::payloads::message_received;
use crate::test_app::TestApp;

const RECEIVED: &str = "whatsapp.message.received";

/// Polls `/readyz` until its status is `want` (a condition with a deadline, not a sleep).
async fn readyz_until(app: &TestApp, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
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
    let not_ready = readyz_until(&app, 503).await;
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
    let ready = readyz_until(&app, 200).await;
    assert_eq!(ready["database"], "ok");
}

/// The real binary, SIGTERMed while a client holds a half-sent request, exits within
/// `shutdown_grace_ms` in all (what `docker stop` needs), with status 0.
#[test]
fn the_binary_exits_within_the_grace_period_while_a_client_holds_a_half_sent_request() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 1500\n\n[storage]\nurl = \"sqlite://{}\"\n\n[[webhooks]]\nname = \"support\"\nsecrets = [\"whsec_test\"]\n",
            dir.path().join("switchboard.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The address it listens on, from its log line (either stream).
    let (found, address) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let found = found.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = found.send(addr);
                }
            }
        });
    }
    let addr = match address.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            panic!("the server never logged its address");
        }
    };
    let mut half_sent = std::net::TcpStream::connect(&addr).unwrap();
    half_sent
        .write_all(b"POST /webhooks/support HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = signalled + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_millis(1500),
        "exited {took:?} after SIGTERM; shutdown_grace_ms is 1500"
    );
    drop(half_sent);
}
