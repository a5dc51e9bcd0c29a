//! When a failed Kapso call may be repeated: the CONTRACT §6 rules as pure functions
//! ([`classify`], [`category`]), `Retry-After` parsing and the client's backoff schedule.

use std::time::{Duration, SystemTime};

/// What a caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Kapso said when (`Retry-After`): wait that long, then retry. Overrides everything else.
    RetryAfter(Duration),
    /// Transient (throttling, 5xx, 409 in flight, transport): retry with backoff.
    Retry,
    /// Retrying the same request cannot help: fix the request, the template, the key or the plan.
    DoNotRetry,
}

/// Error categories of Kapso's SDK (`categorize.ts`), also useful for `errors[].code` of
/// `whatsapp.message.failed` webhooks (call [`category`] with no HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    Authorization,
    Permission,
    Throttling,
    Parameter,
    Media,
    Server,
    Integrity,
    ReengagementWindow,
    WabaConfig,
    BusinessEligibility,
    PhoneRegistration,
    Template,
    Flow,
    Synchronization,
    Unknown,
}

/// Codes that are never retried, whatever their category (§6 step 2).
pub const DO_NOT_RETRY_CODES: [i64; 6] = [131049, 131050, 131047, 368, 130497, 131031];

/// The facts about one failed response that §6 looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failure<'a> {
    pub http_status: Option<u16>,
    /// Graph error code (`error.code` of the Graph envelope).
    pub graph_code: Option<i64>,
    /// Kapso's string `code` (`insufficient_credits`, `marketing_preference_stopped`, ...).
    pub kapso_code: Option<&'a str>,
    pub retry_after: Option<Duration>,
}

/// The category of a Graph error code, falling back on the HTTP status for unlisted codes.
pub fn category(code: Option<i64>, http_status: Option<u16>) -> ErrorCategory {
    use ErrorCategory::*;
    let listed = code.and_then(|code| {
        Some(match code {
            0 | 190 => Authorization,
            3 | 10 | 200..=299 => Permission,
            4 | 80007 | 130429 | 131048 | 131056 => Throttling,
            33 | 100 | 130472 | 131008 | 131009 | 131021 | 131026 | 135000 => Parameter,
            131051..=131053 => Media,
            131000 | 131016 | 131057 | 133004 | 133005 => Server,
            368 | 130497 | 131031 => Integrity,
            131047 => ReengagementWindow,
            131037 => WabaConfig,
            131042 | 134011 => BusinessEligibility,
            131045 | 133000 | 133006 | 133008 | 133009 | 133010 | 133015 | 133016 => {
                PhoneRegistration
            }
            132000 | 132001 | 132005 | 132007 | 132012 | 132015 | 132016 => Template,
            132068 | 132069 => Flow,
            2593107 | 2593108 => Synchronization,
            _ => return None,
        })
    });
    if let Some(listed) = listed {
        return listed;
    }
    match http_status {
        Some(401) => Authorization,
        Some(403) => Permission,
        Some(404) => Parameter,
        Some(429) => Throttling,
        Some(status) if status >= 500 => Server,
        Some(400..=499) => Parameter,
        _ => Unknown,
    }
}

/// The do-not-retry codes first, then Kapso's own answers (401, 402 `insufficient_credits`, 422
/// refusals, 409 in flight), then the category. `Retry-After` only says when a retryable failure
/// may be retried: it never makes a final answer (131047, a 401, a refused template) retryable.
pub fn classify(failure: &Failure<'_>) -> RetryHint {
    match classify_ignoring_delay(failure) {
        RetryHint::Retry => match failure.retry_after {
            Some(delay) => RetryHint::RetryAfter(delay),
            None => RetryHint::Retry,
        },
        other => other,
    }
}

