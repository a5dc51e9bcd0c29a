use std::time::Duration;

use super::*;
use crate::clock::ManualTime;

const A: &str = "106540352242922";
const B: &str = "106540352242923";

fn pacer(default: f64, overrides: &[(&str, f64)]) -> (Pacer, Arc<ManualTime>, Arc<Metrics>) {
    let time = ManualTime::starting_at(1_000_000);
    let metrics = Arc::new(Metrics::new());
    let rates = Rates {
        default,
        overrides: overrides
            .iter()
            .map(|(n, r)| ((*n).to_owned(), *r))
            .collect(),
    };
    let pacer = Pacer::new(rates, Clock::Manual(time.clone()), metrics.clone());
    (pacer, time, metrics)
}

/// The time (ms) at which each of `n` sends of one number may go, deferred ones included.
fn slots(pacer: &Pacer, time: &ManualTime, first_job: i64, n: i64, number: &str) -> Vec<i64> {
    (first_job..first_job + n)
        .map(|job| match pacer.reserve(job, number, None) {
            Slot::Wait(wait) => time.now_ms() + wait.as_millis() as i64,
            Slot::Defer(at) => at,
        })
        .collect()
}

#[test]
fn a_backlog_gets_slots_one_interval_apart() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let at = slots(&pacer, &time, 1, 50, A);
    let start = time.now_ms();
    for (i, at) in at.iter().enumerate() {
        assert_eq!(*at, start + 10 * i as i64, "send {i}");
    }
}

#[test]
fn only_the_next_slot_is_waited_for_in_the_worker() {
    let (pacer, _, _) = pacer(100.0, &[]);
    assert_eq!(pacer.reserve(1, A, None), Slot::Wait(Duration::ZERO));
    assert_eq!(
        pacer.reserve(2, A, None),
        Slot::Wait(Duration::from_millis(10))
    );
    assert!(matches!(pacer.reserve(3, A, None), Slot::Defer(_)));
}

#[test]
fn a_deferred_job_gets_its_reserved_slot_when_it_comes_back() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let at = slots(&pacer, &time, 1, 5, A);
    // Job 5 was deferred to its slot; when it comes back it goes at once, and the slot after
    // the backlog is still the next one handed out.
    time.advance(Duration::from_millis((at[4] - time.now_ms()) as u64));
    assert_eq!(pacer.reserve(5, A, None), Slot::Wait(Duration::ZERO));
    assert_eq!(slots(&pacer, &time, 6, 1, A), vec![at[4] + 10]);
}

#[test]
fn a_job_back_long_after_its_slot_takes_a_new_one_instead_of_bursting() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let at = slots(&pacer, &time, 1, 5, A);
    // Job 5's slot was 40 ms out; it comes back 200 ms late, after the others went.
    time.advance(Duration::from_millis((at[4] - time.now_ms()) as u64 + 200));
    assert_eq!(pacer.reserve(5, A, None), Slot::Wait(Duration::ZERO));
    // Its old slot is gone; the next one is one interval after it, not in the past.
    assert_eq!(
        pacer.reserve(6, A, None),
        Slot::Wait(Duration::from_millis(10))
    );
}

/// Workers running late must not starve a number: deferred jobs that all miss their slots keep
/// their turn (not sent to the back of the line behind every later reservation), one interval
/// apart.
#[test]
fn late_jobs_keep_their_turn_and_never_go_faster_than_the_rate() {
    let (pacer, time, _) = pacer(100.0, &[]);
    // Jobs 1..=20 reserve slots 10 ms apart: the first goes now, the rest are deferred.
    let at = slots(&pacer, &time, 1, 20, A);
    // Everything comes back 300 ms after job 20's slot, far past its own.
    time.advance(Duration::from_millis((at[19] - time.now_ms()) as u64 + 300));
    let mut sent = 0;
    let mut waits = Vec::new();
    for job in 2..=20 {
        match pacer.reserve(job, A, None) {
            Slot::Wait(wait) => {
                sent += 1;
                waits.push(wait.as_millis());
                time.advance(wait);
            }
            Slot::Defer(at) => panic!("job {job} sent to the back of the line (due at {at})"),
        }
    }
    assert_eq!(sent, 19);
    // The first late job goes at once, the others one interval (10 ms) apart.
    assert_eq!(waits[0], 0);
    assert!(waits[1..].iter().all(|w| *w == 10), "{waits:?}");
}

#[test]
fn numbers_are_paced_independently_at_their_own_rates() {
    let (pacer, time, _) = pacer(80.0, &[(B, 1000.0)]);
    let start = time.now_ms();
    let a = slots(&pacer, &time, 1, 100, A);
    let b = slots(&pacer, &time, 1_000, 100, B);
    assert_eq!(*a.last().unwrap(), start + 1_238); // 99 × 12.5 ms, rounded up
    assert_eq!(*b.last().unwrap(), start + 99);
    assert_eq!(pacer.rate_of(A), 80.0);
}

