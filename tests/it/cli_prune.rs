//! `switchboard prune` on a database built through the real server, while it runs.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::payloads::message_status;
use crate::test_app::TestApp;

const EIGHT_DAYS_MS: i64 = 8 * 24 * 60 * 60 * 1000;

fn prune(args: &[&str]) -> (Output, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("prune")
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = if args.contains(&"--json") {
        serde_json::from_slice(&output.stdout).unwrap()
    } else {
        Value::Null
    };
    (output, json)
}

/// Waits (bounded) until every job is done.
async fn jobs_done(app: &TestApp, jobs: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pool = app.db().await;
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        if done == jobs {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {jobs} jobs done"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn prune_deletes_old_rows_and_dry_run_deletes_nothing() {
    let app = TestApp::spawn_with(
        "[[routes]]\nname = \"audit\"\non = \"whatsapp.message.*\"\nhandler = { kind = \"log\" }\n",
    )
    .await;
    for wamid in ["wamid.OLD1", "wamid.OLD2"] {
        let status = message_status(wamid, "delivered");
        assert_eq!(
            app.deliver("whatsapp.message.delivered", &status).await,
            200
        );
    }
    jobs_done(&app, 2).await;
    // Age what is there by eight days (past the default 7), as if the server had run that long.
    let pool = app.db().await;
    for sql in [
        "UPDATE events SET received_at = received_at - ?1",
        "UPDATE deliveries SET received_at = received_at - ?1",
        "UPDATE jobs SET finished_at = finished_at - ?1",
    ] {
        sqlx::query(sql)
            .bind(EIGHT_DAYS_MS)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let status = message_status("wamid.NEW", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    jobs_done(&app, 3).await;
    let db = app.db_path.to_str().unwrap();

    let (_, dry) = prune(&["--db", db, "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted"]["events"], 2, "{dry}");
    assert_eq!(dry["deleted"]["jobs"], 2, "{dry}");
    assert_eq!(dry["deleted"]["deliveries"], 2, "{dry}");
    assert_eq!(app.count("events").await, 3, "a dry run deletes nothing");
    assert_eq!(app.count("jobs").await, 3);

    let (output, _) = prune(&["--db", db]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("DELETED"), "{text}");
    assert_eq!(app.count("events").await, 1);
    assert_eq!(app.count("jobs").await, 1);
    assert_eq!(app.count("deliveries").await, 1);
    let pool = app.db().await;
    let kept: String = sqlx::query_scalar("SELECT message_id FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(kept, "wamid.NEW");

    // The server carries on: new deliveries are stored and handled.
    let status = message_status("wamid.AFTER", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    jobs_done(&app, 2).await;

    let (_, again) = prune(&["--db", db, "--json"]);
    assert_eq!(again["dry_run"], false);
    assert_eq!(again["deleted"]["events"], 0, "{again}");
}

#[tokio::test]
async fn prune_reads_the_ages_of_the_config() {
    let app = TestApp::spawn_with("[retention]\nevents = \"off\"\ndeliveries = \"off\"\n").await;
    let status = message_status("wamid.KEEP", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    let pool = app.db().await;
    sqlx::query("UPDATE events SET received_at = received_at - ?1")
        .bind(EIGHT_DAYS_MS)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let config = app.config_path();
    let (_, pruned) = prune(&["--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(pruned["deleted"]["events"], 0, "events = \"off\": {pruned}");
    assert_eq!(app.count("events").await, 1);
}
