//! Who gets the single writer connection first: the inbox. Deliveries wait for their commit
//! before Kapso gets its answer, so while the inbox writer waits for the connection, the
//! pipeline's writers (dispatcher and its buffer flushes, job writes) hold back and queue behind it.
//! The pipeline then waits at most for one inbox commit, and the inbox at most for one
//! pipeline transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct WritePriority {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Inbox writers waiting for the connection.
    urgent: AtomicUsize,
    /// Notified when no inbox writer waits any more.
    clear: Notify,
}

/// Held by the inbox writer while it waits for the connection.
pub struct Urgent {
    inner: Arc<Inner>,
}

impl WritePriority {
    /// The inbox wants the connection: pipeline writers hold back until the guard is dropped
    /// (drop it once the connection is acquired).
    pub fn urgent(&self) -> Urgent {
        self.inner.urgent.fetch_add(1, Ordering::SeqCst);
        Urgent {
            inner: self.inner.clone(),
        }
    }

    /// Waits while an inbox writer waits for the connection.
    pub async fn after_urgent(&self) {
        loop {
            let clear = self.inner.clear.notified();
            tokio::pin!(clear);
            clear.as_mut().enable();
            if self.inner.urgent.load(Ordering::SeqCst) == 0 {
                return;
            }
            clear.await;
        }
    }
}

impl Drop for Urgent {
    fn drop(&mut self) {
        if self.inner.urgent.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.clear.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipeline_writers_wait_while_the_inbox_waits() {
        let priority = WritePriority::default();
        priority.after_urgent().await; // nobody urgent: no wait
        let urgent = priority.urgent();
        let waiter = tokio::spawn({
            let priority = priority.clone();
            async move { priority.after_urgent().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "held back while the inbox waits");
        drop(urgent);
        waiter.await.unwrap();
    }
}
