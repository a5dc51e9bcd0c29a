//! Pure retry policy: exponential backoff with jitter, and what to do with a failed attempt.

use std::time::Duration;

use rand::Rng;

use crate::config::JobsConfig;
use crate::handlers::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue again, to run at this time (Unix ms).
    RetryAt(i64),
    Dead,
}

/// Delay before attempt `failed_attempts + 1`: `base * 2^(failed_attempts - 1)`, capped at `max`,
/// then a uniformly random point in its upper half so retries of many jobs spread out.
pub fn backoff(failed_attempts: u32, config: &JobsConfig, rng: &mut impl Rng) -> Duration {
    let exponent = failed_attempts.saturating_sub(1).min(30);
    let ceiling = config
        .backoff_base_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    let floor = ceiling / 2;
    Duration::from_millis(rng.gen_range(floor..=ceiling))
}

/// What happens after attempt number `attempts` (1-based) failed.
pub fn decide(
    failure: &Failure,
    attempts: u32,
    max_attempts: u32,
    now_ms: i64,
    config: &JobsConfig,
    rng: &mut impl Rng,
) -> Decision {
    if let Failure::Deferred(_, at) = failure {
        // Pacing is not a failed attempt: it never dead-letters.
        return Decision::RetryAt(*at);
    }
    if matches!(failure, Failure::Fatal(_) | Failure::WindowClosed(_)) || attempts >= max_attempts {
        return Decision::Dead;
    }
    let delay = match failure {
        Failure::RetryAfter(_, after) => *after,
        _ => backoff(attempts, config, rng),
    };
    Decision::RetryAt(now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn config() -> JobsConfig {
        JobsConfig {
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            ..JobsConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, ceiling) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (7, 60_000),
            (40, 60_000),
        ] {
            for _ in 0..50 {
                let d = backoff(attempt, &config(), &mut rng).as_millis() as u64;
                assert!(
                    (ceiling / 2..=ceiling).contains(&d),
                    "attempt {attempt}: {d}"
                );
            }
        }
    }

    #[test]
    fn fatal_failures_and_exhausted_attempts_dead_letter() {
        let mut rng = StdRng::seed_from_u64(1);
        let fatal = Failure::Fatal("131047".into());
        assert_eq!(decide(&fatal, 1, 8, 0, &config(), &mut rng), Decision::Dead);
        let retry = Failure::Retry("500".into());
        assert_eq!(decide(&retry, 8, 8, 0, &config(), &mut rng), Decision::Dead);
        assert!(
            matches!(decide(&retry, 1, 8, 0, &config(), &mut rng), Decision::RetryAt(t) if (500..=1000).contains(&t))
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut rng = StdRng::seed_from_u64(1);
        let failure = Failure::RetryAfter("429".into(), Duration::from_secs(30));
        assert_eq!(
            decide(&failure, 1, 8, 1_000, &config(), &mut rng),
            Decision::RetryAt(31_000)
        );
    }
}
