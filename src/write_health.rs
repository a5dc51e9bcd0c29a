//! Whether the database takes writes. The writers (the inbox and the pipeline's write queue)
//! report each commit; `/readyz` answers 503 with the reason from the first failed commit until
//! one succeeds again. A full disk fails every commit with the same error: it is logged once,
//! then at most once per [`LOG_EVERY`] with the number of failures since, and once more when
//! writes succeed again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a failure that keeps repeating is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shared by the writers and `/readyz`. Cheap to clone.
#[derive(Clone, Default)]
pub struct WriteHealth {
    failing: Arc<Mutex<Option<Failing>>>,
}

#[derive(Debug, Clone)]
struct Failing {
    /// The latest error.
    error: String,
    /// Failed commits since writes last succeeded.
    failures: u64,
    /// Failures not logged yet.
    unlogged: u64,
    last_logged: Instant,
}

impl WriteHealth {
    /// A commit by `writer` succeeded.
    pub fn committed(&self, writer: &str) {
        let recovered = self.lock().take();
        if let Some(failing) = recovered {
            tracing::info!(
                writer,
                failures = failing.failures,
                "database writes succeed again"
            );
        }
    }

    /// A commit by `writer` failed with `error`. Logged at once the first time, then at most
    /// once per [`LOG_EVERY`] (or when the error changes), with the count of failures since.
    pub fn failed(&self, writer: &str, error: &dyn std::fmt::Display) {
        self.failed_at(writer, &error.to_string(), Instant::now());
    }

    fn failed_at(&self, writer: &str, error: &str, now: Instant) {
        let mut failing = self.lock();
        let log = match failing.as_mut() {
            Some(state) if state.error == error => {
                state.failures += 1;
                state.unlogged += 1;
                now.duration_since(state.last_logged) >= LOG_EVERY
            }
            Some(state) => {
                state.error = error.to_owned();
                state.failures += 1;
                state.unlogged += 1;
                true
            }
            None => {
                *failing = Some(Failing {
                    error: error.to_owned(),
                    failures: 1,
                    unlogged: 1,
                    last_logged: now,
                });
                true
            }
        };
        if let (true, Some(state)) = (log, failing.as_mut()) {
            tracing::error!(
                writer,
                error = %state.error,
                failures = state.unlogged,
                failing_for_commits = state.failures,
                "database writes fail (repeats are logged at most every {} s)",
                LOG_EVERY.as_secs()
            );
            state.unlogged = 0;
            state.last_logged = now;
        }
    }

    /// Why writes fail, while they do.
    pub fn failure(&self) -> Option<String> {
        self.lock().as_ref().map(|state| state.error.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Failing>> {
        // Each change leaves the state whole.
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn unlogged(&self) -> u64 {
        self.lock().as_ref().map_or(0, |state| state.unlogged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_until_a_commit_succeeds() {
        let health = WriteHealth::default();
        assert_eq!(health.failure(), None);
        health.failed("inbox", &"database or disk is full");
        assert_eq!(
            health.failure().as_deref(),
            Some("database or disk is full")
        );
        health.committed("pipeline");
        assert_eq!(health.failure(), None);
    }

    #[test]
    fn the_same_error_is_logged_once_per_interval_with_a_count() {
        let health = WriteHealth::default();
        let start = Instant::now();
        health.failed_at("inbox", "disk full", start);
        assert_eq!(health.unlogged(), 0, "the first failure is logged at once");
        for i in 1..=1000 {
            health.failed_at("inbox", "disk full", start + Duration::from_millis(i));
        }
        assert_eq!(
            health.unlogged(),
            1000,
            "repeats within the interval are counted"
        );
        health.failed_at("inbox", "disk full", start + LOG_EVERY);
        assert_eq!(health.unlogged(), 0, "logged again after the interval");
        health.failed_at("inbox", "I/O error", start + LOG_EVERY);
        assert_eq!(health.unlogged(), 0, "a different error is logged at once");
    }
}
