//! The server's retention loop, wired in by `App`: on the pipeline's clock, old rows go.

use std::time::Duration;

use switchboard::clock::{self, Clock, ManualTime};

use crate::payloads::message_status;
use crate::test_app::{metric, TestApp};

#[tokio::test]
async fn the_server_prunes_rows_past_their_age_on_its_clock() {
    let time = ManualTime::starting_at(clock::now_ms());
    let app = TestApp::spawn_with_clock(
        "[[routes]]\nname = \"audit\"\non = \"whatsapp.message.*\"\nhandler = { kind = \"log\" }\n",
        Clock::Manual(time.clone()),
    )
    .await;
    let status = message_status("wamid.AGING", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pool = app.db().await;
    loop {
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if done == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("events").await, 1);

    // Eight days later (past the default 7), the next round deletes the event, its done job and
    // the delivery. The clock keeps moving by an interval, so the round comes whenever the loop
    // went to sleep.
    time.advance(Duration::from_secs(8 * 24 * 60 * 60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.count("events").await + app.count("jobs").await + app.count("deliveries").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never deleted the old rows"
        );
        time.advance(Duration::from_secs(5 * 60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close().await;
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "switchboard_pruned_rows_total",
            &["table=\"events\""]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchboard_pruned_rows_total",
            &["table=\"jobs\""]
        ),
        1.0
    );

    // Ingest carries on.
    let status = message_status("wamid.FRESH", "delivered");
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    assert_eq!(app.count("events").await, 1);
}
