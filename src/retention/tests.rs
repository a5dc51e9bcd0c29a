//! Retention on a real SQLite file, with ages measured on a manual clock.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::ManualTime;
use crate::db;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// "Now" in these tests: 100 days after the epoch.
const NOW: i64 = 100 * DAY_MS;
const OLD: i64 = NOW - 40 * DAY_MS;
const NEW: i64 = NOW - DAY_MS;

async fn event(pool: &SqlitePool, key: &str, received_at: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (delivery_id, webhook, event_type, dedupe_key, payload_version,
                             received_at, payload, routed_at)
         VALUES (1, 'support', 'whatsapp.message.received', ?1, 'v2', ?2, '{}', ?2)
         RETURNING id",
    )
    .bind(key)
    .bind(received_at)
    .fetch_one(pool)
    .await
    .expect("insert event")
}

async fn job(pool: &SqlitePool, state: &str, events: &[i64], finished_at: Option<i64>) -> i64 {
    let ids = serde_json::to_string(events).expect("json");
    sqlx::query_scalar(
        "INSERT INTO jobs (route, handler, webhook, event_type, order_ts, order_seq, event_ids,
                           state, max_attempts, run_at, created_at, updated_at, finished_at)
         VALUES ('r', 'log', 'support', 'whatsapp.message.received', 0, 0, ?1, ?2, 3, 0, ?3, ?3, ?4)
         RETURNING id",
    )
    .bind(ids)
    .bind(state)
    .bind(OLD)
    .bind(finished_at)
    .fetch_one(pool)
    .await
    .expect("insert job")
}

async fn outbound(pool: &SqlitePool, job: i64, seq: i64) {
    sqlx::query(
        "INSERT INTO outbound (job_id, seq, phone_number_id, action, body, state, created_at)
         VALUES (?1, ?2, '1', 'send', '{}', 'sent', ?3)",
    )
    .bind(job)
    .bind(seq)
    .bind(OLD)
    .execute(pool)
    .await
    .expect("insert outbound");
}

async fn exists(pool: &SqlitePool, table: &str, id: i64) -> bool {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = ?1");
    let n: i64 = sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("count");
    n == 1
}

async fn count(pool: &SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count")
}

fn pacing(batch_size: i64) -> Pacing {
    Pacing {
        batch_size,
        pause: Duration::ZERO,
        priority: Some(WritePriority::default()),
        shutdown: CancellationToken::new(),
    }
}

fn default_cutoffs() -> Cutoffs {
    cutoffs(&RetentionConfig::default(), NOW)
}

struct Fixture {
    old_free_event: i64,
    new_event: i64,
    event_of_queued: i64,
    event_of_running: i64,
    event_of_young_dead: i64,
    event_of_old_dead: i64,
    buffered_event: i64,
    unrouted_event: i64,
    old_done: i64,
    new_done: i64,
    running: i64,
    young_dead: i64,
    old_dead: i64,
}

