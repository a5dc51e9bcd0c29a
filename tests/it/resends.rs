//! No blind resends: a send whose outcome is unknown (Kapso took the message but its answer was
//! lost, here a 500 after accepting) is not sent again until Kapso's message history has been
//! read; a send Kapso never took is sent again.

use serde_json::Value;
use switchboard::kapso_sim::ScriptedResponse;

use crate::payloads::text_at;
use crate::pipeline::{pipeline_config, settled_jobs, sim};
use crate::test_app::TestApp;

const RECEIVED: &str = "whatsapp.message.received";
const ECHO: &str = r#"
[[routes]]
name = "echo"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "echo: {{message.text}}" }
"#;

async fn ledger(app: &TestApp) -> Vec<(String, Option<String>)> {
    let pool = app.db().await;
    sqlx::query_as("SELECT state, wamid FROM outbound ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_kapso_accepted_without_saying_so_is_not_sent_again() {
    let sim = sim().await;
    sim.script(ScriptedResponse::accepted_then_server_error());
    let app = TestApp::spawn_with(&pipeline_config(&sim, ECHO)).await;
    let message = text_at("wamid.LOSTANSWER", "conv-l", "ping", 1_764_093_600, false);
    assert_eq!(app.deliver(RECEIVED, &message).await, 200);

    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "done");
    assert_eq!(
        jobs[0].2, 2,
        "the 500 cost one attempt; the second found the message"
    );
    let sends = sim.sends();
    assert_eq!(sends.len(), 1, "Kapso got the message once: {sends:?}");
    let rows = ledger(&app).await;
    assert_eq!(
        rows,
        vec![("sent".to_owned(), Some(sends[0].wamid.clone()))]
    );
    // Only the retry read the history (a first attempt never needs to).
    let reads = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/messages"))
        .count();
    assert_eq!(reads, 1);
}

#[tokio::test]
async fn a_message_kapso_never_took_is_sent_again_after_checking() {
    let sim = sim().await;
    sim.script(ScriptedResponse::server_error());
    let app = TestApp::spawn_with(&pipeline_config(&sim, ECHO)).await;
    let message = text_at("wamid.FAILED500", "conv-f", "ping", 1_764_093_600, false);
    assert_eq!(app.deliver(RECEIVED, &message).await, 200);

    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "done");
    let sends = sim.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["text"]["body"], Value::from("echo: ping"));
    assert_eq!(
        ledger(&app).await,
        vec![("sent".to_owned(), Some(sends[0].wamid.clone()))]
    );
}
