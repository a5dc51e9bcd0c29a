//! Wall-clock time as stored in the database (Unix milliseconds), and the pipeline's clock,
//! which tests swap for tokio's so that debounce windows and backoff run on paused time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// How long from now until `at_ms` (zero when it has passed).
pub fn until(at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0))
}

/// Where the pipeline reads the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Tokio's clock, counted from `base_ms` at `base`: under `tokio::time::pause()` it moves
    /// only when the test advances time (or the runtime has nothing else to do).
    Tokio {
        base_ms: i64,
        base: tokio::time::Instant,
    },
    /// Time that moves only when [`ManualTime::advance`] is called: tests drive debounce
    /// windows, backoff and due times step by step while everything else runs for real.
    Manual(std::sync::Arc<ManualTime>),
}

/// The time of a [`Clock::Manual`].
#[derive(Debug)]
pub struct ManualTime {
    now_ms: tokio::sync::watch::Sender<i64>,
}

impl ManualTime {
    pub fn starting_at(now_ms: i64) -> std::sync::Arc<ManualTime> {
        std::sync::Arc::new(ManualTime {
            now_ms: tokio::sync::watch::Sender::new(now_ms),
        })
    }

    pub fn now_ms(&self) -> i64 {
        *self.now_ms.borrow()
    }

    /// Moves the time forward; whatever sleeps until then wakes.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.send_modify(|now| *now = now.saturating_add(by));
    }
}

impl Clock {
    /// Tokio's clock, starting at the current wall time.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            base_ms: now_ms(),
            base: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(time) => time.now_ms(),
            Clock::Tokio { base_ms, base } => {
                let elapsed = i64::try_from(base.elapsed().as_millis()).unwrap_or(i64::MAX);
                base_ms.saturating_add(elapsed)
            }
        }
    }

    /// How long from now until `at_ms` on this clock (zero when it has passed).
    pub fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(at_ms.saturating_sub(self.now_ms())).unwrap_or(0))
    }

    /// Sleeps until `at_ms` when there is one, else forever (for a `select!` branch).
    pub async fn sleep_until_some(&self, at_ms: Option<i64>) {
        match at_ms {
            Some(at) => self.sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Sleeps until `at_ms` on this clock.
    pub async fn sleep_until(&self, at_ms: i64) {
        match self {
            Clock::Manual(time) => {
                let mut changes = time.now_ms.subscribe();
                // Ends when the time has come; a dropped clock never comes.
                if changes.wait_for(|now| *now >= at_ms).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            _ => tokio::time::sleep(self.until(at_ms)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_advanced_past_their_time() {
        let time = ManualTime::starting_at(1_000);
        let clock = Clock::Manual(time.clone());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(1_500).await }
        });
        time.advance(Duration::from_millis(499));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "1 ms early");
        time.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now_ms(), 1_500);
    }
}