/// One row of every kind that must go, and one of every kind that must stay.
async fn fixture(pool: &SqlitePool) -> Fixture {
    let old_free_event = event(pool, "free", OLD).await;
    let new_event = event(pool, "new", NEW).await;
    let event_of_queued = event(pool, "queued", OLD).await;
    let event_of_running = event(pool, "running", OLD).await;
    let event_of_young_dead = event(pool, "young-dead", OLD).await;
    let event_of_old_dead = event(pool, "old-dead", OLD).await;
    let buffered_event = event(pool, "buffered", OLD).await;
    let unrouted_event = event(pool, "unrouted", OLD).await;
    sqlx::query("UPDATE events SET routed_at = NULL WHERE id = ?1")
        .bind(unrouted_event)
        .execute(pool)
        .await
        .expect("unroute");
    sqlx::query(
        "INSERT INTO buffers (route, conversation, first_at, last_at, messages, flush_at)
         VALUES ('r', 'c', ?1, ?1, 1, ?1)",
    )
    .bind(OLD)
    .execute(pool)
    .await
    .expect("buffer");
    sqlx::query(
        "INSERT INTO buffered_events (route, conversation, event_id) VALUES ('r', 'c', ?1)",
    )
    .bind(buffered_event)
    .execute(pool)
    .await
    .expect("buffered event");
    let old_done = job(pool, "done", &[old_free_event], Some(OLD)).await;
    outbound(pool, old_done, 0).await;
    outbound(pool, old_done, 1).await;
    let new_done = job(pool, "done", &[new_event], Some(NEW)).await;
    outbound(pool, new_done, 0).await;
    job(pool, "queued", &[event_of_queued], None).await;
    let running = job(pool, "running", &[event_of_running], None).await;
    outbound(pool, running, 0).await;
    let young_dead = job(
        pool,
        "dead",
        &[event_of_young_dead],
        Some(NOW - 10 * DAY_MS),
    )
    .await;
    outbound(pool, young_dead, 0).await;
    let old_dead = job(pool, "dead", &[event_of_old_dead], Some(OLD)).await;
    outbound(pool, old_dead, 0).await;
    sqlx::query("INSERT INTO job_requests (job_id, requested_at) VALUES (?1, ?2)")
        .bind(old_dead)
        .bind(OLD)
        .execute(pool)
        .await
        .expect("job request");
    for (id, at) in [(1, OLD), (2, NEW)] {
        sqlx::query(
            "INSERT INTO deliveries (id, webhook, received_at, body_bytes, batch, result)
             VALUES (?1, 'support', ?2, 10, 0, 'stored')",
        )
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .expect("delivery");
        sqlx::query(
            "INSERT INTO quarantine (id, delivery_id, webhook, received_at, reason, body_sha256, body)
             VALUES (?1, ?1, 'support', ?2, 'not json', ?1, x'00')",
        )
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .expect("quarantine");
    }
    Fixture {
        old_free_event,
        new_event,
        event_of_queued,
        event_of_running,
        event_of_young_dead,
        event_of_old_dead,
        buffered_event,
        unrouted_event,
        old_done,
        new_done,
        running,
        young_dead,
        old_dead,
    }
}

#[tokio::test]
async fn old_rows_go_and_rows_still_needed_stay() {
    let (_dir, pool) = db::temp_database().await;
    let f = fixture(&pool).await;
    let pruned = prune(&pool, &default_cutoffs(), &pacing(1000), None)
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            jobs: 2,
            outbound: 3,
            job_requests: 1,
            // the free one, and the old dead job's (freed when that job went)
            events: 2,
            deliveries: 1,
            quarantine: 1,
        }
    );
    for gone in [f.old_free_event, f.event_of_old_dead] {
        assert!(!exists(&pool, "events", gone).await, "event {gone}");
    }
    for kept in [
        f.new_event,
        f.event_of_queued,
        f.event_of_running,
        f.event_of_young_dead,
        f.buffered_event,
        f.unrouted_event,
    ] {
        assert!(exists(&pool, "events", kept).await, "event {kept} kept");
    }
    assert!(!exists(&pool, "jobs", f.old_done).await);
    assert!(!exists(&pool, "jobs", f.old_dead).await);
    for kept in [f.new_done, f.running, f.young_dead] {
        assert!(exists(&pool, "jobs", kept).await, "job {kept} kept");
    }
    let outbound_jobs: Vec<i64> = sqlx::query_scalar("SELECT job_id FROM outbound ORDER BY job_id")
        .fetch_all(&pool)
        .await
        .expect("outbound");
    assert_eq!(outbound_jobs, [f.new_done, f.running, f.young_dead]);
    assert_eq!(count(&pool, "job_requests").await, 0);
    assert!(exists(&pool, "deliveries", 2).await && !exists(&pool, "deliveries", 1).await);
    assert!(exists(&pool, "quarantine", 2).await && !exists(&pool, "quarantine", 1).await);

    let again = prune(&pool, &default_cutoffs(), &pacing(1000), None)
        .await
        .expect("prune again");
    assert_eq!(again, Pruned::default(), "nothing more is old");
}

#[tokio::test]
async fn the_dry_run_count_matches_the_real_run_and_deletes_nothing() {
    let (_dir, pool) = db::temp_database().await;
    fixture(&pool).await;
    let tables = [
        "events",
        "jobs",
        "outbound",
        "job_requests",
        "deliveries",
        "quarantine",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(count(&pool, table).await);
    }
    let would = store::count(&pool, &default_cutoffs())
        .await
        .expect("count");
    for (table, was) in tables.iter().zip(&before) {
        assert_eq!(count(&pool, table).await, *was, "{table} untouched");
    }
    let did = prune(&pool, &default_cutoffs(), &pacing(1000), None)
        .await
        .expect("prune");
    assert_eq!(would, did);
}

