//! Writes of one kind that are cheaper as one statement than as many: items pushed between two
//! runs of the writer are handed together to one function, which writes them with multi-row
//! statements. A burst of a thousand job outcomes then costs one `UPDATE`, not a thousand, and
//! one round trip to SQLite's thread.
//!
//! The first item pushed after a run queues one write on the [`WriteQueue`]; items pushed
//! until that write runs join it. An item therefore commits in the same or an earlier
//! transaction than a write queued after it, as with [`WriteQueue::send`].

use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::SqliteConnection;
use tokio::sync::oneshot;

use super::{BoxFuture, WriteError, WriteQueue};

/// Writes `items` (in the order they were pushed); returns one result per item, in order.
pub type WriteAll<T, R> =
    for<'c> fn(&'c mut SqliteConnection, Vec<T>) -> BoxFuture<'c, Result<Vec<R>, sqlx::Error>>;

/// A pushed item and, when someone awaits it, where its result goes.
type Pending<T, R> = (T, Option<oneshot::Sender<Result<R, WriteError>>>);

/// Items of one kind waiting for the writer. Cheap to clone.
pub struct Coalesced<T, R> {
    inner: Arc<Inner<T, R>>,
}

struct Inner<T, R> {
    pending: Mutex<Vec<Pending<T, R>>>,
    queue: WriteQueue,
    write_all: WriteAll<T, R>,
}

