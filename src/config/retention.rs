//! `[retention]`: how long finished rows are kept before the server (or `switchboard prune`)
//! deletes them. Ages are written `"7d"`, `"36h"`, `"90m"` or `"45s"`; `"off"` (or `0`) keeps
//! that kind of row forever.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::expand::expand_env;
use super::{parse_toml, read_file, ConfigError};

const DAY: u64 = 24 * 60 * 60;

/// `[retention]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Jobs in state `done` (and their outbound rows), counted from when they finished.
    pub done_jobs: Age,
    /// Dead-lettered jobs (and their outbound rows), counted from when they died.
    pub dead_jobs: Age,
    /// Events no unfinished job and no open buffer needs, counted from their arrival.
    pub events: Age,
    /// The `deliveries` log, counted from arrival.
    pub deliveries: Age,
    /// Quarantined bodies, counted from arrival.
    pub quarantine: Age,
    /// How often the server prunes.
    pub interval: Age,
    /// Most rows (jobs, events, ...) deleted by one statement; one batch per transaction.
    pub batch_size: i64,
    /// Pause between two batches, so the writer connection goes to the inbox and pipeline.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            done_jobs: Age::days(7),
            dead_jobs: Age::days(30),
            events: Age::days(7),
            deliveries: Age::days(7),
            quarantine: Age::days(30),
            interval: Age(Some(Duration::from_secs(5 * 60))),
            batch_size: 200,
            pause_ms: 50,
        }
    }
}

/// A duration, or `None` for "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Option<Duration>);

impl Age {
    pub const fn days(days: u64) -> Age {
        Age(Some(Duration::from_secs(days * DAY)))
    }

    /// The time (Unix ms) before which a row of this age is old at `now_ms`; `None` when off.
    pub fn cutoff(self, now_ms: i64) -> Option<i64> {
        let age = i64::try_from(self.0?.as_millis()).unwrap_or(i64::MAX);
        Some(now_ms.saturating_sub(age))
    }

    pub fn parse(text: &str) -> Result<Age, String> {
        let text = text.trim();
        if text == "off" || text == "0" {
            return Ok(Age(None));
        }
        let hint = || {
            format!("`{text}` is not an age: write a number and a unit, such as \"7d\", \"36h\", \"90m\" or \"45s\", or \"off\"")
        };
        let split = text.len().checked_sub(1).ok_or_else(hint)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| hint())?;
        let seconds = match unit {
            "d" => DAY,
            "h" => 60 * 60,
            "m" => 60,
            "s" => 1,
            _ => return Err(hint()),
        };
        Ok(Age(Some(Duration::from_secs(
            number.saturating_mul(seconds),
        ))))
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => Age::parse(&text).map_err(serde::de::Error::custom),
            Raw::Number(0) => Ok(Age(None)),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit: write \"{n}d\", \"{n}h\", \"{n}m\" or \"{n}s\" (only 0 may go without, meaning off)"
            ))),
        }
    }
}

