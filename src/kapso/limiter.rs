//! Kapso's per-API-key request limit, kept on this side: every call of one [`super::KapsoClient`]
//! except message sends and mark-as-read (those leave at each business number's pace, see
//! [`crate::pacing`]) takes a slot here first — Platform API calls and Meta-proxy reads such as
//! the message history alike.
//!
//! Kapso limits the Platform API per API key and per minute by plan: 100 requests (legacy and
//! free), 500 (pro), 1,000 (enterprise and platform); over it, it answers 429 with
//! `Retry-After: 60` (<https://docs.kapso.ai/api/platform/v1/platform-api-overview>).
//! `kapso.api_requests_per_minute` (default 100, the lowest plan) is that number. The limiter
//! is a GCRA schedule ([`crate::pacing::gcra`]): a burst of a tenth of the limit after a quiet
//! spell, the rest spread evenly, so that no minute holds more than the limit. A 429 from
//! Kapso pauses every call of the key for its `Retry-After` (60 s when it gives none).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::pacing::gcra;

/// Kapso's lowest plan: 100 Platform API requests per minute per API key.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 100;
/// How long a 429 without `Retry-After` pauses the key (the value Kapso documents sending).
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// A wait at least this long is logged at debug level.
const LOGGED_WAIT: Duration = Duration::from_secs(1);

/// One API key's request budget; shared by every clone of its client.
#[derive(Debug)]
pub struct ApiLimiter {
    clock: Clock,
    interval_us: i64,
    tolerance_us: i64,
    state: Mutex<State>,
    /// The time (clock ms) the latest call that had to wait is waiting for.
    waits: watch::Sender<Option<i64>>,
}

#[derive(Debug)]
struct State {
    next_us: i64,
    paused_until_ms: i64,
}

impl ApiLimiter {
    /// At most `per_minute` calls in any minute (at least 1), on `clock`.
    pub fn new(per_minute: u32, clock: Clock) -> ApiLimiter {
        let per_minute = per_minute.max(1);
        let burst = per_minute / 10;
        // A burst of `burst` plus one call per interval: `burst + 1 + 60 s / interval` calls at
        // most in any minute, which is `per_minute`.
        let spread = i64::from(per_minute.saturating_sub(burst).saturating_sub(1).max(1));
        let interval_us = 60_000_000 / spread;
        ApiLimiter {
            clock,
            interval_us,
            tolerance_us: interval_us.saturating_mul(i64::from(burst)),
            state: Mutex::new(State {
                next_us: i64::MIN,
                paused_until_ms: i64::MIN,
            }),
            waits: watch::Sender::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next slot (none when the budget allows a call now) and takes it.
    pub async fn acquire(&self, op: &'static str) {
        let (now_ms, at_ms) = self.take_slot();
        if at_ms <= now_ms {
            return;
        }
        let wait = self.clock.until(at_ms);
        if wait >= LOGGED_WAIT {
            tracing::debug!(
                kapso.op = op,
                wait_ms = wait.as_millis() as u64,
                "Kapso call waits for the API key's request budget"
            );
        }
        self.waits.send_replace(Some(at_ms));
        self.clock.sleep_until(at_ms).await;
    }

    /// Takes the next slot: (now, the slot's time), clock ms.
    fn take_slot(&self) -> (i64, i64) {
        let now_ms = self.clock.now_ms();
        let mut state = self.lock();
        let from_us = now_ms.max(state.paused_until_ms).saturating_mul(1000);
        let at_us = gcra::take(
            &mut state.next_us,
            from_us,
            self.interval_us,
            self.tolerance_us,
        );
        // Whole milliseconds, rounded up: the call never goes before its slot.
        (now_ms, at_us.saturating_add(999).div_euclid(1000))
    }

    /// Kapso answered 429: no call of this key before `retry_after` (or [`DEFAULT_PAUSE`]) has
    /// passed; calls after the pause are spread again from its end.
    pub fn pause(&self, retry_after: Option<Duration>) {
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
        let until = self
            .clock
            .now_ms()
            .saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX));
        let mut state = self.lock();
        state.paused_until_ms = state.paused_until_ms.max(until);
        // Slots handed out before the 429 were for a budget Kapso says is spent.
        state.next_us = state.next_us.max(until.saturating_mul(1000));
        drop(state);
        tracing::warn!(
            pause_ms = pause.as_millis() as u64,
            "Kapso answered 429 (API key request limit): pausing Kapso calls of this key"
        );
    }

    /// Changes whenever a call starts waiting; the value is the time (clock ms) it waits for.
    /// Tests on a manual clock advance to it.
    pub fn waits(&self) -> watch::Receiver<Option<i64>> {
        self.waits.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualTime;

    /// When each of `n` calls made at once may go (ms after the start), without waiting.
    fn slots(limiter: &ApiLimiter, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| {
                let (now, at) = limiter.take_slot();
                at - now
            })
            .collect()
    }

    #[test]
    fn no_minute_holds_more_than_the_limit() {
        let time = ManualTime::starting_at(0);
        let limiter = ApiLimiter::new(100, Clock::Manual(time));
        let at = slots(&limiter, 1_000);
        for (i, start) in at.iter().enumerate() {
            let in_minute = at[i..].iter().take_while(|t| **t < start + 60_000).count();
            assert!(
                in_minute <= 100,
                "{in_minute} calls in the minute from {start} ms"
            );
        }
        // A tenth at once, then evenly.
        assert_eq!(at.iter().filter(|t| **t == 0).count(), 11);
    }

    #[test]
    fn a_pause_moves_every_later_slot_past_it() {
        let time = ManualTime::starting_at(0);
        let limiter = ApiLimiter::new(100, Clock::Manual(time));
        limiter.pause(Some(Duration::from_secs(60)));
        assert_eq!(slots(&limiter, 1), [60_000]);
    }
}
