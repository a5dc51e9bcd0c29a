//! The dispatcher with its buffers on a real database file, a manual clock and a queue that
//! records what it is offered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::flush::FLUSH_BATCH;
use super::Dispatcher;
use crate::clock::{Clock, ManualTime};
use crate::config::{Config, StorageConfig};
use crate::jobs::queue::JobQueue;
use crate::jobs::store::{ClaimedJob, Finish, UnfinishedJob};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::write_priority::WritePriority;
use crate::write_queue::{BoxFuture, WriteError};

const START_MS: i64 = 1_764_090_000_000;
const WINDOW_MS: u64 = 1_000;

/// Keeps the jobs it is offered, in order.
#[derive(Default)]
struct Offered(Mutex<Vec<UnfinishedJob>>);

impl Offered {
    fn take(&self) -> Vec<UnfinishedJob> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl JobQueue for Offered {
    fn offer(&self, jobs: Vec<UnfinishedJob>) {
        self.0.lock().unwrap().extend(jobs);
    }

    fn take<'a>(&'a self, shutdown: &'a CancellationToken) -> BoxFuture<'a, Option<ClaimedJob>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            None
        })
    }

    fn finish<'a>(
        &'a self,
        _job: &'a ClaimedJob,
        _finish: Finish,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn reload_pauses<'a>(
        &'a self,
        _reads: &'a sqlx::SqlitePool,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    time: Arc<ManualTime>,
    offered: Arc<Offered>,
    dispatcher: Dispatcher,
    next_event: i64,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageConfig {
            url: format!("sqlite://{}", dir.path().join("switchboard.db").display()),
            ..StorageConfig::default()
        };
        let pool = crate::db::open_for_server(&storage).await.unwrap();
        let config = Config::parse(
            "test.toml",
            &format!(
                r#"
[[webhooks]]
name = "support"
secrets = ["secret"]

[[routes]]
name = "batched"
on = "whatsapp.message.received"
buffer = {{ enabled = true, window_ms = {WINDOW_MS}, max_wait_ms = 60000 }}
handler = {{ kind = "log" }}
"#
            ),
            |_| None,
        )
        .unwrap();
        let time = ManualTime::starting_at(START_MS);
        let offered = Arc::new(Offered::default());
        let dispatcher = Dispatcher {
            reads: pool.clone(),
            pool,
            router: Arc::new(Router::new(&config).unwrap()),
            events_stored: Arc::new(Notify::new()),
            queue: offered.clone(),
            poll_interval: Duration::from_millis(200),
            priority: WritePriority::default(),
            metrics: Arc::new(Metrics::new()),
            clock: Clock::Manual(time.clone()),
            buffers: crate::buffer::OpenBuffers::default(),
        };
        Harness {
            _dir: dir,
            time,
            offered,
            dispatcher,
            next_event: 0,
        }
    }

    /// Stores a message of `conversation` (not yet routed), sent `occurred_at` (Unix s).
    async fn store_message(&mut self, conversation: &str, occurred_at: i64) -> i64 {
        self.next_event += 1;
        sqlx::query_scalar(
            "INSERT INTO events (delivery_id, webhook, event_type, dedupe_key, payload_version,
                                 conversation_id, occurred_at, received_at, payload)
             VALUES (1, 'support', 'whatsapp.message.received', ?, 'v2', ?, ?, ?, '{}')
             RETURNING id",
        )
        .bind(format!("wamid.{}", self.next_event))
        .bind(conversation)
        .bind(occurred_at)
        .bind(self.time.now_ms())
        .fetch_one(&self.dispatcher.pool)
        .await
        .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.dispatcher.pool)
            .await
            .unwrap()
    }

    fn advance(&self, ms: u64) {
        self.time.advance(Duration::from_millis(ms));
    }
}

fn conversation_of(job: &UnfinishedJob) -> String {
    job.ordering_key
        .as_deref()
        .and_then(|k| k.split_once('\u{1f}'))
        .map(|(_, c)| c.to_owned())
        .unwrap()
}

fn event_ids(job: &UnfinishedJob) -> Vec<i64> {
    serde_json::from_str(&job.job.event_ids).unwrap()
}

#[tokio::test]
async fn a_burst_is_one_job_in_event_order_at_its_due_time() {
    let mut h = Harness::start().await;
    // Delivered out of order: the later message first.
    let later = h.store_message("conv-1", 200).await;
    let earlier = h.store_message("conv-1", 100).await;
    assert_eq!(h.dispatcher.dispatch_batch().await.unwrap(), 2);
    assert_eq!(h.count("buffered_events").await, 2);
    assert_eq!(h.dispatcher.buffers.messages(), 2);

    h.advance(WINDOW_MS - 1);
    h.dispatcher.flush_due().await.unwrap();
    assert!(h.offered.take().is_empty(), "1 ms of the window is left");

    h.advance(1);
    h.dispatcher.flush_due().await.unwrap();
    let jobs = h.offered.take();
    assert_eq!(jobs.len(), 1);
    assert_eq!(event_ids(&jobs[0]), [earlier, later]);
    let carried: Vec<i64> = jobs[0]
        .job
        .events
        .as_deref()
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(carried, [earlier, later], "the job carries its events");
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (0, 0)
    );
    assert!(h.dispatcher.buffers.is_empty());
    assert_eq!(h.count("jobs").await, 1);
    let metrics = h.dispatcher.metrics.render();
    assert!(
        metrics.contains("switchboard_buffer_flush_lateness_seconds_count 1")
            && metrics.contains("switchboard_buffer_flush_lateness_seconds_bucket{le=\"0.001\"} 1"),
        "one flush, on time, in the lateness histogram:\n{metrics}"
    );
}

