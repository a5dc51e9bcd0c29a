//! Send pacing: each business number (`phone_number_id`) sends at its allowed rate, so a
//! backlog leaves as a steady stream instead of a storm of throttling errors and retries.
//!
//! Each number has a lane: a GCRA schedule (the theoretical time of its next free slot,
//! advanced by `1 / rate` per send). A send takes the next slot. When the slot is at most one
//! interval away (or [`MIN_HOLD`]) the worker waits for it; when it is further away the job
//! gives its worker back and is re-queued for the slot's time, which stays reserved for it
//! ([`Slot::Defer`]) — so a backlog of thousands for one number holds about two workers (one
//! sending, one waiting for the next slot), and the other numbers' jobs keep running at full
//! speed. A deferral is not an attempt. Time is the pipeline's [`Clock`], so tests can drive it.
//!
//! The rate of a number is, in order: `kapso.send_rates[number]` from the config, the rate its
//! Kapso phone-number object names ([`tier`]), else `kapso.default_send_rate` (80/s).
//!
//! Throttling answers ([`Throttle`]) slow things down without counting as a failed attempt:
//! a number's throughput limit (130429) pauses that number and halves its rate (it recovers
//! additively with each accepted send); a pair rate limit (131056) pauses that one recipient;
//! Kapso's own per-API-key limit (HTTP 429 without a Graph code) pauses every number, since it
//! counts all requests of the key.

pub mod gcra;
pub mod tier;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::KapsoConfig;
use crate::kapso::{KapsoClient, KapsoError};
use crate::metrics::Metrics;

/// A send whose slot is at most one interval (and at least this) away waits for it in its
/// worker; a later slot is reserved and the job re-queued for it.
pub const MIN_HOLD: Duration = Duration::from_millis(1);
/// First pause after a throttling answer without `Retry-After`; doubles per throttling answer
/// in a row (an answer during a pause is the same episode), up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
pub const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Meta's pair rate limit is about one message every 6 s to the same user: the first pause of
/// a recipient after 131056 (doubling while it repeats, up to [`MAX_RECIPIENT_PAUSE`]).
pub const FIRST_RECIPIENT_PAUSE: Duration = Duration::from_secs(6);
pub const MAX_RECIPIENT_PAUSE: Duration = Duration::from_secs(300);
/// A throttled number's rate is halved, but never below this share of its configured rate.
const MIN_RATE_SHARE: f64 = 1.0 / 16.0;
/// Each accepted send gives back this share of the configured rate after a slow-down.
const RECOVERY_SHARE: f64 = 1.0 / 100.0;
/// A deferred job that comes back more than this long after its reserved slot (workers were
/// busy, the database slow) keeps its turn but not its time: it goes as soon as the number's
/// last send is an interval old. Sending every late job at once would be a burst above the
/// number's rate; sending it to the back of the line (after every slot reserved since) would
/// starve the number whenever workers run late, since every deferred job would then miss its
/// slot again. No send goes closer than an interval to the number's previous one.
pub const LATE_SLOT: Duration = Duration::from_millis(50);
/// Reservations and recipient pauses kept before old ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// When a send may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Now, after waiting this long (zero, or at most one interval of the number).
    Wait(Duration),
    /// Not before this time (clock ms): re-queue the job; its slot stays reserved for it.
    Defer(i64),
}

/// A throttling answer, by what it limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The number's throughput (130429; also 4 and 80007, the app's and the WABA's call limits,
    /// which switchboard cannot tell apart per number; or a Graph error with HTTP 429).
    Number,
    /// Messages to one user (131056, pair rate limit).
    Recipient,
    /// Kapso's per-API-key request limit (HTTP 429 with Kapso's own error body).
    Account,
}

impl Throttle {
    /// Which limit a failed send hit, if it was throttled.
    pub fn of(err: &KapsoError) -> Option<Throttle> {
        match err {
            KapsoError::Graph { error, status, .. } => match error.code {
                131056 => Some(Throttle::Recipient),
                130429 | 4 | 80007 => Some(Throttle::Number),
                _ if *status == 429 => Some(Throttle::Number),
                _ => None,
            },
            KapsoError::RateLimited { .. } => Some(Throttle::Account),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Throttle::Number => "number",
            Throttle::Recipient => "recipient",
            Throttle::Account => "account",
        }
    }
}

/// Where each number's rate comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub default: f64,
    pub overrides: HashMap<String, f64>,
}

impl Rates {
    pub fn from_config(config: &KapsoConfig) -> Rates {
        Rates {
            default: config.default_send_rate,
            overrides: config.send_rates.clone(),
        }
    }
}

#[derive(Debug)]
struct Lane {
    /// Configured (or tier) rate, messages per second.
    rate: f64,
    /// Current rate: lower than `rate` after throttling, recovering with accepted sends.
    current: f64,
    /// Time of the next free slot, µs on the pacer's clock.
    next_us: i64,
    /// Time of the last slot a send went in, µs.
    last_send_us: i64,
    paused_until_ms: i64,
    /// Throttling answers in a row (reset by an accepted send).
    throttles: u32,
}

