//! The simulated Meta throughput limit: a token bucket per business number. A message over the
//! limit is refused as Meta refuses it: HTTP 400 with the Graph error 130429 "Rate limit hit"
//! (Meta's error-code table gives 400 for its throttling codes; Kapso documents no 429 for the
//! proxy, CONTRACT §5), no `Retry-After`.

use std::collections::HashMap;
use std::time::Instant;

/// The per-number limit the sim enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendLimit {
    /// Messages per second each number may send.
    pub per_second: f64,
    /// Messages a number may send at once after a quiet spell (the bucket's size, at least 1).
    pub burst: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Buckets {
    numbers: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    /// Takes one message's token from `number`'s bucket at `now`; false when it is empty.
    pub fn take(&mut self, limit: SendLimit, number: &str, now: Instant) -> bool {
        let burst = limit.burst.max(1.0);
        let bucket = self.numbers.entry(number.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_number_gets_its_burst_then_its_rate() {
        let limit = SendLimit {
            per_second: 100.0,
            burst: 3.0,
        };
        let mut buckets = Buckets::default();
        let t0 = Instant::now();
        assert!((0..3).all(|_| buckets.take(limit, "a", t0)));
        assert!(!buckets.take(limit, "a", t0));
        assert!(
            buckets.take(limit, "b", t0),
            "other numbers have their own bucket"
        );
        assert!(buckets.take(limit, "a", t0 + Duration::from_millis(10)));
        assert!(!buckets.take(limit, "a", t0 + Duration::from_millis(15)));
    }
}
