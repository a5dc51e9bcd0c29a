//! Group commit for the pipeline's writes (job claims and outcomes, send plans, sent marks): every
//! write queued since the last commit runs in one `BEGIN IMMEDIATE` transaction. A caller that
//! awaits its write gets the result once the transaction has committed. This keeps the commits
//! per handled event a fraction of one, however many workers there are.
//!
//! The writes are single statements that only fail when the database does (disk full, I/O
//! error), so a failing write fails its whole transaction: every write in it reports the error
//! and none is applied. Each statement is a round trip to SQLite's thread, so there are no
//! per-write savepoints.
//!
//! The queue knows nothing of the tables: a write is a closure over the connection, so the SQL
//! stays with the module that owns each table.

mod coalesced;

pub use coalesced::{Coalesced, WriteAll};

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::write_health::WriteHealth;
use crate::write_priority::WritePriority;

/// A boxed future borrowing the connection for `'c`.
pub type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database: {0}")]
    Database(String),
    /// The writer stopped, or the transaction failed before this write ran.
    #[error(
        "the write was not committed (the pipeline writer stopped or its transaction failed first)"
    )]
    Stopped,
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        WriteError::Database(err.to_string())
    }
}

/// Called once the transaction ended: `Ok` when it committed.
type Completer = Box<dyn FnOnce(Result<(), WriteError>) + Send>;
/// Runs one write; returns whether it succeeded and how to report its outcome.
type Op =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Completer)> + Send>;

/// The handle writers queue on. Cheap to clone.
#[derive(Clone)]
pub struct WriteQueue {
    sender: mpsc::UnboundedSender<Op>,
}

impl WriteQueue {
    /// Starts the writer task on `pool`, committing at most `max_batch` writes together.
    pub fn start(
        pool: SqlitePool,
        max_batch: usize,
        priority: WritePriority,
        health: WriteHealth,
    ) -> (WriteQueue, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(pool, receiver, max_batch.max(1), priority, health));
        (WriteQueue { sender }, task)
    }

    /// Queues `write` and waits until the transaction that ran it has committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T, WriteError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(write, reply)?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Queues `write` without waiting for it. Writes run in the order they were queued, so a
    /// later awaited write commits after it.
    pub fn send<F>(&self, write: F) -> Result<(), WriteError>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), sqlx::Error>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<(), WriteError>>();
        drop(answer);
        self.submit(write, reply)
    }

    /// Queues a write that reports its own outcome (see [`Coalesced`]).
    fn run<F>(&self, op: F) -> Result<(), WriteError>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Completer)>
            + Send
            + 'static,
    {
        self.sender
            .send(Box::new(op))
            .map_err(|_| WriteError::Stopped)
    }

    fn submit<T, F>(
        &self,
        write: F,
        reply: oneshot::Sender<Result<T, WriteError>>,
    ) -> Result<(), WriteError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let op: Op = Box::new(move |conn| {
            Box::pin(async move {
                let result = write(conn).await;
                let ok = result.is_ok();
                let completer: Completer = Box::new(move |committed| {
                    let outcome = match (result, committed) {
                        (Ok(value), Ok(())) => Ok(value),
                        (Err(err), _) => Err(WriteError::from(err)),
                        (Ok(_), Err(err)) => Err(err),
                    };
                    let _ = reply.send(outcome);
                });
                (ok, completer)
            })
        });
        self.sender.send(op).map_err(|_| WriteError::Stopped)
    }
}

async fn run(
    pool: SqlitePool,
    mut receiver: mpsc::UnboundedReceiver<Op>,
    max_batch: usize,
    priority: WritePriority,
    health: WriteHealth,
) {
    let mut batch = VecDeque::with_capacity(max_batch);
    while let Some(first) = receiver.recv().await {
        batch.push_back(first);
        priority.after_urgent().await;
        // Everything queued meanwhile, also while the inbox went first, joins this transaction.
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(op) => batch.push_back(op),
                Err(_) => break,
            }
        }
        commit(&pool, &mut batch, &health).await;
    }
}

/// Runs `batch` in one transaction and reports every write's outcome.
async fn commit(pool: &SqlitePool, batch: &mut VecDeque<Op>, health: &WriteHealth) {
    let mut completers = Vec::with_capacity(batch.len());
    let committed = match pool.acquire().await {
        Ok(mut conn) => run_batch(&mut conn, batch, &mut completers).await,
        Err(err) => Err(err),
    };
    let outcome = match committed {
        Ok(()) => {
            health.committed("pipeline");
            Ok(())
        }
        Err(err) => {
            health.failed("pipeline", &err);
            Err(WriteError::from(err))
        }
    };
    // Writes the transaction never reached fail with it.
    for op in batch.drain(..) {
        completers.push(failed(op));
    }
    for completer in completers {
        completer(outcome.clone());
    }
}

async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &mut VecDeque<Op>,
    completers: &mut Vec<Completer>,
) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    while let Some(op) = batch.pop_front() {
        let (ok, completer) = op(&mut *conn).await;
        completers.push(completer);
        if !ok {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(sqlx::Error::Protocol(
                "a write of this transaction failed; nothing of it was applied".into(),
            ));
        }
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(err) => rollback(conn, err).await,
    }
}

/// A completer for a write that was never run: it reports the transaction's failure.
fn failed(op: Op) -> Completer {
    drop(op);
    Box::new(|_| {})
}

async fn rollback(conn: &mut SqliteConnection, err: sqlx::Error) -> Result<(), sqlx::Error> {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    Err(err)
}
