//! The real binary under signals: SIGTERM while a client holds a half-sent request (a graceful
//! stop within the grace period), and SIGKILL under load (no acknowledged delivery lost, every
//! message answered, no reply repeated).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::kapso_sim::{SimConfig, SimulatedKapso};

use super::{binary_config, database, deliver_to, operator_db, start_binary, stored_wamids};
use crate::payloads::message_received;
use crate::server_process::ServerProcess;

/// The real binary, SIGTERMed while a client holds a half-sent request, exits within
/// `shutdown_grace_ms` in all (what `docker stop` needs), with status 0.
#[test]
fn the_binary_exits_within_the_grace_period_while_a_client_holds_a_half_sent_request() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(dir.path(), "shutdown_grace_ms = 1500", "", "");
    let mut server = ServerProcess::start(&config);
    let mut half_sent = std::net::TcpStream::connect(&server.addr).unwrap();
    half_sent
        .write_all(b"POST /webhooks/support HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();

    let signalled = Instant::now();
    server.terminate();
    let exit = server.wait_exit(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_millis(1500),
        "exited {took:?} after SIGTERM; shutdown_grace_ms is 1500"
    );
    drop(half_sent);
}

const API_KEY: &str = "test-api-key";
/// Job workers of the killed server. Up to two replies per worker can be accepted by Kapso
/// without their sent mark committed (a job's plan can join a plan write queued before the
/// previous job's mark, `src/write_queue/coalesced.rs`); the restarted server reads Kapso's
/// message history before sending any of them again, so none repeats (see FAULTS.md).
const WORKERS: usize = 8;
/// Clients posting at once, as Kapso does for a busy number.
const CLIENTS: usize = 16;
/// The kill comes once this many replies reached the proxy: replies and posts are in flight.
const KILL_AFTER_REPLIES: usize = 500;
/// A bound on the messages posted, should the replies never come.
const MAX_MESSAGES: usize = 20_000;

fn wamid(m: usize) -> String {
    format!("wamid.S{m}")
}

/// Message `m`, in a conversation of its own (so replies run in parallel), text `s{m}`.
fn message(m: usize) -> serde_json::Value {
    message_received(&wamid(m), &format!("conv-sigkill-{m}"), &format!("s{m}"))
}

/// Kapso pointed at the simulator, and one route echoing every message (`echo: TEXT`).
fn echo_route(sim: &SimulatedKapso) -> String {
    format!(
        r#"
[kapso]
base_url = "{base}"
api_key = "{API_KEY}"
max_retries = 0
timeout_ms = 5000
# Not a pacing test: replies leave as fast as the workers send them.
default_send_rate = 10000

[jobs]
workers = {WORKERS}
backoff_base_ms = 20
backoff_max_ms = 100
poll_interval_ms = 200

[buffer]
enabled = false

[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = {{ kind = "reply", text = "echo: {{{{message.text}}}}" }}
"#,
        base = sim.base_url()
    )
}

/// What one client saw until the server went away or `stop` was set: the messages answered
/// 200, and those sent without a 200 (cut off by the kill).
async fn post_until_stopped(
    base_url: String,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> (Vec<usize>, Vec<usize>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut acknowledged, mut unanswered) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let m = next.fetch_add(1, Ordering::SeqCst);
        if m >= MAX_MESSAGES {
            break;
        }
        match deliver_to(&client, &base_url, &message(m)).await {
            Ok(response) if response.status() == 200 => acknowledged.push(m),
            Ok(_) => unanswered.push(m),
            Err(_) => {
                unanswered.push(m);
                break;
            }
        }
    }
    (acknowledged, unanswered)
}

/// How many replies each message text got at the proxy.
fn replies_by_text(sim: &SimulatedKapso) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for send in sim.sends() {
        let text = send.body["text"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *counts.entry(text).or_default() += 1;
    }
    counts
}

/// Jobs not yet `done` (queued, running, or dead).
async fn unfinished_jobs(db_path: &std::path::Path) -> i64 {
    let db = operator_db(db_path).await;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state <> 'done'")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    n
}

/// SIGKILL while 16 clients post and replies go out: every delivery that got 200 is in the
/// file; after a restart (and Kapso's retries of the posts the kill cut off) every message is
/// answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_delivery_and_repeats_no_reply() {
    let sim = SimulatedKapso::start(SimConfig {
        api_key: API_KEY.to_owned(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_path = database(dir.path());
    let config = binary_config(dir.path(), "", "", &echo_route(&sim));
    let mut server = start_binary(&config).await;

    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(post_until_stopped(
            server.url(""),
            next.clone(),
            stop.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.sends().len() < KILL_AFTER_REPLIES {
        assert!(
            Instant::now() < deadline,
            "{} replies in 60 s:\n{}",
            sim.sends().len(),
            server.log_lines().join("\n")
        );
        // A polling interval: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    let exit = server.kill();
    assert!(!exit.success(), "{exit:?}");
    stop.store(true, Ordering::SeqCst);
    let replies_before = sim.sends().len();
    let (mut acknowledged, mut unanswered) = (Vec::new(), Vec::new());
    while let Some(seen) = clients.join_next().await {
        let (ok, cut) = seen.unwrap();
        acknowledged.extend(ok);
        unanswered.extend(cut);
    }
    assert!(
        !unanswered.is_empty(),
        "no post was cut off: the clients had stopped before the kill"
    );

    // Every acknowledged delivery is in the file the killed process left.
    let db = operator_db(&db_path).await;
    let stored = stored_wamids(&db).await;
    db.close().await;
    let lost: Vec<usize> = acknowledged
        .iter()
        .copied()
        .filter(|m| !stored.contains(&wamid(*m)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let unanswered_but_stored = unanswered
        .iter()
        .filter(|m| stored.contains(&wamid(**m)))
        .count();

    // Restarted on the same file; Kapso retries every post that got no 200.
    let server = start_binary(&config).await;
    let client = reqwest::Client::new();
    for m in &unanswered {
        let response = deliver_to(&client, &server.url(""), &message(*m))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "Kapso's retry of message {m}");
    }

    // Every message is answered and every job is done.
    let messages = acknowledged.len() + unanswered.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = replies_by_text(&sim);
        let answered = acknowledged
            .iter()
            .chain(&unanswered)
            .filter(|m| counts.contains_key(&format!("echo: s{m}")))
            .count();
        if answered == messages && unfinished_jobs(&db_path).await == 0 {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{answered} of {messages} messages answered after the restart:\n{}",
            server.log_lines().join("\n")
        );
        // A polling interval: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counts.len(), messages, "a reply to no message: {counts:?}");
    let repeated = counts.values().filter(|n| **n > 1).count();
    assert!(counts.values().all(|n| *n <= 2), "a reply went out 3 times");
    eprintln!(
        "SIGKILL under load: {messages} messages posted by {CLIENTS} clients, {} acknowledged, {} cut off by the kill ({unanswered_but_stored} of them stored anyway); {replies_before} replies before the kill, {repeated} repeated after the restart ({WORKERS} workers); all answered {:?} after the kill",
        acknowledged.len(),
        unanswered.len(),
        killed.elapsed()
    );
    assert_eq!(
        repeated, 0,
        "{repeated} replies went out twice: the restarted server did not find them in Kapso's history"
    );
}