impl<T, R> Clone for Coalesced<T, R> {
    fn clone(&self) -> Self {
        Coalesced {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Coalesced<T, R> {
    pub fn new(queue: WriteQueue, write_all: WriteAll<T, R>) -> Coalesced<T, R> {
        Coalesced {
            inner: Arc::new(Inner {
                pending: Mutex::new(Vec::new()),
                queue,
                write_all,
            }),
        }
    }

    /// Pushes `item` and waits until the transaction that wrote it has committed.
    pub async fn write(&self, item: T) -> Result<R, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.push(item, Some(reply))?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Pushes `item` without waiting for it.
    pub fn send(&self, item: T) -> Result<(), WriteError> {
        self.push(item, None)
    }

    fn push(
        &self,
        item: T,
        reply: Option<oneshot::Sender<Result<R, WriteError>>>,
    ) -> Result<(), WriteError> {
        let first = {
            let mut pending = self.inner.lock();
            pending.push((item, reply));
            pending.len() == 1
        };
        if first {
            let flush = Flush(Some(self.inner.clone()));
            let queued = self.inner.queue.run(move |conn| flush.write(conn));
            if queued.is_err() {
                // The writer stopped: nothing pushed will be written.
                fail(self.inner.lock().drain(..));
            }
            queued?;
        }
        Ok(())
    }
}

impl<T: Send + 'static, R: Send + 'static> Inner<T, R> {
    fn lock(&self) -> MutexGuard<'_, Vec<Pending<T, R>>> {
        // A push or a take cannot leave the list half changed.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The queued write of everything pushed until it runs. If the writer drops it unrun (its
/// transaction failed first, or the writer stopped), the items pushed so far fail with
/// [`WriteError::Stopped`], and the next push queues a new write.
struct Flush<T: Send + 'static, R: Send + 'static>(Option<Arc<Inner<T, R>>>);

impl<T: Send + 'static, R: Send + 'static> Flush<T, R> {
    /// Takes everything pushed so far and writes it; the completer reports to each waiter
    /// once the transaction has ended.
    fn write<'c>(
        mut self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, (bool, super::Completer)> {
        let Some(inner) = self.0.take() else {
            return Box::pin(async { (true, Box::new(|_| {}) as super::Completer) });
        };
        let taken = std::mem::take(&mut *inner.lock());
        let (items, replies): (Vec<T>, Vec<_>) = taken.into_iter().unzip();
        let count = items.len();
        let write_all = inner.write_all;
        Box::pin(async move {
            let result = write_all(conn, items).await.and_then(|results| {
                if results.len() == count {
                    Ok(results)
                } else {
                    Err(sqlx::Error::Protocol(format!(
                        "a coalesced write returned {} results for {count} items",
                        results.len()
                    )))
                }
            });
            let ok = result.is_ok();
            let completer: super::Completer = Box::new(move |committed| {
                report(replies, result, committed);
            });
            (ok, completer)
        })
    }
}

impl<T: Send + 'static, R: Send + 'static> Drop for Flush<T, R> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            fail(inner.lock().drain(..));
        }
    }
}

/// Tells the waiters of items that will not be written.
fn fail<T, R>(pending: impl Iterator<Item = Pending<T, R>>) {
    for (_, reply) in pending {
        if let Some(reply) = reply {
            let _ = reply.send(Err(WriteError::Stopped));
        }
    }
}

/// Sends each waiter its item's result, or the error that kept the transaction from committing.
fn report<R>(
    replies: Vec<Option<oneshot::Sender<Result<R, WriteError>>>>,
    result: Result<Vec<R>, sqlx::Error>,
    committed: Result<(), WriteError>,
) {
    match (result, committed) {
        (Ok(results), Ok(())) => {
            for (reply, value) in replies.into_iter().zip(results) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(value));
                }
            }
        }
        (Err(err), _) => {
            let err = WriteError::from(err);
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(err.clone()));
            }
        }
        (Ok(_), Err(err)) => {
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::SqlitePool;

    use super::*;
    use crate::write_health::WriteHealth;
    use crate::write_priority::WritePriority;

    static STATEMENTS: AtomicUsize = AtomicUsize::new(0);

    /// Inserts the items in one statement, counted in [`STATEMENTS`].
    fn insert_all<'c>(
        conn: &'c mut SqliteConnection,
        items: Vec<i64>,
    ) -> BoxFuture<'c, Result<Vec<i64>, sqlx::Error>> {
        STATEMENTS.fetch_add(1, Ordering::SeqCst);
        insert_or_fail(conn, items)
    }

    /// Inserts the items in one statement; the value 13 makes the write fail.
    fn insert_or_fail<'c>(
        conn: &'c mut SqliteConnection,
        items: Vec<i64>,
    ) -> BoxFuture<'c, Result<Vec<i64>, sqlx::Error>> {
        Box::pin(async move {
            let mut query = sqlx::QueryBuilder::new("INSERT INTO t (v) ");
            query.push_values(&items, |mut row, v| {
                row.push_bind(*v);
            });
            query.build().execute(&mut *conn).await?;
            if items.contains(&13) {
                return Err(sqlx::Error::Protocol("unlucky".into()));
            }
            Ok(items)
        })
    }

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn stored(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY rowid")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn items_pushed_before_the_writer_runs_share_one_statement_and_commit() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let priority = WritePriority::default();
        // The writer holds back while the "inbox" waits, so every push below queues up.
        let urgent = priority.urgent();
        let (queue, _task) = WriteQueue::start(pool.clone(), 64, priority, WriteHealth::default());
        let coalesced = Coalesced::new(queue, insert_all);
        let before = STATEMENTS.load(Ordering::SeqCst);
        for v in 100..200 {
            coalesced.send(v).unwrap();
        }
        let last = tokio::spawn({
            let coalesced = coalesced.clone();
            async move { coalesced.write(200).await }
        });
        tokio::task::yield_now().await;
        drop(urgent);
        assert_eq!(
            last.await.unwrap().unwrap(),
            200,
            "the awaited item's result"
        );
        assert_eq!(
            STATEMENTS.load(Ordering::SeqCst) - before,
            1,
            "one statement"
        );
        assert_eq!(stored(&pool).await, (100..=200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failed_statement_fails_its_items_and_later_pushes_still_write() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let (queue, _task) = WriteQueue::start(
            pool.clone(),
            64,
            WritePriority::default(),
            WriteHealth::default(),
        );
        let coalesced = Coalesced::new(queue, insert_or_fail);
        let failed = coalesced.write(13).await;
        assert!(failed.is_err(), "the failing item reports its error");
        assert!(stored(&pool).await.is_empty(), "nothing of it committed");
        assert_eq!(coalesced.write(7).await.unwrap(), 7);
        assert_eq!(stored(&pool).await, vec![7]);
    }
}
