//! The inbox: every authenticated delivery is written here, deduplicated, before Kapso gets its
//! 200. Writes go through one writer task that commits concurrent deliveries together
//! (group commit), so throughput is not bounded by one fsync per request.

pub mod store;
pub mod timeline;
mod writer;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::event::Event;

pub use writer::GroupCommit;

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the inbox writer has stopped")]
    WriterStopped,
}

impl InboxError {
    /// True when the database refused the write for lack of space: `SQLITE_FULL`, from a full
    /// disk or from `storage.max_size_mb`.
    pub fn is_storage_full(&self) -> bool {
        const SQLITE_FULL: i64 = 13;
        let InboxError::Database(err) = self else {
            return false;
        };
        err.as_database_error()
            .and_then(|db| db.code())
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_FULL)
    }
}

/// One authenticated delivery, unwrapped, as the inbox stores it.
#[derive(Debug)]
pub struct NewDelivery {
    pub webhook: String,
    pub received_at_ms: i64,
    pub body_bytes: usize,
    pub idempotency_key: Option<String>,
    pub event_header: Option<String>,
    pub payload_version: Option<String>,
    pub batch: bool,
    pub events: Vec<Event>,
    pub quarantine: Vec<NewQuarantine>,
}

/// A delivery, or one element of a batch, that could not be understood. Kept raw.
#[derive(Debug)]
pub struct NewQuarantine {
    pub reason: String,
    pub body: Vec<u8>,
}

/// What happened to a delivery once it was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryOutcome {
    pub delivery_id: i64,
    pub stored: usize,
    pub duplicates: usize,
    pub quarantined: usize,
}

impl DeliveryOutcome {
    /// The delivery's result as logged and counted: `stored` when anything new was kept,
    /// `duplicate` when everything had been seen before, `quarantined` when nothing was
    /// understood.
    pub fn result(&self) -> &'static str {
        if self.stored > 0 {
            "stored"
        } else if self.quarantined > 0 {
            "quarantined"
        } else if self.duplicates > 0 {
            "duplicate"
        } else {
            "empty"
        }
    }
}

struct WriteRequest {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<DeliveryOutcome, InboxError>>,
}

/// Handle to the inbox writer. Cheap to clone; the writer stops once every handle is dropped
/// and the queued deliveries are committed.
#[derive(Clone)]
pub struct Inbox {
    requests: mpsc::Sender<WriteRequest>,
}

impl Inbox {
    /// Starts the writer task on `pool`; `committed` is notified after every commit that
    /// stored new events.
    pub fn start(
        pool: sqlx::SqlitePool,
        group_commit: GroupCommit,
        committed: Arc<Notify>,
        priority: crate::write_priority::WritePriority,
        health: crate::write_health::WriteHealth,
    ) -> (Inbox, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(group_commit.queue_capacity);
        let handle = tokio::spawn(writer::run(
            pool,
            rx,
            group_commit,
            committed,
            priority,
            health,
        ));
        (Inbox { requests: tx }, handle)
    }

    /// Stores a delivery durably. Returns once it is committed (or failed); deliveries that
    /// arrive while a commit is in flight share the next one.
    pub async fn accept(&self, delivery: NewDelivery) -> Result<DeliveryOutcome, InboxError> {
        let (reply, response) = oneshot::channel();
        self.requests
            .send(WriteRequest { delivery, reply })
            .await
            .map_err(|_| InboxError::WriterStopped)?;
        response.await.map_err(|_| InboxError::WriterStopped)?
    }
}
