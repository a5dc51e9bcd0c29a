//! `[catch_up]`: after an outage, ask Kapso what arrived for each number-scoped webhook and
//! store what switchboard missed (see docs/CATCH_UP.md). Durations are written like
//! `[retention]`'s ages: `"10m"`, `"1h"`, `"45s"`; `"off"` (or `0`) where allowed.

use std::time::Duration;

use serde::Deserialize;

use super::retention::Age;
use super::ConfigError;

/// `[catch_up]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatchUpConfig {
    /// Catch up in the background once `serve` listens (needs `kapso.api_key`).
    pub on_startup: bool,
    /// How often `serve` catches up again; `"off"` runs it only at startup.
    pub interval: Age,
    /// How far before a number's checkpoint each run starts reading (Kapso's `since` is its own
    /// creation time, and its retries span about two minutes).
    pub overlap: Age,
    /// Where the first run for a number without any stored event starts: this long ago.
    pub first_lookback: Age,
    /// A backfilled message older than this (by its own timestamp) is stored and routed, but
    /// its send handlers do not send.
    pub reply_max_age: Age,
    /// A run that recovers messages for a webhook silent this long logs a likely delivery
    /// problem (Kapso paused it, cannot reach it, or its signature is refused).
    pub silence_warning: Age,
    /// Also read each number's outbound messages and store the status events (`delivered`,
    /// `read`, ...) its webhooks subscribe to and never received.
    pub statuses: bool,
    /// Messages younger than this are left to Kapso's webhook retries (10 s, 40 s, 90 s), whose
    /// payload is complete, and taken by a later run if none arrives.
    pub webhook_grace: Age,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        CatchUpConfig {
            on_startup: true,
            interval: minutes(10),
            overlap: minutes(10),
            first_lookback: minutes(60),
            reply_max_age: minutes(60),
            silence_warning: minutes(10),
            statuses: true,
            webhook_grace: Age(Some(Duration::from_secs(180))),
        }
    }
}

const fn minutes(n: u64) -> Age {
    Age(Some(Duration::from_secs(n * 60)))
}

impl CatchUpConfig {
    /// Range checks; errors name the key and the fix.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            file: file.to_owned(),
            key: format!("catch_up.{key}"),
            message: message.to_owned(),
        };
        let day = Duration::from_secs(24 * 60 * 60);
        if let Some(interval) = self.interval.0 {
            if !(Duration::from_secs(10)..=day).contains(&interval) {
                return Err(invalid(
                    "interval",
                    "use \"10s\" to \"1d\" (default \"10m\"), or \"off\" to catch up only at startup",
                ));
            }
        }
        let required = [
            ("overlap", self.overlap, "10m", Duration::ZERO, day),
            (
                "webhook_grace",
                self.webhook_grace,
                "3m",
                Duration::ZERO,
                Duration::from_secs(3600),
            ),
            (
                "first_lookback",
                self.first_lookback,
                "1h",
                Duration::from_secs(60),
                30 * day,
            ),
            (
                "reply_max_age",
                self.reply_max_age,
                "1h",
                Duration::from_secs(60),
                30 * day,
            ),
            (
                "silence_warning",
                self.silence_warning,
                "10m",
                Duration::from_secs(60),
                day,
            ),
        ];
        for (key, age, default, min, max) in required {
            match age.0 {
                Some(d) if (min..=max).contains(&d) => {}
                None if key == "overlap" || key == "webhook_grace" => {}
                _ => {
                    return Err(invalid(
                        key,
                        &format!(
                            "use \"{}\" to \"{}\" (default \"{default}\")",
                            short(min),
                            short(max)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// `overlap` in milliseconds (0 when off).
    pub fn overlap_ms(&self) -> i64 {
        age_ms(self.overlap)
    }
}

/// `d` as the config writes it: `"30d"`, `"1h"`, `"60s"`.
fn short(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

/// An age in milliseconds, 0 when off.
pub fn age_ms(age: Age) -> i64 {
    age.0
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::webhooks::tests::{error, hook, parse};
    use super::*;

    #[test]
    fn catch_up_is_on_by_default_and_durations_are_read() {
        let config = parse(&hook("")).unwrap();
        assert!(config.catch_up.on_startup);
        assert_eq!(config.catch_up.interval, minutes(10));
        assert_eq!(age_ms(config.catch_up.reply_max_age), 3_600_000);
        let config = parse(&format!(
            "{}[catch_up]\ninterval = \"off\"\noverlap = \"5m\"\nfirst_lookback = \"2h\"\nreply_max_age = \"30m\"\n",
            hook("")
        ))
        .unwrap();
        assert_eq!(config.catch_up.interval, Age(None));
        assert_eq!(config.catch_up.overlap_ms(), 300_000);
        assert_eq!(age_ms(config.catch_up.first_lookback), 7_200_000);
        assert_eq!(config.catch_up.silence_warning, minutes(10));
    }

    #[test]
    fn catch_up_errors_name_the_file_the_key_and_the_fix() {
        let err = error(&format!("{}[catch_up]\ninterval = \"1s\"\n", hook("")));
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("catch_up.interval"), "{err}");
        assert!(err.contains("\"off\""), "{err}");
        let err = error(&format!(
            "{}[catch_up]\nreply_max_age = \"off\"\n",
            hook("")
        ));
        assert!(err.contains("catch_up.reply_max_age"), "{err}");
        let err = error(&format!("{}[catch_up]\nlookback = \"1h\"\n", hook("")));
        assert!(err.contains("unknown field `lookback`"), "{err}");
    }
}