fn classify_ignoring_delay(failure: &Failure<'_>) -> RetryHint {
    if failure
        .graph_code
        .is_some_and(|code| DO_NOT_RETRY_CODES.contains(&code))
    {
        return RetryHint::DoNotRetry;
    }
    match (failure.http_status, failure.kapso_code) {
        (Some(401), _) => return RetryHint::DoNotRetry,
        (Some(402), Some("insufficient_credits")) => return RetryHint::DoNotRetry,
        (Some(422), Some("marketing_preference_stopped" | "messaging_account_mismatch")) => {
            return RetryHint::DoNotRetry
        }
        // The SDK calls 409 parameter/fix; the OpenAPI says wait and retry (CONTRACT §6).
        (Some(409), _) => return RetryHint::Retry,
        _ => {}
    }
    let server_error = failure.http_status.is_some_and(|s| s >= 500);
    match category(failure.graph_code, failure.http_status) {
        ErrorCategory::Throttling => RetryHint::Retry,
        ErrorCategory::Server | ErrorCategory::Unknown if server_error => RetryHint::Retry,
        _ => RetryHint::DoNotRetry,
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds.min(86_400.0)));
        }
        return None;
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How the client spaces its own retries within one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff delay; doubles per retry (with ±25 % jitter).
    pub base_backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Longest `Retry-After` the client sleeps inside a call; a longer one is cut to this.
    pub retry_after_cap: Duration,
    /// Shortest wait after a 409 "another message is in flight" (CONTRACT §6 suggests 1-2 s).
    pub conflict_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            retry_after_cap: Duration::from_secs(30),
            conflict_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based). `jitter` is uniform in `[0, 1)`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponential = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let capped = exponential.min(self.max_backoff);
        capped.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, code: i64) -> RetryHint {
        classify(&Failure {
            http_status: Some(status),
            graph_code: Some(code),
            ..Failure::default()
        })
    }

    fn http(status: u16) -> RetryHint {
        classify(&Failure {
            http_status: Some(status),
            ..Failure::default()
        })
    }

    fn kapso(status: u16, code: &str) -> RetryHint {
        classify(&Failure {
            http_status: Some(status),
            kapso_code: Some(code),
            ..Failure::default()
        })
    }

    use ErrorCategory as C;
    use RetryHint::{DoNotRetry, Retry};

    #[test]
    fn retry_after_times_retryable_failures_and_never_makes_final_ones_retryable() {
        let delay = Duration::from_secs(7);
        for (status, code) in [
            (429, Some(130429)),
            (500, None),
            (503, Some(131000)),
            (409, None),
        ] {
            let hint = classify(&Failure {
                http_status: Some(status),
                graph_code: code,
                retry_after: Some(delay),
                ..Failure::default()
            });
            assert_eq!(hint, RetryHint::RetryAfter(delay), "{status} {code:?}");
        }
        for (status, code) in [(400, Some(131047)), (401, None), (422, Some(100))] {
            let hint = classify(&Failure {
                http_status: Some(status),
                graph_code: code,
                retry_after: Some(delay),
                ..Failure::default()
            });
            assert_eq!(hint, RetryHint::DoNotRetry, "{status} {code:?}");
        }
    }

    #[test]
    fn do_not_retry_set_wins_over_http_status() {
        for code in DO_NOT_RETRY_CODES {
            assert_eq!(graph(500, code), DoNotRetry, "{code}");
            assert_eq!(graph(400, code), DoNotRetry, "{code}");
        }
    }

    #[test]
    fn authorization_codes_are_not_retried() {
        for code in [0, 190] {
            assert_eq!(category(Some(code), None), C::Authorization);
            assert_eq!(graph(400, code), DoNotRetry);
        }
        assert_eq!(http(401), DoNotRetry);
    }

    #[test]
    fn permission_codes_need_a_fix() {
        for code in [3, 10, 200, 219, 250, 299] {
            assert_eq!(category(Some(code), None), C::Permission, "{code}");
            assert_eq!(graph(403, code), DoNotRetry);
        }
    }

    #[test]
    fn throttling_codes_are_retried_with_backoff() {
        for code in [4, 80007, 130429, 131048, 131056] {
            assert_eq!(category(Some(code), None), C::Throttling, "{code}");
            assert_eq!(graph(400, code), Retry, "{code}");
            assert_eq!(graph(429, code), Retry, "{code}");
        }
        assert_eq!(http(429), Retry);
    }

    #[test]
    fn parameter_codes_are_not_blindly_retried() {
        for code in [33, 100, 130472, 131008, 131009, 131021, 131026, 135000] {
            assert_eq!(category(Some(code), None), C::Parameter, "{code}");
            assert_eq!(graph(400, code), DoNotRetry, "{code}");
        }
    }

    #[test]
    fn media_codes_need_a_fix() {
        for code in [131051, 131052, 131053] {
            assert_eq!(category(Some(code), None), C::Media);
            assert_eq!(graph(400, code), DoNotRetry);
        }
    }

    #[test]
    fn server_codes_are_retried_only_on_http_5xx() {
        for code in [131000, 131016, 131057, 133004, 133005] {
            assert_eq!(category(Some(code), None), C::Server, "{code}");
            assert_eq!(graph(503, code), Retry, "{code}");
            assert_eq!(graph(400, code), DoNotRetry, "{code}");
        }
    }

    #[test]
    fn integrity_and_reengagement_are_never_retried() {
        for code in [368, 130497, 131031] {
            assert_eq!(category(Some(code), None), C::Integrity);
        }
        assert_eq!(category(Some(131047), None), C::ReengagementWindow);
        assert_eq!(graph(422, 131047), DoNotRetry);
        for code in [131049, 131050] {
            assert_eq!(graph(400, code), DoNotRetry);
        }
    }

    #[test]
    fn configuration_categories_need_a_fix() {
        let rows: [(&[i64], C); 6] = [
            (&[131037], C::WabaConfig),
            (&[131042, 134011], C::BusinessEligibility),
            (
                &[
                    131045, 133000, 133006, 133008, 133009, 133010, 133015, 133016,
                ],
                C::PhoneRegistration,
            ),
            (
                &[132000, 132001, 132005, 132007, 132012, 132015, 132016],
                C::Template,
            ),
            (&[132068, 132069], C::Flow),
            (&[2593107, 2593108], C::Synchronization),
        ];
        for (codes, expected) in rows {
            for &code in codes {
                assert_eq!(category(Some(code), None), expected, "{code}");
                assert_eq!(graph(400, code), DoNotRetry, "{code}");
                assert_eq!(graph(500, code), DoNotRetry, "{code}");
            }
        }
    }

    #[test]
    fn unlisted_codes_fall_back_on_http_status() {
        assert_eq!(category(Some(1), Some(401)), C::Authorization);
        assert_eq!(category(Some(1), Some(403)), C::Permission);
        assert_eq!(category(Some(1), Some(404)), C::Parameter);
        assert_eq!(category(Some(1), Some(429)), C::Throttling);
        assert_eq!(category(Some(1), Some(502)), C::Server);
        assert_eq!(category(Some(1026), Some(422)), C::Parameter);
        assert_eq!(category(Some(1), None), C::Unknown);
        assert_eq!(graph(500, 1), Retry);
        assert_eq!(http(503), Retry);
        assert_eq!(graph(422, 1026), DoNotRetry);
        assert_eq!(http(404), DoNotRetry);
    }

    #[test]
    fn kapso_specific_answers() {
        assert_eq!(kapso(402, "insufficient_credits"), DoNotRetry);
        assert_eq!(kapso(422, "marketing_preference_stopped"), DoNotRetry);
        assert_eq!(kapso(422, "messaging_account_mismatch"), DoNotRetry);
        assert_eq!(http(409), Retry);
        assert_eq!(http(422), DoNotRetry);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0, 0.5), Duration::from_millis(200));
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(400));
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(150));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(250));
        assert_eq!(policy.backoff(30, 0.5), Duration::from_secs(5));
    }
}
