//! Kapso's per-API-key request limit, kept by the client: Platform API calls wait for the
//! key's budget instead of being refused, and a 429 with `Retry-After` pauses the key. Time is
//! a manual clock that the test moves to each waiting call's slot, so minutes of waiting take
//! no real time and nothing sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use serde_json::json;
use switchboard::clock::{Clock, ManualTime};
use switchboard::kapso::{KapsoClient, KapsoError};
use switchboard::kapso_sim::{SimConfig, SimulatedKapso};
use switchboard::secret::Secret;

const START_MS: i64 = 1_000_000;

/// Moves `time` to the slot of each call that waits for the budget, until `task` is done.
async fn drive<T>(client: &KapsoClient, time: &ManualTime, task: tokio::task::JoinHandle<T>) -> T {
    let mut waits = client.limiter().waits();
    let mut task = task;
    loop {
        tokio::select! {
            done = &mut task => return done.unwrap(),
            changed = waits.changed() => {
                changed.unwrap();
                let at = *waits.borrow_and_update();
                if let Some(at) = at {
                    let by = at.saturating_sub(time.now_ms()).max(0);
                    time.advance(Duration::from_millis(by as u64));
                }
            }
        }
    }
}

#[tokio::test]
async fn two_hundred_fifty_calls_at_100_a_minute_wait_their_turn_and_none_is_refused() {
    let sim = SimulatedKapso::start(SimConfig::default()).await.unwrap();
    let config = switchboard::config::KapsoConfig {
        api_requests_per_minute: 100,
        max_retries: 0,
        ..sim.kapso_config()
    };
    let time = ManualTime::starting_at(START_MS);
    let client = KapsoClient::new(&config)
        .unwrap()
        .with_clock(Clock::Manual(time.clone()));

    let task = tokio::spawn({
        let client = client.clone();
        let time = time.clone();
        async move {
            let mut done_at = Vec::new();
            for _ in 0..250 {
                client.list_phone_numbers().await.unwrap();
                done_at.push(time.now_ms() - START_MS);
            }
            done_at
        }
    });
    let done_at = drive(&client, &time, task).await;

    let requests = sim.requests();
    assert_eq!(requests.len(), 250);
    assert!(
        requests.iter().all(|r| r.status == 200),
        "a call was refused"
    );
    // A tenth of the limit at once, then evenly: the 250th call about 2.5 minutes in.
    let total = done_at[249];
    assert!(
        (150_000..=165_000).contains(&total),
        "250 calls took {total} ms of clock time"
    );
    for (i, start) in done_at.iter().enumerate() {
        let in_minute = done_at[i..]
            .iter()
            .take_while(|t| **t < start + 60_000)
            .count();
        assert!(
            in_minute <= 100,
            "{in_minute} calls in the minute from {start} ms"
        );
    }
}

/// A Platform API stand-in whose first answer is Kapso's 429 with `Retry-After: 60`.
async fn limited_kapso(calls: Arc<AtomicUsize>) -> (String, tokio_util::sync::DropGuard) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(move || {
        let calls = calls.clone();
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "60"), ("x-ratelimit-remaining", "0")],
                    axum::Json(json!({"error": "Rate limit exceeded"})),
                )
                    .into_response()
            } else {
                axum::Json(json!({"data": [], "meta": {"page": 1, "per_page": 20, "total_pages": 1, "total_count": 0}}))
                    .into_response()
            }
        }
    });
    (url, crate::test_app::serve_until_dropped(listener, app))
}

#[tokio::test]
async fn a_429_with_retry_after_60_holds_the_next_call_for_60_seconds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (url, _stop) = limited_kapso(calls.clone()).await;
    let config = switchboard::config::KapsoConfig {
        base_url: url,
        api_key: Some(Secret::new("key")),
        max_retries: 0,
        ..switchboard::config::KapsoConfig::default()
    };
    let time = ManualTime::starting_at(START_MS);
    let client = KapsoClient::new(&config)
        .unwrap()
        .with_clock(Clock::Manual(time.clone()));

    let err = client.list_phone_numbers().await.unwrap_err();
    assert!(matches!(err, KapsoError::RateLimited { .. }), "{err:?}");

    let mut waits = client.limiter().waits();
    let next = tokio::spawn({
        let client = client.clone();
        async move { client.list_phone_numbers().await }
    });
    let at = *waits.wait_for(Option::is_some).await.unwrap();
    assert_eq!(
        at.unwrap() - START_MS,
        60_000,
        "the next call waits out Retry-After"
    );

    time.advance(Duration::from_millis(59_999));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no call before the 60 s are over"
    );
    assert!(!next.is_finished());

    time.advance(Duration::from_millis(1));
    next.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