impl Lane {
    fn new(rate: f64) -> Lane {
        Lane {
            rate,
            current: rate,
            next_us: i64::MIN,
            last_send_us: i64::MIN,
            paused_until_ms: i64::MIN,
            throttles: 0,
        }
    }

    fn interval_us(&self) -> i64 {
        // Rates are validated positive; the floor keeps a broken value from dividing by zero.
        (1_000_000.0 / self.current.max(0.001)).round() as i64
    }
}

#[derive(Debug, Clone, Copy)]
struct Pause {
    until_ms: i64,
    count: u32,
}

#[derive(Debug)]
struct Reservation {
    number: String,
    at_us: i64,
}

#[derive(Debug, Default)]
struct State {
    /// Rates read from Kapso's phone-number objects.
    tiers: HashMap<String, f64>,
    lanes: HashMap<String, Lane>,
    /// Pair-rate pauses by (number, recipient).
    recipients: HashMap<(String, String), Pause>,
    /// Slots reserved for deferred jobs, by job id.
    reservations: HashMap<i64, Reservation>,
    account: Option<Pause>,
}

/// Per-number send pacing; cheap to share (`Arc`).
pub struct Pacer {
    rates: Rates,
    clock: Clock,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Pacer {
    pub fn new(rates: Rates, clock: Clock, metrics: Arc<Metrics>) -> Pacer {
        Pacer {
            rates,
            clock,
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rates read from Kapso's phone-number objects (number → messages/s). A configured
    /// override still wins.
    pub fn set_tier_rates(&self, tiers: HashMap<String, f64>) {
        let mut state = self.lock();
        for (number, rate) in &tiers {
            if let Some(lane) = state.lanes.get_mut(number) {
                if !self.rates.overrides.contains_key(number) {
                    lane.rate = *rate;
                    lane.current = *rate;
                }
            }
        }
        state.tiers = tiers;
    }

    /// Reads each number's rate from Kapso's phone-number objects (`GET
    /// /whatsapp/phone_numbers`). On failure the numbers keep the default rate; the error is
    /// logged, not fatal. Returns how many numbers named a rate.
    pub async fn load_tier_rates(&self, kapso: &KapsoClient) -> usize {
        match kapso.list_phone_numbers().await {
            Ok(numbers) => {
                let tiers: HashMap<String, f64> = numbers
                    .iter()
                    .filter_map(|n| {
                        let rate =
                            tier::rate_of_number(n.throughput_tier.as_deref(), n.is_coexistence)?;
                        Some((n.phone_number_id.clone(), rate))
                    })
                    .collect();
                let count = tiers.len();
                tracing::info!(
                    numbers = numbers.len(),
                    with_rate = count,
                    default_send_rate = self.rates.default,
                    "send pacing: read the numbers' throughput from Kapso"
                );
                self.set_tier_rates(tiers);
                count
            }
            Err(err) => {
                tracing::warn!(error = %err, default_send_rate = self.rates.default,
                    "send pacing: cannot read the phone numbers from Kapso; numbers without kapso.send_rates use kapso.default_send_rate");
                0
            }
        }
    }

    /// The configured rate of `number`: override, else Kapso's tier, else the default.
    pub fn rate_of(&self, number: &str) -> f64 {
        let state = self.lock();
        self.configured_rate(&state, number)
    }

    fn configured_rate(&self, state: &State, number: &str) -> f64 {
        self.rates
            .overrides
            .get(number)
            .or_else(|| state.tiers.get(number))
            .copied()
            .unwrap_or(self.rates.default)
    }

    /// Takes the next slot of `number` for a send of job `job` to `recipient`: the slot this
    /// job reserved when it was deferred, else a new one.
    pub fn reserve(&self, job: i64, number: &str, recipient: Option<&str>) -> Slot {
        let now_ms = self.clock.now_ms();
        let now_us = now_ms.saturating_mul(1000);
        let mut state = self.lock();
        if let Some(pause) = state.account.filter(|p| p.until_ms > now_ms) {
            return Slot::Defer(pause.until_ms);
        }
        if let Some(recipient) = recipient {
            let key = (number.to_owned(), recipient.to_owned());
            if let Some(pause) = state.recipients.get(&key).filter(|p| p.until_ms > now_ms) {
                return Slot::Defer(pause.until_ms);
            }
        }
        let rate = self.configured_rate(&state, number);
        let reserved = state.reservations.remove(&job);
        let lane = state
            .lanes
            .entry(number.to_owned())
            .or_insert_with(|| Lane::new(rate));
        let paused_us = lane.paused_until_ms.saturating_mul(1000);
        let hold_us = lane.interval_us().max(MIN_HOLD.as_micros() as i64);
        // A job using its reservation had its wait observed when it was deferred.
        let mut observed = false;
        let interval_us = lane.interval_us();
        let at_us = match reserved {
            // A reservation made before a pause began is void: the pause moved every slot.
            Some(r) if r.number == number && r.at_us >= paused_us => {
                observed = true;
                if now_us.saturating_sub(r.at_us) <= LATE_SLOT.as_micros() as i64 {
                    r.at_us
                } else {
                    // Late: its turn now (spaced below); new reservations come after it.
                    let at = now_us.max(lane.last_send_us.saturating_add(interval_us));
                    lane.next_us = lane.next_us.max(at.saturating_add(interval_us));
                    at
                }
            }
            _ => gcra::take(&mut lane.next_us, now_us.max(paused_us), interval_us, 0),
        };
        // Never closer than one interval to the number's last send, whatever the schedule
        // says (a late job may have taken the slot before this one).
        let at_us = at_us.max(lane.last_send_us.saturating_add(interval_us));
        let wait_us = at_us.saturating_sub(now_us).max(0);
        let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
        if wait_us <= hold_us {
            lane.last_send_us = lane.last_send_us.max(at_us);
            drop(state);
            if !observed {
                self.metrics.observe_pacing_wait(wait);
            }
            return Slot::Wait(wait);
        }
        if state.reservations.len() >= SWEEP_ABOVE {
            // Reservations of jobs that never came back (finished elsewhere, route removed).
            let stale = now_us.saturating_sub(60_000_000);
            state.reservations.retain(|_, r| r.at_us > stale);
        }
        state.reservations.insert(
            job,
            Reservation {
                number: number.to_owned(),
                at_us,
            },
        );
        drop(state);
        self.metrics.observe_pacing_wait(wait);
        // Whole milliseconds, rounded up: the job is never due before its slot.
        Slot::Defer(at_us.saturating_add(999).div_euclid(1000))
    }

    /// A send was accepted: the number's throttling episode is over and its rate recovers.
    pub fn accepted(&self, number: &str, recipient: Option<&str>) {
        let mut state = self.lock();
        if let Some(lane) = state.lanes.get_mut(number) {
            lane.throttles = 0;
            if lane.current < lane.rate {
                lane.current = (lane.current + lane.rate * RECOVERY_SHARE).min(lane.rate);
            }
        }
        if let Some(recipient) = recipient {
            if !state.recipients.is_empty() {
                state
                    .recipients
                    .remove(&(number.to_owned(), recipient.to_owned()));
            }
        }
    }

    /// A send was throttled: pause what the answer limits (for `retry_after`, else a backoff)
    /// and return when the job may try again (clock ms).
    pub fn throttled(
        &self,
        kind: Throttle,
        number: &str,
        recipient: Option<&str>,
        retry_after: Option<Duration>,
    ) -> i64 {
        let now_ms = self.clock.now_ms();
        self.metrics.count_throttled(number, kind.label());
        let mut state = self.lock();
        let rate = self.configured_rate(&state, number);
        match (kind, recipient) {
            (Throttle::Recipient, Some(recipient)) => {
                if state.recipients.len() >= SWEEP_ABOVE {
                    state.recipients.retain(|_, p| p.until_ms > now_ms);
                }
                let pause = state
                    .recipients
                    .entry((number.to_owned(), recipient.to_owned()))
                    .or_insert(Pause {
                        until_ms: i64::MIN,
                        count: 0,
                    });
                extend(
                    pause,
                    now_ms,
                    retry_after,
                    FIRST_RECIPIENT_PAUSE,
                    MAX_RECIPIENT_PAUSE,
                )
            }
            (Throttle::Account, _) => {
                let pause = state.account.get_or_insert(Pause {
                    until_ms: i64::MIN,
                    count: 0,
                });
                extend(pause, now_ms, retry_after, FIRST_PAUSE, MAX_PAUSE)
            }
            // A pair limit without a recipient to pin it on slows the number instead.
            (Throttle::Number | Throttle::Recipient, _) => {
                let lane = state
                    .lanes
                    .entry(number.to_owned())
                    .or_insert_with(|| Lane::new(rate));
                let mut pause = Pause {
                    until_ms: lane.paused_until_ms,
                    count: lane.throttles,
                };
                let new_episode = lane.paused_until_ms <= now_ms;
                let until = extend(&mut pause, now_ms, retry_after, FIRST_PAUSE, MAX_PAUSE);
                if new_episode {
                    lane.current = (lane.current / 2.0).max(lane.rate * MIN_RATE_SHARE);
                }
                lane.paused_until_ms = pause.until_ms;
                lane.throttles = pause.count;
                lane.next_us = lane.next_us.max(until.saturating_mul(1000));
                until
            }
        }
    }
}

/// Extends `pause` after a throttling answer at `now_ms`; returns its end. An answer during the
/// pause (sends that were already in flight) belongs to the same episode and does not escalate.
fn extend(
    pause: &mut Pause,
    now_ms: i64,
    retry_after: Option<Duration>,
    first: Duration,
    max: Duration,
) -> i64 {
    if pause.until_ms > now_ms && retry_after.is_none() {
        return pause.until_ms;
    }
    pause.count = pause.count.saturating_add(1);
    let delay = retry_after.unwrap_or_else(|| {
        first
            .saturating_mul(2u32.saturating_pow(pause.count.saturating_sub(1).min(16)))
            .min(max)
    });
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    pause.until_ms = pause.until_ms.max(now_ms.saturating_add(delay_ms));
    pause.until_ms
}

#[cfg(test)]
mod tests;