#[test]
fn the_override_wins_over_the_tier_and_the_tier_over_the_default() {
    let (pacer, _, _) = pacer(80.0, &[(A, 5.0)]);
    pacer.set_tier_rates([(A.to_owned(), 1000.0), (B.to_owned(), 1000.0)].into());
    assert_eq!(pacer.rate_of(A), 5.0);
    assert_eq!(pacer.rate_of(B), 1000.0);
    assert_eq!(pacer.rate_of("other"), 80.0);
}

#[test]
fn throttling_pauses_and_slows_that_number_only() {
    let (pacer, time, metrics) = pacer(100.0, &[]);
    let start = time.now_ms();
    let until = pacer.throttled(Throttle::Number, A, Some("15550100200"), None);
    assert_eq!(until, start + 1_000);
    // Answers for sends already in flight belong to the same episode.
    assert_eq!(pacer.throttled(Throttle::Number, A, None, None), until);
    assert_eq!(pacer.reserve(1, A, None), Slot::Defer(until));
    // At half the rate after the pause.
    assert_eq!(slots(&pacer, &time, 2, 2, A), vec![until + 20, until + 40]);
    assert_eq!(pacer.reserve(100, B, None), Slot::Wait(Duration::ZERO));
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "switchboard_sends_throttled_total{{phone_number_id=\"{A}\",limit=\"number\"}} 2"
        )),
        "{text}"
    );
}

#[test]
fn a_repeated_throttle_backs_off_further_and_retry_after_wins() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let first = pacer.throttled(Throttle::Number, A, None, None);
    time.advance(Duration::from_millis(1_000));
    let second = pacer.throttled(Throttle::Number, A, None, None);
    assert_eq!(second - first, 2_000);
    let asked = pacer.throttled(Throttle::Number, A, None, Some(Duration::from_secs(30)));
    assert_eq!(asked, time.now_ms() + 30_000);
    // An accepted send ends the episode: the next throttle starts from the first pause again.
    time.advance(Duration::from_secs(30));
    pacer.accepted(A, None);
    let now = time.now_ms();
    assert_eq!(
        pacer.throttled(Throttle::Number, A, None, None),
        now + 1_000
    );
}

#[test]
fn a_pair_limit_pauses_one_recipient_only() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let until = pacer.throttled(Throttle::Recipient, A, Some("1555"), None);
    assert_eq!(until, time.now_ms() + 6_000);
    assert_eq!(pacer.reserve(1, A, Some("1555")), Slot::Defer(until));
    assert_eq!(
        pacer.reserve(2, A, Some("1666")),
        Slot::Wait(Duration::ZERO)
    );
    assert_eq!(
        pacer.reserve(3, B, Some("1555")),
        Slot::Wait(Duration::ZERO)
    );
}

#[test]
fn kapsos_own_rate_limit_pauses_every_number() {
    let (pacer, time, _) = pacer(100.0, &[]);
    let until = pacer.throttled(Throttle::Account, A, None, Some(Duration::from_secs(60)));
    assert_eq!(until, time.now_ms() + 60_000);
    assert_eq!(pacer.reserve(1, B, None), Slot::Defer(until));
}

#[test]
fn throttling_answers_are_told_apart() {
    use crate::kapso::KapsoError;
    use reqwest::header::HeaderMap;
    let graph = |status: u16, code: i64| {
        let body =
            serde_json::json!({"error": {"message": "x", "type": "OAuthException", "code": code}});
        KapsoError::from_response(status, &HeaderMap::new(), body.to_string().as_bytes())
    };
    assert_eq!(Throttle::of(&graph(400, 130429)), Some(Throttle::Number));
    assert_eq!(Throttle::of(&graph(429, 130429)), Some(Throttle::Number));
    assert_eq!(Throttle::of(&graph(400, 131056)), Some(Throttle::Recipient));
    assert_eq!(Throttle::of(&graph(400, 80007)), Some(Throttle::Number));
    assert_eq!(Throttle::of(&graph(400, 131047)), None);
    let kapso = KapsoError::from_response(
        429,
        &HeaderMap::new(),
        br#"{"error": "Rate limit exceeded", "message": "You have exceeded the rate limit. Please try again later."}"#,
    );
    assert_eq!(Throttle::of(&kapso), Some(Throttle::Account));
}

#[test]
fn each_send_observes_its_wait_once() {
    let (pacer, time, metrics) = pacer(100.0, &[]);
    let at = slots(&pacer, &time, 1, 3, A);
    time.advance(Duration::from_millis((at[2] - time.now_ms()) as u64));
    assert_eq!(pacer.reserve(3, A, None), Slot::Wait(Duration::ZERO));
    let text = metrics.render();
    assert!(
        text.contains("switchboard_send_pacing_wait_seconds_count 3"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_send_pacing_wait_seconds_sum 0.03"),
        "{text}"
    );
}
