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
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// Tokio's clock, counted from `base_ms` at `base`: under `tokio::time::pause()` it moves
    /// only when the test advances time (or the runtime has nothing else to do).
    Tokio {
        base_ms: i64,
        base: tokio::time::Instant,
    },
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

    /// Sleeps until `at_ms` on this clock.
    pub async fn sleep_until(&self, at_ms: i64) {
        tokio::time::sleep(self.until(at_ms)).await;
    }
}