impl RetentionConfig {
    /// Range checks; errors name the key and the fix.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: format!("retention.{key}"),
            message,
        };
        let ages = [
            ("done_jobs", self.done_jobs, "7d"),
            ("dead_jobs", self.dead_jobs, "30d"),
            ("events", self.events, "7d"),
            ("deliveries", self.deliveries, "7d"),
            ("quarantine", self.quarantine, "30d"),
        ];
        for (key, age, default) in ages {
            if age.0.is_some_and(|d| d < Duration::from_secs(60 * 60)) {
                return Err(invalid(
                    key,
                    format!("keep rows at least \"1h\" (default \"{default}\"), or write \"off\" to keep them forever"),
                ));
            }
        }
        match self.interval.0 {
            Some(d) if (Duration::from_secs(1)..=Duration::from_secs(DAY)).contains(&d) => {}
            _ => return Err(invalid(
                "interval",
                "use \"1s\" to \"1d\" (default \"5m\"); to stop pruning, set the ages to \"off\""
                    .to_owned(),
            )),
        }
        if !(1..=1000).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                format!(
                    "{} is out of range: use 1 to 1000 (default 200)",
                    self.batch_size
                ),
            ));
        }
        if self.pause_ms > 60_000 {
            return Err(invalid(
                "pause_ms",
                format!(
                    "{} is out of range: use 0 to 60000 (default 50)",
                    self.pause_ms
                ),
            ));
        }
        Ok(())
    }

    /// Reads a config file and returns its `[retention]` (defaults when absent), expanding
    /// `${VAR}` inside that table alone, as [`super::StorageConfig::load_only`] does for
    /// `[storage]`.
    pub fn load_only(path: &Path) -> Result<RetentionConfig, ConfigError> {
        let (file, text) = read_file(path)?;
        RetentionConfig::parse_only(&file, &text, |var| std::env::var(var).ok())
    }

    /// Parses `text` (named `file` in errors) and returns its validated `[retention]`.
    pub fn parse_only(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RetentionConfig, ConfigError> {
        let mut document: toml::Table = parse_toml(file, text)?;
        let Some(mut table) = document.remove("retention") else {
            return Ok(RetentionConfig::default());
        };
        let mut path = "retention".to_owned();
        expand_env(&mut table, &mut path, &env).map_err(|(key, var)| ConfigError::MissingEnv {
            file: file.to_owned(),
            key,
            var,
        })?;
        let config: RetentionConfig = serde_path_to_error::deserialize(table).map_err(|e| {
            let inner = e.path().to_string();
            ConfigError::Invalid {
                file: file.to_owned(),
                key: if inner == "." {
                    "retention".to_owned()
                } else {
                    format!("retention.{inner}")
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RetentionConfig, ConfigError> {
        RetentionConfig::parse_only("test.toml", text, |_| None)
    }

    #[test]
    fn defaults_keep_a_week_and_dead_jobs_and_quarantine_a_month() {
        let config = parse("[storage]\nurl = \"sqlite://x.db\"\n").expect("valid");
        assert_eq!(config.events, Age::days(7));
        assert_eq!(config.done_jobs, Age::days(7));
        assert_eq!(config.deliveries, Age::days(7));
        assert_eq!(config.dead_jobs, Age::days(30));
        assert_eq!(config.quarantine, Age::days(30));
        assert_eq!(config.interval.0, Some(Duration::from_secs(300)));
        assert_eq!(config.batch_size, 200);
    }

    #[test]
    fn ages_take_units_and_off() {
        let config = parse(
            "[retention]\nevents = \"36h\"\ndone_jobs = \"off\"\ndead_jobs = 0\ninterval = \"90s\"\nquarantine = \"120m\"\n",
        )
        .expect("valid");
        assert_eq!(config.events.0, Some(Duration::from_secs(36 * 3600)));
        assert_eq!(config.done_jobs, Age(None));
        assert_eq!(config.dead_jobs, Age(None));
        assert_eq!(config.quarantine.0, Some(Duration::from_secs(7200)));
        assert_eq!(config.interval.0, Some(Duration::from_secs(90)));
        assert_eq!(Age(None).cutoff(1_000), None);
        assert_eq!(Age::days(1).cutoff(DAY as i64 * 1000 + 5), Some(5));
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let err = parse("[retention]\nevents = \"7 days\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("retention.events"),
            "{err}"
        );
        assert!(err.contains("\"7d\""), "{err}");
        let err = parse("[retention]\nevents = 7\n").unwrap_err().to_string();
        assert!(
            err.contains("retention.events") && err.contains("\"7d\""),
            "{err}"
        );
        let err = parse("[retention]\ndone_jobs = \"10m\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retention.done_jobs") && err.contains("\"1h\""),
            "{err}"
        );
        let err = parse("[retention]\nbatch_size = 5000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retention.batch_size") && err.contains("1 to 1000"),
            "{err}"
        );
        let err = parse("[retention]\ninterval = \"off\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.interval"), "{err}");
        let err = parse("[retention]\nkeep = \"1d\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `keep`"), "{err}");
    }

    #[test]
    fn the_server_config_validates_retention_too() {
        let server = |retention: &str| {
            super::super::Config::parse(
                "server.toml",
                &format!(
                    "[[webhooks]]\nname = \"a\"\nsecrets = [\"s\"]\n[retention]\n{retention}\n"
                ),
                |_| None,
            )
        };
        let config = server("events = \"3d\"").expect("valid");
        assert_eq!(config.retention.events, Age::days(3));
        let err = server("pause_ms = 100000").unwrap_err().to_string();
        assert!(
            err.contains("server.toml") && err.contains("retention.pause_ms"),
            "{err}"
        );
        let err = server("events = \"1w\"").unwrap_err().to_string();
        assert!(
            err.contains("retention.events") && err.contains("\"7d\""),
            "{err}"
        );
    }
}
