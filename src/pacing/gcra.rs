//! The GCRA step both limiters share: the send pacer's lanes (one per business number) and
//! Kapso's per-API-key request limiter ([`crate::kapso::limiter`]). A schedule keeps the
//! theoretical time of its next free slot; taking a slot gives the later of that time and now,
//! and moves the schedule one interval past it.

/// Takes the next slot of the schedule whose next free slot is `*next_us`, at `now_us`, for a
/// rate of one per `interval_us`; `tolerance_us` lets a caller go that far ahead of the
/// schedule (a burst of `tolerance_us / interval_us` after a quiet spell; 0 for none). Returns
/// when the slot is (µs, never before `now_us`).
pub fn take(next_us: &mut i64, now_us: i64, interval_us: i64, tolerance_us: i64) -> i64 {
    let at = next_us.saturating_sub(tolerance_us).max(now_us);
    *next_us = (*next_us).max(now_us).saturating_add(interval_us);
    at
}

#[cfg(test)]
mod tests {
    use super::take;

    #[test]
    fn slots_are_one_interval_apart_after_the_tolerance() {
        let mut next = i64::MIN;
        let slots: Vec<i64> = (0..5).map(|_| take(&mut next, 1_000, 100, 200)).collect();
        // Three at once (the slot now plus a tolerance of two intervals), then one per interval.
        assert_eq!(slots, [1_000, 1_000, 1_000, 1_100, 1_200]);
    }

    #[test]
    fn a_quiet_spell_does_not_bank_more_than_the_tolerance() {
        let mut next = i64::MIN;
        take(&mut next, 0, 100, 0);
        assert_eq!(take(&mut next, 10_000, 100, 0), 10_000);
        assert_eq!(take(&mut next, 10_000, 100, 0), 10_100);
    }
}
