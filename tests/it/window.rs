//! The 24-hour window: a send handler's `outside_window` template goes instead of its free-form
//! message when the window is known closed, and in the same job when Kapso refuses the message
//! with 131047 (recorded in the outbound ledger in its place); a failed template triggers no
//! other template for its conversation (the loop guard).

use serde_json::json;
use switchboard::kapso_sim::samples::{meta_error, status_update, MessageStatus, SampleContext};
use switchboard::kapso_sim::ScriptedResponse;

use crate::payloads::text_at;
use crate::pipeline::{pipeline_config, settled_jobs, sim};
use crate::test_app::TestApp;

const RECEIVED: &str = "whatsapp.message.received";
const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

fn now_s() -> i64 {
    switchboard::clock::now_ms() / 1000
}

const ROUTE: &str = r#"
[[routes]]
name = "answer"
on = "whatsapp.message.received"
handler = { kind = "reply", text = "Hi {{contact.name}} (window open: {{window.open|?}})", outside_window = { name = "follow_up", language = "en", params = ["{{contact.name|there}}"] } }
"#;

#[tokio::test]
async fn a_closed_window_sends_the_outside_window_template_up_front() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, ROUTE)).await;
    // The customer wrote 25 hours ago (a late delivery, a backlog, a replay).
    let late = text_at(
        "wamid.OLD",
        "conv-old",
        "still there?",
        now_s() - 25 * 3600,
        false,
    );
    assert_eq!(app.deliver(RECEIVED, &late).await, 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["type"], "template");
    assert_eq!(sends[0].body["template"]["name"], "follow_up");
    assert_eq!(
        sends[0].body["template"]["components"][0]["parameters"][0]["text"],
        "Dana Ruiz"
    );

    // Within the window the free-form reply goes, and says so.
    let fresh = text_at("wamid.NEW", "conv-new", "hi", now_s() - 60, false);
    assert_eq!(app.deliver(RECEIVED, &fresh).await, 200);
    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(
        sends[1].body["text"]["body"],
        "Hi Dana Ruiz (window open: true)"
    );
}

#[tokio::test]
async fn a_131047_refusal_sends_the_template_in_the_same_job_and_the_ledger_keeps_it() {
    let sim = sim().await;
    sim.script(ScriptedResponse::graph_error(
        422,
        131047,
        "Re-engagement message",
    ));
    let app = TestApp::spawn_with(&pipeline_config(&sim, ROUTE)).await;
    // switchboard thinks the window is open (the message is recent); Kapso knows better.
    let message = text_at("wamid.W", "conv-w", "hello", now_s() - 60, false);
    assert_eq!(app.deliver(RECEIVED, &message).await, 200);

    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends.len(), 1, "the refused message was not accepted");
    assert_eq!(sends[0].body["type"], "template");
    let jobs = settled_jobs(&app, 1).await;
    assert_eq!(jobs[0].1, "done");
    assert_eq!(
        jobs[0].2, 1,
        "one attempt: the template went in the same job"
    );

    let pool = app.db().await;
    let ledger: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT body ->> '$.type', state, wamid FROM outbound")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].0, "template");
    assert_eq!(ledger[0].1, "sent");
    assert!(ledger[0].2.is_some(), "the template's wamid is recorded");
}

#[tokio::test]
async fn a_failed_template_triggers_no_other_template_for_its_conversation() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        r#"
[[routes]]
name = "offer"
on = "whatsapp.message.received"
handler = { kind = "template", name = "weekly_offer", language = "en" }

[[routes]]
name = "reengage"
on = "whatsapp.message.failed"
when = { error_code = 131047 }
handler = { kind = "template", name = "reengage_customer", language = "en" }
"#,
    ))
    .await;
    let message = text_at("wamid.IN", "conv-loop", "hi", now_s() - 60, false);
    assert_eq!(app.deliver(RECEIVED, &message).await, 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    let template_wamid = sends[0].wamid.clone();
    settled_jobs(&app, 1).await;

    // Kapso reports the template failed: the reengage route would answer it with another.
    let ctx = SampleContext::default();
    let failed = status_update(
        &ctx,
        &template_wamid,
        MessageStatus::Failed,
        &json!({"type": "template", "template": {"name": "weekly_offer"}}),
        &[meta_error(
            131047,
            "Re-engagement message",
            "more than 24 hours",
        )],
    );
    assert_eq!(app.deliver("whatsapp.message.failed", &failed).await, 200);
    let jobs = settled_jobs(&app, 2).await;
    assert_eq!(jobs[1].0, "reengage");
    assert_eq!(jobs[1].1, "done", "skipped, not failed");
    assert_eq!(sim.sends().len(), 1, "no second template");

    // A failed message that was not a template of ours is answered as configured.
    let other = status_update(
        &ctx,
        "wamid.NOT_OURS",
        MessageStatus::Failed,
        &json!({"type": "text", "text": {"body": "x"}}),
        &[meta_error(
            131047,
            "Re-engagement message",
            "more than 24 hours",
        )],
    );
    assert_eq!(app.deliver("whatsapp.message.failed", &other).await, 200);
    let sends = sim.wait_for_sends(2, WAIT).await;
    assert_eq!(sends[1].body["template"]["name"], "reengage_customer");
}