#[tokio::test]
async fn ages_set_to_off_keep_rows() {
    let (_dir, pool) = db::temp_database().await;
    fixture(&pool).await;
    let config = RetentionConfig::parse_only(
        "t.toml",
        "[retention]\nevents = \"off\"\ndone_jobs = \"off\"\ndead_jobs = \"off\"\n",
        |_| None,
    )
    .expect("valid");
    let pruned = prune(&pool, &cutoffs(&config, NOW), &pacing(1000), None)
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 1,
            quarantine: 1,
            ..Pruned::default()
        }
    );
}

#[tokio::test]
async fn batches_are_bounded_by_the_batch_size() {
    let (_dir, pool) = db::temp_database().await;
    for i in 0..25 {
        let id = event(&pool, &format!("e{i}"), OLD).await;
        job(&pool, "done", &[id], Some(OLD)).await;
    }
    let cutoff = NOW - 7 * DAY_MS;
    let batch = store::delete_batch(&pool, Pass::Events, cutoff, 10)
        .await
        .expect("batch");
    assert_eq!(
        batch.events, 10,
        "one statement deletes at most the batch size"
    );
    let batch = store::delete_batch(&pool, Pass::DoneJobs, cutoff, 10)
        .await
        .expect("batch");
    assert_eq!(batch.jobs, 10);
    let metrics = Metrics::new();
    let rest = prune(&pool, &default_cutoffs(), &pacing(10), Some(&metrics))
        .await
        .expect("prune");
    assert_eq!(
        (rest.jobs, rest.events),
        (15, 15),
        "the rest in several batches"
    );
    let text = metrics.render();
    assert!(
        text.contains("switchboard_pruned_rows_total{table=\"events\"} 15"),
        "{text}"
    );
}

#[tokio::test]
async fn pruning_waits_while_the_inbox_waits_for_the_connection() {
    let (_dir, pool) = db::temp_database().await;
    event(&pool, "old", OLD).await;
    let pacing = pacing(1000);
    let urgent = pacing.priority.as_ref().expect("priority").urgent();
    let run = tokio::spawn({
        let pool = pool.clone();
        async move { prune(&pool, &default_cutoffs(), &pacing, None).await }
    });
    tokio::task::yield_now().await;
    assert!(!run.is_finished(), "held back behind the inbox");
    drop(urgent);
    let pruned = run.await.expect("join").expect("prune");
    assert_eq!(pruned.events, 1);
}

#[tokio::test]
async fn the_server_loop_prunes_every_interval_on_its_clock() {
    let (_dir, pool) = db::temp_database().await;
    let time = ManualTime::starting_at(NOW);
    let id = event(&pool, "soon-old", NOW - 7 * DAY_MS + 60_000).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        Retention {
            pool: pool.clone(),
            config: RetentionConfig::default(),
            clock: Clock::Manual(time.clone()),
            priority: WritePriority::default(),
            metrics: Arc::new(Metrics::new()),
        }
        .run(shutdown.clone()),
    );
    // Past the event's age and the interval: the next round deletes it. The clock moves on
    // each check, so it does not matter when the loop started sleeping.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while exists(&pool, "events", id).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loop never pruned the old event"
        );
        time.advance(Duration::from_secs(6 * 60));
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    task.await.expect("loop ends on shutdown");
}

/// Every deletion statement walks an index to its oldest rows: none scans its table or sorts
/// all its candidates.
#[tokio::test]
async fn deletions_use_an_index() {
    let (_dir, pool) = db::temp_database().await;
    for pass in Pass::ALL {
        for (table, sql) in pass.statements() {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .bind(0_i64)
                    .bind(10_i64)
                    .bind(0_i64)
                    .fetch_all(&pool)
                    .await
                    .expect("plan");
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            for step in &plan {
                assert!(
                    !step.starts_with("SCAN jobs")
                        && !step.starts_with("SCAN events")
                        && !step.starts_with("SCAN outbound")
                        && !step.starts_with("SCAN deliveries")
                        && !step.starts_with("SCAN quarantine")
                        && !step.starts_with("SCAN job_requests")
                        && !step.contains("TEMP B-TREE FOR ORDER BY"),
                    "{pass:?} {table}: {plan:?}"
                );
            }
        }
    }
}