#[tokio::test]
async fn many_open_buffers_flush_in_due_order() {
    // More than two transactions' worth, so flushing the rest takes several.
    const CONVERSATIONS: usize = 2 * FLUSH_BATCH + 50;
    const FIRST: usize = 300;
    let mut h = Harness::start().await;
    // One conversation per millisecond: conversation i is due at i + the window.
    for i in 0..CONVERSATIONS {
        h.store_message(&format!("conv-{i}"), 1).await;
        h.dispatcher.dispatch_batch().await.unwrap();
        h.advance(1);
    }
    // Conversation 0 writes again: it is now due last.
    h.store_message("conv-0", 2).await;
    h.dispatcher.dispatch_batch().await.unwrap();
    assert_eq!(h.dispatcher.buffers.len(), CONVERSATIONS);
    assert_eq!(h.count("buffers").await, CONVERSATIONS as i64);

    // Conversations 1 to FIRST - 1 are due.
    h.advance(WINDOW_MS + FIRST as u64 - 1 - CONVERSATIONS as u64);
    h.dispatcher.flush_due().await.unwrap();
    let first: Vec<String> = h.offered.take().iter().map(conversation_of).collect();
    let expected: Vec<String> = (1..FIRST).map(|i| format!("conv-{i}")).collect();
    assert_eq!(first, expected);

    h.advance(WINDOW_MS);
    h.dispatcher.flush_due().await.unwrap();
    let rest: Vec<String> = h.offered.take().iter().map(conversation_of).collect();
    let mut expected: Vec<String> = (FIRST..CONVERSATIONS)
        .map(|i| format!("conv-{i}"))
        .collect();
    expected.push("conv-0".to_owned());
    assert_eq!(rest, expected);
    assert!(h.dispatcher.buffers.is_empty());
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (0, 0)
    );
    assert_eq!(h.count("jobs").await, CONVERSATIONS as i64);
}

#[tokio::test]
async fn a_batch_whose_flush_failed_stays_open_and_flushes_on_the_next_try() {
    let mut h = Harness::start().await;
    let a = h.store_message("conv-f", 100).await;
    let b = h.store_message("conv-f", 101).await;
    h.dispatcher.dispatch_batch().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER no_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&h.dispatcher.pool)
    .await
    .unwrap();

    h.advance(WINDOW_MS);
    assert!(h.dispatcher.flush_due().await.is_err());
    assert!(h.offered.take().is_empty());
    assert_eq!(h.dispatcher.buffers.messages(), 2, "still open in memory");
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (1, 2)
    );

    sqlx::query("DROP TRIGGER no_jobs")
        .execute(&h.dispatcher.pool)
        .await
        .unwrap();
    h.dispatcher.flush_due().await.unwrap();
    let jobs = h.offered.take();
    assert_eq!(jobs.len(), 1, "flushed once");
    assert_eq!(event_ids(&jobs[0]), [a, b]);
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (0, 0)
    );
    h.dispatcher.flush_due().await.unwrap();
    assert!(h.offered.take().is_empty(), "not twice");
}

#[tokio::test]
async fn open_buffers_are_loaded_back_with_their_messages_and_due_times() {
    let mut h = Harness::start().await;
    let a = h.store_message("conv-r1", 100).await;
    h.dispatcher.dispatch_batch().await.unwrap();
    h.advance(10);
    let c = h.store_message("conv-r2", 101).await;
    let b = h.store_message("conv-r2", 100).await;
    h.dispatcher.dispatch_batch().await.unwrap();

    // What a new process finds in the tables.
    let loaded = crate::buffer::recover(&h.dispatcher.pool, h.time.now_ms())
        .await
        .unwrap();
    assert_eq!((loaded.len(), loaded.messages()), (2, 3));
    h.dispatcher.buffers = loaded;

    h.advance(WINDOW_MS - 10);
    h.dispatcher.flush_due().await.unwrap();
    let jobs = h.offered.take();
    assert_eq!(jobs.len(), 1, "only conv-r1 is due");
    assert_eq!(event_ids(&jobs[0]), [a]);

    h.advance(10);
    h.dispatcher.flush_due().await.unwrap();
    let jobs = h.offered.take();
    assert_eq!(jobs.len(), 1);
    assert_eq!(event_ids(&jobs[0]), [b, c], "every message, in event order");
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (0, 0)
    );
}

#[tokio::test]
async fn a_batch_of_a_route_no_longer_configured_is_dropped_from_the_buffer_not_the_inbox() {
    let mut h = Harness::start().await;
    h.store_message("conv-gone", 100).await;
    h.dispatcher.dispatch_batch().await.unwrap();
    h.dispatcher.router = Arc::new(Router::default());

    h.advance(WINDOW_MS);
    h.dispatcher.flush_due().await.unwrap();
    assert!(h.offered.take().is_empty());
    assert!(h.dispatcher.buffers.is_empty());
    assert_eq!(
        (h.count("buffers").await, h.count("buffered_events").await),
        (0, 0)
    );
    assert_eq!((h.count("jobs").await, h.count("events").await), (0, 1));
}
